import { Type } from 'typebox'
import { SCOPES } from '../auth/scopes.ts'
import { errors, IdParam, ListQuery, Page } from '../schemas/common.ts'
import { PairedDeviceSchema } from '../devices/schemas.ts'
import { REQUEST_STATES } from './service.ts'

const Strings = Type.Array(Type.String())

export const PairingRequestSchema = Type.Object({
  requestId: Type.String(),
  deviceId: Type.String(),
  publicKey: Type.String(),
  platform: Type.String(),
  deviceFamily: Type.String(),
  clientId: Type.String(),
  clientMode: Type.String(),
  displayName: Type.Optional(Type.String()),
  role: Type.String(),
  roles: Strings,
  scopes: Strings,
  approvedScopes: Strings,
  reason: Type.String(),
  isRepair: Type.Boolean(),
  ts: Type.Number(),
  state: Type.Enum(REQUEST_STATES),
  expiresAtMs: Type.Number(),
  resolvedAtMs: Type.Optional(Type.Number()),
  grantedScopes: Type.Optional(Strings)
})

const RequestIdParams = Type.Object({ id: IdParam })

export const listRequestsSchema = {
  summary: 'List pairing requests, newest first',
  tags: ['pairing'],
  querystring: Type.Object({
    state: Type.Optional(Type.Enum([...REQUEST_STATES, 'all'], { default: 'pending' })),
    ...ListQuery
  }),
  response: { 200: Page(PairingRequestSchema), ...errors(400, 401) }
}

export const getRequestSchema = {
  summary: 'One pairing request, in any state',
  tags: ['pairing'],
  params: RequestIdParams,
  response: { 200: PairingRequestSchema, ...errors(401, 404) }
}

export const approveRequestSchema = {
  summary: 'Approve a pending request, optionally for fewer scopes than asked',
  tags: ['pairing'],
  params: RequestIdParams,
  body: Type.Object({
    scopes: Type.Optional(Type.Array(Type.Enum(SCOPES), { minItems: 1, maxItems: 32 }))
  }, { additionalProperties: false }),
  response: {
    200: Type.Object({ requestId: Type.String(), device: PairedDeviceSchema }),
    ...errors(400, 401, 403, 404, 409)
  }
}

export const rejectRequestSchema = {
  summary: 'Reject a pending request',
  tags: ['pairing'],
  params: RequestIdParams,
  body: Type.Object({}, { additionalProperties: false }),
  response: {
    200: Type.Object({ requestId: Type.String(), deviceId: Type.String() }),
    ...errors(400, 401, 403, 404, 409)
  }
}
