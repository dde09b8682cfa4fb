import { randomUUID } from 'node:crypto'
import { generateToken, hashToken } from '../auth/tokens.ts'
import { sortedScopes } from '../auth/scopes.ts'
import type { SqlClient } from '../db/database.ts'
import type { Prisma, PrismaClient } from '../generated/prisma/client.ts'
import type { DeviceTokenView, PairedDevice } from '../views.ts'

export type { DeviceTokenView, PairedDevice } from '../views.ts'


const deviceInclude = { roles: true, tokens: true } as const
type DeviceRow = Prisma.DeviceGetPayload<{ include: typeof deviceInclude }>

export function toPairedDevice (row: DeviceRow): PairedDevice {
  const roles = [...row.roles].sort((a, b) => b.approvedAt.getTime() - a.approvedAt.getTime())
  const latest = roles[0]
  return {
    deviceId: row.id,
    publicKey: row.publicKey,
    platform: row.platform,
    deviceFamily: row.deviceFamily,
    ...(row.displayName !== null && { displayName: row.displayName }),
    role: latest?.role ?? '',
    roles: roles.map((r) => r.role).sort(),
    scopes: sortedScopes(latest?.scopes ?? []),
    roleScopes: Object.fromEntries(roles.map((r) => [r.role, sortedScopes(r.scopes)])),
    createdAtMs: row.createdAt.getTime(),
    approvedAtMs: row.approvedAt.getTime(),
    ...(row.lastSeenAt !== null && { lastSeenAtMs: row.lastSeenAt.getTime() }),
    ...(row.tokenTtlMs !== null && { tokenTtlMs: Number(row.tokenTtlMs) }),
    tokens: row.tokens.map((t) => ({
      role: t.role,
      scopes: sortedScopes(t.scopes),
      createdAtMs: t.createdAt.getTime(),
      ...(t.rotatedAt !== null && { rotatedAtMs: t.rotatedAt.getTime() }),
      ...(t.revokedAt !== null && { revokedAtMs: t.revokedAt.getTime() }),
      ...(t.expiresAt !== null && { expiresAtMs: t.expiresAt.getTime() })
    }))
  }
}

export async function findPairedDevice (prisma: PrismaClient | Prisma.TransactionClient, deviceId: string): Promise<PairedDevice | null> {
  const row = await prisma.device.findUnique({ where: { id: deviceId }, include: deviceInclude })
  return row === null ? null : toPairedDevice(row)
}

export interface MintedToken {
  token: string
  tokenId: string
  issuedAtMs: number
  expiresAtMs: number | null
}

// Replaces only a revoked or expired token, so two first connects racing mint one.
const MINT_SQL = `INSERT INTO device_tokens (device_id, role, token_id, token_hash, scopes, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (device_id, role) DO UPDATE SET token_id = EXCLUDED.token_id, token_hash = EXCLUDED.token_hash,
  scopes = EXCLUDED.scopes, created_at = EXCLUDED.created_at, rotated_at = NULL, revoked_at = NULL,
  expires_at = EXCLUDED.expires_at
WHERE device_tokens.revoked_at IS NOT NULL OR device_tokens.expires_at <= $6
RETURNING token_id`

/**
 * Mints the device token for a role; null when another connect minted it
 * first. `nowMs` is the clock expiry is decided by (the gateway's Clock).
 */
export async function mintDeviceToken (sql: SqlClient, deviceId: string, role: string, scopes: string[], ttlMs: number, nowMs: number = Date.now()): Promise<MintedToken | null> {
  const token = generateToken()
  const tokenId = randomUUID()
  const issuedAtMs = nowMs
  const expiresAtMs = ttlMs > 0 ? issuedAtMs + ttlMs : null
  const { rows } = await sql.query(MINT_SQL, [
    deviceId, role, tokenId, hashToken(token), sortedScopes(scopes), new Date(issuedAtMs),
    expiresAtMs === null ? null : new Date(expiresAtMs)
  ])
  return rows.length === 0 ? null : { token, tokenId, issuedAtMs, expiresAtMs }
}

/**
 * Records when devices were last seen, batched: one UPDATE per interval for
 * all of them, so a handshake costs no extra round trip.
 */
export class LastSeenRecorder {
  #pending = new Set<string>()
  #timer: NodeJS.Timeout | undefined

  constructor (private readonly sql: SqlClient, private readonly intervalMs = 2000, private readonly onError: (err: Error) => void = () => {}) {}

  touch (deviceId: string): void {
    this.#pending.add(deviceId)
    this.#timer ??= setTimeout(() => { void this.flush() }, this.intervalMs).unref()
  }

  async flush (): Promise<void> {
    clearTimeout(this.#timer)
    this.#timer = undefined
    if (this.#pending.size === 0) return
    const ids = [...this.#pending]
    this.#pending.clear()
    try {
      await this.sql.query('UPDATE devices SET last_seen_at = now() WHERE id = ANY($1::text[])', [ids])
    } catch (err) {
      this.onError(err as Error)
    }
  }
}
