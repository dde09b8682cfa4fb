import type { JSX } from 'preact'
import { useEffect, useRef, useState } from 'preact/hooks'
import { Api, ApiError, errorMessage } from '../api.ts'
import { readToken, type Session } from '../auth.ts'

export function SignIn ({ notice, onSignedIn }: { notice: string | null, onSignedIn: (session: Session) => void }): JSX.Element {
  const [token, setToken] = useState('')
  const [error, setError] = useState<string | null>(null)
  const [busy, setBusy] = useState(false)
  const inputRef = useRef<HTMLInputElement>(null)
  useEffect(() => {
    document.title = 'Sign in · scopegate console'
    inputRef.current?.focus()
  }, [])

  const submit = async (event: Event): Promise<void> => {
    // Never let the browser submit the form: the token must not end up in a URL or a request body it logs.
    event.preventDefault()
    const session = readToken(token.trim())
    if (typeof session === 'string') {
      setError(session)
      inputRef.current?.focus()
      return
    }
    setBusy(true)
    setError(null)
    try {
      // One cheap read proves the server accepts the token before we keep it.
      await new Api(session.token, () => {}).get('/pairing-requests?limit=1')
      onSignedIn(session)
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? `The server refused this token: ${err.message}` : errorMessage(err))
      inputRef.current?.focus()
    } finally {
      setBusy(false)
    }
  }

  return (
    <main id="main" class="signin">
      <div class="card signin-card">
        <h1>scopegate console</h1>
        {notice !== null && <p class="notice" role="status">{notice}</p>}
        <form method="post" action="#" onSubmit={(event) => { void submit(event) }} noValidate>
          <div class="field">
            <label for="admin-token">Admin token</label>
            <input
              ref={inputRef}
              id="admin-token"
              name="admin-token"
              type="password"
              autoComplete="off"
              spellcheck={false}
              value={token}
              onInput={(event) => setToken(event.currentTarget.value)}
              aria-describedby={error === null ? 'admin-token-help' : 'admin-token-help admin-token-error'}
              aria-invalid={error !== null}
              required
            />
            <p id="admin-token-help" class="help">
              On the gateway host, run <code>scopegate admin-token</code> (add <code>--role viewer</code> for read-only access) and paste what it prints.
              The token is kept in this tab's session storage only and sent in the Authorization header, never in a URL.
            </p>
            {error !== null && <p id="admin-token-error" class="error" role="alert">{error}</p>}
          </div>
          <button type="submit" class="button-primary" disabled={busy}>{busy ? 'Checking…' : 'Sign in'}</button>
        </form>
      </div>
    </main>
  )
}
