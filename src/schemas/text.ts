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

/**
 * The dotted path of the first string or key in a JSON value that cannot be
 * stored (`''` for the value itself), or null. Iterative: params nested
 * thousands deep must not overflow the stack.
 */
export function unstorablePath (value: unknown, path = ''): string | null {
  const stack: Array<[unknown, string]> = [[value, path]]
  while (stack.length > 0) {
    const [item, at] = stack.pop() as [unknown, string]
    if (typeof item === 'string') {
      if (!isStorableText(item)) return at
    } else if (Array.isArray(item)) {
      for (let i = item.length - 1; i >= 0; i--) stack.push([item[i], `${at}[${i}]`])
    } else if (typeof item === 'object' && item !== null) {
      const entries = Object.entries(item)
      for (let i = entries.length - 1; i >= 0; i--) {
        const [key, child] = entries[i] as [string, unknown]
        const childPath = at === '' ? key : `${at}.${key}`
        if (!isStorableText(key)) return childPath
        stack.push([child, childPath])
      }
    }
  }
  return null
}

/** How deep a stored JSON value may nest (objects and arrays); Prisma's serializer overflows the stack at a few thousand. */
export const MAX_STORED_DEPTH = 64

/**
 * The dotted path of the first value nested more than `maxDepth` objects or
 * arrays deep inside one of `value`'s fields (the fields themselves are at
 * depth 1), or null. Iterative, like unstorablePath.
 */
export function tooDeepPath (value: Record<string, unknown>, maxDepth = MAX_STORED_DEPTH, path = ''): string | null {
  const stack: Array<[unknown, string, number]> = Object.entries(value).map(([key, item]) => [item, path === '' ? key : `${path}.${key}`, 1])
  while (stack.length > 0) {
    const [item, at, depth] = stack.pop() as [unknown, string, number]
    if (typeof item !== 'object' || item === null) continue
    if (depth > maxDepth) return at
    if (Array.isArray(item)) item.forEach((child, i) => stack.push([child, `${at}[${i}]`, depth + 1]))
    else for (const [key, child] of Object.entries(item)) stack.push([child, `${at}.${key}`, depth + 1])
  }
  return null
}

/** JSON Schema pattern (Ajv compiles it with the `u` flag) for strings that can be stored: no U+0000, no lone surrogate. */
export const STORABLE_TEXT_PATTERN = '^[^\\u0000\\uD800-\\uDFFF]*$'
