import { randomUUID } from 'node:crypto'
import { writeAudit } from '../audit/service.ts'
import type { NotifyBus } from '../db/bus.ts'
import type { Database } from '../db/database.ts'
import { Errors, withDetails } from '../errors.ts'
import type { CronJob, CronRun, Prisma } from '../generated/prisma/client.ts'
import { decodeCursor, encodeCursor, type Page } from '../schemas/paging.ts'
import { MAX_STORED_DEPTH, tooDeepPath, unstorablePath } from '../schemas/text.ts'
import { invalidField, nextRunAt, parsePayload, parseSchedule, type JobPayload, type Schedule } from './schedule.ts'
import { isUuid } from '../schemas/ids.ts'
import type { CronRunView, RunStatus } from '../views.ts'

export type { CronRunView, RunStatus } from '../views.ts'

/** Fields the gateway interprets; everything else a client sends is kept as is. */
const KNOWN_FIELDS = new Set(['id', 'name', 'description', 'enabled', 'schedule', 'payload', 'deleteAfterRun', 'ownerDeviceId', 'createdAtMs', 'updatedAtMs', 'state'])
const PATCHABLE = new Set(['name', 'description', 'enabled', 'schedule', 'payload', 'deleteAfterRun'])
const MAX_NAME = 200
const MAX_DESCRIPTION = 2000

export interface CronJobView {
  id: string
  name: string
  description?: string
  enabled: boolean
  schedule: Schedule
  payload: JobPayload
  deleteAfterRun: boolean
  ownerDeviceId?: string
  createdAtMs: number
  updatedAtMs: number
  state: { nextRunAtMs?: number, lastRunAtMs?: number, lastStatus?: string, lastError?: string }
  [extra: string]: unknown
}


export interface CronListPage {
  jobs: CronJobView[]
  total: number
  offset: number
  limit: number
  hasMore: boolean
  nextOffset: number | null
  snapshotRevision: string
}

export function toJobView (row: CronJob): CronJobView {
  const extra = (row.extra ?? {}) as Record<string, unknown>
  return {
    ...extra,
    id: row.id,
    name: row.name,
    ...(row.description !== null && { description: row.description }),
    enabled: row.enabled,
    schedule: row.schedule as unknown as Schedule,
    payload: row.payload as unknown as JobPayload,
    deleteAfterRun: row.deleteAfterRun,
    ...(row.ownerDeviceId !== null && { ownerDeviceId: row.ownerDeviceId }),
    createdAtMs: row.createdAt.getTime(),
    updatedAtMs: row.updatedAt.getTime(),
    state: {
      ...(row.nextRunAt !== null && { nextRunAtMs: row.nextRunAt.getTime() }),
      ...(row.lastRunAt !== null && { lastRunAtMs: row.lastRunAt.getTime() }),
      ...(row.lastStatus !== null && { lastStatus: row.lastStatus }),
      ...(row.lastError !== null && { lastError: row.lastError })
    }
  }
}

export function toRunView (row: CronRun): CronRunView {
  return {
    runId: row.id,
    jobId: row.jobId,
    status: row.status as RunStatus,
    dueAtMs: row.dueAt.getTime(),
    startedAtMs: row.startedAt.getTime(),
    ...(row.finishedAt !== null && { finishedAtMs: row.finishedAt.getTime() }),
    instance: row.instance,
    ...(row.error !== null && { error: row.error })
  }
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** `prefix` names where the input sits (`patch.`), so that the error names the field as sent. */
function optionalText (input: Record<string, unknown>, field: string, max: number, prefix = ''): string | undefined {
  const value = input[field]
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value.length > max) throw invalidField(prefix + field, `must be a string of at most ${max} characters`)
  return value
}

function optionalBoolean (input: Record<string, unknown>, field: string, prefix = ''): boolean | undefined {
  const value = input[field]
  if (value === undefined) return undefined
  if (typeof value !== 'boolean') throw invalidField(prefix + field, 'must be a boolean')
  return value
}

function extraFields (input: Record<string, unknown>): Prisma.InputJsonObject {
  const extra: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(input)) if (!KNOWN_FIELDS.has(key)) extra[key] = value
  return extra as Prisma.InputJsonObject
}


/**
 * Every field is stored as text or jsonb, which cannot hold U+0000 or a lone
 * surrogate, and goes through Prisma, whose serializer overflows on values
 * nested a few thousand deep: refuse either naming the field.
 */
function assertStorable (input: Record<string, unknown>, prefix: string): void {
  const deep = tooDeepPath(input, MAX_STORED_DEPTH, prefix)
  if (deep !== null) throw invalidField(deep, `must not be nested deeper than ${MAX_STORED_DEPTH} levels`)
  const path = unstorablePath(input, prefix)
  if (path !== null) throw invalidField(path, 'must not contain U+0000 or a lone surrogate')
}

