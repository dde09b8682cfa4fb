import { Type } from 'typebox'

const Strings = Type.Array(Type.String())

export const DeviceTokenSchema = Type.Object({
  role: Type.String(),
  scopes: Strings,
  createdAtMs: Type.Number(),
  rotatedAtMs: Type.Optional(Type.Number()),
  revokedAtMs: Type.Optional(Type.Number()),
  expiresAtMs: Type.Optional(Type.Number())
})

export const PairedDeviceSchema = Type.Object({
  deviceId: Type.String(),
  publicKey: Type.String(),
  platform: Type.String(),
  deviceFamily: Type.String(),
  displayName: Type.Optional(Type.String()),
  role: Type.String(),
  roles: Strings,
  scopes: Strings,
  roleScopes: Type.Record(Type.String(), Strings),
  createdAtMs: Type.Number(),
  approvedAtMs: Type.Number(),
  lastSeenAtMs: Type.Optional(Type.Number()),
  tokens: Type.Array(DeviceTokenSchema)
})

export const ScopesBody = Type.Object({
  scopes: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: 32 })
}, { additionalProperties: false })

export const RotatedTokenSchema = Type.Object({
  deviceId: Type.String(),
  role: Type.String(),
  token: Type.String(),
  scopes: Strings,
  rotatedAtMs: Type.Number(),
  expiresAtMs: Type.Optional(Type.Number())
})

export const RevokedTokenSchema = Type.Object({
  deviceId: Type.String(),
  role: Type.String(),
  revokedAtMs: Type.Number()
})
