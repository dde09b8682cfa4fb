import { createInterface } from 'node:readline/promises'
import type { Command } from 'commander'
import { CliError, UsageError, type AdminApi } from '../api.ts'
import { details, duration, list, short, table, time } from '../format.ts'
import { Device, Removed, RevokedToken, RotatedToken } from '../schemas.ts'
import { checkScopes, type ConnectionOptions, connect, KINDS, parseDuration, resolveId, roleOption, withConnection } from './common.ts'

type TokenView = Device['tokens'][number]

function tokenState (token: TokenView, now = Date.now()): string {
  if (token.revokedAtMs !== undefined) return `revoked ${time(token.revokedAtMs)}`
  if (token.expiresAtMs !== undefined && token.expiresAtMs <= now) return `expired ${time(token.expiresAtMs)}`
  return token.expiresAtMs === undefined ? 'active' : `active, expires ${time(token.expiresAtMs)}`
}

function roleScopes (device: Device): string {
  const roles = Object.keys(device.roleScopes)
  if (roles.length === 0) return list(device.scopes)
  return roles.map((role) => `${role}: ${list(device.roleScopes[role])}`).join('\n')
}

function describeDevice (device: Device): string {
  const summary = details([
    ['device', device.deviceId],
    ['name', device.displayName ?? '-'],
    ['platform', `${device.platform}${device.deviceFamily !== '' ? ` / ${device.deviceFamily}` : ''}`],
    ['roles', list(device.roles)],
    ['scopes', roleScopes(device)],
    ['public key', device.publicKey],
    ['paired', time(device.createdAtMs)],
    ['approved', time(device.approvedAtMs)],
    ['last seen', time(device.lastSeenAtMs)],
    ['token lifetime', device.tokenTtlMs === undefined ? 'server default' : device.tokenTtlMs === 0 ? 'never expires' : duration(device.tokenTtlMs)]
  ])
  if (device.tokens.length === 0) return summary + '\nno device tokens'
  const tokens = table(['TOKEN ROLE', 'SCOPES', 'STATE', 'CREATED', 'ROTATED'],
    device.tokens.map((token) => [token.role, list(token.scopes), tokenState(token), time(token.createdAtMs), time(token.rotatedAtMs)]))
  return `${summary}\n${tokens}`
}

async function getDevice (api: AdminApi, deviceId: string): Promise<Device> {
  return await api.request('GET', `/devices/${encodeURIComponent(deviceId)}`, Device, { notFoundHint: 'see `scopegate devices list`' })
}

/** Asks on the terminal; true only for y or yes. */
async function confirm (question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr })
  try {
    const answer = await rl.question(`${question} [y/N] `)
    return /^y(es)?$/i.test(answer.trim())
  } finally {
    rl.close()
  }
}

export function registerDevices (program: Command): void {
  const devices = program.command('devices')
    .description('paired devices: list, show, remove')

  withConnection(devices.command('list')
    .description('list paired devices (newest first)'))
    .action(async (opts: ConnectionOptions) => {
      const { api, out } = connect(opts)
      const items = await api.listAll('/devices', Device)
      if (items.length === 0 && !out.json) {
        out.message('no paired devices (`scopegate requests list` shows the ones waiting for approval)')
        return
      }
      const now = Date.now()
      out.result(items, () => table(['DEVICE', 'NAME', 'PLATFORM', 'SCOPES', 'TOKENS', 'LAST SEEN', 'PAIRED'], items.map((d) => [
        short(d.deviceId),
        d.displayName ?? '-',
        d.platform,
        roleScopes(d),
        d.tokens.length === 0 ? '-' : d.tokens.map((token) => `${token.role}: ${tokenState(token, now).split(',')[0] ?? ''}`).join('\n'),
        time(d.lastSeenAtMs),
        time(d.approvedAtMs)
      ])))
    })

  withConnection(devices.command('show')
    .description('show one paired device with its grants and tokens')
    .argument('<deviceId>', 'device id, or a unique prefix of at least 8 characters'))
    .action(async (id: string, opts: ConnectionOptions) => {
      const { api, out } = connect(opts)
      const device = await getDevice(api, await resolveId(api, KINDS.device, id))
      out.result(device, () => describeDevice(device))
    })

  withConnection(devices.command('remove')
    .description('remove a device: its connections close at once and it must pair again')
    .argument('<deviceId>', 'device id, or a unique prefix of at least 8 characters')
    .option('--yes', 'do not ask for confirmation (needed when not on a terminal)'))
    .action(async (id: string, opts: ConnectionOptions & { yes?: boolean }) => {
      const interactive = process.stdin.isTTY === true
      if (opts.yes !== true && !interactive) {
        throw new UsageError('not removing without confirmation: pass --yes to remove a device when not on a terminal')
      }
      const { api, out } = connect(opts)
      const deviceId = await resolveId(api, KINDS.device, id)
      if (opts.yes !== true) {
        const device = await getDevice(api, deviceId)
        const name = device.displayName !== undefined ? ` (${device.displayName}, ${device.platform})` : ` (${device.platform})`
        if (!await confirm(`remove device ${short(deviceId)}${name}? Its connections close and it must pair again.`)) {
          throw new CliError('nothing removed')
        }
      }
      const removed = await api.request('DELETE', `/devices/${encodeURIComponent(deviceId)}`, Removed, { notFoundHint: 'see `scopegate devices list`' })
      out.result(removed, () => `removed device ${short(removed.deviceId)}`)
    })
}

