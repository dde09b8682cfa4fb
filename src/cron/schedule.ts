import { Cron } from 'croner'
import { Errors, withDetails } from '../errors.ts'

export type Schedule =
  | { kind: 'at', at: string }
  | { kind: 'every', everyMs: number }
  | { kind: 'cron', expr: string, tz?: string }

export type JobPayload =
  | { kind: 'systemEvent', text: string }
  | { kind: 'agentTurn', message: string }

export const MIN_EVERY_MS = 1000
export const MAX_EVERY_MS = 366 * 24 * 3600 * 1000
const MAX_TEXT = 16 * 1024

/** A validation failure that names the field, e.g. `invalid params: schedule.everyMs must be …`. */
export function invalidField (field: string, problem: string): Error {
  return withDetails(new Errors.InvalidCronParams(`${field} ${problem}`), { field })
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isValidTimeZone (tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz })
    return true
  } catch {
    return false
  }
}

/** Parses an ISO 8601 date-time with a date part; NaN when it is not one. */
function parseIsoTime (value: string): number {
  if (!/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}:?\d{2})?$/.test(value)) return NaN
  return Date.parse(value)
}

export function parseSchedule (value: unknown, field = 'schedule'): Schedule {
  if (!isObject(value)) throw invalidField(field, 'must be an object with kind at, every or cron')
  switch (value.kind) {
    case 'at': {
      if (typeof value.at !== 'string' || Number.isNaN(parseIsoTime(value.at))) throw invalidField(`${field}.at`, 'must be an ISO 8601 date-time')
      return { kind: 'at', at: value.at }
    }
    case 'every': {
      const everyMs = value.everyMs
      if (typeof everyMs !== 'number' || !Number.isInteger(everyMs) || everyMs < MIN_EVERY_MS || everyMs > MAX_EVERY_MS) {
        throw invalidField(`${field}.everyMs`, `must be an integer from ${MIN_EVERY_MS} to ${MAX_EVERY_MS}`)
      }
      return { kind: 'every', everyMs }
    }
    case 'cron': {
      const { expr, tz } = value
      if (typeof expr !== 'string' || expr.length > 256) throw invalidField(`${field}.expr`, 'must be a cron expression of 5 or 6 fields')
      const fields = expr.trim().split(/\s+/)
      if (fields.length !== 5 && fields.length !== 6) throw invalidField(`${field}.expr`, 'must be a cron expression of 5 or 6 fields')
      if (tz !== undefined && (typeof tz !== 'string' || !isValidTimeZone(tz))) throw invalidField(`${field}.tz`, 'must be an IANA time zone such as Europe/Berlin')
      try {
        new Cron(expr, { timezone: tz ?? 'UTC', paused: true })
      } catch (err) {
        throw invalidField(`${field}.expr`, `is not a valid cron expression (${(err as Error).message})`)
      }
      return tz === undefined ? { kind: 'cron', expr } : { kind: 'cron', expr, tz }
    }
    default:
      throw invalidField(`${field}.kind`, 'must be one of at, every, cron')
  }
}

export function parsePayload (value: unknown, field = 'payload'): JobPayload {
  if (!isObject(value)) throw invalidField(field, 'must be an object with kind systemEvent or agentTurn')
  switch (value.kind) {
    case 'systemEvent':
      if (typeof value.text !== 'string' || value.text.length > MAX_TEXT) throw invalidField(`${field}.text`, `must be a string of at most ${MAX_TEXT} characters`)
      return { ...value, kind: 'systemEvent', text: value.text }
    case 'agentTurn':
      if (typeof value.message !== 'string' || value.message.length > MAX_TEXT) throw invalidField(`${field}.message`, `must be a string of at most ${MAX_TEXT} characters`)
      return { ...value, kind: 'agentTurn', message: value.message }
    default:
      throw invalidField(`${field}.kind`, 'must be one of systemEvent, agentTurn')
  }
}

/**
 * When a job next comes due. `at`: its time (already past fires at once);
 * `every`: everyMs after `from` (added or enabled), or after the occurrence
 * that just ran, skipping occurrences missed while no instance ran; `cron`:
 * the next match after now in its time zone (UTC by default).
 */
export function nextRunAt (schedule: Schedule, now: number, lastDueAt?: number): number | null {
  switch (schedule.kind) {
    case 'at':
      return lastDueAt === undefined ? parseIsoTime(schedule.at) : null
    case 'every': {
      if (lastDueAt === undefined) return now + schedule.everyMs
      const missed = Math.max(0, Math.floor((now - lastDueAt) / schedule.everyMs))
      return lastDueAt + (missed + 1) * schedule.everyMs
    }
    case 'cron': {
      const next = new Cron(schedule.expr, { timezone: schedule.tz ?? 'UTC', paused: true }).nextRun(new Date(now))
      return next === null ? null : next.getTime()
    }
  }
}
