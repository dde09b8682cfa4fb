import { type Command, InvalidArgumentError, Option } from 'commander'
import { UsageError } from '../api.ts'
import { details, duration, short, table, time } from '../format.ts'
import { CronJob, CronRan, CronRemoved, CronRuns } from '../schemas.ts'
import { type ConnectionOptions, connect, KINDS, positiveInt, resolveId, withConnection } from './common.ts'

const text = (value: unknown): string => typeof value === 'string' ? value : '?'

export function describeSchedule (schedule: Record<string, unknown>): string {
  switch (schedule.kind) {
    case 'at': return `at ${text(schedule.at)}`
    case 'every': return typeof schedule.everyMs === 'number' ? `every ${duration(schedule.everyMs)}` : 'every ?'
    case 'cron': return `cron ${text(schedule.expr)}${typeof schedule.tz === 'string' ? ` (${schedule.tz})` : ''}`
    default: return JSON.stringify(schedule)
  }
}

export function describePayload (payload: Record<string, unknown>): string {
  switch (payload.kind) {
    case 'systemEvent': return `system event: ${text(payload.text)}`
    case 'agentTurn': return `message: ${text(payload.message)}`
    default: return JSON.stringify(payload)
  }
}

function clip (value: string, max = 40): string {
  return value.length > max ? value.slice(0, max - 1) + '…' : value
}

function lastRun (job: CronJob): string {
  if (job.state.lastRunAtMs === undefined) return '-'
  return `${job.state.lastStatus ?? '?'} ${time(job.state.lastRunAtMs)}`
}

function describeJob (job: CronJob): Array<[string, string]> {
  return [
    ['job', job.id],
    ['name', job.name],
    ...(job.description !== undefined ? [['description', job.description] as [string, string]] : []),
    ['enabled', job.enabled ? 'yes' : 'no'],
    ['schedule', describeSchedule(job.schedule)],
    ['payload', describePayload(job.payload)],
    ['delete after run', job.deleteAfterRun ? 'yes' : 'no'],
    ['owner', job.ownerDeviceId ?? '- (fires to operator.read connections)'],
    ['next run', time(job.state.nextRunAtMs)],
    ['last run', lastRun(job)],
    ...(job.state.lastError !== undefined ? [['last error', job.state.lastError] as [string, string]] : [])
  ]
}

function parseAt (value: string): string {
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(Date.parse(value))) throw new InvalidArgumentError('expected an ISO 8601 date-time, such as 2030-01-31T09:00:00Z')
  return value
}

/** Milliseconds, or a duration such as 90s, 15m, 1h, 1d. */
function parseEvery (value: string): number {
  const match = /^(\d+)(ms|s|m|h|d)?$/.exec(value.trim())
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
  const ms = match === null ? NaN : Number(match[1]) * (unit[match[2] ?? 'ms'] ?? 1)
  if (!Number.isSafeInteger(ms) || ms < 1000) throw new InvalidArgumentError('expected an interval of at least 1000 ms (or 1s, 5m, 1h, 1d)')
  return ms
}

interface AddOptions extends ConnectionOptions {
  name: string
  description?: string
  at?: string
  every?: number
  cron?: string
  tz?: string
  systemEvent?: string
  message?: string
  disabled?: boolean
}

function addBody (opts: AddOptions): Record<string, unknown> {
  let schedule: Record<string, unknown>
  if (opts.at !== undefined) schedule = { kind: 'at', at: opts.at }
  else if (opts.every !== undefined) schedule = { kind: 'every', everyMs: opts.every }
  else if (opts.cron !== undefined) schedule = { kind: 'cron', expr: opts.cron, ...(opts.tz !== undefined && { tz: opts.tz }) }
  else throw new UsageError('a schedule is required: pass one of --at ISO, --every MS or --cron EXPR')
  if (opts.tz !== undefined && opts.cron === undefined) throw new UsageError('--tz applies to --cron schedules only')

  let payload: Record<string, unknown>
  if (opts.systemEvent !== undefined) payload = { kind: 'systemEvent', text: opts.systemEvent }
  else if (opts.message !== undefined) payload = { kind: 'agentTurn', message: opts.message }
  else throw new UsageError('a payload is required: pass --system-event TEXT or --message TEXT')

  return {
    name: opts.name,
    ...(opts.description !== undefined && { description: opts.description }),
    ...(opts.disabled === true && { enabled: false }),
    schedule,
    payload
  }
}

