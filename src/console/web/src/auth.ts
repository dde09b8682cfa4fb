// The admin JWT lives in sessionStorage only (gone when the tab closes) and
// travels in the Authorization header only: never in a URL, never in a cookie.

const KEY = 'scopegate.adminToken'

export type AdminRole = 'admin' | 'viewer'

export interface Session {
  token: string
  sub: string
  role: AdminRole
  /** Expiry, ms since epoch, when the token has one. */
  expiresAtMs?: number
}

function base64UrlJson (part: string): unknown {
  const base64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=')
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))
  return JSON.parse(new TextDecoder().decode(bytes))
}

/**
 * Reads the claims the console shows (who, which role, until when). The
 * server verifies the signature on every request; this only rejects what is
 * plainly not an admin token.
 */
export function readToken (token: string): Session | string {
  const parts = token.split('.')
  if (parts.length !== 3 || parts.some((part) => !/^[A-Za-z0-9_-]+$/.test(part))) return 'That is not a JWT: paste the whole output of scopegate admin-token.'
  let claims: unknown
  try {
    claims = base64UrlJson(parts[1] ?? '')
  } catch {
    return 'That token cannot be read: paste the whole output of scopegate admin-token.'
  }
  if (typeof claims !== 'object' || claims === null) return 'That token has no claims.'
  const { sub, role, exp } = claims as Record<string, unknown>
  if (typeof sub !== 'string' || (role !== 'admin' && role !== 'viewer')) return 'That is not an admin token (it needs a sub and a role of admin or viewer).'
  const session: Session = { token, sub, role }
  if (typeof exp === 'number') {
    if (exp * 1000 <= Date.now()) return 'That token has expired: make a new one with scopegate admin-token.'
    session.expiresAtMs = exp * 1000
  }
  return session
}

export function loadSession (): Session | null {
  const token = sessionStorage.getItem(KEY)
  if (token === null) return null
  const session = readToken(token)
  if (typeof session === 'string') {
    sessionStorage.removeItem(KEY)
    return null
  }
  return session
}

export function saveSession (session: Session): void {
  sessionStorage.setItem(KEY, session.token)
}

export function clearSession (): void {
  sessionStorage.removeItem(KEY)
}
