import { isCovered } from '../auth/scopes.ts'
import { invalidRequest, ProtocolError } from '../gateway/frames.ts'
import type { Admission } from '../gateway/handshake.ts'
import { healthMethods } from './health.ts'
import type { MethodDef } from './types.ts'

export type { MethodDef, MethodContext } from './types.ts'

export class MethodTable {
  readonly #methods = new Map<string, MethodDef>()

  constructor (groups: MethodDef[][] = [healthMethods]) {
    for (const method of groups.flat()) this.#methods.set(method.name, method)
  }

  get names (): string[] {
    return [...this.#methods.keys()]
  }

  /** Checks the scope before the params, then runs the handler. */
  async call (admission: Admission, connId: string, method: string, rawParams: unknown): Promise<unknown> {
    const def = this.#methods.get(method)
    if (def === undefined) throw invalidRequest(`unknown method: ${method}`, { code: 'UNKNOWN_METHOD', method })
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
    return await def.handler({ admission, connId, params: params as Record<string, unknown> })
  }
}
