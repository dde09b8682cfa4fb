const UNITS: Array<[Intl.RelativeTimeFormatUnit, number]> = [
  ['day', 86_400_000], ['hour', 3_600_000], ['minute', 60_000], ['second', 1000]
]
const relative = new Intl.RelativeTimeFormat('en', { numeric: 'auto' })
const absolute = new Intl.DateTimeFormat('en-GB', { dateStyle: 'medium', timeStyle: 'medium' })

/** "in 5 minutes", "3 hours ago". */
export function relTime (atMs: number, nowMs = Date.now()): string {
  const diff = atMs - nowMs
  for (const [unit, ms] of UNITS) {
    if (Math.abs(diff) >= ms || unit === 'second') return relative.format(Math.round(diff / ms), unit)
  }
  return relative.format(0, 'second')
}

export function absTime (atMs: number): string {
  return absolute.format(new Date(atMs))
}

/** Durations such as 1500 -> "1.5 s", 90 000 -> "1 min 30 s". */
export function duration (ms: number): string {
  if (ms < 1000) return `${ms} ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`
  const minutes = Math.floor(ms / 60_000)
  const seconds = Math.round((ms % 60_000) / 1000)
  if (minutes < 60) return seconds === 0 ? `${minutes} min` : `${minutes} min ${seconds} s`
  const hours = Math.floor(minutes / 60)
  return minutes % 60 === 0 ? `${hours} h` : `${hours} h ${minutes % 60} min`
}

/** Ids in tables are shortened to 8 characters, as the CLI does. */
export function shortId (id: string): string {
  return id.slice(0, 8)
}

export function describeSchedule (schedule: Record<string, unknown>): string {
  switch (schedule.kind) {
    case 'at': return `once at ${typeof schedule.at === 'string' ? absTime(Date.parse(schedule.at)) : '?'}`
    case 'every': return `every ${typeof schedule.everyMs === 'number' ? duration(schedule.everyMs) : '?'}`
    case 'cron': return `cron ${String(schedule.expr)}${typeof schedule.tz === 'string' ? ` (${schedule.tz})` : ' (UTC)'}`
    default: return JSON.stringify(schedule)
  }
}

export function describePayload (payload: Record<string, unknown>): string {
  if (payload.kind === 'systemEvent' && typeof payload.text === 'string') return `system event: ${payload.text}`
  if (payload.kind === 'agentTurn' && typeof payload.message === 'string') return `agent turn: ${payload.message}`
  return JSON.stringify(payload)
}

export const REASONS: Record<string, string> = {
  'not-paired': 'A new device: it has never been approved.',
  'role-upgrade': 'A paired device asks for a role it was not approved for.',
  'scope-upgrade': 'A paired device asks for scopes beyond those approved.',
  'metadata-upgrade': 'A paired device now reports a different platform or device family.'
}
