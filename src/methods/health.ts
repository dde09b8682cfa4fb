import type { MethodDef } from './types.ts'

export const healthMethods: MethodDef[] = [
  {
    name: 'health',
    scope: null,
    handler: () => ({ ok: true, ts: Date.now() })
  }
]
