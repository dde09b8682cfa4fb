import type { JSX } from 'preact'
import { useState } from 'preact/hooks'
import type { Api } from '../api.ts'
import { enc, errorMessage } from '../api.ts'
import { REASONS, shortId } from '../format.ts'
import type { PairedDevice, PairingRequest } from '../types.ts'
import { Time, useConfirm, useFlash, useNow } from '../ui.tsx'

/** Scopes that let a device act as an admin or approve others: worth a second look. */
const PRIVILEGED = new Set(['operator.admin', 'operator.pairing'])

interface Props {
  api: Api
  canWrite: boolean
  pending: PairingRequest[] | null
  error: string | null
  reload: () => Promise<void>
}

export function RequestsPage ({ api, canWrite, pending, error, reload }: Props): JSX.Element {
  const now = useNow(5000)
  return (
    <section aria-labelledby="page-title">
      <div class="page-head">
        <h1 id="page-title" tabIndex={-1}>Pairing requests</h1>
        <button type="button" class="button-secondary button-small" onClick={() => { void reload() }}>Refresh</button>
      </div>
      <p class="lede">Devices that were refused at connect and wait for a decision. New requests appear here as they arrive.</p>
      {error !== null && <p class="error" role="alert">Could not load the requests: {error}</p>}
      {pending === null && error === null && <p class="muted">Loading…</p>}
      {pending?.length === 0 && <p class="empty" data-testid="no-requests">No pending requests.</p>}
      <div class="cards">
        {pending?.map((request) => <RequestCard key={request.requestId} api={api} canWrite={canWrite} request={request} now={now} />)}
      </div>
    </section>
  )
}

/** A scope name that may wrap after its dots (and only there) on a narrow screen. */
function ScopeName ({ scope }: { scope: string }): JSX.Element {
  return <>{scope.split('.').flatMap((part, i) => i === 0 ? [part] : ['.', <wbr key={i} />, part])}</>
}

function RequestCard ({ api, canWrite, request, now }: { api: Api, canWrite: boolean, request: PairingRequest, now: number }): JSX.Element {
  const [grant, setGrant] = useState<ReadonlySet<string>>(() => new Set(request.scopes))
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<string | null>(null)
  const [confirm, dialog] = useConfirm()
  const flash = useFlash()
  const name = request.displayName ?? shortId(request.deviceId)
  const titleId = `request-${request.requestId}`
  const rows = [...request.scopes, ...request.approvedScopes.filter((scope) => !request.scopes.includes(scope))]
  const chosen = request.scopes.filter((scope) => grant.has(scope))

  const toggle = (scope: string, on: boolean): void => {
    const next = new Set(grant)
    if (on) next.add(scope)
    else next.delete(scope)
    setGrant(next)
  }

  const approve = async (): Promise<void> => {
    setBusy(true)
    setError(null)
    try {
      await api.post<{ requestId: string, device: PairedDevice }>(`/pairing-requests/${enc(request.requestId)}/approve`, { scopes: chosen })
      flash(`Approved device ${name} for ${chosen.join(', ')}.`, 'ok')
    } catch (err) {
      setError(errorMessage(err))
    } finally {
      setBusy(false)
    }
  }

  const reject = async (): Promise<void> => {
    const ok = await confirm({
      title: 'Reject this request?',
      body: <p>Device <code>{name}</code> stays refused for {request.scopes.join(', ')}. It can ask again by connecting again.</p>,
      confirmLabel: 'Reject request',
      danger: true
    })
    if (!ok) return
    setBusy(true)
    setError(null)
    try {
      await api.post(`/pairing-requests/${enc(request.requestId)}/reject`)
      flash(`Rejected the request from device ${name}.`, 'ok')
    } catch (err) {
      setError(errorMessage(err))
    } finally {
      setBusy(false)
    }
  }

  return (
    <article class="card request" aria-labelledby={titleId} data-request-id={request.requestId}>
      <header class="card-head">
        <h2 id={titleId}>Device <span class="mono">{name}</span></h2>
        <span class={`badge reason reason-${request.reason}`} data-testid="reason">{request.reason}</span>
        {request.isRepair && <span class="badge">already paired</span>}
      </header>
      <p class="muted">{REASONS[request.reason] ?? 'The device asked for more than it was approved for.'}</p>
      <dl class="facts">
        <div><dt>Device id</dt><dd><code class="wrap">{request.deviceId}</code></dd></div>
        <div><dt>Client</dt><dd>{request.clientId} ({request.clientMode})</dd></div>
        <div><dt>Platform</dt><dd>{request.platform === '' ? '—' : request.platform}{request.deviceFamily !== '' && ` · ${request.deviceFamily}`}</dd></div>
        <div><dt>Role</dt><dd>{request.role}{request.roles.length > 1 && ` (pairs ${request.roles.join(', ')})`}</dd></div>
        <div><dt>Asked</dt><dd><Time ms={request.ts} now={now} /></dd></div>
        <div><dt>Expires</dt><dd><Time ms={request.expiresAtMs} now={now} /></dd></div>
      </dl>
      <table class="scope-table">
        <caption>Scopes: requested versus already approved{canWrite && '. Untick a requested scope to approve without it.'}</caption>
        <thead>
          <tr><th scope="col">Scope</th><th scope="col">Requested</th><th scope="col">Approved now</th></tr>
        </thead>
        <tbody>
          {rows.map((scope) => {
            const requested = request.scopes.includes(scope)
            const approved = request.approvedScopes.includes(scope)
            const id = `${request.requestId}-${scope}`
            return (
              <tr key={scope} class={requested && !grant.has(scope) ? 'left-out' : undefined}>
                <th scope="row">
                  {requested && canWrite
                    ? <label for={id} class="mono"><ScopeName scope={scope} /></label>
                    : <span class="mono"><ScopeName scope={scope} /></span>}
                  {PRIVILEGED.has(scope) && <span class="badge badge-warn">privileged</span>}
                </th>
                <td>
                  {requested
                    ? canWrite
                      ? <span class="check"><input id={id} type="checkbox" checked={grant.has(scope)} disabled={busy} onChange={(e) => toggle(scope, e.currentTarget.checked)} data-scope={scope} /><span aria-hidden="true">{grant.has(scope) ? 'grant' : 'leave out'}</span></span>
                      : 'yes'
                    : <span class="muted">not asked</span>}
                </td>
                <td>{approved ? <span class="yes">✓ approved</span> : <span class="muted">—</span>}</td>
              </tr>
            )
          })}
        </tbody>
      </table>
      {error !== null && <p class="error" role="alert">{error}</p>}
      {canWrite && (
        <div class="actions">
          <button type="button" class="button-primary" disabled={busy || chosen.length === 0} onClick={() => { void approve() }} data-action="approve">
            {chosen.length === request.scopes.length ? 'Approve' : `Approve ${chosen.length} of ${request.scopes.length} scopes`}
          </button>
          <button type="button" class="button-danger-outline" disabled={busy} onClick={() => { void reject() }} data-action="reject">Reject…</button>
          {chosen.length === 0 && <p class="help">Tick at least one scope to approve.</p>}
        </div>
      )}
      {dialog}
    </article>
  )
}