function notFound (id: string): Error {
  return withDetails(new Errors.CronJobNotFound(id), { id })
}

/** Everything a caller needs to know to plan the scheduler after a change. */
export interface JobChange {
  jobId: string
  nextRunAtMs: number | null
}

/** Cron jobs: validation, storage and the payloads of cron.* and the REST mirror. */
export class CronService {
  constructor (private readonly db: Database, private readonly bus: NotifyBus) {}

  async add (input: unknown, ownerDeviceId: string | null, actor: string): Promise<CronJobView> {
    if (!isObject(input)) throw invalidField('params', 'must be an object')
    assertStorable(input, '')
    const name = input.name
    if (typeof name !== 'string' || name.trim() === '' || name.length > MAX_NAME) throw invalidField('name', `must be a non-empty string of at most ${MAX_NAME} characters`)
    const schedule = parseSchedule(input.schedule)
    const payload = parsePayload(input.payload)
    const description = optionalText(input, 'description', MAX_DESCRIPTION)
    const enabled = optionalBoolean(input, 'enabled') ?? true
    const deleteAfterRun = optionalBoolean(input, 'deleteAfterRun') ?? schedule.kind === 'at'
    const now = Date.now()
    const next = enabled ? nextRunAt(schedule, now) : null
    const row = await this.db.prisma.$transaction(async (tx) => {
      const created = await tx.cronJob.create({
        data: {
          id: randomUUID(),
          name,
          description: description ?? null,
          enabled,
          schedule: schedule as unknown as Prisma.InputJsonObject,
          payload: payload as unknown as Prisma.InputJsonObject,
          deleteAfterRun,
          ownerDeviceId,
          extra: extraFields(input),
          createdAt: new Date(now),
          updatedAt: new Date(now),
          nextRunAt: next === null ? null : new Date(next)
        }
      })
      await bumpRevision(tx)
      await writeAudit(tx, { actor, action: 'cron.added', ...(ownerDeviceId !== null && { deviceId: ownerDeviceId }), details: { jobId: created.id, name } })
      return created
    })
    await this.bus.publish({ kind: 'cron.job', action: 'added', jobId: row.id, nextRunAtMs: next })
    return toJobView(row)
  }