export function registerGrants (program: Command): void {
  const grants = program.command('grants')
    .description('the scopes a device is approved for: set, add, revoke')

  const change = (name: 'set' | 'add', method: 'PUT' | 'POST', description: string): void => {
    withConnection(grants.command(name))
      .description(description)
      .argument('<deviceId>', 'device id, or a unique prefix of at least 8 characters')
      .argument('<scope...>', 'one or more scopes, such as operator.read')
      .addOption(roleOption())
      .action(async (id: string, scopes: string[], opts: ConnectionOptions & { role: string }) => {
        const checked = checkScopes(scopes)
        const { api, out } = connect(opts)
        const deviceId = await resolveId(api, KINDS.device, id)
        const device = await api.request(method, `/devices/${encodeURIComponent(deviceId)}/roles/${encodeURIComponent(opts.role)}/scopes`, Device, {
          body: { scopes: checked },
          notFoundHint: `see \`scopegate devices show ${short(deviceId)}\``
        })
        out.result(device, () => `device ${short(device.deviceId)} ${opts.role}: ${list(device.roleScopes[opts.role])}`)
      })
  }
  change('set', 'PUT', 'set the approved scopes of a role exactly; connections left uncovered close')
  change('add', 'POST', 'add approved scopes to a role')

  withConnection(grants.command('revoke')
    .description('revoke one approved scope; connections using it close')
    .argument('<deviceId>', 'device id, or a unique prefix of at least 8 characters')
    .argument('<scope>', 'the scope to revoke')
    .addOption(roleOption()))
    .action(async (id: string, scope: string, opts: ConnectionOptions & { role: string }) => {
      checkScopes([scope])
      const { api, out } = connect(opts)
      const deviceId = await resolveId(api, KINDS.device, id)
      const device = await api.request('DELETE', `/devices/${encodeURIComponent(deviceId)}/roles/${encodeURIComponent(opts.role)}/scopes/${encodeURIComponent(scope)}`, Device, {
        notFoundHint: `see \`scopegate devices show ${short(deviceId)}\``
      })
      out.result(device, () => `device ${short(device.deviceId)} ${opts.role}: ${list(device.roleScopes[opts.role])}`)
    })
}

export function registerTokens (program: Command): void {
  const tokens = program.command('tokens')
    .description('device tokens: rotate, revoke, ttl')

  withConnection(tokens.command('rotate')
    .description('mint a new device token (printed only now); connections using the old one close')
    .argument('<deviceId>', 'device id, or a unique prefix of at least 8 characters')
    .addOption(roleOption()))
    .action(async (id: string, opts: ConnectionOptions & { role: string }) => {
      const { api, out } = connect(opts)
      const deviceId = await resolveId(api, KINDS.device, id)
      const rotated = await api.request('POST', `/devices/${encodeURIComponent(deviceId)}/tokens/${encodeURIComponent(opts.role)}/rotate`, RotatedToken, {
        body: {},
        notFoundHint: `see \`scopegate devices show ${short(deviceId)}\``
      })
      out.result(rotated, () => {
        out.message(`new ${rotated.role} token for device ${short(rotated.deviceId)} (${list(rotated.scopes)}${rotated.expiresAtMs !== undefined ? `, expires ${time(rotated.expiresAtMs)}` : ''}); it is shown only now`)
        return rotated.token
      })
    })

  withConnection(tokens.command('ttl')
    .description("set how long this device's tokens live, from their next mint or rotation")
    .argument('<deviceId>', 'device id, or a unique prefix of at least 8 characters')
    .argument('<lifetime>', 'a duration such as 12h or 90d, `never`, or `default` (DEVICE_TOKEN_TTL_MS)', parseLifetime))
    .action(async (id: string, ttlMs: number | null, opts: ConnectionOptions) => {
      const { api, out } = connect(opts)
      const deviceId = await resolveId(api, KINDS.device, id)
      const device = await api.request('PUT', `/devices/${encodeURIComponent(deviceId)}/token-ttl`, Device, {
        body: { ttlMs },
        notFoundHint: 'see `scopegate devices list`'
      })
      const lifetime = device.tokenTtlMs === undefined ? 'the server default (DEVICE_TOKEN_TTL_MS)' : device.tokenTtlMs === 0 ? 'never expire' : duration(device.tokenTtlMs)
      out.result(device, () => `tokens of device ${short(device.deviceId)} now live ${device.tokenTtlMs === 0 ? '' : 'for '}${lifetime} from their next mint; to apply it now: scopegate tokens rotate ${short(device.deviceId)}`)
    })

  withConnection(tokens.command('revoke')
    .description('revoke a device token; connections that logged in with it close')
    .argument('<deviceId>', 'device id, or a unique prefix of at least 8 characters')
    .addOption(roleOption()))
    .action(async (id: string, opts: ConnectionOptions & { role: string }) => {
      const { api, out } = connect(opts)
      const deviceId = await resolveId(api, KINDS.device, id)
      const revoked = await api.request('DELETE', `/devices/${encodeURIComponent(deviceId)}/tokens/${encodeURIComponent(opts.role)}`, RevokedToken, {
        notFoundHint: `see \`scopegate devices show ${short(deviceId)}\``
      })
      out.result(revoked, () => `revoked the ${revoked.role} token of device ${short(revoked.deviceId)}`)
    })
}

/** `never` (0), `default` (null: DEVICE_TOKEN_TTL_MS) or a positive duration. */
function parseLifetime (value: string): number | null {
  if (value === 'never') return 0
  if (value === 'default') return null
  return parseDuration(value)
}
