import { hash, randomBytes, timingSafeEqual } from 'node:crypto'

/** A new bearer secret: 32 random bytes, base64url. */
export function generateToken (): string {
  return randomBytes(32).toString('base64url')
}

/** Tokens are random 256-bit values, so one SHA-256 is a sufficient stored form. */
export function hashToken (token: string): string {
  return hash('sha256', token, 'hex')
}

/** Compares a presented token with a stored hash in constant time. */
export function tokenMatchesHash (token: string, storedHash: string): boolean {
  const presented = hash('sha256', token, 'buffer')
  const stored = Buffer.from(storedHash, 'hex')
  return presented.length === stored.length && timingSafeEqual(presented, stored)
}
