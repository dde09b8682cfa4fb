import type { JSX } from 'preact'
import { useCallback, useEffect, useRef, useState } from 'preact/hooks'
import { enc, errorMessage, query, type Api } from '../api.ts'
import { duration, shortId } from '../format.ts'
import { useAdminEvents } from '../live.ts'
import { onLinkClick } from '../router.ts'
import type { DeviceToken, Page, PairedDevice, RotatedToken } from '../types.ts'
import { SecretDialog, Time, useConfirm, useFlash, useNow } from '../ui.tsx'

const WINDOWS: ReadonlyArray<[number, string]> = [
  [3_600_000, '1 hour'],
  [86_400_000, '1 day'],
  [7 * 86_400_000, '7 days'],
  [30 * 86_400_000, '30 days']
]

interface Loaded {
  devices: PairedDevice[]
  nextCursor: string | null
  /** Devices with a token expiring within the chosen window (GET /devices?tokensExpiringWithinMs=N). */
  expiring: ReadonlySet<string>
}

export function DevicesPage ({ api, canWrite }: { api: Api, canWrite: boolean }): JSX.Element {
  const [windowMs, setWindowMs] = useState(7 * 86_400_000)
  const [onlyExpiring, setOnlyExpiring] = useState(false)
  const [loaded, setLoaded] = useState<Loaded | null>(null)
  const [error, setError] = useState<string | null>(null)
  const [secret, setSecret] = useState<{ device: string, rotated: RotatedToken } | null>(null)
  const now = useNow()

  const load = useCallback(async () => {
    try {
      const [all, expiring] = await Promise.all([
        api.get<Page<PairedDevice>>('/devices?limit=200'),
        api.get<Page<PairedDevice>>(`/devices${query({ tokensExpiringWithinMs: windowMs, limit: 500 })}`)
      ])
      setLoaded({ devices: all.items, nextCursor: all.nextCursor, expiring: new Set(expiring.items.map((d) => d.deviceId)) })
      setError(null)
    } catch (err) {
      setError(errorMessage(err))
    }
  }, [api, windowMs])

  const loadMore = async (): Promise<void> => {
    if (loaded?.nextCursor == null) return
    try {
      const page = await api.get<Page<PairedDevice>>(`/devices${query({ limit: 200, cursor: loaded.nextCursor })}`)
      setLoaded({ ...loaded, devices: [...loaded.devices, ...page.items], nextCursor: page.nextCursor })
    } catch (err) {
      setError(errorMessage(err))
    }
  }

  useEffect(() => { void load() }, [load])

  // Changes made anywhere (this console, the CLI, another instance) arrive as events: reload, at most every 300 ms.
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined)
  useAdminEvents((event) => {
    const relevant = event.event === 'device.changed' || event.event === 'ready' || (event.event === 'device.pair.resolved' && event.data.decision === 'approved')
    if (!relevant) return
    clearTimeout(timer.current)
    timer.current = setTimeout(() => { void load() }, 300)
  })
  useEffect(() => () => clearTimeout(timer.current), [])

  const shown = loaded === null ? [] : onlyExpiring ? loaded.devices.filter((d) => loaded.expiring.has(d.deviceId)) : loaded.devices
  const windowLabel = WINDOWS.find(([ms]) => ms === windowMs)?.[1] ?? duration(windowMs)

  return (
    <section aria-labelledby="page-title">
      <div class="page-head">
        <h1 id="page-title" tabIndex={-1}>Devices</h1>
        <button type="button" class="button-secondary button-small" onClick={() => { void load() }}>Refresh</button>
      </div>
      <p class="lede">Paired devices, the scopes each role holds, and their device tokens.</p>
      <form class="toolbar" onSubmit={(e) => e.preventDefault()}>
        <div class="field field-inline">
          <label for="expiring-window">Highlight tokens expiring within</label>
          <select id="expiring-window" value={String(windowMs)} onChange={(e) => setWindowMs(Number(e.currentTarget.value))}>
            {WINDOWS.map(([ms, label]) => <option key={ms} value={String(ms)}>{label}</option>)}
          </select>
        </div>
        <label class="check">
          <input type="checkbox" checked={onlyExpiring} onChange={(e) => setOnlyExpiring(e.currentTarget.checked)} />
          <span>Only devices with such a token</span>
        </label>
      </form>
      {loaded !== null && (
        <p class="summary" data-testid="expiring-summary">
          {loaded.expiring.size === 0
            ? `No device has a token expiring within ${windowLabel}.`
            : `${loaded.expiring.size} ${loaded.expiring.size === 1 ? 'device has' : 'devices have'} a token expiring within ${windowLabel}.`}
        </p>
      )}
      {error !== null && <p class="error" role="alert">Could not load the devices: {error}</p>}
      {loaded === null && error === null && <p class="muted">Loading…</p>}
      {loaded !== null && shown.length === 0 && <p class="empty">{onlyExpiring ? 'No device matches.' : 'No paired devices yet.'}</p>}
      <div class="cards">
        {shown.map((device) => (
          <DeviceCard key={device.deviceId} api={api} canWrite={canWrite} device={device} now={now} windowMs={windowMs}
            expiring={loaded?.expiring.has(device.deviceId) === true} onChanged={load}
            onRotated={(rotated) => setSecret({ device: device.displayName ?? shortId(device.deviceId), rotated })} />
        ))}
      </div>
      {loaded?.nextCursor != null && <button type="button" class="button-secondary" onClick={() => { void loadMore() }}>Load more devices</button>}
      {secret !== null && (
        <SecretDialog
          title="New device token"
          secret={secret.rotated.token}
          onClose={() => setSecret(null)}
          intro={<p>The new <strong>{secret.rotated.role}</strong> token of device <code>{secret.device}</code>. It is shown <strong>only this once</strong>: give it to the device now. Connections that used the old token were closed.</p>}
        />
      )}
    </section>
  )
}

