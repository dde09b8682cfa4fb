// The shapes the console reads from /api/v1 (API.md; the TypeBox schemas in
// src/*/schemas.ts and routes.ts are the source of truth). Those the server
// builds come from src/views.ts, the same types its services return.
import type { AuditEntryView, CronRunView, DeviceTokenView, PairedDevice, PairingRequestView } from '../../../views.ts'

export { AUDIT_ACTIONS } from '../../../views.ts'
export type { PairedDevice, RequestState, RotatedToken } from '../../../views.ts'
export type PairingRequest = PairingRequestView
export type DeviceToken = DeviceTokenView
export type CronRun = CronRunView
export type AuditEntry = AuditEntryView

export interface Page<T> {
  items: T[]
  nextCursor: string | null
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

/** Fastify's error shape, as every /api/v1 error answers. */
export interface ApiErrorBody {
  statusCode: number
  code: string
  error: string
  message: string
}

// Events of GET /api/v1/events (src/events/hub.ts).
export type AdminEvent =
  | { event: 'ready', data: { ts: number } }
  | { event: 'device.pair.requested', data: PairingRequest }
  | { event: 'device.pair.resolved', data: { requestId: string, deviceId: string, decision: 'approved' | 'rejected' | 'expired' | 'superseded', ts: number } }
  | { event: 'device.changed', data: { deviceId: string, change: 'removed' | 'grants' | 'token', ts: number } }
  | { event: 'cron', data: { action: string, jobId?: string, runIds?: string[], ts: number } }
  | { event: 'end', data: { reason: string } }
