/**
 * Whether an error means "the database cannot be reached right now" (retry
 * later) rather than a bug or a rejected statement.
 */
export function isDatabaseUnavailable (err: unknown): boolean {
  const e = err as { code?: unknown, message?: unknown, cause?: unknown } | null
  if (e === null || typeof e !== 'object') return false
  const code = typeof e.code === 'string' ? e.code : ''
  // Node socket errors, Postgres class 08 (connection), 57P0x (shutdown), 53300 (too many connections).
  if (/^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EHOSTUNREACH)$/.test(code)) return true
  if (/^(08|57P0)/.test(code) || code === '53300') return true
  // Prisma's connection errors; P2024: no pool connection in time; P2028: a transaction could not start
  // in time (no pool client within maxWait) or ran past its timeout, and was rolled back.
  if (/^(P1001|P1002|P1008|P1017|P2024|P2028)$/.test(code)) return true
  const message = typeof e.message === 'string' ? e.message : ''
  if (/Connection terminated|connection is closed|Client has encountered a connection error|timeout exceeded when trying to connect|Can't reach database/i.test(message)) return true
  return e.cause !== undefined && e.cause !== err && isDatabaseUnavailable(e.cause)
}
