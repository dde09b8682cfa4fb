import type { JSX } from 'preact'
import { useEffect, useState } from 'preact/hooks'
import { errorMessage, query, type Api } from '../api.ts'
import { navigate } from '../router.ts'
import { AUDIT_ACTIONS, type AuditEntry, type Page } from '../types.ts'
import { Id, Time, useNow } from '../ui.tsx'

const PAGE_SIZE = 50

/** The audit log; the filters live in the page's query string (?deviceId=&action=), so a filtered view can be linked. */
export function AuditPage ({ api, search }: { api: Api, search: URLSearchParams }): JSX.Element {
  const deviceId = search.get('deviceId') ?? ''
  const action = search.get('action') ?? ''
  const [draftDevice, setDraftDevice] = useState(deviceId)
  const [draftAction, setDraftAction] = useState(action)
  const [entries, setEntries] = useState<AuditEntry[] | null>(null)
  const [cursor, setCursor] = useState<string | null>(null)
  const [error, setError] = useState<string | null>(null)
  const [reload, setReload] = useState(0)
  const now = useNow()

  useEffect(() => {
    setDraftDevice(deviceId)
    setDraftAction(action)
    setEntries(null)
    let live = true
    api.get<Page<AuditEntry>>(`/audit${query({ deviceId, action, limit: PAGE_SIZE })}`).then(
      (page) => { if (live) { setEntries(page.items); setCursor(page.nextCursor); setError(null) } },
      (err: unknown) => { if (live) setError(errorMessage(err)) }
    )
    return () => { live = false }
  }, [api, deviceId, action, reload])

  const more = async (): Promise<void> => {
    if (cursor === null) return
    try {
      const page = await api.get<Page<AuditEntry>>(`/audit${query({ deviceId, action, limit: PAGE_SIZE, cursor })}`)
      setEntries([...(entries ?? []), ...page.items])
      setCursor(page.nextCursor)
    } catch (err) {
      setError(errorMessage(err))
    }
  }

  const apply = (event: Event): void => {
    event.preventDefault()
    navigate(`/console/audit${query({ deviceId: draftDevice.trim(), action: draftAction })}`, true)
    setReload((r) => r + 1)
  }

  const filtered = deviceId !== '' || action !== ''
  return (
    <section aria-labelledby="page-title">
      <div class="page-head">
        <h1 id="page-title" tabIndex={-1}>Audit log</h1>
      </div>
      <p class="lede">Every pairing decision, grant, token and cron change, newest first, with who made it.</p>
      <form class="toolbar filters" onSubmit={apply} role="search" aria-label="Filter the audit log">
        <div class="field">
          <label for="audit-device">Device id</label>
          <input id="audit-device" name="deviceId" type="text" inputMode="text" autoComplete="off" spellcheck={false}
            placeholder="full 64-hex device id" value={draftDevice} onInput={(e) => setDraftDevice(e.currentTarget.value)} />
        </div>
        <div class="field">
          <label for="audit-action">Action</label>
          <select id="audit-action" name="action" value={draftAction} onChange={(e) => setDraftAction(e.currentTarget.value)}>
            <option value="">Any action</option>
            {AUDIT_ACTIONS.map((a) => <option key={a} value={a}>{a}</option>)}
          </select>
        </div>
        <div class="field-buttons">
          <button type="submit" class="button-primary">Apply filters</button>
          {filtered && <button type="button" class="button-secondary" onClick={() => { setDraftDevice(''); setDraftAction(''); navigate('/console/audit', true) }}>Clear</button>}
        </div>
      </form>
      {error !== null && <p class="error" role="alert">Could not load the audit log: {error}</p>}
      {entries === null && error === null && <p class="muted">Loading…</p>}
      {entries?.length === 0 && <p class="empty">{filtered ? 'No entries match these filters.' : 'The audit log is empty.'}</p>}
      {entries !== null && entries.length > 0 && (
        <table class="table responsive audit" data-testid="audit-table">
          <caption class="sr-only">Audit entries{filtered ? ', filtered' : ''}</caption>
          <thead><tr><th scope="col">When</th><th scope="col">Action</th><th scope="col">Actor</th><th scope="col">Device</th><th scope="col">Details</th></tr></thead>
          <tbody>
            {entries.map((entry) => (
              <tr key={entry.id} data-action={entry.action}>
                <td data-label="When"><Time ms={entry.atMs} now={now} /></td>
                <td data-label="Action"><span class="mono">{entry.action}</span></td>
                <td data-label="Actor">{/^[0-9a-f]{64}$/.test(entry.actor) ? <Id id={entry.actor} label="device" /> : entry.actor}</td>
                <td data-label="Device">{entry.deviceId === undefined ? <span class="muted">—</span> : <Id id={entry.deviceId} label="device" />}</td>
                <td data-label="Details"><code class="details">{describeDetails(entry)}</code></td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {cursor !== null && entries !== null && <button type="button" class="button-secondary" onClick={() => { void more() }}>Load older entries</button>}
    </section>
  )
}

function describeDetails (entry: AuditEntry): string {
  const parts = Object.entries(entry.details).map(([key, value]) => `${key}: ${Array.isArray(value) ? value.join(', ') : typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value)}`)
  if (entry.requestId !== undefined) parts.unshift(`request ${entry.requestId.slice(0, 8)}`)
  return parts.join(' · ') || '—'
}
