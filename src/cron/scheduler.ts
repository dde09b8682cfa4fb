import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { NotifyBus } from '../db/bus.ts'
import type { Database } from '../db/database.ts'
import { Errors, withDetails } from '../errors.ts'
import type { Prisma } from '../generated/prisma/client.ts'
import { nextRunAt, type Schedule } from './schedule.ts'
import { bumpRevision } from './service.ts'
import { isUuid } from '../schemas/ids.ts'

export interface SchedulerOptions {
  instanceId: string
  /** How long a claimed run is ours before another instance may take it over (≤ 30 s). */
  leaseMs: number
  batchSize?: number
  /** Hears of the runs fired: each one's due time, and when they fired (metrics). */
  onFired?: (dueAtMs: number[], firedAtMs: number) => void
}

/** A run this instance holds a lease on and must finish. */
interface ClaimedRun {
  runId: string
  jobId: string
  dueAtMs: number
  ownerDeviceId: string | null
  payload: unknown
  finish: 'keep' | 'delete' | 'disable'
}

interface DueJobRow {
  id: string
  next_run_at: Date
  schedule: Schedule
  payload: unknown
  owner_device_id: string | null
  delete_after_run: boolean
}

const NOTIFY_CHUNK = 100
/** Longest sleep between wake-ups; a change to any job wakes every instance earlier. */
const MAX_SLEEP_MS = 60_000

function chunks<T> (items: T[], size: number): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

function finishAction (schedule: Schedule, deleteAfterRun: boolean): ClaimedRun['finish'] {
  if (deleteAfterRun) return 'delete'
  return schedule.kind === 'at' ? 'disable' : 'keep'
}

/**
 * Runs in every instance. Due jobs are claimed with FOR UPDATE SKIP LOCKED
 * and their next occurrence is planned in the same transaction, so each due
 * occurrence is claimed by exactly one instance. A claim is a lease: if its
 * instance dies, another marks the run abandoned and runs it again.
 */
export class Scheduler {
  readonly instanceId: string
  #timer: NodeJS.Timeout | undefined
  #sweep: NodeJS.Timeout | undefined
  #plannedAt = Infinity
  #busy: Promise<void> | null = null
  #again = false
  #stopped = true
  #fired = 0
  readonly #batchSize: number

  constructor (
    private readonly db: Database,
    private readonly bus: NotifyBus,
    private readonly options: SchedulerOptions,
    private readonly log: FastifyBaseLogger
  ) {
    this.instanceId = options.instanceId
    this.#batchSize = options.batchSize ?? 200
  }

