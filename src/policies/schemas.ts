import { Type, type TSchema } from 'typebox'
import { ROLES, SCOPES } from '../auth/scopes.ts'
import { PAIRING_REASONS } from '../pairing/service.ts'
import { errors, IdParam, ListQuery, Page } from '../schemas/common.ts'
import { POLICY_ACTIONS } from './service.ts'

const Text = (description: string) => Type.String({ minLength: 1, maxLength: 128, description })
const List = <T extends TSchema>(item: T, description: string) =>
  Type.Optional(Type.Array(item, { minItems: 1, maxItems: 64, description }))

const Match = Type.Object({
  roles: List(Type.Enum(ROLES), 'the ask\'s role is one of these'),
  clientIds: List(Text('client.id'), 'the ask\'s client.id is one of these'),
  clientModes: List(Text('client.mode'), 'the ask\'s client.mode is one of these'),
  platforms: List(Type.String({ maxLength: 128 }), 'the ask\'s platform, trimmed and lower-cased, is one of these (stored that way; "" matches a device without one)'),
  reasons: List(Type.Enum(PAIRING_REASONS), 'the pairing reason is one of these'),
  deviceIds: List(Text('device id'), 'the device is one of these'),
  scopesWithin: List(Type.Enum(SCOPES), 'every asked scope is in this list')
}, { additionalProperties: false, description: 'Every field given must hold; an empty match holds for every ask' })

const Scopes = Type.Array(Type.Enum(SCOPES), { maxItems: 32, description: 'approve only: grant only the asked scopes listed here; the others wait for an admin as a scope-upgrade' })

const Strings = Type.Optional(Type.Array(Type.String()))
const StoredMatch = Type.Object({
  roles: Strings, clientIds: Strings, clientModes: Strings, platforms: Strings, reasons: Strings, deviceIds: Strings, scopesWithin: Strings
})

export const PolicySchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  priority: Type.Integer(),
  enabled: Type.Boolean(),
  match: StoredMatch,
  action: Type.Enum(POLICY_ACTIONS),
  scopes: Type.Optional(Type.Array(Type.String())),
  allowPrivileged: Type.Boolean(),
  createdBy: Type.String(),
  createdAtMs: Type.Number(),
  updatedAtMs: Type.Number()
}, { description: 'An approval policy (API.md)' })

const Name = Type.String({ minLength: 1, maxLength: 100 })
const Priority = Type.Integer({ minimum: -1_000_000, maximum: 1_000_000, description: 'lower is tried first; equal priorities by age (default 100)' })
const AllowPrivileged = Type.Boolean({ description: 'must be true for a rule that could grant operator.admin or operator.pairing' })

const PolicyParams = Type.Object({ id: IdParam })

export const listPoliciesSchema = {
  summary: 'Approval policies, in evaluation order (priority, then age)',
  tags: ['policies'],
  querystring: Type.Object(ListQuery),
  response: { 200: Page(PolicySchema), ...errors(400, 401) }
}

export const getPolicySchema = {
  summary: 'One approval policy',
  tags: ['policies'],
  params: PolicyParams,
  response: { 200: PolicySchema, ...errors(401, 404) }
}

export const createPolicySchema = {
  summary: 'Add an approval policy (admin JWT only)',
  tags: ['policies'],
  body: Type.Object({
    name: Name,
    priority: Type.Optional(Priority),
    enabled: Type.Optional(Type.Boolean()),
    match: Type.Optional(Match),
    action: Type.Enum(POLICY_ACTIONS),
    scopes: Type.Optional(Scopes),
    allowPrivileged: Type.Optional(AllowPrivileged)
  }, { additionalProperties: false }),
  response: { 200: PolicySchema, ...errors(400, 401, 403) }
}

export const updatePolicySchema = {
  summary: 'Change an approval policy (admin JWT only); `match` is replaced as a whole, `scopes: null` stops narrowing',
  tags: ['policies'],
  params: PolicyParams,
  body: Type.Object({
    name: Type.Optional(Name),
    priority: Type.Optional(Priority),
    enabled: Type.Optional(Type.Boolean()),
    match: Type.Optional(Match),
    action: Type.Optional(Type.Enum(POLICY_ACTIONS)),
    scopes: Type.Optional(Type.Union([Scopes, Type.Null()])),
    allowPrivileged: Type.Optional(AllowPrivileged)
  }, { additionalProperties: false, minProperties: 1 }),
  response: { 200: PolicySchema, ...errors(400, 401, 403, 404) }
}

export const deletePolicySchema = {
  summary: 'Delete an approval policy (admin JWT only)',
  tags: ['policies'],
  params: PolicyParams,
  response: { 200: Type.Object({ id: Type.String() }), ...errors(401, 403, 404) }
}

export const evaluatePolicySchema = {
  summary: 'Dry run: which enabled policy would decide this ask, and what it would do (a read: viewers may call it)',
  tags: ['policies'],
  body: Type.Object({
    role: Type.Enum(ROLES),
    scopes: Type.Array(Type.Enum(SCOPES), { maxItems: 32 }),
    reason: Type.Enum(PAIRING_REASONS),
    clientId: Type.Optional(Type.String({ maxLength: 128 })),
    clientMode: Type.Optional(Type.String({ maxLength: 128 })),
    platform: Type.Optional(Type.String({ maxLength: 128 })),
    deviceId: Type.Optional(Type.String({ maxLength: 128 }))
  }, { additionalProperties: false }),
  response: {
    200: Type.Object({
      policyId: Type.Union([Type.String(), Type.Null()]),
      policyName: Type.Optional(Type.String()),
      action: Type.Enum([...POLICY_ACTIONS, 'none']),
      scopes: Type.Optional(Type.Array(Type.String(), { description: 'approve: the asked scopes it would grant' })),
      leftOutScopes: Type.Optional(Type.Array(Type.String(), { description: 'approve: the asked scopes it would leave to an admin (a scope-upgrade request)' }))
    }),
    ...errors(400, 401)
  }
}
