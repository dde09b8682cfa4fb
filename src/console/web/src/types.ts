// The shapes the console reads from /api/v1 (API.md; the TypeBox schemas in
// src/*/schemas.ts and routes.ts are the source of truth).

export interface Page<T> {
  items: T[]
  nextCursor: string | null
}

export type RequestState = 'pending' | 'approved' | 'rejected' | 'superseded' | 'expired'

export interface PairingRequest {
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

export interface DeviceToken {
  role: string
  scopes: string[]
  createdAtMs: number
  rotatedAtMs?: number
  revokedAtMs?: number
  expiresAtMs?: number
}

export interface PairedDevice {
  deviceId: string
  publicKey: string
  platform: string
  deviceFamily: string
  displayName?: string
  role: string
  roles: string[]
  scopes: string[]
  roleScopes: Record<string, string[]>
  createdAtMs: number
  approvedAtMs: number
  lastSeenAtMs?: number
  tokens: DeviceToken[]
}

export interface RotatedToken {
  deviceId: string
  role: string
  token: string
  scopes: string[]
  rotatedAtMs: number
  expiresAtMs?: number
}

export interface CronJob {
  id: string
  name: string
  description?: string
  enabled: boolean
  schedule: Record<string, unknown>
  payload: Record<string, unknown>
  deleteAfterRun: boolean
  ownerDeviceId?: string
  createdAtMs: number
  updatedAtMs: number
  state: { nextRunAtMs?: number, lastRunAtMs?: number, lastStatus?: string, lastError?: string }
}

export interface CronRun {
  runId: string
  jobId: string
  status: 'running' | 'ok' | 'error' | 'abandoned'
  dueAtMs: number
  startedAtMs: number
  finishedAtMs?: number
  instance: string
  error?: string
}

export interface AuditEntry {
  id: string
  atMs: number
  actor: string
  action: string
  deviceId?: string
  requestId?: string
  details: Record<string, unknown>
}

/** Fastify's error shape, as every /api/v1 error answers. */
export interface ApiErrorBody {
  statusCode: number
  code: string
  error: string
  message: string
}

export const AUDIT_ACTIONS = [
  'pairing.requested', 'pairing.approved', 'pairing.rejected', 'pairing.superseded', 'pairing.expired',
  'device.removed', 'scopes.set', 'scopes.added', 'scope.revoked', 'token.rotated', 'token.revoked',
  'cron.added', 'cron.updated', 'cron.removed'
] as const

// Events of GET /api/v1/events (src/events/hub.ts).
export type AdminEvent =
  | { event: 'ready', data: { ts: number } }
  | { event: 'device.pair.requested', data: PairingRequest }
  | { event: 'device.pair.resolved', data: { requestId: string, deviceId: string, decision: 'approved' | 'rejected' | 'expired' | 'superseded', ts: number } }
  | { event: 'device.changed', data: { deviceId: string, change: 'removed' | 'grants' | 'token', ts: number } }
  | { event: 'cron', data: { action: string, jobId?: string, runIds?: string[], ts: number } }
  | { event: 'end', data: { reason: string } }
