import type { HotSqlClient, PreparedQuery } from '../db/database.ts'

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
  /** The lookup's index in its batch. */
  i: number
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

/**
 * Many (device, role) lookups in one statement, passed as one JSON parameter
 * (the same text on Postgres and PGlite). Per lookup it does what a single
 * lookup would: primary-key index scans of devices, device_roles and
 * device_tokens. The LIMIT keeps the planner from flattening the LATERAL
 * subquery into hash joins over whole tables (it would, since it cannot know
 * how many lookups a batch holds); a device id is a primary key, so it never
 * cuts a row.
 */
const ACCESS_QUERY: PreparedQuery = {
  name: 'scopegate-device-access-batch',
  text: `SELECT k.i, a.* FROM jsonb_to_recordset($1::jsonb) AS k(i int, device_id text, role text)
CROSS JOIN LATERAL (
  SELECT d.platform, d.device_family, d.token_ttl_ms::float8 AS token_ttl_ms, r.scopes AS role_scopes,
    t.token_id, t.token_hash, t.revoked_at AS token_revoked_at, t.expires_at AS token_expires_at,
    EXISTS (SELECT 1 FROM cron_fires f WHERE f.device_id = d.id AND f.delivered_at IS NULL) AS pending_fires
  FROM devices d
  LEFT JOIN device_roles r ON r.device_id = d.id AND r.role = k.role
  LEFT JOIN device_tokens t ON t.device_id = d.id AND t.role = k.role
  WHERE d.id = k.device_id
  LIMIT 1
) a`
}

function toDeviceAccess (row: AccessRow): DeviceAccess {
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

interface Lookup {
  deviceId: string
  role: string
  resolve: (access: DeviceAccess | null) => void
  reject: (err: unknown) => void
}

export interface DeviceAccessLoaderOptions {
  /** Lookups per statement at most; a fuller batch goes at once (default 128). */
  maxBatch?: number
  /** Told the size of every batch sent (the batch-size histogram). */
  onBatch?: (lookups: number) => void
}

/**
 * The one database read of a handshake. The lookups of handshakes whose
 * connect frames arrive in the same turn of the event loop (many, in a
 * reconnect storm) go to the database together, as one query: one round trip
 * and one statement for all of them, so each handshake costs at most one
 * round trip, and under load a fraction of one. A lone handshake waits for
 * nothing but the end of the current turn (setImmediate).
 */
export class DeviceAccessLoader {
  #batch: Lookup[] = []
  readonly #maxBatch: number
  readonly #onBatch: (lookups: number) => void

  constructor (private readonly sql: HotSqlClient, options: DeviceAccessLoaderOptions = {}) {
    this.#maxBatch = options.maxBatch ?? 128
    this.#onBatch = options.onBatch ?? (() => {})
  }

  /** null: no paired device with this id. */
  async load (deviceId: string, role: string): Promise<DeviceAccess | null> {
    return await new Promise((resolve, reject) => {
      const size = this.#batch.push({ deviceId, role, resolve, reject })
      if (size === 1) setImmediate(() => this.#flush())
      else if (size >= this.#maxBatch) this.#flush()
    })
  }

  #flush (): void {
    const batch = this.#batch
    if (batch.length === 0) return
    this.#batch = []
    void this.#run(batch)
  }

  async #run (batch: Lookup[]): Promise<void> {
    this.#onBatch(batch.length)
    const keys = JSON.stringify(batch.map(({ deviceId, role }, i) => ({ i, device_id: deviceId, role })))
    let rows: AccessRow[]
    try {
      rows = (await this.sql.prepared<AccessRow>(ACCESS_QUERY, [keys])).rows
    } catch (err) {
      for (const lookup of batch) lookup.reject(err)
      return
    }
    const found: Array<DeviceAccess | null> = batch.map(() => null)
    for (const row of rows) found[row.i] = toDeviceAccess(row)
    batch.forEach((lookup, i) => lookup.resolve(found[i] ?? null))
  }
}