export function registerCron (program: Command): void {
  const cron = program.command('cron')
    .description('scheduled jobs: list, add, remove, run, runs')

  withConnection(cron.command('list')
    .description('list cron jobs (newest first)'))
    .action(async (opts: ConnectionOptions) => {
      const { api, out } = connect(opts)
      const jobs = await api.listAll('/cron/jobs', CronJob)
      if (jobs.length === 0 && !out.json) {
        out.message('no cron jobs (`scopegate cron add --help` shows how to add one)')
        return
      }
      out.result(jobs, () => table(['JOB', 'NAME', 'ENABLED', 'SCHEDULE', 'PAYLOAD', 'NEXT RUN', 'LAST RUN'], jobs.map((job) => [
        short(job.id),
        job.name,
        job.enabled ? 'yes' : 'no',
        describeSchedule(job.schedule),
        clip(describePayload(job.payload)),
        time(job.state.nextRunAtMs),
        lastRun(job)
      ])))
    })

  const schedules = ['at', 'every', 'cron']
  const payloads = ['systemEvent', 'message']
  const others = (all: string[], self: string): string[] => all.filter((name) => name !== self)
  withConnection(cron.command('add')
    .description('add a job; it fires to the operator.read connections online')
    .requiredOption('--name <name>', 'a name for people')
    .option('--description <text>', 'what the job is for')
    .addOption(new Option('--at <iso>', 'once, at this time (ISO 8601)').argParser(parseAt).conflicts(others(schedules, 'at')))
    .addOption(new Option('--every <ms>', 'every so many milliseconds (or 90s, 5m, 1h)').argParser(parseEvery).conflicts(others(schedules, 'every')))
    .addOption(new Option('--cron <expr>', 'a cron expression of 5 or 6 fields, such as "0 9 * * 1-5"').conflicts(others(schedules, 'cron')))
    .option('--tz <zone>', 'IANA time zone of --cron (default UTC), such as Europe/Berlin')
    .addOption(new Option('--system-event <text>', 'fire a system event with this text').conflicts(others(payloads, 'systemEvent')))
    .addOption(new Option('--message <text>', 'fire an agent turn with this message').conflicts(others(payloads, 'message')))
    .option('--disabled', 'add it disabled')
    .addHelpText('after', '\nOne schedule (--at, --every or --cron) and one payload (--system-event or --message) are required.\n' +
      'Example: scopegate cron add --name standup --cron "0 9 * * 1-5" --tz Europe/Berlin --system-event "stand-up in 5 minutes"'))
    .action(async (opts: AddOptions) => {
      const body = addBody(opts)
      const { api, out } = connect(opts)
      const job = await api.request('POST', '/cron/jobs', CronJob, { body })
      out.result(job, () => `added cron job ${job.id} (${job.name}): ${describeSchedule(job.schedule)}, next run ${time(job.state.nextRunAtMs)}`)
    })

  withConnection(cron.command('show')
    .description('show one cron job')
    .argument('<id>', 'job id, or a unique prefix of at least 8 characters'))
    .action(async (id: string, opts: ConnectionOptions) => {
      const { api, out } = connect(opts)
      const jobId = await resolveId(api, KINDS.job, id)
      const job = await api.request('GET', `/cron/jobs/${encodeURIComponent(jobId)}`, CronJob, { notFoundHint: 'see `scopegate cron list`' })
      out.result(job, () => details(describeJob(job)))
    })

  withConnection(cron.command('remove')
    .description('remove a job')
    .argument('<id>', 'job id, or a unique prefix of at least 8 characters'))
    .action(async (id: string, opts: ConnectionOptions) => {
      const { api, out } = connect(opts)
      const jobId = await resolveId(api, KINDS.job, id)
      const removed = await api.request('DELETE', `/cron/jobs/${encodeURIComponent(jobId)}`, CronRemoved, { notFoundHint: 'see `scopegate cron list`' })
      out.result({ ...removed, id: jobId }, () => `removed cron job ${short(jobId)}`)
    })

  withConnection(cron.command('run')
    .description('run a job now')
    .argument('<id>', 'job id, or a unique prefix of at least 8 characters')
    .option('--due', 'run it only if it is due'))
    .action(async (id: string, opts: ConnectionOptions & { due?: boolean }) => {
      const { api, out } = connect(opts)
      const jobId = await resolveId(api, KINDS.job, id)
      const ran = await api.request('POST', `/cron/jobs/${encodeURIComponent(jobId)}/run`, CronRan, {
        body: { mode: opts.due === true ? 'due' : 'force' },
        notFoundHint: 'see `scopegate cron list`'
      })
      out.result(ran, () => ran.ran
        ? `ran cron job ${short(jobId)}: run ${ran.runId ?? '?'} (\`scopegate cron runs ${short(jobId)}\` shows its outcome)`
        : `cron job ${short(jobId)} is not due: nothing ran`)
    })

  withConnection(cron.command('runs')
    .description('list the runs of a job (newest first)')
    .argument('<id>', 'job id, or a unique prefix of at least 8 characters')
    .option('--limit <n>', 'at most this many runs (1-500)', positiveInt(500), 50))
    .action(async (id: string, opts: ConnectionOptions & { limit: number }) => {
      const { api, out } = connect(opts)
      const jobId = await resolveId(api, KINDS.job, id)
      const runs = await api.request('GET', `/cron/jobs/${encodeURIComponent(jobId)}/runs`, CronRuns, { query: { limit: opts.limit }, notFoundHint: 'see `scopegate cron list`' })
      if (runs.items.length === 0 && !out.json) {
        out.message(`cron job ${short(jobId)} has not run yet`)
        return
      }
      out.result(runs.items, () => table(['RUN', 'STATUS', 'DUE', 'STARTED', 'TOOK', 'INSTANCE', 'ERROR'], runs.items.map((run) => [
        short(run.runId),
        run.status,
        time(run.dueAtMs),
        time(run.startedAtMs),
        run.finishedAtMs !== undefined ? duration(run.finishedAtMs - run.startedAtMs) : '-',
        run.instance,
        run.error ?? ''
      ])))
    })
}
