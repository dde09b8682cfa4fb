import { setTimeout as sleep } from 'node:timers/promises'
import type { Command } from 'commander'
import { type AdminApi, CliError } from '../api.ts'
import { rows, short, table, time, type Output } from '../format.ts'
import { AuditPage, type AuditEntry } from '../schemas.ts'
import { type ConnectionOptions, connect, KINDS, positiveInt, resolveId, withConnection } from './common.ts'

const DEVICE_ID = /^[0-9a-f]{64}$/i
const HEAD = ['TIME', 'ACTOR', 'ACTION', 'DEVICE', 'REQUEST', 'DETAILS']
/** Fixed widths for --follow, so that rows printed seconds apart line up; details wrap. */
const FOLLOW_WIDTHS = [22, 20, 18, 10, 10, 60]
/** The details column of the table: wrapped to what the terminal leaves, 60 characters in a pipe. */
function tableWidths (): Array<number | null> {
  const columns = process.stdout.columns
  const details = columns === undefined ? 60 : Math.max(30, columns - 90)
  return [null, null, null, null, null, details]
}

interface AuditOptions extends ConnectionOptions {
  device?: string
  action?: string
  limit: number
  follow?: boolean
}

function actor (value: string): string {
  // Device ids are 64 hex characters; policies are policy:<uuid>.
  return DEVICE_ID.test(value) ? short(value) : value
}

function detail (value: unknown): string {
  if (typeof value === 'string') return value
  if (Array.isArray(value) && value.every((item) => typeof item === 'string')) return value.length === 0 ? '[]' : value.join(',')
  return JSON.stringify(value)
}

function entryRow (entry: AuditEntry): string[] {
  const detailText = Object.entries(entry.details).map(([key, value]) => `${key}=${detail(value)}`).join(' ')
  return [time(entry.atMs), actor(entry.actor), entry.action, short(entry.deviceId), short(entry.requestId), detailText]
}

/**
 * The device filter: a full id as given (a removed device's entries stay in
 * the log), else the paired device whose id starts with the prefix.
 */
async function deviceFilter (api: AdminApi, value: string | undefined): Promise<string | undefined> {
  if (value === undefined) return undefined
  if (DEVICE_ID.test(value.trim())) return value.trim().toLowerCase()
  try {
    return await resolveId(api, KINDS.device, value)
  } catch (err) {
    if (err instanceof CliError && err.exitCode === 1 && err.message.startsWith('no ')) {
      throw new CliError(`${err.message}; for a removed device, pass its full 64-character id`)
    }
    throw err
  }
}

/** Polls the newest entries every second and prints those not seen before, oldest first, until SIGINT / SIGTERM. */
async function follow (api: AdminApi, out: Output, query: Record<string, string | undefined>, seed: AuditEntry[]): Promise<void> {
  const seen = new Set(seed.map((entry) => entry.id))
  // Anything older than what was visible at the start is not new.
  let floor = seed.reduce((min, entry) => Math.min(min, entry.atMs), Infinity)
  if (seed.length === 0) floor = -Infinity
  const stop = new AbortController()
  const onSignal = (): void => { stop.abort() }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  let warned = false
  try {
    while (!stop.signal.aborted) {
      try {
        await sleep(1000, undefined, { signal: stop.signal })
      } catch {
        break
      }
      let fresh: AuditEntry[] = []
      try {
        fresh = await newEntries(api, query, seen, floor)
        if (warned) out.message('audit: the gateway answers again')
        warned = false
      } catch (err) {
        // The gateway restarting or briefly unavailable: say so once and keep polling.
        if (err instanceof CliError && /cannot reach|not ready|did not answer|rate limited/.test(err.message)) {
          if (!warned) out.message(`audit: ${err.message}; still trying every second (Ctrl-C stops)`)
          warned = true
          continue
        }
        throw err
      }
      for (const entry of fresh) {
        seen.add(entry.id)
        if (out.json) out.line(entry)
        else process.stdout.write(rows([entryRow(entry)], FOLLOW_WIDTHS) + '\n')
      }
      // Keep the memory bounded on a gateway that runs for weeks.
      if (seen.size > 20_000) {
        const drop = seen.size - 10_000
        let i = 0
        for (const id of seen) {
          if (i++ >= drop) break
          seen.delete(id)
        }
        floor = Math.max(floor, ...fresh.map((entry) => entry.atMs - 60_000))
      }
    }
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

/** Entries not seen yet, oldest first: newest pages until one holds an entry already seen or older than the floor. */
async function newEntries (api: AdminApi, query: Record<string, string | undefined>, seen: Set<string>, floor: number): Promise<AuditEntry[]> {
  const fresh: AuditEntry[] = []
  let cursor: string | undefined
  for (let pages = 0; pages < 20; pages++) {
    const page = await api.request('GET', '/audit', AuditPage, { query: { ...query, limit: 200, cursor } })
    let reachedKnown = false
    for (const entry of page.items) {
      if (seen.has(entry.id) || entry.atMs < floor) reachedKnown = true
      else fresh.push(entry)
    }
    if (reachedKnown || page.nextCursor === null) break
    cursor = page.nextCursor
  }
  return fresh.reverse()
}

export function registerAudit (program: Command): void {
  withConnection(program.command('audit')
    .description('show the audit log, oldest of the newest entries first (like tail)')
    .option('--device <deviceId>', 'only entries about this device (id or unique prefix of at least 8 characters)')
    .option('--action <action>', 'only this action, such as pairing.approved or scope.revoked')
    .option('--limit <n>', 'how many of the newest entries to show (1-500)', positiveInt(500), 50)
    .option('--follow', 'keep polling every second and print new entries until interrupted (with --json: one JSON object per line)'))
    .action(async (opts: AuditOptions) => {
      const { api, out } = connect(opts)
      const deviceId = await deviceFilter(api, opts.device)
      const query = { deviceId, action: opts.action }
      // Following: also remember what was there beyond --limit, so that it is not taken for new.
      const page = await api.request('GET', '/audit', AuditPage, { query: { ...query, limit: opts.follow === true ? Math.max(opts.limit, 200) : opts.limit } })
      const shown = page.items.slice(0, opts.limit).reverse()
      if (opts.follow === true) {
        if (out.json) for (const entry of shown) out.line(entry)
        else if (shown.length > 0) process.stdout.write(rows([HEAD, ...shown.map(entryRow)], FOLLOW_WIDTHS) + '\n')
        else process.stdout.write(rows([HEAD], FOLLOW_WIDTHS) + '\n')
        out.message('following the audit log (Ctrl-C stops)')
        await follow(api, out, query, page.items)
        return
      }
      if (shown.length === 0 && !out.json) {
        out.message('no audit entries match')
        return
      }
      out.result(shown, () => table(HEAD, shown.map(entryRow), tableWidths()))
    })
}
