import type { JSX } from 'preact'
import { useCallback, useEffect, useMemo, useRef, useState } from 'preact/hooks'
import { Api, errorMessage } from './api.ts'
import { clearSession, loadSession, saveSession, type Session } from './auth.ts'
import { followEvents, type StreamStatus } from './events.ts'
import { shortId } from './format.ts'
import { EventsContext, type Listener } from './live.ts'
import { AuditPage } from './pages/audit.tsx'
import { CronPage } from './pages/cron.tsx'
import { DevicesPage } from './pages/devices.tsx'
import { RequestsPage } from './pages/requests.tsx'
import { SignIn } from './pages/sign-in.tsx'
import { onLinkClick, PAGES, useLocation, type PageName } from './router.ts'
import type { Page, PairingRequest } from './types.ts'
import { Flash, FlashContext, type FlashKind, type FlashMessage } from './ui.tsx'

export function App (): JSX.Element {
  const [session, setSession] = useState<Session | null>(loadSession)
  const [notice, setNotice] = useState<string | null>(null)
  const signOut = useCallback((why?: string) => {
    clearSession()
    setSession(null)
    setNotice(why ?? null)
  }, [])
  if (session === null) {
    return <SignIn notice={notice} onSignedIn={(next) => { saveSession(next); setNotice(null); setSession(next) }} />
  }
  return <Console key={session.token} session={session} onSignOut={signOut} />
}

const STATUS_TEXT: Record<StreamStatus, string> = { live: 'Live', connecting: 'Connecting…', offline: 'Reconnecting…' }

function Console ({ session, onSignOut }: { session: Session, onSignOut: (why?: string) => void }): JSX.Element {
  const api = useMemo(() => new Api(session.token, (message) => onSignOut(`Signed out: ${message}`)), [session.token, onSignOut])
  const canWrite = session.role === 'admin'
  const [status, setStatus] = useState<StreamStatus>('connecting')
  const [pending, setPending] = useState<PairingRequest[] | null>(null)
  const [pendingError, setPendingError] = useState<string | null>(null)
  const [flash, setFlash] = useState<FlashMessage | null>(null)
  const listeners = useRef(new Set<Listener>())
  const location = useLocation()

  const say = useCallback((text: string, kind: FlashKind = 'info') => setFlash({ id: Date.now(), text, kind }), [])
  // Confirmations fade after a while; errors stay until dismissed.
  useEffect(() => {
    if (flash === null || flash.kind === 'error') return
    const timer = setTimeout(() => setFlash((current) => current === flash ? null : current), 10_000)
    return () => clearTimeout(timer)
  }, [flash])

  const loadPending = useCallback(async () => {
    try {
      const page = await api.get<Page<PairingRequest>>('/pairing-requests?state=pending&limit=500')
      setPending(page.items)
      setPendingError(null)
    } catch (err) {
      setPendingError(errorMessage(err))
    }
  }, [api])

  const subscribe = useCallback((listener: Listener) => {
    listeners.current.add(listener)
    return () => { listeners.current.delete(listener) }
  }, [])

  useEffect(() => {
    void loadPending()
    return followEvents(session.token, {
      onStatus: setStatus,
      onUnauthorized: () => onSignOut('Your admin token expired or was refused: sign in again.'),
      onEvent: (event) => {
        switch (event.event) {
          case 'ready':
            // Whatever happened while we were away: reload, then follow the events.
            void loadPending()
            break
          case 'device.pair.requested': {
            const request = event.data
            setPending((list) => [request, ...(list ?? []).filter((r) => r.requestId !== request.requestId)].sort((a, b) => b.ts - a.ts))
            say(`New pairing request from device ${request.displayName ?? shortId(request.deviceId)} (${request.reason}).`)
            break
          }
          case 'device.pair.resolved':
            setPending((list) => list === null ? list : list.filter((r) => r.requestId !== event.data.requestId))
            break
        }
        for (const listener of listeners.current) listener(event)
      }
    })
  }, [session.token, loadPending, onSignOut, say])

  // A new page: move focus to its heading, so keyboard and screen-reader users land on it.
  const mainRef = useRef<HTMLElement>(null)
  const first = useRef(true)
  useEffect(() => {
    const title = PAGES.find((p) => p.page === location.page)?.title ?? 'Not found'
    document.title = `${title} · scopegate console`
    if (first.current) {
      first.current = false
      return
    }
    mainRef.current?.querySelector<HTMLElement>('h1')?.focus()
  }, [location.page])

  const count = pending?.length ?? 0
  return (
    <EventsContext.Provider value={subscribe}>
      <FlashContext.Provider value={say}>
        <a class="skip-link" href="#main">Skip to content</a>
        <header class="topbar">
          <div class="topbar-inner">
            <p class="brand">scopegate <span>console</span></p>
            <p class={`live live-${status}`} data-testid="stream-status"><span class="dot" aria-hidden="true" />{STATUS_TEXT[status]}</p>
            <div class="who">
              <span>Signed in as <strong>{session.sub}</strong>{session.role === 'viewer' && ' (viewer, read only)'}</span>
              <button type="button" class="button-secondary button-small" onClick={() => onSignOut('Signed out.')}>Sign out</button>
            </div>
          </div>
          <nav class="nav" aria-label="Console pages">
            <ul>
              {PAGES.map((p) => (
                <li key={p.page}>
                  <a href={p.path} onClick={onLinkClick} aria-current={location.page === p.page ? 'page' : undefined}>
                    {p.label}
                    {p.page === 'requests' && count > 0 && <span class="count" aria-label={`${count} pending`}>{count}</span>}
                  </a>
                </li>
              ))}
            </ul>
          </nav>
        </header>
        <Flash message={flash} onDismiss={() => setFlash(null)} />
        <main id="main" ref={mainRef} tabIndex={-1} class="main">
          <CurrentPage page={location.page} search={location.search} api={api} canWrite={canWrite} pending={pending} pendingError={pendingError} reloadPending={loadPending} />
        </main>
      </FlashContext.Provider>
    </EventsContext.Provider>
  )
}

interface PageProps {
  page: PageName
  search: URLSearchParams
  api: Api
  canWrite: boolean
  pending: PairingRequest[] | null
  pendingError: string | null
  reloadPending: () => Promise<void>
}

function CurrentPage ({ page, search, api, canWrite, pending, pendingError, reloadPending }: PageProps): JSX.Element {
  switch (page) {
    case 'requests': return <RequestsPage api={api} canWrite={canWrite} pending={pending} error={pendingError} reload={reloadPending} />
    case 'devices': return <DevicesPage api={api} canWrite={canWrite} />
    case 'cron': return <CronPage api={api} />
    case 'audit': return <AuditPage api={api} search={search} />
    case 'not-found': return (
      <section>
        <h1 tabIndex={-1}>Page not found</h1>
        <p>There is no console page at this address. <a href="/console/" onClick={onLinkClick}>Go to the pairing requests</a>.</p>
      </section>
    )
  }
}
