import { isCovered } from '../auth/scopes.ts'
import { compile, invalidField, invalidRequest, ProtocolError, type Validator } from '../gateway/frames.ts'
import type { Admission } from '../gateway/handshake.ts'
import type { MethodDef } from './types.ts'

export type { MethodDef, MethodContext } from './types.ts'
export { defineMethod } from './types.ts'

interface CompiledMethod {
  def: MethodDef
  validate: Validator<unknown> | null
}

export class MethodTable {
  readonly #methods = new Map<string, CompiledMethod>()

  constructor (groups: MethodDef[][]) {
    for (const def of groups.flat()) {
      this.#methods.set(def.name, { def, validate: def.params === undefined ? null : compile(def.params) })
    }
  }

  get names (): string[] {
    return [...this.#methods.keys()]
  }

  has (method: string): boolean {
    return this.#methods.has(method)
  }

  /**
   * Checks the scope before the params, then runs the handler. Throws a
   * refusal; returns the handler's own answer, a value or a promise, so a
   * synchronous method (health, status) is answered in the same tick.
   */
  invoke (admission: Admission, connId: string, method: string, rawParams: unknown): unknown {
    const entry = this.#methods.get(method)
    if (entry === undefined) throw invalidRequest(`unknown method: ${method}`, { code: 'UNKNOWN_METHOD', method })
    const { def, validate } = entry
    if (def.scope !== null && !isCovered(def.scope, admission.scopes)) {
      throw new ProtocolError({
        code: 'FORBIDDEN',
        message: `missing scope: ${def.scope}`,
        details: { code: 'MISSING_SCOPE', missingScope: def.scope, requiredScopes: [def.scope] }
      })
    }
    const params = rawParams ?? {}
    if (typeof params !== 'object' || Array.isArray(params)) {
      throw invalidRequest('invalid params: params must be an object', { code: 'INVALID_PARAMS', field: 'params' })
    }
    if (validate !== null && !validate(params)) {
      const field = invalidField(validate.errors)
      throw invalidRequest(`invalid params: ${field}`, { code: 'INVALID_PARAMS', field })
    }
    return def.handler({ admission, connId, params: params as Record<string, unknown> })
  }
}
