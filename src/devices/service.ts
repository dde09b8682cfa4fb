import { randomUUID } from 'node:crypto'
import { generateToken, hashToken } from '../auth/tokens.ts'
import { sortedScopes } from '../auth/scopes.ts'
import type { HotSqlClient, PreparedQuery, SqlClient } from '../db/database.ts'
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

/** What a handshake needs to know about a device, for one role. */
export interface DeviceAccess {
  platform: string
  deviceFamily: string
  /** null: the device is paired, but not for this role. */
  roleScopes: string[] | null
  token: { id: string, hash: string, revoked: boolean, expiresAtMs: number | null } | null
  /** cron fires wait for this device (delivered after hello-ok). */
  pendingFires: boolean
  /** This device's token lifetime override (null: DEVICE_TOKEN_TTL_MS). */
  tokenTtlMs: number | null
}

interface AccessRow {
  platform: string
  device_family: string
  role_scopes: string[] | null
  token_id: string | null
  token_hash: string | null
  token_revoked_at: Date | null
  token_expires_at: Date | null
  pending_fires: boolean
  token_ttl_ms: number | null
}

// One indexed query per handshake: primary-key lookups joined on the primary keys.
const ACCESS_QUERY: PreparedQuery = {
  name: 'scopegate-device-access',
  text: `SELECT d.platform, d.device_family, d.token_ttl_ms::float8 AS token_ttl_ms, r.scopes AS role_scopes,
  t.token_id, t.token_hash, t.revoked_at AS token_revoked_at, t.expires_at AS token_expires_at,
  EXISTS (SELECT 1 FROM cron_fires f WHERE f.device_id = d.id AND f.delivered_at IS NULL) AS pending_fires
FROM devices d
LEFT JOIN device_roles r ON r.device_id = d.id AND r.role = $2
LEFT JOIN device_tokens t ON t.device_id = d.id AND t.role = $2
WHERE d.id = $1`
}

/** null: no paired device with this id. */
export async function loadDeviceAccess (sql: HotSqlClient, deviceId: string, role: string): Promise<DeviceAccess | null> {
  const { rows } = await sql.prepared<AccessRow>(ACCESS_QUERY, [deviceId, role])
  const row = rows[0]
  if (row === undefined) return null
  return {
    platform: row.platform,
    deviceFamily: row.device_family,
    roleScopes: row.role_scopes,
    pendingFires: row.pending_fires,
    tokenTtlMs: row.token_ttl_ms,
    token: row.token_id === null || row.token_hash === null
      ? null
      : {
          id: row.token_id,
          hash: row.token_hash,
          revoked: row.token_revoked_at !== null,
          expiresAtMs: row.token_expires_at === null ? null : row.token_expires_at.getTime()
        }
  }
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