interface CardProps {
  api: Api
  canWrite: boolean
  device: PairedDevice
  now: number
  windowMs: number
  expiring: boolean
  onChanged: () => Promise<void>
  onRotated: (rotated: RotatedToken) => void
}

function DeviceCard ({ api, canWrite, device, now, windowMs, expiring, onChanged, onRotated }: CardProps): JSX.Element {
  const [confirm, dialog] = useConfirm()
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<string | null>(null)
  const flash = useFlash()
  const name = device.displayName ?? shortId(device.deviceId)
  const titleId = `device-${device.deviceId}`
  const base = `/devices/${enc(device.deviceId)}`

  const act = async (done: string, run: () => Promise<void>): Promise<void> => {
    setBusy(true)
    setError(null)
    try {
      await run()
      flash(done, 'ok')
      await onChanged()
    } catch (err) {
      setError(errorMessage(err))
    } finally {
      setBusy(false)
    }
  }

  const revokeScope = async (role: string, scope: string): Promise<void> => {
    const ok = await confirm({
      title: `Revoke ${scope}?`,
      body: <p>Device <code>{name}</code> loses <code>{scope}</code> for role <strong>{role}</strong>. Its connections that use it close at once with <code>scope revoked ({scope})</code>.</p>,
      confirmLabel: 'Revoke scope',
      danger: true
    })
    if (ok) await act(`Revoked ${scope} from device ${name}.`, async () => { await api.delete(`${base}/roles/${enc(role)}/scopes/${enc(scope)}`) })
  }

  const rotate = async (role: string): Promise<void> => {
    const ok = await confirm({
      title: `Rotate the ${role} token?`,
      body: <p>A new token is made for device <code>{name}</code> and shown once. Connections that logged in with the current one close (<code>device token revoked</code>).</p>,
      confirmLabel: 'Rotate token'
    })
    if (ok) {
      await act(`Rotated the ${role} token of device ${name}.`, async () => {
        onRotated(await api.post<RotatedToken>(`${base}/tokens/${enc(role)}/rotate`))
      })
    }
  }

  const revokeToken = async (role: string): Promise<void> => {
    const ok = await confirm({
      title: `Revoke the ${role} token?`,
      body: <p>Connections of device <code>{name}</code> that logged in with it close (<code>device token revoked</code>). The device gets a new token at its next connect with the gateway token.</p>,
      confirmLabel: 'Revoke token',
      danger: true
    })
    if (ok) await act(`Revoked the ${role} token of device ${name}.`, async () => { await api.delete(`${base}/tokens/${enc(role)}`) })
  }

  const remove = async (): Promise<void> => {
    const ok = await confirm({
      title: 'Remove this device?',
      body: <p>Device <code>{name}</code> loses every role and token; its connections close (<code>device removed</code>) and it has to pair again.</p>,
      confirmLabel: 'Remove device',
      danger: true
    })
    if (ok) await act(`Removed device ${name}.`, async () => { await api.delete(base) })
  }

  return (
    <article class={`card device${expiring ? ' device-expiring' : ''}`} aria-labelledby={titleId} data-device-id={device.deviceId}>
      <header class="card-head">
        <h2 id={titleId}>Device <span class="mono">{name}</span></h2>
        {expiring && <span class="badge badge-warn">token expiring soon</span>}
      </header>
      <dl class="facts">
        <div><dt>Device id</dt><dd><code class="wrap">{device.deviceId}</code></dd></div>
        <div><dt>Platform</dt><dd>{device.platform === '' ? '—' : device.platform}{device.deviceFamily !== '' && ` · ${device.deviceFamily}`}</dd></div>
        <div><dt>Paired</dt><dd><Time ms={device.createdAtMs} now={now} /></dd></div>
        <div><dt>Last approved</dt><dd><Time ms={device.approvedAtMs} now={now} /></dd></div>
        <div><dt>Last seen</dt><dd>{device.lastSeenAtMs === undefined ? <span class="muted">never</span> : <Time ms={device.lastSeenAtMs} now={now} />}</dd></div>
      </dl>

      <h3>Roles and scopes</h3>
      {Object.entries(device.roleScopes).map(([role, scopes]) => (
        <div class="role" key={role}>
          <p class="role-name">{role}</p>
          {scopes.length === 0
            ? <p class="muted">no scopes</p>
            : (
              <ul class="chips">
                {scopes.map((scope) => (
                  <li key={scope} class="chip" data-scope={scope}>
                    <span>{scope}</span>
                    {canWrite && (
                      <button type="button" class="chip-remove" disabled={busy} onClick={() => { void revokeScope(role, scope) }}
                        aria-label={`Revoke ${scope} from role ${role}`} title={`Revoke ${scope}`} data-action="revoke-scope">×</button>
                    )}
                  </li>
                ))}
              </ul>
              )}
        </div>
      ))}

      <h3>Tokens</h3>
      {device.tokens.length === 0
        ? <p class="muted">No token yet: one is minted at the device's next successful connect.</p>
        : (
          <table class="table responsive tokens">
            <thead><tr><th scope="col">Role</th><th scope="col">Scopes</th><th scope="col">Issued</th><th scope="col">Expires</th>{canWrite && <th scope="col"><span class="sr-only">Actions</span></th>}</tr></thead>
            <tbody>
              {device.tokens.map((token) => (
                <TokenRow key={token.role} token={token} now={now} windowMs={windowMs} canWrite={canWrite} busy={busy}
                  onRotate={() => { void rotate(token.role) }} onRevoke={() => { void revokeToken(token.role) }} />
              ))}
            </tbody>
          </table>
          )}

      {error !== null && <p class="error" role="alert">{error}</p>}
      <div class="actions">
        <a class="button-secondary button-small" href={`/console/audit${query({ deviceId: device.deviceId })}`} onClick={onLinkClick}>Audit log</a>
        {canWrite && <button type="button" class="button-danger-outline button-small" disabled={busy} onClick={() => { void remove() }} data-action="remove-device">Remove device…</button>}
      </div>
      {dialog}
    </article>
  )
}

