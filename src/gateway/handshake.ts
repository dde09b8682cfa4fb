import { hash, timingSafeEqual } from 'node:crypto'
import { deviceIdFromPublicKey, normalizeMetadata, verifyDeviceSignature } from '../auth/device-identity.ts'
import { isRole, uncoveredScopes, uniqueScopes } from '../auth/scopes.ts'
import { tokenMatchesHash } from '../auth/tokens.ts'
import type { SqlClient } from '../db/database.ts'
import { isDatabaseUnavailable } from '../db/errors.ts'
import type { DeviceAccess, DeviceAccessLoader } from '../devices/access.ts'
import { mintDeviceToken, type MintedToken } from '../devices/service.ts'
import type { PairingAsk, PairingDecision, PairingReason, PairingService, PolicyRef } from '../pairing/service.ts'
import { Close, type CloseSpec } from './close.ts'
import { invalidField, isConnectParams, PROTOCOL_VERSION, type ConnectParams, type ErrorShape } from './frames.ts'

export const SIGNATURE_SKEW_MS = 120_000

export interface Challenge {
  nonce: string
  ts: number
}

/** Who a connection is, decided once at connect and cached for its life. */
export interface Admission {
  role: string
  scopes: string[]
  deviceId: string | null
  authMethod: 'token' | 'device-token'
  /** The device token this connection logged in with, or was just issued. */
  tokenId: string | null
  /** When the device token this connection logged in with expires (null: never, or logged in with the gateway token). */
  tokenExpiresAtMs: number | null
  issued: MintedToken | null
  client: ConnectParams['client']
  /** cron fires were kept for this device while it was offline. */
  pendingFires: boolean
}

export type HandshakeResult =
  | { ok: true, admission: Admission }
  | { ok: false, outcome: string, error: ErrorShape, close: CloseSpec, cause?: unknown }

export interface HandshakeDeps {
  /** Mints device tokens. */
  sql: SqlClient
  /** The handshake's one read: the device, its grant and token for the role (batched with concurrent handshakes'). */
  access: DeviceAccessLoader
  pairing: PairingService
  gatewayTokenHash: Buffer
  deviceTokenTtlMs: number
  /** The clock token expiry and the signature window are judged by (Date.now by default). */
  now?: () => number
}

/** A refusal from the table in PROTOCOL.md: INVALID_REQUEST, message = close reason. */
function refuse (detailsCode: string, close: CloseSpec): HandshakeResult {
  return { ok: false, outcome: detailsCode, error: { code: 'INVALID_REQUEST', message: close.reason, details: { code: detailsCode } }, close }
}

/** A failure while deciding: the database is out of reach (retry later) or a bug (logged). */
function failure (err: unknown): HandshakeResult {
  if (isDatabaseUnavailable(err)) return unavailable()
  return { ok: false, outcome: 'INTERNAL', error: { code: 'INTERNAL', message: 'internal error' }, close: Close.internalError, cause: err }
}

export function unavailable (): HandshakeResult {
  return {
    ok: false,
    outcome: 'UNAVAILABLE',
    error: { code: 'UNAVAILABLE', message: 'database unavailable, try again later', retryable: true },
    close: Close.tryAgainLater
  }
}

export function hashGatewayToken (token: string): Buffer {
  return hash('sha256', token, 'buffer')
}

function gatewayTokenMatches (token: string, expectedHash: Buffer): boolean {
  return timingSafeEqual(hashGatewayToken(token), expectedHash)
}

function isInteger (value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value)
}

/**
 * Runs the connect checks in PROTOCOL.md's order; the first failure wins:
 * protocol range, params schema, role, identity, nonce, clock, signature,
 * credentials, pairing.
 */