  get state (): { enabled: boolean, instance: string, plannedWakeAtMs: number | null, fired: number } {
    return { enabled: !this.#stopped, instance: this.instanceId, plannedWakeAtMs: Number.isFinite(this.#plannedAt) ? this.#plannedAt : null, fired: this.#fired }
  }

  start (): void {
    this.#stopped = false
    this.#sweep = setInterval(() => this.wake(), Math.max(250, Math.floor(this.options.leaseMs / 2))).unref()
    this.wake()
  }

  async stop (): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    clearInterval(this.#sweep)
    await this.#busy
  }

  /** A job somewhere comes due at `atMs`: wake up then unless already planned earlier. */
  plan (atMs: number | null): void {
    if (this.#stopped || atMs === null || atMs >= this.#plannedAt) return
    clearTimeout(this.#timer)
    this.#plannedAt = atMs
    this.#timer = setTimeout(() => this.wake(), Math.max(0, atMs - Date.now())).unref()
  }

  wake (): void {
    if (this.#stopped) return
    if (this.#busy !== null) {
      this.#again = true
      return
    }
    this.#busy = this.#work().finally(() => {
      this.#busy = null
      if (this.#again && !this.#stopped) {
        this.#again = false
        this.wake()
      }
    })
  }

  async #work (): Promise<void> {
    clearTimeout(this.#timer)
    this.#plannedAt = Infinity
    try {
      for (;;) {
        const claimed = await this.#claimDue()
        if (claimed.length > 0) await this.#execute(claimed)
        if (claimed.length < this.#batchSize || this.#stopped) break
      }
      const recovered = await this.#recoverAbandoned()
      if (recovered.length > 0) await this.#execute(recovered)
      await this.#planFromDatabase()
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'scheduler pass failed; retrying')
      this.plan(Date.now() + 1000)
    }
  }

  async #planFromDatabase (): Promise<void> {
    const next = await this.db.prisma.cronJob.findFirst({
      where: { enabled: true, nextRunAt: { not: null } },
      orderBy: { nextRunAt: 'asc' },
      select: { nextRunAt: true }
    })
    const at = next?.nextRunAt?.getTime() ?? Date.now() + MAX_SLEEP_MS
    this.plan(Math.min(at, Date.now() + MAX_SLEEP_MS))
  }

  /** Claims up to a batch of due jobs and plans each one's next occurrence, in one transaction. */
  async #claimDue (jobId?: string): Promise<ClaimedRun[]> {
    const now = Date.now()
    const claimed = await this.db.prisma.$transaction(async (tx) => {
      const due = jobId === undefined
        ? await tx.$queryRaw<DueJobRow[]>`
            SELECT id::text, next_run_at, schedule, payload, owner_device_id, delete_after_run FROM cron_jobs
            WHERE enabled AND next_run_at <= ${new Date(now)}
            ORDER BY next_run_at LIMIT ${this.#batchSize}
            FOR UPDATE SKIP LOCKED`
        : await tx.$queryRaw<DueJobRow[]>`
            SELECT id::text, next_run_at, schedule, payload, owner_device_id, delete_after_run FROM cron_jobs
            WHERE id = ${jobId}::uuid AND enabled AND next_run_at <= ${new Date(now)}
            FOR UPDATE SKIP LOCKED`
      if (due.length === 0) return []
      const runs: ClaimedRun[] = []
      const plans: Array<{ id: string, next: string | null }> = []
      for (const job of due) {
        const dueAtMs = job.next_run_at.getTime()
        const next = nextRunAt(job.schedule, now, dueAtMs)
        plans.push({ id: job.id, next: next === null ? null : new Date(next).toISOString() })
        runs.push({
          runId: randomUUID(),
          jobId: job.id,
          dueAtMs,
          ownerDeviceId: job.owner_device_id,
          payload: job.payload,
          finish: finishAction(job.schedule, job.delete_after_run)
        })
      }
      await tx.$executeRaw`
        UPDATE cron_jobs j SET next_run_at = p.next, updated_at = ${new Date(now)}
        FROM json_to_recordset(${JSON.stringify(plans)}::json) AS p(id uuid, next timestamptz)
        WHERE j.id = p.id`
      await this.#insertRuns(tx, runs, now, false)
      await bumpRevision(tx)
      return runs
    })
    if (claimed.length > 0) await this.#announceRuns('started', claimed.map((run) => run.runId))
    return claimed
  }

