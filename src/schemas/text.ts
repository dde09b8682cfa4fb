/**
 * Postgres text and jsonb cannot hold U+0000 (NUL), and jsonb refuses a lone
 * UTF-16 surrogate (text silently turns one into U+FFFD). A string holding
 * either can never be stored as sent nor match a stored value, so it is
 * refused, or treated as matching nothing, before it reaches the database,
 * where a query with one fails.
 */
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

export function isStorableText (value: string): boolean {
  return !UNSTORABLE.test(value)
}

/** The dotted path of the first string or key in a JSON value that cannot be stored (`''` for the value itself), or null. */
export function unstorablePath (value: unknown, path = ''): string | null {
  if (typeof value === 'string') return isStorableText(value) ? null : path
  if (typeof value !== 'object' || value === null) return null
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = unstorablePath(value[i], `${path}[${i}]`)
      if (found !== null) return found
    }
    return null
  }
  for (const [key, item] of Object.entries(value)) {
    const at = path === '' ? key : `${path}.${key}`
    if (!isStorableText(key)) return at
    const found = unstorablePath(item, at)
    if (found !== null) return found
  }
  return null
}

/** JSON Schema pattern (Ajv compiles it with the `u` flag) for strings that can be stored: no U+0000, no lone surrogate. */
export const STORABLE_TEXT_PATTERN = '^[^\\u0000\\uD800-\\uDFFF]*$'