function TokenRow ({ token, now, windowMs, canWrite, busy, onRotate, onRevoke }: {
  token: DeviceToken, now: number, windowMs: number, canWrite: boolean, busy: boolean, onRotate: () => void, onRevoke: () => void
}): JSX.Element {
  const revoked = token.revokedAtMs !== undefined
  const expired = !revoked && token.expiresAtMs !== undefined && token.expiresAtMs <= now
  const soon = !revoked && !expired && token.expiresAtMs !== undefined && token.expiresAtMs - now <= windowMs
  return (
    <tr class={soon ? 'row-warn' : revoked || expired ? 'row-dim' : undefined} data-token-role={token.role}>
      <td data-label="Role">{token.role}</td>
      <td data-label="Scopes">{token.scopes.join(', ') || '—'}</td>
      <td data-label="Issued"><Time ms={token.rotatedAtMs ?? token.createdAtMs} now={now} />{token.rotatedAtMs !== undefined && ' (rotated)'}</td>
      <td data-label="Expires">
        {revoked && token.revokedAtMs !== undefined
          ? <span class="badge">revoked <Time ms={token.revokedAtMs} now={now} /></span>
          : token.expiresAtMs === undefined
            ? <span class="muted">never</span>
            : <><Time ms={token.expiresAtMs} now={now} />{expired && <span class="badge badge-danger">expired</span>}{soon && <span class="badge badge-warn" data-testid="expiring-soon">soon</span>}</>}
      </td>
      {canWrite && (
        <td data-label="Actions">
          <div class="row-buttons">
            <button type="button" class="button-secondary button-small" disabled={busy} onClick={onRotate} data-action="rotate-token" aria-label={`Rotate the ${token.role} token`}>Rotate…</button>
            <button type="button" class="button-danger-outline button-small" disabled={busy || revoked} onClick={onRevoke} data-action="revoke-token" aria-label={`Revoke the ${token.role} token`}>Revoke…</button>
          </div>
        </td>
      )}
    </tr>
  )
}