export async function authenticate (raw: unknown, challenge: Challenge, deps: HandshakeDeps): Promise<HandshakeResult> {
  const { minProtocol, maxProtocol } = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>
  if (isInteger(minProtocol) && isInteger(maxProtocol) && !(minProtocol <= PROTOCOL_VERSION && PROTOCOL_VERSION <= maxProtocol)) {
    return refuse('PROTOCOL_MISMATCH', Close.protocolMismatch)
  }
  // Validate what was sent: absent or non-object params are `params`, not a missing `minProtocol`.
  if (!isConnectParams(raw)) {
    return refuse('INVALID_CONNECT_PARAMS', Close.invalidConnectParams(invalidField(isConnectParams.errors)))
  }
  const params = raw
  if (!isRole(params.role)) return refuse('INVALID_ROLE', Close.invalidRole)

  const now = deps.now?.() ?? Date.now()
  const { device } = params
  const platform = normalizeMetadata(params.client.platform)
  const deviceFamily = normalizeMetadata(params.client.deviceFamily)
  const token = params.auth?.token ?? ''
  const deviceToken = params.auth?.deviceToken ?? ''

  if (device !== undefined) {
    if (deviceIdFromPublicKey(device.publicKey) !== device.id) return refuse('DEVICE_AUTH_DEVICE_ID_MISMATCH', Close.deviceIdentityMismatch)
    if (device.nonce !== challenge.nonce) return refuse('DEVICE_AUTH_NONCE_MISMATCH', Close.deviceNonceMismatch)
    if (Math.abs(device.signedAt - now) > SIGNATURE_SKEW_MS) return refuse('DEVICE_AUTH_SIGNATURE_EXPIRED', Close.deviceSignatureExpired)
    const signed = {
      deviceId: device.id,
      clientId: params.client.id,
      clientMode: params.client.mode,
      role: params.role,
      scopes: params.scopes,
      signedAt: device.signedAt,
      token: token !== '' ? token : deviceToken,
      nonce: device.nonce,
      platform,
      deviceFamily
    }
    if (!verifyDeviceSignature(device.publicKey, device.signature, signed)) {
      return refuse('DEVICE_AUTH_SIGNATURE_INVALID', Close.deviceSignatureInvalid)
    }
  }

  if (token === '' && deviceToken === '') return refuse('AUTH_TOKEN_MISSING', Close.gatewayTokenMissing)

  // The only database round trip of a handshake, needed by a device token check and the pairing check alike.
  let access: DeviceAccess | null = null
  if (device !== undefined) {
    try {
      access = await deps.access.load(device.id, params.role)
    } catch (err) {
      return failure(err)
    }
  }

  let tokenId: string | null = null
  let tokenExpiresAtMs: number | null = null
  if (deviceToken !== '') {
    const stored = access?.token
    if (device === undefined || stored == null || stored.revoked || !tokenMatchesHash(deviceToken, stored.hash)) {
      return refuse('AUTH_DEVICE_TOKEN_MISMATCH', Close.deviceTokenMismatch)
    }
    if (stored.expiresAtMs !== null && stored.expiresAtMs <= now) return refuse('AUTH_DEVICE_TOKEN_EXPIRED', Close.deviceTokenExpired)
    tokenId = stored.id
    tokenExpiresAtMs = stored.expiresAtMs
  } else if (!gatewayTokenMatches(token, deps.gatewayTokenHash)) {
    return refuse('AUTH_TOKEN_MISMATCH', Close.gatewayTokenMismatch)
  }
  const authMethod = deviceToken !== '' ? 'device-token' : 'token'

  if (device === undefined) {
    // The gateway token alone never grants a scope.
    return { ok: true, admission: { role: params.role, scopes: [], deviceId: null, authMethod, tokenId: null, tokenExpiresAtMs: null, issued: null, client: params.client, pendingFires: false } }
  }

  const scopes = uniqueScopes(params.scopes)
  let roleScopes = access?.roleScopes ?? []
  const reason = pairingReason(access, scopes, platform, deviceFamily)
  if (reason !== null) {
    const ask: PairingAsk = {
      deviceId: device.id,
      publicKey: device.publicKey,
      role: params.role,
      scopes,
      platform,
      deviceFamily,
      clientId: params.client.id,
      clientMode: params.client.mode,
      ...(params.client.displayName !== undefined && { displayName: params.client.displayName })
    }
    // The approval policies are tried first; without one that decides, the ask waits for an admin.
    let decision: PairingDecision
    try {
      decision = await deps.pairing.decide(ask, reason)
    } catch (err) {
      return failure(err)
    }
    if (decision.kind !== 'approved') return pairingRequired(decision, ask, access)
    roleScopes = decision.roleScopes
  }

  let issued: MintedToken | null = null
  if (authMethod === 'token') {
    const current = access?.token
    const usable = current != null && !current.revoked && (current.expiresAtMs === null || current.expiresAtMs > now)
    if (usable) {
      tokenId = current.id
    } else {
      try {
        issued = await mintDeviceToken(deps.sql, device.id, params.role, roleScopes, access?.tokenTtlMs ?? deps.deviceTokenTtlMs, now)
      } catch (err) {
        return failure(err)
      }
      tokenId = issued?.tokenId ?? null
    }
  }
  return { ok: true, admission: { role: params.role, scopes, deviceId: device.id, authMethod, tokenId, tokenExpiresAtMs, issued, client: params.client, pendingFires: access?.pendingFires ?? false } }
}

