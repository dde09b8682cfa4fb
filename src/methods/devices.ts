import { Type } from 'typebox'
import { assertReach, validateScopes, type Actor, type DeviceService } from '../devices/admin.ts'
import type { Admission } from '../gateway/handshake.ts'
import type { PairingService } from '../pairing/service.ts'
import { defineMethod, type MethodDef } from './types.ts'

const Id = Type.String({ minLength: 1, maxLength: 128 })
const ScopeList = Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 32 })
const LIST_LIMIT = 500

/** A device acting over WS may hand out only the scopes its own connection holds. */
function deviceActor (admission: Admission): Actor {
  return { id: admission.deviceId ?? 'gateway-token', reach: admission.scopes }
}

/** The pairing and device-admin methods; each calls the same service function as its REST twin. */
export function deviceMethods (pairing: PairingService, devices: DeviceService): MethodDef[] {
  return [
    defineMethod({
      name: 'device.pair.list',
      scope: 'operator.pairing',
      handler: async () => {
        const [pending, paired] = await Promise.all([
          pairing.list({ state: 'pending', limit: LIST_LIMIT }),
          devices.list({ limit: LIST_LIMIT })
        ])
        return { pending: pending.items, paired: paired.items }
      }
    }),
    defineMethod({
      name: 'device.pair.approve',
      scope: 'operator.pairing',
      params: Type.Object({ requestId: Id, scopes: Type.Optional(ScopeList) }),
      handler: async ({ admission, params }) => {
        const request = await pairing.get(params.requestId)
        // An unknown scope string is INVALID_SCOPE, not a scope the caller is missing.
        if (params.scopes !== undefined) validateScopes(params.scopes)
        const actor = deviceActor(admission)
        assertReach(actor, params.scopes ?? request.scopes)
        return await pairing.approve(params.requestId, params.scopes, actor.id)
      }
    }),
    defineMethod({
      name: 'device.pair.reject',
      scope: 'operator.pairing',
      params: Type.Object({ requestId: Id }),
      handler: async ({ admission, params }) => await pairing.reject(params.requestId, deviceActor(admission).id)
    }),
    defineMethod({
      name: 'device.pair.remove',
      scope: 'operator.pairing',
      params: Type.Object({ deviceId: Id }),
      handler: async ({ admission, params }) => await devices.remove(params.deviceId, deviceActor(admission))
    }),
    defineMethod({
      name: 'device.token.rotate',
      scope: 'operator.pairing',
      params: Type.Object({ deviceId: Id, role: Type.String({ minLength: 1, maxLength: 64 }), scopes: Type.Optional(ScopeList) }),
      handler: async ({ admission, params }) => {
        const rotated = await devices.rotateToken(params.deviceId, params.role, deviceActor(admission), params.scopes)
        return { deviceId: rotated.deviceId, role: rotated.role, token: rotated.token, scopes: rotated.scopes, rotatedAtMs: rotated.rotatedAtMs }
      }
    }),
    defineMethod({
      name: 'device.token.revoke',
      scope: 'operator.pairing',
      params: Type.Object({ deviceId: Id, role: Type.String({ minLength: 1, maxLength: 64 }) }),
      handler: async ({ admission, params }) => await devices.revokeToken(params.deviceId, params.role, deviceActor(admission))
    })
  ]
}
