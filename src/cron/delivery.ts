import { isCovered } from '../auth/scopes.ts'
import type { BusMessage } from '../db/bus.ts'
import type { SqlClient } from '../db/database.ts'
import type { GatewayConnection } from '../gateway/connection.ts'
import type { ConnectionRegistry } from '../gateway/registry.ts'
import type { PrismaClient } from '../generated/prisma/client.ts'
import type { JobPayload } from './schedule.ts'
import { toJobView, toRunView, type CronJobView, type CronRunView } from './service.ts'

/** The `cron.fire` event: the job's payload, delivered when it comes due (`runId` lets a client drop duplicates). */
export interface CronFireEvent { jobId: string, runId: string, payload: JobPayload, firedAtMs: number }

/** The `cron` event, to operator.read connections. */
export interface CronEvent {
  jobId: string
  action: 'added' | 'updated' | 'removed' | 'started' | 'finished'
  job?: CronJobView
  run?: CronRunView
  nextRunAtMs?: number
}

interface FireRow {
  id: string
  run_id: string
  job_id: string
  device_id: string | null
  payload: unknown
  fired_at: Date
}

const FIRE_COLUMNS = 'id::text, run_id::text, job_id::text, device_id, payload, fired_at'

function fireEvent (row: FireRow): CronFireEvent {
  return { jobId: row.job_id, runId: row.run_id, payload: row.payload as JobPayload, firedAtMs: row.fired_at.getTime() }
}

function readers (registry: ConnectionRegistry): GatewayConnection[] {
  return [...registry].filter((conn) => conn.admission !== undefined && isCovered('operator.read', conn.admission.scopes))
}

/**
 * Delivers `cron.fire` and `cron` events to this instance's connections. A
 * fire for an owner goes to its connections here and is marked delivered;
 * one nobody received stays for the owner's next hello-ok.
 */
export class CronDelivery {
  constructor (private readonly sql: SqlClient, private readonly prisma: PrismaClient, private readonly registry: ConnectionRegistry) {}

  async onMessage (message: BusMessage): Promise<void> {
    switch (message.kind) {
      case 'cron.fires': return await this.#deliverFires(message.fires)
      case 'cron.runs': return await this.#announceRuns(message.action, message.runIds)
      case 'cron.job': return await this.#announceJob(message.action, message.jobId, message.nextRunAtMs)
    }
  }

  async #deliverFires (fires: Array<[string, string | null]>): Promise<void> {
    const audience = readers(this.registry)
    const wanted = fires.filter(([, deviceId]) => deviceId === null ? audience.length > 0 : hasAny(this.registry.forDevice(deviceId)))
    if (wanted.length === 0) return
    const { rows } = await this.sql.query<FireRow>(`SELECT ${FIRE_COLUMNS} FROM cron_fires WHERE id = ANY($1::uuid[])`, [wanted.map(([id]) => id)])
    const delivered: string[] = []
    for (const row of rows) {
      const targets = row.device_id === null ? audience : [...this.registry.forDevice(row.device_id)]
      for (const conn of targets) conn.sendEvent('cron.fire', fireEvent(row))
      if (row.device_id !== null && targets.length > 0) delivered.push(row.id)
    }
    await this.#markDelivered(delivered)
  }

  /** Right after hello-ok: the fires kept while the device was offline, oldest first. */
  async deliverPending (conn: GatewayConnection, deviceId: string): Promise<void> {
    // Claimed and marked in one statement, so that a second connect of the same
    // device (here or on another instance) cannot take the same fires again.
    const { rows } = await this.sql.query<FireRow>(
      `UPDATE cron_fires SET delivered_at = now()
       WHERE id IN (SELECT id FROM cron_fires WHERE device_id = $1 AND delivered_at IS NULL ORDER BY fired_at, id LIMIT 1000 FOR UPDATE SKIP LOCKED)
       RETURNING ${FIRE_COLUMNS}`, [deviceId])
    if (!conn.isOpen) {
      // Gone before it could hear them: keep them for the next hello-ok (at least once).
      await this.sql.query('UPDATE cron_fires SET delivered_at = NULL WHERE id = ANY($1::uuid[])', [rows.map((row) => row.id)])
      return
    }
    for (const row of [...rows].sort((a, b) => a.fired_at.getTime() - b.fired_at.getTime())) conn.sendEvent('cron.fire', fireEvent(row))
  }

  async #markDelivered (ids: string[]): Promise<void> {
    if (ids.length === 0) return
    await this.sql.query('UPDATE cron_fires SET delivered_at = now() WHERE id = ANY($1::uuid[]) AND delivered_at IS NULL', [ids])
  }

  async #announceRuns (action: 'started' | 'finished', runIds: string[]): Promise<void> {
    const audience = readers(this.registry)
    if (audience.length === 0) return
    const runs = await this.prisma.cronRun.findMany({ where: { id: { in: runIds } } })
    for (const run of runs) {
      const payload: CronEvent = { jobId: run.jobId, action, run: action === 'started' ? asStarted(toRunView(run)) : toRunView(run) }
      for (const conn of audience) conn.sendEvent('cron', payload)
    }
  }

  async #announceJob (action: 'added' | 'updated' | 'removed', jobId: string, nextRunAtMs: number | null): Promise<void> {
    const audience = readers(this.registry)
    if (audience.length === 0) return
    const row = action === 'removed' ? null : await this.prisma.cronJob.findUnique({ where: { id: jobId } })
    const payload: CronEvent = { jobId, action, ...(row !== null && { job: toJobView(row) }), ...(nextRunAtMs !== null && { nextRunAtMs }) }
    for (const conn of audience) conn.sendEvent('cron', payload)
  }
}

/** The run as it was when it started: a fast run may have finished before its 'started' notice is delivered. */
function asStarted (run: CronRunView): CronRunView {
  const { finishedAtMs: _finished, error: _error, ...started } = run
  return { ...started, status: 'running' }
}

function hasAny (items: Iterable<unknown>): boolean {
  for (const _ of items) return true
  return false
}
