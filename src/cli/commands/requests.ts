import type { Command } from 'commander'
import { details, list, short, table, time } from '../format.ts'
import { Approved, PairingRequest, Rejected } from '../schemas.ts'
import { type ConnectionOptions, connect, KINDS, parseScopeList, resolveId, withConnection } from './common.ts'

function requestRows (items: PairingRequest[]): string[][] {
  return items.map((r) => [
    short(r.requestId),
    r.state,
    short(r.deviceId),
    r.displayName ?? r.clientId,
    r.platform,
    r.role,
    list(r.scopes),
    r.reason,
    time(r.ts)
  ])
}

export function describeRequest (r: PairingRequest): Array<[string, string]> {
  return [
    ['request', r.requestId],
    ['state', r.state],
    ['device', r.deviceId],
    ['name', r.displayName ?? '-'],
    ['client', `${r.clientId} (${r.clientMode})`],
    ['platform', `${r.platform}${r.deviceFamily !== '' ? ` / ${r.deviceFamily}` : ''}`],
    ['role', r.role],
    ['asked scopes', list(r.scopes)],
    ['approved before', list(r.approvedScopes)],
    ...(r.grantedScopes !== undefined ? [['granted', list(r.grantedScopes)] as [string, string]] : []),
    ['reason', r.reason + (r.isRepair ? ' (repair)' : '')],
    ['requested', time(r.ts)],
    ...(r.state === 'pending' ? [['expires', time(r.expiresAtMs)] as [string, string]] : []),
    ...(r.resolvedAtMs !== undefined ? [['resolved', time(r.resolvedAtMs)] as [string, string]] : [])
  ]
}

export function registerRequests (program: Command): void {
  const requests = program.command('requests')
    .description('pairing requests: list, show, approve, reject')

  withConnection(requests.command('list')
    .description('list pending pairing requests (newest first)')
    .option('--all', 'every request, whatever its state'))
    .action(async (opts: ConnectionOptions & { all?: boolean }) => {
      const { api, out } = connect(opts)
      const items = await api.listAll('/pairing-requests', PairingRequest, { state: opts.all === true ? 'all' : 'pending' })
      if (items.length === 0 && !out.json) {
        out.message(opts.all === true ? 'no pairing requests' : 'no pending pairing requests (`scopegate requests list --all` shows decided ones)')
        return
      }
      out.result(items, () => table(['REQUEST', 'STATE', 'DEVICE', 'CLIENT', 'PLATFORM', 'ROLE', 'SCOPES', 'REASON', 'REQUESTED'], requestRows(items)))
    })

  withConnection(requests.command('show')
    .description('show one pairing request, in any state')
    .argument('<id>', 'request id, or a unique prefix of at least 8 characters'))
    .action(async (id: string, opts: ConnectionOptions) => {
      const { api, out } = connect(opts)
      const requestId = await resolveId(api, KINDS.request, id)
      const request = await api.request('GET', `/pairing-requests/${encodeURIComponent(requestId)}`, PairingRequest, { notFoundHint: 'see `scopegate requests list --all`' })
      out.result(request, () => details(describeRequest(request)))
    })

  withConnection(requests.command('approve')
    .description('approve a pending request, optionally for fewer scopes than asked')
    .argument('<id>', 'request id, or a unique prefix of at least 8 characters')
    .option('--scopes <a,b>', 'approve only these of the asked scopes (comma-separated)', parseScopeList))
    .action(async (id: string, opts: ConnectionOptions & { scopes?: string[] }) => {
      const { api, out } = connect(opts)
      const requestId = await resolveId(api, KINDS.request, id)
      const approved = await api.request('POST', `/pairing-requests/${encodeURIComponent(requestId)}/approve`, Approved, {
        body: opts.scopes === undefined ? {} : { scopes: opts.scopes },
        notFoundHint: 'see `scopegate requests list`',
        conflictHint: `see \`scopegate requests show ${short(requestId)}\``
      })
      const device = approved.device
      const granted = device.roleScopes[device.role] ?? device.scopes
      out.result(approved, () => `approved request ${short(approved.requestId)}: device ${short(device.deviceId)} may connect as ${device.role} with ${list(granted)}`)
    })

  withConnection(requests.command('reject')
    .description('reject a pending request')
    .argument('<id>', 'request id, or a unique prefix of at least 8 characters'))
    .action(async (id: string, opts: ConnectionOptions) => {
      const { api, out } = connect(opts)
      const requestId = await resolveId(api, KINDS.request, id)
      const rejected = await api.request('POST', `/pairing-requests/${encodeURIComponent(requestId)}/reject`, Rejected, {
        body: {},
        notFoundHint: 'see `scopegate requests list`',
        conflictHint: `see \`scopegate requests show ${short(requestId)}\``
      })
      out.result(rejected, () => `rejected request ${short(rejected.requestId)} of device ${short(rejected.deviceId)}`)
    })
}
