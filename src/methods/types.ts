import type { Scope } from '../auth/scopes.ts'
import type { Admission } from '../gateway/handshake.ts'

export interface MethodContext {
  admission: Admission
  connId: string
  params: Record<string, unknown>
}

/** A WS method: the scope it needs is declared next to its handler. */
export interface MethodDef {
  name: string
  /** null: any admitted connection may call it. */
  scope: Scope | null
  handler: (ctx: MethodContext) => unknown
}
