import type { Static, TSchema } from 'typebox'
import type { Scope } from '../auth/scopes.ts'
import type { Admission } from '../gateway/handshake.ts'

export interface MethodContext<P = Record<string, unknown>> {
  admission: Admission
  connId: string
  params: P
}

/** A WS method: the scope it needs and its params schema are declared next to its handler. */
export interface MethodDef<S extends TSchema = TSchema> {
  name: string
  /** null: any admitted connection may call it. */
  scope: Scope | null
  params?: S
  handler: (ctx: MethodContext<Static<S>>) => unknown
}

/** Keeps the params type of each method tied to its schema. */
export function defineMethod<S extends TSchema> (def: MethodDef<S>): MethodDef {
  return def as unknown as MethodDef
}
