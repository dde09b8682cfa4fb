import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { errors, IdParam, ListQuery, Page } from '../schemas/common.ts'
import type { Actor } from './admin.ts'
import { PairedDeviceSchema, RevokedTokenSchema, RotatedTokenSchema, ScopesBody, TokenTtlBody } from './schemas.ts'

const DeviceParams = Type.Object({ id: IdParam })
const RoleParams = Type.Object({ id: IdParam, role: Type.String({ minLength: 1, maxLength: 64 }) })
const ScopeParams = Type.Object({ id: IdParam, role: Type.String({ minLength: 1, maxLength: 64 }), scope: Type.String({ minLength: 1, maxLength: 64 }) })

/** An admin JWT holds every scope. */
function adminActor (request: FastifyRequest): Actor {
  return { id: request.user.sub, reach: 'all' }
}

/** Admin REST for devices, grants and tokens; the WS methods call the same service. */
const deviceRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const tags = ['devices']

  app.get('/devices', {
    schema: {
      summary: 'Paired devices, newest first',
      tags,
      querystring: Type.Object({ ...ListQuery, tokensExpiringWithinMs: Type.Optional(Type.Integer({ minimum: 0 })) }),
      response: { 200: Page(PairedDeviceSchema), ...errors(400, 401) }
    }
  }, async (request) => {
    const { limit = 50, cursor, tokensExpiringWithinMs } = request.query
    return await app.devices.list({ limit, ...(cursor !== undefined && { cursor }), ...(tokensExpiringWithinMs !== undefined && { tokensExpiringWithinMs }) })
  })

  app.get('/devices/:id', {
    schema: { summary: 'One paired device', tags, params: DeviceParams, response: { 200: PairedDeviceSchema, ...errors(401, 404) } }
  }, async (request) => await app.devices.get(request.params.id))

  app.delete('/devices/:id', {
    schema: {
      summary: 'Remove a device; its sockets close `device removed`',
      tags,
      params: DeviceParams,
      response: { 200: Type.Object({ deviceId: Type.String() }), ...errors(401, 403, 404) }
    }
  }, async (request) => await app.devices.remove(request.params.id, adminActor(request)))

  app.put('/devices/:id/roles/:role/scopes', {
    schema: {
      summary: 'Set the approved scopes of a role exactly; sockets left uncovered close `scope revoked (<scope>)`',
      tags,
      params: RoleParams,
      body: ScopesBody,
      response: { 200: PairedDeviceSchema, ...errors(400, 401, 403, 404) }
    }
  }, async (request) => await app.devices.setScopes(request.params.id, request.params.role, request.body.scopes, adminActor(request)))

  app.post('/devices/:id/roles/:role/scopes', {
    schema: {
      summary: 'Add approved scopes to a role',
      tags,
      params: RoleParams,
      body: ScopesBody,
      response: { 200: PairedDeviceSchema, ...errors(400, 401, 403, 404) }
    }
  }, async (request) => await app.devices.addScopes(request.params.id, request.params.role, request.body.scopes, adminActor(request)))

  app.delete('/devices/:id/roles/:role/scopes/:scope', {
    schema: {
      summary: 'Revoke one approved scope; sockets using it close `scope revoked (<scope>)`',
      tags,
      params: ScopeParams,
      response: { 200: PairedDeviceSchema, ...errors(400, 401, 403, 404) }
    }
  }, async (request) => await app.devices.revokeScope(request.params.id, request.params.role, request.params.scope, adminActor(request)))

  app.post('/devices/:id/tokens/:role/rotate', {
    schema: {
      summary: 'Mint a new device token (shown only in this response); sockets using the old one close `device token revoked`',
      tags,
      params: RoleParams,
      body: Type.Object({ scopes: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: 32 })) }, { additionalProperties: false }),
      response: { 200: RotatedTokenSchema, ...errors(400, 401, 403, 404) }
    }
  }, async (request) => await app.devices.rotateToken(request.params.id, request.params.role, adminActor(request), request.body.scopes))

  app.put('/devices/:id/token-ttl', {
    schema: {
      summary: "Set this device's token lifetime (ms; 0 never expires; null back to DEVICE_TOKEN_TTL_MS) for tokens minted or rotated from now on",
      tags,
      params: DeviceParams,
      body: TokenTtlBody,
      response: { 200: PairedDeviceSchema, ...errors(400, 401, 403, 404) }
    }
  }, async (request) => await app.devices.setTokenTtl(request.params.id, request.body.ttlMs, adminActor(request)))

  app.delete('/devices/:id/tokens/:role', {
    schema: {
      summary: 'Revoke a device token; sockets that logged in with it close `device token revoked`',
      tags,
      params: RoleParams,
      response: { 200: RevokedTokenSchema, ...errors(400, 401, 403, 404) }
    }
  }, async (request) => await app.devices.revokeToken(request.params.id, request.params.role, adminActor(request)))
}

export default deviceRoutes
