import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { join, resolve } from 'node:path'
import envSchema from 'env-schema'
import { Type, type Static } from 'typebox'

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

/**
 * Default limits (README, Configuration): high enough that the repo's own
 * benchmarks and test suites, all from one loopback address, run with them on;
 * low enough that one client cannot take an instance over. Tests use these too.
 */
export const DEFAULT_LIMITS = {
  maxConnections: 10_000,
  handshakeRatePerIp: 5000,
  rpcRatePerConn: 2000,
  restRatePerMin: 6000
} as const

const EnvSchema = Type.Object({
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 18789 }),
  HOST: Type.String({ minLength: 1, default: '127.0.0.1' }),
  DATABASE_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://' })),
  DATABASE_SCHEMA: Type.String({ pattern: '^[a-z_][a-z0-9_]{0,62}$', default: 'public' }),
  DATA_DIR: Type.String({ minLength: 1, default: './.scopegate' }),
  GATEWAY_TOKEN: Type.Optional(Type.String({ minLength: 16 })),
  JWT_SECRET: Type.Optional(Type.String({ minLength: 32 })),
  LOG_LEVEL: Type.Enum(LOG_LEVELS, { default: 'info' }),
  PAIRING_REQUEST_TTL_MS: Type.Integer({ minimum: 1000, default: 300_000 }),
  DEVICE_TOKEN_TTL_MS: Type.Integer({ minimum: 0, default: 30 * 24 * 3600 * 1000 }),
  HANDSHAKE_TIMEOUT_MS: Type.Integer({ minimum: 0, default: 10_000 }),
  MAX_PAYLOAD_BYTES: Type.Integer({ minimum: 0, default: 1024 * 1024 }),
  MAX_BUFFERED_BYTES: Type.Integer({ minimum: 0, default: 4 * 1024 * 1024 }),
  MAX_CONNECTIONS: Type.Integer({ minimum: 0, default: DEFAULT_LIMITS.maxConnections }),
  HANDSHAKE_RATE_PER_IP: Type.Integer({ minimum: 0, default: DEFAULT_LIMITS.handshakeRatePerIp }),
  RPC_RATE_PER_CONN: Type.Integer({ minimum: 0, default: DEFAULT_LIMITS.rpcRatePerConn }),
  REST_RATE_PER_MIN: Type.Integer({ minimum: 0, default: DEFAULT_LIMITS.restRatePerMin }),
  TRUST_PROXY: Type.String({ default: 'false' }),
  TICK_INTERVAL_MS: Type.Integer({ minimum: 1000, default: 30_000 }),
  HEALTH_CHECK_INTERVAL_MS: Type.Integer({ minimum: 100, default: 1000 }),
  HEALTH_CHECK_TIMEOUT_MS: Type.Integer({ minimum: 100, default: 2000 }),
  SHUTDOWN_GRACE_MS: Type.Integer({ minimum: 0, default: 10_000 }),
  CRON_LEASE_MS: Type.Integer({ minimum: 200, maximum: 30_000, default: 30_000 })
})
type Env = Static<typeof EnvSchema>

/** Every environment variable the configuration reads (deployment files are checked against it). */
export const ENV_VARIABLES: readonly string[] = Object.keys(EnvSchema.properties)

export type LogLevel = (typeof LOG_LEVELS)[number]

export interface Config {
  port: number
  host: string
  /** Absent: embedded PGlite in `dataDir`. */
  databaseUrl: string | undefined
  /** Postgres schema holding the tables (tests use one per file). */
  databaseSchema: string
  dataDir: string
  gatewayToken: string
  jwtSecret: string
  logLevel: LogLevel
  pairingRequestTtlMs: number
  deviceTokenTtlMs: number
  handshakeTimeoutMs: number
  maxPayloadBytes: number
  maxBufferedBytes: number
  /** Open WebSocket connections per instance, handshakes included; over it: close 1013. 0: no limit. */
  maxConnections: number
  /** Upgrades per second per client address (token bucket, burst = one second's worth). 0: no limit. */
  handshakeRatePerIp: number
  /** RPCs per second per connection (token bucket, burst = one second's worth). 0: no limit. */
  rpcRatePerConn: number
  /** Admin REST requests per minute per client address (@fastify/rate-limit). 0: no limit. */
  restRatePerMin: number
  /** Fastify's trustProxy: whose X-Forwarded-For sets request.ip (and so every per-IP limit). */
  trustProxy: TrustProxy
  tickIntervalMs: number
  /** Database and listener checks; a loss is noticed within interval + timeout. */
  healthCheckIntervalMs: number
  healthCheckTimeoutMs: number
  /** How long a graceful shutdown may take before the process exits anyway. */
  shutdownGraceMs: number
  /** Lease on a claimed cron run (at most 30 s), renewed while it runs. */
  cronLeaseMs: number
}

/** false, true (trust every hop), a number of hops, or the proxies' addresses / CIDR ranges. */
export type TrustProxy = boolean | number | string[]

export class ConfigError extends Error {
  override name = 'ConfigError'
}

export type SecretName = 'GATEWAY_TOKEN' | 'JWT_SECRET'

