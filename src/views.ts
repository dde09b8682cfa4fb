// The shapes the admin API, the gateway and the console share. No imports:
// the browser console (src/console/web) imports these types as they are.

export const AUDIT_ACTIONS = [
  'pairing.requested', 'pairing.approved', 'pairing.rejected', 'pairing.superseded', 'pairing.expired',
  'device.removed', 'scopes.set', 'scopes.added', 'scope.revoked', 'token.rotated', 'token.revoked', 'token.ttl.set',
  'cron.added', 'cron.updated', 'cron.removed',
  'policy.created', 'policy.updated', 'policy.deleted'
] as const
export type AuditAction = (typeof AUDIT_ACTIONS)[number]

export interface AuditEntryView {
  id: string
  atMs: number
  actor: string
  action: string
  deviceId?: string
  requestId?: string
  details: Record<string, unknown>
}

export const PAIRING_REASONS = ['not-paired', 'role-upgrade', 'scope-upgrade', 'metadata-upgrade'] as const
export type PairingReason = (typeof PAIRING_REASONS)[number]

export const REQUEST_STATES = ['pending', 'approved', 'rejected', 'superseded', 'expired'] as const
export type RequestState = (typeof REQUEST_STATES)[number]

/** A request as `device.pair.list` (pending) shows it, plus its state. */
export interface PairingRequestView {
  requestId: string
  deviceId: string
  publicKey: string
  platform: string
  deviceFamily: string
  clientId: string
  clientMode: string
  displayName?: string
  role: string
  roles: string[]
  scopes: string[]
  approvedScopes: string[]
  reason: string
  isRepair: boolean
  ts: number
  state: RequestState
  expiresAtMs: number
  resolvedAtMs?: number
  grantedScopes?: string[]
}

export interface DeviceTokenView {
  role: string
  scopes: string[]
  createdAtMs: number
  rotatedAtMs?: number
  revokedAtMs?: number
  expiresAtMs?: number
}

/** A paired device as PROTOCOL.md's `device.pair.list` shows it (never a token secret). */
export interface PairedDevice {
  deviceId: string
  publicKey: string
  platform: string
  deviceFamily: string
  displayName?: string
  role: string
  roles: string[]
  scopes: string[]
  /** Approved scopes for every role. */
  roleScopes: Record<string, string[]>
  createdAtMs: number
  approvedAtMs: number
  lastSeenAtMs?: number
  /** This device's token lifetime when it overrides DEVICE_TOKEN_TTL_MS (0: never expires). */
  tokenTtlMs?: number
  tokens: DeviceTokenView[]
}

export type RunStatus = 'running' | 'ok' | 'error' | 'abandoned'

export interface CronRunView {
  runId: string
  jobId: string
  status: RunStatus
  dueAtMs: number
  startedAtMs: number
  finishedAtMs?: number
  instance: string
  error?: string
}

/** A device token as rotate shows it: the only time the secret is shown. */
export interface RotatedToken {
  deviceId: string
  role: string
  token: string
  scopes: string[]
  rotatedAtMs: number
  expiresAtMs?: number
}

/** An approval policy's match: each field is a list the ask's value must be in; `scopesWithin`: every asked scope must be in it. */
export interface PolicyMatch {
  roles?: string[]
  clientIds?: string[]
  clientModes?: string[]
  platforms?: string[]
  reasons?: string[]
  deviceIds?: string[]
  scopesWithin?: string[]
}

export const MATCH_FIELDS = ['roles', 'clientIds', 'clientModes', 'platforms', 'reasons', 'deviceIds', 'scopesWithin'] as const satisfies ReadonlyArray<keyof PolicyMatch>
