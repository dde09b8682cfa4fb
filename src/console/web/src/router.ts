import { useEffect, useState } from 'preact/hooks'

export const BASE = '/console'

export type PageName = 'requests' | 'devices' | 'cron' | 'audit' | 'not-found'

export const PAGES: ReadonlyArray<{ page: Exclude<PageName, 'not-found'>, path: string, label: string, title: string }> = [
  { page: 'requests', path: `${BASE}/`, label: 'Requests', title: 'Pairing requests' },
  { page: 'devices', path: `${BASE}/devices`, label: 'Devices', title: 'Devices' },
  { page: 'cron', path: `${BASE}/cron`, label: 'Cron', title: 'Cron jobs' },
  { page: 'audit', path: `${BASE}/audit`, label: 'Audit', title: 'Audit log' }
]

export interface Location {
  page: PageName
  search: URLSearchParams
}

function current (): Location {
  const path = window.location.pathname.replace(/\/+$/, '')
  const found = PAGES.find((p) => p.path.replace(/\/+$/, '') === path)
  const page = found?.page ?? (path === BASE ? 'requests' : 'not-found')
  return { page, search: new URLSearchParams(window.location.search) }
}

const CHANGE = 'console:navigate'

/** Moves to a console path without a reload (history API). */
export function navigate (href: string, replace = false): void {
  if (replace) window.history.replaceState(null, '', href)
  else window.history.pushState(null, '', href)
  window.dispatchEvent(new Event(CHANGE))
}

export function useLocation (): Location {
  const [location, setLocation] = useState(current)
  useEffect(() => {
    const update = (): void => setLocation(current())
    window.addEventListener('popstate', update)
    window.addEventListener(CHANGE, update)
    return () => {
      window.removeEventListener('popstate', update)
      window.removeEventListener(CHANGE, update)
    }
  }, [])
  return location
}

/** For <a onClick>: follow console links in place; let modified clicks open tabs as usual. */
export function onLinkClick (event: MouseEvent): void {
  const anchor = event.currentTarget
  if (!(anchor instanceof HTMLAnchorElement)) return
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return
  event.preventDefault()
  navigate(anchor.pathname + anchor.search)
}
