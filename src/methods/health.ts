import type { MethodDef } from './types.ts'

export interface HealthResult { ok: true, ts: number }

export const healthMethods: MethodDef[] = [
  {
    name: 'health',
    scope: null,
    handler: (): HealthResult => ({ ok: true, ts: Date.now() })
  }
]
