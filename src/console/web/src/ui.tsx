import type { ComponentChildren, JSX } from 'preact'
import { createContext } from 'preact'
import { useCallback, useContext, useEffect, useRef, useState } from 'preact/hooks'
import { absTime, relTime, shortId } from './format.ts'

/** Re-renders every `intervalMs` so relative times stay true. */
export function useNow (intervalMs = 15_000): number {
  const [now, setNow] = useState(Date.now())
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), intervalMs)
    return () => clearInterval(timer)
  }, [intervalMs])
  return now
}

export function Time ({ ms, now }: { ms: number, now: number }): JSX.Element {
  return <time dateTime={new Date(ms).toISOString()} title={absTime(ms)}>{relTime(ms, now)}</time>
}

/** A shortened id with the full one in a tooltip and for screen readers. */
export function Id ({ id, label }: { id: string, label?: string }): JSX.Element {
  return <code class="id" title={id} aria-label={`${label ?? 'id'} ${id}`}>{shortId(id)}</code>
}

export function ScopeList ({ scopes, empty = 'none' }: { scopes: readonly string[], empty?: string }): JSX.Element {
  if (scopes.length === 0) return <span class="muted">{empty}</span>
  return <ul class="chips">{scopes.map((scope) => <li key={scope} class="chip">{scope}</li>)}</ul>
}

// --- messages: one polite live region for what just happened ---

export type FlashKind = 'info' | 'ok' | 'error'
export interface FlashMessage { id: number, text: string, kind: FlashKind }
export const FlashContext = createContext<(text: string, kind?: FlashKind) => void>(() => {})
export const useFlash = (): ((text: string, kind?: FlashKind) => void) => useContext(FlashContext)

export function Flash ({ message, onDismiss }: { message: FlashMessage | null, onDismiss: () => void }): JSX.Element {
  return (
    <div class="flash-region" role="status" aria-live="polite">
      {message !== null && (
        <div class={`flash flash-${message.kind}`} key={message.id}>
          <span>{message.text}</span>
          <button type="button" class="button-plain" onClick={onDismiss} aria-label="Dismiss message">×</button>
        </div>
      )}
    </div>
  )
}

// --- confirmation: a modal <dialog> (focus kept inside, Escape cancels) ---

export interface ConfirmRequest {
  title: string
  body: ComponentChildren
  confirmLabel: string
  danger?: boolean
}

interface Pending extends ConfirmRequest { resolve: (ok: boolean) => void }

/** `const [confirm, dialog] = useConfirm()`; render `dialog`, then `if (await confirm({...})) ...`. */
export function useConfirm (): [(request: ConfirmRequest) => Promise<boolean>, JSX.Element | null] {
  const [pending, setPending] = useState<Pending | null>(null)
  const confirm = useCallback(async (request: ConfirmRequest) => await new Promise<boolean>((resolve) => {
    setPending({ ...request, resolve })
  }), [])
  const finish = (ok: boolean): void => {
    pending?.resolve(ok)
    setPending(null)
  }
  const dialog = pending === null
    ? null
    : (
      <Modal title={pending.title} onClose={() => finish(false)} focusFirst="cancel">
        <div class="dialog-body">{pending.body}</div>
        <div class="dialog-actions">
          <button type="button" data-role="cancel" class="button-secondary" onClick={() => finish(false)}>Cancel</button>
          <button type="button" class={pending.danger === true ? 'button-danger' : 'button-primary'} onClick={() => finish(true)}>{pending.confirmLabel}</button>
        </div>
      </Modal>
      )
  return [confirm, dialog]
}

let modalCount = 0

export function Modal ({ title, children, onClose, focusFirst }: { title: string, children: ComponentChildren, onClose: () => void, focusFirst?: string }): JSX.Element {
  const ref = useRef<HTMLDialogElement>(null)
  const [titleId] = useState(() => `modal-title-${++modalCount}`)
  useEffect(() => {
    const dialog = ref.current
    if (dialog === null) return
    const opener = document.activeElement
    dialog.showModal()
    const first = focusFirst === undefined ? null : dialog.querySelector<HTMLElement>(`[data-role="${focusFirst}"]`)
    first?.focus()
    return () => {
      if (dialog.open) dialog.close()
      // Back to the control that opened it, if it is still on the page.
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus()
    }
  }, [])
  return (
    <dialog ref={ref} class="dialog" aria-labelledby={titleId} onCancel={(event) => { event.preventDefault(); onClose() }}>
      <h2 id={titleId} class="dialog-title">{title}</h2>
      {children}
    </dialog>
  )
}

/** Shows a secret once (a rotated device token), with a copy button. */
export function SecretDialog ({ title, intro, secret, onClose }: { title: string, intro: ComponentChildren, secret: string, onClose: () => void }): JSX.Element {
  const [copied, setCopied] = useState(false)
  const inputRef = useRef<HTMLTextAreaElement>(null)
  const copy = async (): Promise<void> => {
    try {
      await navigator.clipboard.writeText(secret)
      setCopied(true)
    } catch {
      inputRef.current?.select()
    }
  }
  return (
    <Modal title={title} onClose={onClose} focusFirst="copy">
      <div class="dialog-body">
        {intro}
        <label class="field">
          <span>Device token</span>
          <textarea ref={inputRef} class="secret" readOnly rows={3} value={secret} spellcheck={false} onFocus={(e) => e.currentTarget.select()} data-testid="rotated-token" />
        </label>
      </div>
      <div class="dialog-actions">
        <button type="button" data-role="copy" class="button-secondary" onClick={() => { void copy() }}>{copied ? 'Copied' : 'Copy token'}</button>
        <button type="button" class="button-primary" onClick={onClose}>Done, I saved it</button>
      </div>
    </Modal>
  )
}
