import { type Command, InvalidArgumentError, Option } from 'commander'
import { ROLES } from '../../auth/scopes.ts'
import { MATCH_FIELDS, PAIRING_REASONS, type PolicyMatch } from '../../views.ts'
import { UsageError } from '../api.ts'
import { details, list, short, table, time } from '../format.ts'
import { Policy, PolicyDeleted, PolicyEvaluation } from '../schemas.ts'
import { type ConnectionOptions, connect, KINDS, parseScopeList, resolveId, withConnection } from './common.ts'

type MatchField = (typeof MATCH_FIELDS)[number]
type Match = Partial<Record<MatchField, string[]>>

const PRIVILEGE_HINT = 'pass --allow-privileged if the rule may really grant them, or limit it with --scopes or --scopes-within'

/** `a,b` -> ['a', 'b'], each one of `choices` when given. */
function listOf (what: string, choices?: readonly string[]): (value: string) => string[] {
  return (value) => {
    const items = value.split(',').map((item) => item.trim()).filter((item) => item !== '')
    if (items.length === 0) throw new InvalidArgumentError(`expected a comma-separated list of ${what}`)
    const unknown = choices === undefined ? [] : items.filter((item) => !choices.includes(item))
    if (unknown.length > 0) throw new InvalidArgumentError(`unknown ${what} ${unknown.join(', ')}: expected any of ${choices?.join(', ') ?? ''}`)
    return items
  }
}

/** `--scopes a,b`, or `none` for a rule that pairs the device without granting a scope. */
function parseGrantedScopes (value: string): string[] {
  return value.trim() === 'none' ? [] : parseScopeList(value)
}

function parsePriority (value: string): number {
  const n = Number(value)
  if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || Math.abs(n) > 1_000_000) throw new InvalidArgumentError('expected a whole number from -1000000 to 1000000 (lower is tried first)')
  return n
}

function parseMatchFields (value: string): MatchField[] {
  return listOf('match fields', MATCH_FIELDS)(value) as MatchField[]
}

type MatchOptions = PolicyMatch

/** The match options every command that writes a rule takes. */
function withMatchOptions (command: Command): Command {
  return command
    .option('--roles <roles>', `match these roles (${ROLES.join(', ')})`, listOf('roles', ROLES))
    .option('--client-ids <ids>', 'match these client.id values (e.g. cli, gateway-client)', listOf('client ids'))
    .option('--client-modes <modes>', 'match these client.mode values (e.g. cli, backend, probe)', listOf('client modes'))
    .option('--platforms <platforms>', 'match these platforms (compared trimmed and lower-cased)', listOf('platforms'))
    .option('--reasons <reasons>', `match these pairing reasons (${PAIRING_REASONS.join(', ')})`, listOf('reasons', PAIRING_REASONS))
    .option('--device-ids <ids>', 'match these device ids (full 64-character ids)', listOf('device ids'))
    .option('--scopes-within <scopes>', 'match only when every asked scope is in this list', parseScopeList)
}

function matchFrom (opts: MatchOptions): Match {
  const match: Match = {}
  for (const field of MATCH_FIELDS) {
    const value = opts[field]
    if (value !== undefined) match[field] = value
  }
  return match
}

const LABELS: Record<MatchField, string> = {
  roles: 'role',
  clientIds: 'client',
  clientModes: 'mode',
  platforms: 'platform',
  reasons: 'reason',
  deviceIds: 'device',
  scopesWithin: 'scopes within'
}

export function describeMatch (match: Match, shortIds = false): string {
  const parts = MATCH_FIELDS.flatMap((field) => {
    const values = match[field]
    if (values === undefined) return []
    const shown = field === 'deviceIds' && shortIds ? values.map((id) => short(id)) : values.map((v) => v === '' ? '""' : v)
    return [`${LABELS[field]} ${shown.join('|')}`]
  })
  return parts.length === 0 ? 'any ask' : parts.join(', ')
}

function describeAction (policy: Policy): string {
  if (policy.action !== 'approve') return policy.action
  return policy.scopes === undefined ? 'approve' : `approve ${list(policy.scopes)}`
}

function describePolicy (policy: Policy): Array<[string, string]> {
  return [
    ['policy', policy.id],
    ['name', policy.name],
    ['priority', String(policy.priority)],
    ['enabled', policy.enabled ? 'yes' : 'no'],
    ['match', describeMatch(policy.match)],
    ['action', policy.action],
    ['grants', policy.action !== 'approve' ? '-' : policy.scopes === undefined ? 'every asked scope' : `only ${list(policy.scopes)} of the asked scopes`],
    ['privileged', policy.allowPrivileged ? 'may grant operator.admin / operator.pairing' : 'no'],
    ['created', `${time(policy.createdAtMs)} by ${policy.createdBy}`],
    ...(policy.updatedAtMs !== undefined && policy.updatedAtMs !== policy.createdAtMs ? [['updated', time(policy.updatedAtMs)] as [string, string]] : [])
  ]
}

