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
  tokenTtlMs: Type.Optional(Type.Number({ description: "This device's token lifetime in ms when it overrides DEVICE_TOKEN_TTL_MS (0: never expires)" })),
  tokens: Type.Array(DeviceTokenSchema)
})

/** Up to ten years; null goes back to DEVICE_TOKEN_TTL_MS. */
export const TokenTtlBody = Type.Object({
  ttlMs: Type.Union([Type.Integer({ minimum: 0, maximum: 315_360_000_000 }), Type.Null()], { description: 'device-token lifetime in ms for this device: 0 never expires, null uses DEVICE_TOKEN_TTL_MS' })
}, { additionalProperties: false })

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
