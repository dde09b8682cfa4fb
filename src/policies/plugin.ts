import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import type { Actor } from '../devices/admin.ts'
import { createPolicySchema, deletePolicySchema, evaluatePolicySchema, getPolicySchema, listPoliciesSchema, updatePolicySchema } from './schemas.ts'

/** An admin JWT holds every scope (PROTOCOL.md), so it may write a privileged rule it marks allowPrivileged. */
function adminActor (request: FastifyRequest): Actor {
  return { id: request.user.sub, reach: 'all' }
}

/**
 * Admin REST for approval policies, under /api/v1 with the admin JWT. The
 * handshake judges asks with the same service (app.pairing.policies).
 */
const policiesPlugin: FastifyPluginAsyncTypebox = async (app) => {
  const policies = app.pairing.policies

  app.get('/policies', { schema: listPoliciesSchema }, async (request) => {
    const { limit = 50, cursor } = request.query
    return await policies.list({ limit, ...(cursor !== undefined && { cursor }) })
  })

  app.post('/policies', { schema: createPolicySchema }, async (request) => await policies.create(request.body, adminActor(request)))

  // A dry run changes nothing: viewers may call it (config.readOnly, see auth/admin-jwt.ts).
  app.post('/policies/evaluate', { schema: evaluatePolicySchema, config: { readOnly: true } }, async (request) => {
    const { role, scopes, reason, clientId, clientMode, platform, deviceId } = request.body
    return await policies.evaluate({
      role,
      scopes,
      reason,
      ...(clientId !== undefined && { clientId }),
      ...(clientMode !== undefined && { clientMode }),
      ...(platform !== undefined && { platform }),
      ...(deviceId !== undefined && { deviceId })
    })
  })

  app.get('/policies/:id', { schema: getPolicySchema }, async (request) => await policies.get(request.params.id))

  app.patch('/policies/:id', { schema: updatePolicySchema }, async (request) => await policies.update(request.params.id, request.body, adminActor(request)))

  app.delete('/policies/:id', { schema: deletePolicySchema }, async (request) => await policies.remove(request.params.id, adminActor(request)))
}

export default policiesPlugin