/** Reads and validates the environment; names the bad variable when it fails. */
export function readEnv (env: NodeJS.ProcessEnv = process.env): Env {
  const data: Record<string, string> = {}
  for (const key of ENV_VARIABLES) {
    const value = env[key]
    if (value !== undefined && value !== '') data[key] = value
  }
  try {
    return envSchema<Env>({ schema: EnvSchema, data, env: false, dotenv: false })
  } catch (err) {
    let message = (err as Error).message.replace(/env\//g, '').replace(/^\//, '')
    const allowed = (err as { errors?: Array<{ params?: { allowedValues?: unknown[] } }> }).errors
      ?.find((e) => Array.isArray(e.params?.allowedValues))?.params?.allowedValues
    if (allowed !== undefined) message += ` (${allowed.join(', ')})`
    throw new ConfigError(`invalid configuration: ${message}`)
  }
}

/**
 * Builds the full configuration. Secrets come from the environment; in PGlite
 * mode missing ones are generated once into DATA_DIR (mode 0600) and reused.
 * With DATABASE_URL every instance must share them, so both are required.
 */
export function loadConfig (env: NodeJS.ProcessEnv = process.env, only?: SecretName[]): Config {
  const e = readEnv(env)
  const dataDir = resolve(e.DATA_DIR)
  const wanted = only ?? ['GATEWAY_TOKEN', 'JWT_SECRET']
  const secret = (name: SecretName): string => {
    const value = e[name]
    if (value !== undefined) return value
    if (!wanted.includes(name)) return ''
    if (e.DATABASE_URL !== undefined) {
      throw new ConfigError(`invalid configuration: ${name} is required when DATABASE_URL is set (every instance must share it)`)
    }
    return storedSecret(dataDir, name)
  }
  return {
    port: e.PORT,
    host: e.HOST,
    databaseUrl: e.DATABASE_URL,
    databaseSchema: e.DATABASE_SCHEMA,
    dataDir,
    gatewayToken: secret('GATEWAY_TOKEN'),
    jwtSecret: secret('JWT_SECRET'),
    logLevel: e.LOG_LEVEL,
    pairingRequestTtlMs: e.PAIRING_REQUEST_TTL_MS,
    deviceTokenTtlMs: e.DEVICE_TOKEN_TTL_MS,
    handshakeTimeoutMs: e.HANDSHAKE_TIMEOUT_MS,
    maxPayloadBytes: e.MAX_PAYLOAD_BYTES,
    maxBufferedBytes: e.MAX_BUFFERED_BYTES,
    maxConnections: e.MAX_CONNECTIONS,
    handshakeRatePerIp: e.HANDSHAKE_RATE_PER_IP,
    rpcRatePerConn: e.RPC_RATE_PER_CONN,
    restRatePerMin: e.REST_RATE_PER_MIN,
    trustProxy: parseTrustProxy(e.TRUST_PROXY),
    tickIntervalMs: e.TICK_INTERVAL_MS,
    healthCheckIntervalMs: e.HEALTH_CHECK_INTERVAL_MS,
    healthCheckTimeoutMs: e.HEALTH_CHECK_TIMEOUT_MS,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    cronLeaseMs: e.CRON_LEASE_MS
  }
}

const PROXY_ADDRESS_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal'])

/**
 * TRUST_PROXY: `false` (X-Forwarded-For ignored), `true` (trust every hop;
 * only behind a proxy that overwrites the header), a number of hops, or a
 * comma-separated list of proxy addresses, CIDR ranges or proxy-addr's
 * names (loopback, linklocal, uniquelocal).
 */
export function parseTrustProxy (value: string): TrustProxy {
  const text = value.trim().toLowerCase()
  if (text === 'false' || text === '') return false
  if (text === 'true') return true
  if (/^\d+$/.test(text)) return Number(text)
  const entries = text.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '')
  const bad = entries.find((entry) => !isProxyAddress(entry))
  if (bad !== undefined || entries.length === 0) {
    throw new ConfigError(`invalid configuration: TRUST_PROXY must be true, false, a number of hops or a comma-separated list of addresses or CIDR ranges (got ${JSON.stringify(bad ?? value)})`)
  }
  return entries
}

/**
 * Fastify's trustProxy for a TRUST_PROXY value. Fastify 5 trusts nothing for
 * a bare hop count (a direct client could spoof it), so a count becomes
 * proxy-addr's hop function: use it only when every request comes through
 * that many proxies.
 */
export function fastifyTrustProxy (trust: TrustProxy): boolean | string[] | ((address: string, hop: number) => boolean) {
  if (typeof trust !== 'number') return trust
  return trust === 0 ? false : (_address, hop) => hop < trust
}

function isProxyAddress (entry: string): boolean {
  if (PROXY_ADDRESS_NAMES.has(entry)) return true
  const [address = '', prefix, ...rest] = entry.split('/')
  const family = isIP(address)
  if (family === 0 || rest.length > 0) return false
  if (prefix === undefined) return true
  if (family === 4 && isIP(prefix) === 4) return true
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128)
}

const SECRET_FILES: Record<SecretName, string> = {
  GATEWAY_TOKEN: 'gateway-token',
  JWT_SECRET: 'jwt-secret'
}

/** The secret stored in DATA_DIR, created (0600, never overwritten) on first use. */
function storedSecret (dataDir: string, name: SecretName): string {
  const file = join(dataDir, SECRET_FILES[name])
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  try {
    writeFileSync(file, randomBytes(32).toString('base64url') + '\n', { mode: 0o600, flag: 'wx' })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  const value = readFileSync(file, 'utf8').trim()
  if (value.length < 16) throw new ConfigError(`invalid configuration: ${file} holds no usable ${name}; delete it to generate a new one`)
  return value
}

/** Where the secrets live, for messages that must not print the secret itself. */
export function secretSource (config: Config, env: NodeJS.ProcessEnv, name: SecretName): string {
  return env[name] ? `environment variable ${name}` : join(config.dataDir, SECRET_FILES[name])
}