/** The pairing check, in PROTOCOL.md's order of reasons; null when the device may connect. */
export function pairingReason (access: DeviceAccess | null, scopes: string[], platform: string, deviceFamily: string): PairingReason | null {
  if (access === null) return 'not-paired'
  if (access.roleScopes === null) return 'role-upgrade'
  if (uncoveredScopes(scopes, access.roleScopes).length > 0) return 'scope-upgrade'
  if (access.platform !== platform || access.deviceFamily !== deviceFamily) return 'metadata-upgrade'
  return null
}

const CONSOLE_HINT = 'or approve it under Pending requests at /console'

function approveCommand (requestId: string): string {
  return `ask an admin to run: scopegate requests approve ${requestId}, ${CONSOLE_HINT}`
}

function quoted (policy: PolicyRef): string {
  return `approval policy "${policy.name}" (${policy.id})`
}

/**
 * One line a person can act on: why the connect was refused and the exact
 * next step (the CLI command and the console page that approve the request,
 * or the policy that rejected it).
 */
export function remediationHint (decision: Exclude<PairingDecision, { kind: 'approved' }>): string {
  if (decision.kind === 'rejected') {
    return `${quoted(decision.policy)} rejected this ask and no request is pending; an admin can review the rule with: scopegate policies show ${decision.policy.id}`
  }
  const { request, partial, disabledMatch } = decision
  const approve = approveCommand(request.requestId)
  let hint: string
  if (partial !== undefined) {
    const granted = partial.granted.length > 0 ? `approved ${partial.granted.join(', ')}` : 'approved the device but none of the asked scopes'
    hint = `${quoted(partial.policy)} ${granted}; the rest is beyond it and this device cannot approve its own upgrade; ${approve}`
  } else {
    switch (decision.reason) {
      case 'not-paired':
        hint = `this device is not paired yet; ${approve}`
        break
      case 'role-upgrade':
        hint = `this device is paired, but not for role ${request.role}; ${approve}`
        break
      case 'scope-upgrade':
        hint = `this device asked for scopes beyond its approval and cannot approve its own upgrade; ${approve}`
        break
      case 'metadata-upgrade':
        hint = `this device's platform or deviceFamily changed since it was approved; ${approve}`
        break
    }
  }
  if (disabledMatch !== undefined) {
    hint += `; the disabled ${quoted(disabledMatch)} would ${disabledMatch.action} it: scopegate policies update ${disabledMatch.id} --enable`
  }
  return hint
}

function pairingRequired (decision: Exclude<PairingDecision, { kind: 'approved' }>, ask: PairingAsk, access: DeviceAccess | null): HandshakeResult {
  const reason = decision.reason
  const close = Close.pairingRequired(reason)
  const approvedScopes = decision.kind === 'rejected'
    ? decision.approvedScopes
    : decision.partial?.approvedScopes ?? [...(access?.roleScopes ?? [])].sort()
  return {
    ok: false,
    outcome: reason,
    error: {
      code: 'NOT_PAIRED',
      message: close.reason,
      details: {
        code: 'PAIRING_REQUIRED',
        reason,
        requestId: decision.kind === 'rejected' ? decision.requestId : decision.request.requestId,
        deviceId: ask.deviceId,
        requestedRole: decision.kind === 'rejected' ? ask.role : decision.request.role,
        requestedScopes: decision.kind === 'rejected' ? ask.scopes : decision.request.scopes,
        approvedScopes,
        ...(decision.kind === 'rejected' && { policyId: decision.policy.id }),
        remediationHint: remediationHint(decision)
      }
    },
    close
  }
}
