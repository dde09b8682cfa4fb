import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import envSchema from 'env-schema'
import { Type, type Static } from 'typebox'

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

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
  TICK_INTERVAL_MS: Type.Integer({ minimum: 1000, default: 30_000 }),
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
  tickIntervalMs: number
  /** Lease on a claimed cron run (at most 30 s), renewed while it runs. */
  cronLeaseMs: number
}

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
    tickIntervalMs: e.TICK_INTERVAL_MS,
    cronLeaseMs: e.CRON_LEASE_MS
  }
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
