import { type Command, InvalidArgumentError, Option } from 'commander'
import { ROLES, SCOPES, isScope } from '../../auth/scopes.ts'
import { AdminApi, CliError, DEFAULT_URL, UsageError } from '../api.ts'
import { Output } from '../format.ts'
import { unknownRecord } from '../guards.ts'

/** The options every command that talks to the gateway takes. */
export interface ConnectionOptions {
  url: string
  token?: string
  json?: boolean
}

function parseUrl (value: string): string {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new InvalidArgumentError(`expected the gateway's base URL, such as ${DEFAULT_URL}`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError(`expected an http(s) URL, such as ${DEFAULT_URL}`)
  return value
}

/** Adds --url, --token and --json (with SCOPEGATE_URL and SCOPEGATE_TOKEN) to a command. */
export function withConnection (command: Command): Command {
  return command
    .addOption(new Option('--url <url>', 'the gateway\'s base URL').env('SCOPEGATE_URL').default(DEFAULT_URL).argParser(parseUrl))
    .addOption(new Option('--token <jwt>', 'an admin JWT (`scopegate admin-token` prints one)').env('SCOPEGATE_TOKEN'))
    .option('--json', 'print one JSON document on stdout instead of a table')
}

/** The API client and the output for one command run. */
export function connect (opts: ConnectionOptions): { api: AdminApi, out: Output } {
  const token = opts.token?.trim()
  if (token === undefined || token === '') {
    throw new UsageError('no admin token: create one with `scopegate admin-token` and pass it with --token or SCOPEGATE_TOKEN')
  }
  return { api: new AdminApi(opts.url, token), out: new Output(opts.json === true) }
}

export function roleOption (): Option {
  return new Option('--role <role>', 'the device role').choices(ROLES).default('operator')
}

export function checkScopes (scopes: readonly string[]): string[] {
  const unknown = scopes.filter((scope) => !isScope(scope))
  if (unknown.length > 0) throw new UsageError(`unknown scope ${unknown.join(', ')}: expected any of ${SCOPES.join(', ')}`)
  return [...scopes]
}

/** `--scopes a,b` -> ['a', 'b'] (known scopes only). */
export function parseScopeList (value: string): string[] {
  const scopes = value.split(',').map((scope) => scope.trim()).filter((scope) => scope !== '')
  if (scopes.length === 0) throw new InvalidArgumentError('expected a comma-separated list of scopes, such as operator.read,operator.write')
  const unknown = scopes.filter((scope) => !isScope(scope))
  if (unknown.length > 0) throw new InvalidArgumentError(`unknown scope ${unknown.join(', ')}: expected any of ${SCOPES.join(', ')}`)
  return scopes
}

export function positiveInt (max: number): (value: string) => number {
  return (value) => {
    const n = Number(value)
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1 || n > max) throw new InvalidArgumentError(`expected a whole number from 1 to ${max}`)
    return n
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const DEVICE_ID = /^[0-9a-f]{64}$/

interface IdKind {
  noun: string
  path: string
  query: Record<string, string>
  full: RegExp
  listHint: string
  idOf: (item: Record<string, unknown>) => unknown
}

/** Where ids of each kind are listed for prefix matching, and what a full id looks like. */
export const KINDS = {
  request: { noun: 'pairing request', path: '/pairing-requests', query: { state: 'all' }, full: UUID, listHint: 'scopegate requests list --all', idOf: (item) => item.requestId },
  device: { noun: 'paired device', path: '/devices', query: {}, full: DEVICE_ID, listHint: 'scopegate devices list', idOf: (item) => item.deviceId },
  job: { noun: 'cron job', path: '/cron/jobs', query: {}, full: UUID, listHint: 'scopegate cron list', idOf: (item) => item.id },
  policy: { noun: 'policy', path: '/policies', query: {}, full: UUID, listHint: 'scopegate policies list', idOf: (item) => item.id }
} satisfies Record<string, IdKind>

export const MIN_PREFIX = 8

/**
 * A full id, or the one id that starts with a prefix of at least 8
 * characters (found by listing); none or several is exit 1, shorter exit 2.
 */
export async function resolveId (api: AdminApi, kind: IdKind, input: string): Promise<string> {
  const wanted = input.trim().toLowerCase()
  if (wanted.length < MIN_PREFIX) {
    throw new UsageError(`"${input}" is too short for a ${kind.noun} id: give at least ${MIN_PREFIX} characters (tables show the first 8; see \`${kind.listHint}\`)`)
  }
  if (kind.full.test(wanted)) return wanted
  const ids = (await api.listAll(kind.path, unknownRecord, kind.query))
    .map((item) => kind.idOf(item))
    .filter((id): id is string => typeof id === 'string' && id.toLowerCase().startsWith(wanted))
  const unique = [...new Set(ids)].sort()
  if (unique.length === 1 && unique[0] !== undefined) return unique[0]
  if (unique.length === 0) throw new CliError(`no ${kind.noun} id starts with ${input}: see \`${kind.listHint}\``)
  const shown = unique.slice(0, 5).join(', ') + (unique.length > 5 ? ', …' : '')
  throw new CliError(`${input} is ambiguous: it starts ${unique.length} ${kind.noun} ids (${shown}); give more characters`)
}

const DURATION = /^(\d+)(ms|s|m|h|d)?$/
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** Parses `90s`, `15m`, `1h`, `7d` or plain milliseconds. */
export function parseDuration (value: string): number {
  const match = DURATION.exec(value.trim())
  if (match === null || Number(match[1]) <= 0) throw new InvalidArgumentError('expected a positive duration such as 30m, 1h or 7d')
  return Number(match[1]) * (UNIT_MS[match[2] ?? 'ms'] ?? 1)
}