  async #insertRuns (tx: Prisma.TransactionClient, runs: ClaimedRun[], now: number, manual: boolean): Promise<void> {
    const rows = runs.map((run) => ({ id: run.runId, job_id: run.jobId, due_at: new Date(run.dueAtMs).toISOString() }))
    await tx.$executeRaw`
      INSERT INTO cron_runs (id, job_id, status, due_at, started_at, lease_expires_at, instance, manual)
      SELECT r.id, r.job_id, 'running', r.due_at, ${new Date(now)}, ${new Date(now + this.options.leaseMs)}, ${this.instanceId}, ${manual}
      FROM json_to_recordset(${JSON.stringify(rows)}::json) AS r(id uuid, job_id uuid, due_at timestamptz)`
  }

  /** Takes over runs whose instance stopped renewing their lease: abandoned, then run again here. */
  async #recoverAbandoned (): Promise<ClaimedRun[]> {
    const now = Date.now()
    const recovered = await this.db.prisma.$transaction(async (tx) => {
      const expired = await tx.$queryRaw<Array<{ job_id: string, due_at: Date, manual: boolean, instance: string } & Omit<DueJobRow, 'id' | 'next_run_at'>>>`
        WITH expired AS (
          UPDATE cron_runs SET status = 'abandoned', finished_at = ${new Date(now)}, lease_expires_at = NULL,
            error = 'lease expired: instance ' || instance || ' stopped renewing it'
          WHERE id IN (SELECT id FROM cron_runs WHERE status = 'running' AND lease_expires_at < ${new Date(now)}
                       ORDER BY lease_expires_at LIMIT ${this.#batchSize} FOR UPDATE SKIP LOCKED)
          RETURNING job_id, due_at, manual, instance)
        SELECT e.job_id::text, e.due_at, e.manual, e.instance, j.schedule, j.payload, j.owner_device_id, j.delete_after_run
        FROM expired e JOIN cron_jobs j ON j.id = e.job_id`
      if (expired.length === 0) return []
      const runs = expired.map((row) => ({
        runId: randomUUID(),
        jobId: row.job_id,
        dueAtMs: row.due_at.getTime(),
        ownerDeviceId: row.owner_device_id,
        payload: row.payload,
        finish: finishAction(row.schedule, row.delete_after_run)
      }))
      for (const manual of [false, true]) {
        const group = runs.filter((_, i) => expired[i]?.manual === manual)
        if (group.length > 0) await this.#insertRuns(tx, group, now, manual)
      }
      return runs
    })
    if (recovered.length > 0) {
      this.log.warn({ runs: recovered.length }, 'took over runs abandoned by a stopped instance')
      await this.#announceRuns('started', recovered.map((run) => run.runId))
    }
    return recovered
  }

  /**
   * Finishes claimed runs: records each fire (kept for an offline owner),
   * marks the runs ok, applies deleteAfterRun and disables finished `at`
   * jobs, then tells every instance to deliver.
   */
  async #execute (runs: ClaimedRun[]): Promise<void> {
    const renew = setInterval(() => { void this.#renewLeases(runs) }, Math.max(100, Math.floor(this.options.leaseMs / 3)))
    let fired: { dueAtMs: number[], atMs: number } | undefined
    try {
      const fires = await this.db.prisma.$transaction(async (tx) => {
        const now = new Date()
        const live = await tx.$queryRaw<Array<{ id: string }>>`
          UPDATE cron_runs SET status = 'ok', finished_at = ${now}, lease_expires_at = NULL
          WHERE id = ANY(${runs.map((run) => run.runId)}::uuid[]) AND status = 'running' AND instance = ${this.instanceId}
          RETURNING id::text`
        const stillOurs = new Set(live.map((row) => row.id))
        const done = runs.filter((run) => stillOurs.has(run.runId))
        if (done.length === 0) return []
        fired = { dueAtMs: done.map((run) => run.dueAtMs), atMs: now.getTime() }
        const fireRows = done.map((run) => ({
          id: randomUUID(),
          run_id: run.runId,
          job_id: run.jobId,
          device_id: run.ownerDeviceId,
          payload: run.payload,
          delivered_at: run.ownerDeviceId === null ? now.toISOString() : null
        }))
        await tx.$executeRaw`
          INSERT INTO cron_fires (id, run_id, job_id, device_id, payload, fired_at, delivered_at)
          SELECT f.id, f.run_id, f.job_id, f.device_id, f.payload, ${now}, f.delivered_at
          FROM json_to_recordset(${JSON.stringify(fireRows)}::json) AS f(id uuid, run_id uuid, job_id uuid, device_id text, payload jsonb, delivered_at timestamptz)`
        await tx.$executeRaw`
          UPDATE cron_jobs SET last_run_at = ${now}, last_status = 'ok', last_error = NULL, updated_at = ${now}
          WHERE id = ANY(${done.map((run) => run.jobId)}::uuid[])`
        const toDelete = done.filter((run) => run.finish === 'delete').map((run) => run.jobId)
        if (toDelete.length > 0) await tx.$executeRaw`DELETE FROM cron_jobs WHERE id = ANY(${toDelete}::uuid[])`
        const toDisable = done.filter((run) => run.finish === 'disable').map((run) => run.jobId)
        if (toDisable.length > 0) await tx.$executeRaw`UPDATE cron_jobs SET enabled = false, next_run_at = NULL WHERE id = ANY(${toDisable}::uuid[])`
        await bumpRevision(tx)
        return fireRows.map((row) => [row.id, row.device_id] as [string, string | null])
      })
      this.#fired += fires.length
      if (fired !== undefined) this.options.onFired?.(fired.dueAtMs, fired.atMs)
      await this.#announceRuns('finished', runs.map((run) => run.runId))
      for (const chunk of chunks(fires, NOTIFY_CHUNK)) await this.bus.publish({ kind: 'cron.fires', fires: chunk })
    } catch (err) {
      await this.#markFailed(runs, err as Error)
      throw err
    } finally {
      clearInterval(renew)
    }
  }

  async #renewLeases (runs: ClaimedRun[]): Promise<void> {
    const until = new Date(Date.now() + this.options.leaseMs)
    await this.db.prisma.$executeRaw`
      UPDATE cron_runs SET lease_expires_at = ${until}
      WHERE id = ANY(${runs.map((run) => run.runId)}::uuid[]) AND status = 'running' AND instance = ${this.instanceId}`
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'could not renew run leases'))
  }

  async #markFailed (runs: ClaimedRun[], err: Error): Promise<void> {
    const message = err.message.slice(0, 500)
    await this.db.prisma.$executeRaw`
      UPDATE cron_runs SET status = 'error', finished_at = now(), lease_expires_at = NULL, error = ${message}
      WHERE id = ANY(${runs.map((run) => run.runId)}::uuid[]) AND status = 'running' AND instance = ${this.instanceId}`
      .catch(() => {})
  }

  async #announceRuns (action: 'started' | 'finished', runIds: string[]): Promise<void> {
    for (const chunk of chunks(runIds, NOTIFY_CHUNK)) await this.bus.publish({ kind: 'cron.runs', action, runIds: chunk })
  }

  /**
   * cron.run: `force` runs the job now without touching its schedule; `due`
   * runs it only if it is due (claimed like the scheduler would).
   */
  async runNow (jobId: string, mode: 'force' | 'due'): Promise<{ ok: true, ran: boolean, runId?: string }> {
    const job = isUuid(jobId) ? await this.db.prisma.cronJob.findUnique({ where: { id: jobId } }) : null
    if (job === null) throw withDetails(new Errors.CronJobNotFound(jobId), { id: jobId })
    if (mode === 'due') {
      const claimed = await this.#claimDue(jobId)
      if (claimed.length === 0) return { ok: true, ran: false }
      await this.#execute(claimed)
      return { ok: true, ran: true, ...(claimed[0] !== undefined && { runId: claimed[0].runId }) }
    }
    const now = Date.now()
    const run: ClaimedRun = {
      runId: randomUUID(),
      jobId,
      dueAtMs: now,
      ownerDeviceId: job.ownerDeviceId,
      payload: job.payload,
      finish: finishAction(job.schedule as unknown as Schedule, job.deleteAfterRun)
    }
    await this.db.prisma.$transaction(async (tx) => { await this.#insertRuns(tx, [run], now, true) })
    await this.#announceRuns('started', [run.runId])
    await this.#execute([run])
    return { ok: true, ran: true, runId: run.runId }
  }
}
