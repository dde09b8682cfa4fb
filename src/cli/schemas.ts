import { array, boolean, type Infer, nil, number, object, optional, page, record, string, union, unknownRecord } from './guards.ts'

// The answers the CLI reads, as in API.md and the server's route schemas
// (src/pairing/schemas.ts, src/devices/schemas.ts, src/cron/routes.ts,
// src/audit/routes.ts). Only the fields the CLI relies on are required;
// --json prints the whole answer as the server sent it.

const strings = array(string)

export const PairingRequest = object({
  requestId: string,
  deviceId: string,
  platform: string,
  deviceFamily: string,
  clientId: string,
  clientMode: string,
  displayName: optional(string),
  role: string,
  scopes: strings,
  approvedScopes: strings,
  reason: string,
  isRepair: boolean,
  ts: number,
  state: string,
  expiresAtMs: number,
  resolvedAtMs: optional(number),
  grantedScopes: optional(strings)
})
export type PairingRequest = Infer<typeof PairingRequest>

const DeviceToken = object({
  role: string,
  scopes: strings,
  createdAtMs: number,
  rotatedAtMs: optional(number),
  revokedAtMs: optional(number),
  expiresAtMs: optional(number)
})

export const Device = object({
  deviceId: string,
  publicKey: string,
  platform: string,
  deviceFamily: string,
  displayName: optional(string),
  role: string,
  roles: strings,
  scopes: strings,
  roleScopes: record(strings),
  createdAtMs: number,
  approvedAtMs: number,
  lastSeenAtMs: optional(number),
  tokenTtlMs: optional(number),
  tokens: array(DeviceToken)
})
export type Device = Infer<typeof Device>

export const Approved = object({ requestId: string, device: Device })
export const Rejected = object({ requestId: string, deviceId: string })
export const Removed = object({ deviceId: string })
export const RotatedToken = object({ deviceId: string, role: string, token: string, scopes: strings, rotatedAtMs: number, expiresAtMs: optional(number) })
export const RevokedToken = object({ deviceId: string, role: string, revokedAtMs: number })

export const AuditEntry = object({
  id: string,
  atMs: number,
  actor: string,
  action: string,
  deviceId: optional(string),
  requestId: optional(string),
  details: unknownRecord
})
export type AuditEntry = Infer<typeof AuditEntry>
export const AuditPage = page(AuditEntry)

export const CronJob = object({
  id: string,
  name: string,
  description: optional(string),
  enabled: boolean,
  schedule: unknownRecord,
  payload: unknownRecord,
  deleteAfterRun: boolean,
  ownerDeviceId: optional(string),
  createdAtMs: number,
  updatedAtMs: number,
  state: object({
    nextRunAtMs: optional(number),
    lastRunAtMs: optional(number),
    lastStatus: optional(string),
    lastError: optional(string)
  })
})
export type CronJob = Infer<typeof CronJob>

export const CronRun = object({
  runId: string,
  jobId: string,
  status: string,
  dueAtMs: number,
  startedAtMs: number,
  finishedAtMs: optional(number),
  instance: string,
  error: optional(string)
})
export const CronRuns = object({ items: array(CronRun) })
export const CronRemoved = object({ ok: boolean, removed: boolean })
export const CronRan = object({ ok: boolean, ran: boolean, runId: optional(string) })

const optionalStrings = optional(strings)

export const Policy = object({
  id: string,
  name: string,
  priority: number,
  enabled: boolean,
  match: object({
    roles: optionalStrings,
    clientIds: optionalStrings,
    clientModes: optionalStrings,
    platforms: optionalStrings,
    reasons: optionalStrings,
    deviceIds: optionalStrings,
    scopesWithin: optionalStrings
  }),
  action: string,
  scopes: optionalStrings,
  allowPrivileged: boolean,
  createdBy: string,
  createdAtMs: number,
  updatedAtMs: optional(number)
})
export type Policy = Infer<typeof Policy>
export const PolicyDeleted = object({ id: string })
export const PolicyEvaluation = object({
  policyId: union(string, nil),
  policyName: optional(string),
  action: string,
  scopes: optionalStrings,
  leftOutScopes: optionalStrings
})
