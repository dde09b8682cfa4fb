import { Type, type Static } from 'typebox'
import { assertReach, validateScopes, type Actor, type DeviceService } from '../devices/admin.ts'
import type { PairedDevice } from '../devices/service.ts'
import type { Admission } from '../gateway/handshake.ts'
import type { ApprovalResult, PairingRequestView, PairingService } from '../pairing/service.ts'
import { defineMethod, type MethodDef } from './types.ts'

const Id = Type.String({ minLength: 1, maxLength: 128 })
const Role = Type.String({ minLength: 1, maxLength: 64 })
const ScopeList = Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 32 })
const LIST_LIMIT = 500

// The params schemas and result types are exported for the client SDK (src/client/methods.ts).

export const PairApproveParams = Type.Object({ requestId: Id, scopes: Type.Optional(ScopeList) })
export type PairApproveParams = Static<typeof PairApproveParams>

export const PairRejectParams = Type.Object({ requestId: Id })
export type PairRejectParams = Static<typeof PairRejectParams>

export const PairRemoveParams = Type.Object({ deviceId: Id })
export type PairRemoveParams = Static<typeof PairRemoveParams>

export const TokenRotateParams = Type.Object({ deviceId: Id, role: Role, scopes: Type.Optional(ScopeList) })
export type TokenRotateParams = Static<typeof TokenRotateParams>

export const TokenRevokeParams = Type.Object({ deviceId: Id, role: Role })
export type TokenRevokeParams = Static<typeof TokenRevokeParams>

export interface PairListResult { pending: PairingRequestView[], paired: PairedDevice[] }
export type PairApproveResult = ApprovalResult
export interface PairRejectResult { requestId: string, deviceId: string }
export interface PairRemoveResult { deviceId: string }
export interface TokenRotateResult { deviceId: string, role: string, token: string, scopes: string[], rotatedAtMs: number }
export interface TokenRevokeResult { deviceId: string, role: string, revokedAtMs: number }

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
      handler: async (): Promise<PairListResult> => {
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
      params: PairApproveParams,
      handler: async ({ admission, params }): Promise<PairApproveResult> => {
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
      params: PairRejectParams,
      handler: async ({ admission, params }): Promise<PairRejectResult> => await pairing.reject(params.requestId, deviceActor(admission).id)
    }),
    defineMethod({
      name: 'device.pair.remove',
      scope: 'operator.pairing',
      params: PairRemoveParams,
      handler: async ({ admission, params }): Promise<PairRemoveResult> => await devices.remove(params.deviceId, deviceActor(admission))
    }),
    defineMethod({
      name: 'device.token.rotate',
      scope: 'operator.pairing',
      params: TokenRotateParams,
      handler: async ({ admission, params }): Promise<TokenRotateResult> => {
        const rotated = await devices.rotateToken(params.deviceId, params.role, deviceActor(admission), params.scopes)
        return { deviceId: rotated.deviceId, role: rotated.role, token: rotated.token, scopes: rotated.scopes, rotatedAtMs: rotated.rotatedAtMs }
      }
    }),
    defineMethod({
      name: 'device.token.revoke',
      scope: 'operator.pairing',
      params: TokenRevokeParams,
      handler: async ({ admission, params }): Promise<TokenRevokeResult> => await devices.revokeToken(params.deviceId, params.role, deviceActor(admission))
    })
  ]
}
