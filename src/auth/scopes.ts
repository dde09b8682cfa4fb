export const ROLES = ['operator', 'node'] as const
export type Role = (typeof ROLES)[number]

export const SCOPES = [
  'operator.read',
  'operator.write',
  'operator.admin',
  'operator.approvals',
  'operator.pairing',
  'operator.questions',
  'operator.talk',
  'operator.talk.secrets'
] as const
export type Scope = (typeof SCOPES)[number]

const KNOWN_SCOPES: ReadonlySet<string> = new Set(SCOPES)

export function isRole (value: string): value is Role {
  return (ROLES as readonly string[]).includes(value)
}

export function isScope (value: string): value is Scope {
  return KNOWN_SCOPES.has(value)
}

/** True when `held` satisfies `wanted`: held itself, admin for any operator scope, write for read. */
function satisfies (held: string, wanted: string): boolean {
  if (held === wanted) return true
  if (held === 'operator.admin') return wanted.startsWith('operator.')
  return held === 'operator.write' && wanted === 'operator.read'
}

export function isCovered (wanted: string, held: readonly string[]): boolean {
  for (const scope of held) if (satisfies(scope, wanted)) return true
  return false
}

/** The requested scopes that `held` does not cover, in the order asked. */
export function uncoveredScopes (wanted: readonly string[], held: readonly string[]): string[] {
  return wanted.filter((scope) => !isCovered(scope, held))
}

/** Order-preserving de-duplication. */
export function uniqueScopes (scopes: readonly string[]): string[] {
  return [...new Set(scopes)]
}

export function sortedScopes (scopes: readonly string[]): string[] {
  return [...new Set(scopes)].sort()
}