  async get (id: string): Promise<CronJobView> {
    return toJobView(await this.#find(id))
  }

  async list (query: { includeDisabled: boolean, limit: number, offset: number }): Promise<CronListPage> {
    const where: Prisma.CronJobWhereInput = query.includeDisabled ? {} : { enabled: true }
    const [jobs, total, revision] = await this.db.prisma.$transaction([
      this.db.prisma.cronJob.findMany({ where, orderBy: [{ createdAt: 'asc' }, { id: 'asc' }], skip: query.offset, take: query.limit }),
      this.db.prisma.cronJob.count({ where }),
      this.db.prisma.$queryRaw<Array<{ revision: string }>>`SELECT last_value::text || '.' || (CASE WHEN is_called THEN 1 ELSE 0 END)::text AS revision FROM cron_revision_seq`
    ])
    const hasMore = query.offset + jobs.length < total
    return {
      jobs: jobs.map(toJobView),
      total,
      offset: query.offset,
      limit: query.limit,
      hasMore,
      nextOffset: hasMore ? query.offset + jobs.length : null,
      snapshotRevision: `r${revision[0]?.revision ?? '0'}`
    }
  }

  /** REST listing: newest first, cursor paging. */
  async page (limit: number, cursor: string | undefined): Promise<Page<CronJobView>> {
    const where: Prisma.CronJobWhereInput = {}
    const at = decodeCursor(cursor)
    if (at !== null) where.OR = [{ createdAt: { lt: new Date(at.atMs) } }, { createdAt: new Date(at.atMs), id: { lt: at.id } }]
    const rows = await this.db.prisma.cronJob.findMany({ where, orderBy: [{ createdAt: 'desc' }, { id: 'desc' }], take: limit + 1 })
    const items = rows.slice(0, limit)
    const last = items.at(-1)
    return { items: items.map(toJobView), nextCursor: rows.length > limit && last !== undefined ? encodeCursor(last.createdAt.getTime(), last.id) : null }
  }

  async update (id: string, patch: unknown, actor: string): Promise<CronJobView> {
    if (!isObject(patch)) throw invalidField('patch', 'must be an object')
    assertStorable(patch, 'patch')
    for (const key of Object.keys(patch)) {
      if (KNOWN_FIELDS.has(key) && !PATCHABLE.has(key)) throw invalidField(`patch.${key}`, 'cannot be changed')
    }
    const current = await this.#find(id)
    const schedule = patch.schedule === undefined ? current.schedule as unknown as Schedule : parseSchedule(patch.schedule, 'patch.schedule')
    const payload = patch.payload === undefined ? undefined : parsePayload(patch.payload, 'patch.payload')
    if (patch.name !== undefined && (typeof patch.name !== 'string' || patch.name.trim() === '' || patch.name.length > MAX_NAME)) {
      throw invalidField('patch.name', `must be a non-empty string of at most ${MAX_NAME} characters`)
    }
    const description = patch.description === null ? null : optionalText(patch, 'description', MAX_DESCRIPTION, 'patch.')
    const enabled = optionalBoolean(patch, 'enabled', 'patch.')
    const deleteAfterRun = optionalBoolean(patch, 'deleteAfterRun', 'patch.')
    const nowEnabled = enabled ?? current.enabled
    // A new schedule, or a job (re-)enabled, plans from now: an `every` job first fires everyMs later.
    const replan = patch.schedule !== undefined || (enabled === true && !current.enabled)
    let next: number | null = current.nextRunAt?.getTime() ?? null
    if (!nowEnabled) next = null
    else if (replan) {
      const now = Date.now()
      next = nextRunAt(schedule, now)
      // An `at` time already past fires at once, as a new occurrence: the old time
      // may have run already, and a second run for it would break the one-live-run
      // per (job, due time) index and wedge every claim batch it falls into.
      if (schedule.kind === 'at' && next !== null && next < now) next = now
    }
    const extra = { ...(current.extra as Record<string, unknown>), ...(extraFields(patch) as Record<string, unknown>) }
    const row = await this.db.prisma.$transaction(async (tx) => {
      const { count } = await tx.cronJob.updateMany({
        where: { id },
        data: {
          ...(typeof patch.name === 'string' && { name: patch.name }),
          ...(description !== undefined && { description }),
          ...(enabled !== undefined && { enabled }),
          ...(deleteAfterRun !== undefined && { deleteAfterRun }),
          ...(patch.schedule !== undefined && { schedule: schedule as unknown as Prisma.InputJsonObject }),
          ...(payload !== undefined && { payload: payload as unknown as Prisma.InputJsonObject }),
          extra: extra as Prisma.InputJsonObject,
          nextRunAt: next === null ? null : new Date(next),
          updatedAt: new Date()
        }
      })
      if (count === 0) throw notFound(id)
      await bumpRevision(tx)
      await writeAudit(tx, { actor, action: 'cron.updated', details: { jobId: id, fields: Object.keys(patch) } })
      return await tx.cronJob.findUniqueOrThrow({ where: { id } })
    })
    await this.bus.publish({ kind: 'cron.job', action: 'updated', jobId: id, nextRunAtMs: next })
    return toJobView(row)
  }

  async remove (id: string, actor: string): Promise<{ ok: true, removed: true }> {
    if (!isUuid(id)) throw notFound(id)
    await this.db.prisma.$transaction(async (tx) => {
      const { count } = await tx.cronJob.deleteMany({ where: { id } })
      if (count === 0) throw notFound(id)
      await bumpRevision(tx)
      await writeAudit(tx, { actor, action: 'cron.removed', details: { jobId: id } })
    })
    await this.bus.publish({ kind: 'cron.job', action: 'removed', jobId: id, nextRunAtMs: null })
    return { ok: true, removed: true }
  }

  async runs (id: string, limit: number): Promise<CronRunView[]> {
    await this.#find(id)
    const rows = await this.db.prisma.cronRun.findMany({ where: { jobId: id }, orderBy: [{ startedAt: 'desc' }, { id: 'desc' }], take: limit })
    return rows.map(toRunView)
  }

  async count (): Promise<{ jobs: number, nextWakeAtMs: number | null }> {
    const [jobs, next] = await Promise.all([
      this.db.prisma.cronJob.count(),
      this.db.prisma.cronJob.findFirst({ where: { enabled: true, nextRunAt: { not: null } }, orderBy: { nextRunAt: 'asc' }, select: { nextRunAt: true } })
    ])
    return { jobs, nextWakeAtMs: next?.nextRunAt?.getTime() ?? null }
  }

  async #find (id: string): Promise<CronJob> {
    if (!isUuid(id)) throw notFound(id)
    const row = await this.db.prisma.cronJob.findUnique({ where: { id } })
    if (row === null) throw notFound(id)
    return row
  }
}

/** Every change to any job moves cron.list's snapshotRevision. */
export async function bumpRevision (tx: Prisma.TransactionClient): Promise<void> {
  await tx.$queryRaw`SELECT nextval('cron_revision_seq')::text`
}