interface AddOptions extends ConnectionOptions, MatchOptions {
  name: string
  action: 'approve' | 'reject'
  priority?: number
  disabled?: boolean
  scopes?: string[]
  allowPrivileged?: boolean
}

interface UpdateOptions extends ConnectionOptions, MatchOptions {
  name?: string
  action?: 'approve' | 'reject'
  priority?: number
  enable?: boolean
  disable?: boolean
  scopes?: string[]
  allScopes?: boolean
  clear?: MatchField[]
  allowPrivileged?: boolean
}

interface EvaluateOptions extends ConnectionOptions {
  role: string
  scopes?: string[]
  reason: string
  clientId?: string
  clientMode?: string
  platform?: string
  deviceId?: string
}

export function registerPolicies (program: Command): void {
  const policies = program.command('policies')
    .description('approval policies: rules that approve or reject pairing requests inside the handshake')

  withConnection(policies.command('list')
    .description('list approval policies in the order they are tried (priority, then age)'))
    .action(async (opts: ConnectionOptions) => {
      const { api, out } = connect(opts)
      const items = await api.listAll('/policies', Policy)
      if (items.length === 0 && !out.json) {
        out.message('no approval policies: every pairing request waits for an admin (`scopegate policies add --help` shows how to add one)')
        return
      }
      out.result(items, () => table(['POLICY', 'PRIORITY', 'ENABLED', 'NAME', 'MATCH', 'ACTION'], items.map((p) => [
        short(p.id),
        String(p.priority),
        p.enabled ? 'yes' : 'no',
        p.name,
        describeMatch(p.match, true),
        describeAction(p)
      ])))
    })

  withConnection(policies.command('show')
    .description('show one approval policy')
    .argument('<id>', 'policy id, or a unique prefix of at least 8 characters'))
    .action(async (id: string, opts: ConnectionOptions) => {
      const { api, out } = connect(opts)
      const policyId = await resolveId(api, KINDS.policy, id)
      const policy = await api.request('GET', `/policies/${encodeURIComponent(policyId)}`, Policy, { notFoundHint: 'see `scopegate policies list`' })
      out.result(policy, () => details(describePolicy(policy)))
    })

  withConnection(withMatchOptions(policies.command('add')
    .description('add an approval policy (needs an admin token)')
    .requiredOption('--name <name>', 'a name for people (hints and audit rows show it)')
    .addOption(new Option('--action <action>', 'what the rule does to a matching ask').choices(['approve', 'reject']).makeOptionMandatory())
    .option('--priority <n>', 'lower is tried first; equal priorities by age (default 100)', parsePriority)
    .option('--scopes <scopes>', 'approve only these of the asked scopes (or none); the others wait for an admin', parseGrantedScopes)
    .option('--allow-privileged', 'let the rule grant operator.admin or operator.pairing')
    .option('--disabled', 'add it disabled'))
    .addHelpText('after', '\nEvery match option given must hold; none means any ask. Examples:\n' +
      '  scopegate policies add --name "reinstalled bots" --action approve --client-ids reminder-bot --reasons not-paired --scopes-within operator.read\n' +
      '  scopegate policies add --name "nodes on linux" --action approve --roles node --platforms linux --scopes none --priority 10\n' +
      '  scopegate policies add --name "other nodes" --action reject --roles node --priority 20'))
    .action(async (opts: AddOptions) => {
      const { api, out } = connect(opts)
      const body = {
        name: opts.name,
        action: opts.action,
        ...(opts.priority !== undefined && { priority: opts.priority }),
        ...(opts.disabled === true && { enabled: false }),
        match: matchFrom(opts),
        ...(opts.scopes !== undefined && { scopes: opts.scopes }),
        ...(opts.allowPrivileged === true && { allowPrivileged: true })
      }
      const policy = await api.request('POST', '/policies', Policy, { body, badRequestHints: { POLICY_NEEDS_ALLOW_PRIVILEGED: PRIVILEGE_HINT } })
      out.result(policy, () => `added policy ${policy.id} (${policy.name}): ${describeAction(policy)} when ${describeMatch(policy.match)}` +
        `${policy.enabled ? '' : ' (disabled)'}; try it with \`scopegate policies evaluate --role operator --scopes operator.read --reason not-paired\``)
    })

  withConnection(withMatchOptions(policies.command('update')
    .description('change an approval policy (needs an admin token); match options replace those fields only')
    .argument('<id>', 'policy id, or a unique prefix of at least 8 characters')
    .option('--name <name>', 'a new name')
    .addOption(new Option('--action <action>', 'what the rule does').choices(['approve', 'reject']))
    .option('--priority <n>', 'lower is tried first', parsePriority)
    .addOption(new Option('--enable', 'try the rule again').conflicts('disable'))
    .addOption(new Option('--disable', 'stop trying the rule (kept, and named in hints when it would match)').conflicts('enable'))
    .addOption(new Option('--scopes <scopes>', 'approve only these of the asked scopes (or none)').argParser(parseGrantedScopes).conflicts('allScopes'))
    .addOption(new Option('--all-scopes', 'stop narrowing: approve every asked scope').conflicts('scopes'))
    .option('--clear <fields>', `drop these match fields (${MATCH_FIELDS.join(', ')})`, parseMatchFields)
    .option('--allow-privileged', 'let the rule grant operator.admin or operator.pairing')
    .option('--no-allow-privileged', 'no longer let it')))
    .action(async (id: string, opts: UpdateOptions) => {
      const { api, out } = connect(opts)
      const policyId = await resolveId(api, KINDS.policy, id)
      const given = matchFrom(opts)
      const clear = opts.clear ?? []
      let match: Match | undefined
      if (Object.keys(given).length > 0 || clear.length > 0) {
        const overlap = clear.filter((field) => given[field] !== undefined)
        if (overlap.length > 0) throw new UsageError(`--clear ${overlap.join(',')} contradicts the option that sets it`)
        const current = await api.request('GET', `/policies/${encodeURIComponent(policyId)}`, Policy, { notFoundHint: 'see `scopegate policies list`' })
        match = { ...current.match, ...given }
        for (const field of clear) delete match[field]
      }
      const body = {
        ...(opts.name !== undefined && { name: opts.name }),
        ...(opts.action !== undefined && { action: opts.action }),
        ...(opts.priority !== undefined && { priority: opts.priority }),
        ...(opts.enable === true && { enabled: true }),
        ...(opts.disable === true && { enabled: false }),
        ...(match !== undefined && { match }),
        ...(opts.scopes !== undefined && { scopes: opts.scopes }),
        ...(opts.allScopes === true && { scopes: null }),
        ...(opts.allowPrivileged !== undefined && { allowPrivileged: opts.allowPrivileged })
      }
      if (Object.keys(body).length === 0) throw new UsageError('nothing to change: pass at least one option (`scopegate policies update --help` lists them)')
      const policy = await api.request('PATCH', `/policies/${encodeURIComponent(policyId)}`, Policy, {
        body,
        notFoundHint: 'see `scopegate policies list`',
        badRequestHints: { POLICY_NEEDS_ALLOW_PRIVILEGED: PRIVILEGE_HINT, INVALID_POLICY: 'a reject rule takes no --scopes: add --all-scopes' }
      })
      out.result(policy, () => `updated policy ${short(policy.id)} (${policy.name}): ${policy.enabled ? '' : 'disabled, '}${describeAction(policy)} when ${describeMatch(policy.match)}, priority ${policy.priority}`)
    })

  withConnection(policies.command('remove')
    .description('delete an approval policy (needs an admin token)')
    .argument('<id>', 'policy id, or a unique prefix of at least 8 characters'))
    .action(async (id: string, opts: ConnectionOptions) => {
      const { api, out } = connect(opts)
      const policyId = await resolveId(api, KINDS.policy, id)
      const removed = await api.request('DELETE', `/policies/${encodeURIComponent(policyId)}`, PolicyDeleted, { notFoundHint: 'see `scopegate policies list`' })
      out.result(removed, () => `removed policy ${short(removed.id)}`)
    })

  withConnection(policies.command('evaluate')
    .description('dry run: which enabled policy would decide this ask, and what it would do (a viewer token will do)')
    .addOption(new Option('--role <role>', 'the asked role').choices(ROLES).default('operator'))
    .option('--scopes <scopes>', 'the asked scopes (comma-separated; none if omitted)', parseScopeList)
    .addOption(new Option('--reason <reason>', 'why the connect would be refused').choices(PAIRING_REASONS).default('not-paired'))
    .option('--client-id <id>', 'client.id of the ask')
    .option('--client-mode <mode>', 'client.mode of the ask')
    .option('--platform <platform>', 'platform of the ask')
    .option('--device-id <id>', 'device id of the ask'))
    .action(async (opts: EvaluateOptions) => {
      const { api, out } = connect(opts)
      const body = {
        role: opts.role,
        scopes: opts.scopes ?? [],
        reason: opts.reason,
        ...(opts.clientId !== undefined && { clientId: opts.clientId }),
        ...(opts.clientMode !== undefined && { clientMode: opts.clientMode }),
        ...(opts.platform !== undefined && { platform: opts.platform }),
        ...(opts.deviceId !== undefined && { deviceId: opts.deviceId })
      }
      const result = await api.request('POST', '/policies/evaluate', PolicyEvaluation, { body })
      out.result(result, () => {
        if (result.policyId === null) return 'no policy matches: the request would wait for an admin (`scopegate requests approve <id>`)'
        const rule = `policy ${short(result.policyId)} (${result.policyName ?? '?'})`
        if (result.action === 'reject') return `${rule} would reject it: the connect is refused and nothing is left pending`
        const leftOut = result.leftOutScopes ?? []
        return `${rule} would approve it${result.scopes !== undefined ? ` with ${list(result.scopes)}` : ''}` +
          (leftOut.length > 0 ? `; ${leftOut.join(', ')} would wait for an admin as a scope-upgrade request` : '')
      })
    })
}
