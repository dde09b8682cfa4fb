import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ConfigError, ENV_VARIABLES, loadConfig, readEnv, secretSource } from '../src/config.ts'
import { CONFIG_DEFAULTS } from './helpers/config-defaults.ts'

const GATEWAY_TOKEN = 'g'.repeat(24)
const JWT_SECRET = 's'.repeat(40)
const PG_URL = 'postgres://postgres@127.0.0.1:5432/test'

function tempDir (t: { teardown: (fn: () => unknown) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'scopegate-config-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

t.test('defaults', async (t) => {
  const dataDir = join(tempDir(t), 'data')
  const config = loadConfig({ DATA_DIR: dataDir })
  t.match(config, {
    port: 18789,
    host: '127.0.0.1',
    databaseUrl: undefined,
    databaseSchema: 'public',
    dataDir,
    ...CONFIG_DEFAULTS
  })
  t.ok(ENV_VARIABLES.includes('DATABASE_URL') && ENV_VARIABLES.includes('PORT'))
  t.notOk(ENV_VARIABLES.includes('NODE_ENV'))
})

t.test('values are read and coerced from strings; an empty value counts as unset', async (t) => {
  const config = loadConfig({
    PORT: '0',
    HOST: '0.0.0.0',
    DATABASE_URL: 'postgresql://u:p@db:5432/x',
    DATABASE_SCHEMA: 'tenant_1',
    GATEWAY_TOKEN,
    JWT_SECRET,
    LOG_LEVEL: 'debug',
    PAIRING_REQUEST_TTL_MS: '1000',
    DEVICE_TOKEN_TTL_MS: '0',
    HANDSHAKE_TIMEOUT_MS: '0',
    TICK_INTERVAL_MS: '',
    DATA_DIR: ''
  })
  t.match(config, {
    port: 0,
    host: '0.0.0.0',
    databaseUrl: 'postgresql://u:p@db:5432/x',
    databaseSchema: 'tenant_1',
    gatewayToken: GATEWAY_TOKEN,
    jwtSecret: JWT_SECRET,
    logLevel: 'debug',
    pairingRequestTtlMs: 1000,
    deviceTokenTtlMs: 0,
    handshakeTimeoutMs: 0,
    tickIntervalMs: 30_000
  })
  t.match(config.dataDir, /\.scopegate$/, 'DATA_DIR= falls back to the default, made absolute')
})

t.test('an invalid variable is named in the error', async (t) => {
  const cases: Array<[Record<string, string>, string, RegExp?]> = [
    [{ PORT: 'abc' }, 'PORT', /integer/],
    [{ PORT: '70000' }, 'PORT', /65535/],
    [{ PORT: '-1' }, 'PORT'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL', /fatal, error, warn, info, debug, trace, silent/],
    [{ PAIRING_REQUEST_TTL_MS: '-1' }, 'PAIRING_REQUEST_TTL_MS', />= 1000/],
    [{ DEVICE_TOKEN_TTL_MS: 'forever' }, 'DEVICE_TOKEN_TTL_MS'],
    [{ JWT_SECRET: 'too-short' }, 'JWT_SECRET', /32 characters/],
    [{ GATEWAY_TOKEN: 'short' }, 'GATEWAY_TOKEN', /16 characters/],
    [{ DATABASE_URL: 'mysql://root@127.0.0.1/test' }, 'DATABASE_URL'],
    [{ DATABASE_URL: '127.0.0.1:5432' }, 'DATABASE_URL'],
    [{ DATABASE_SCHEMA: 'Robert"); DROP TABLE' }, 'DATABASE_SCHEMA'],
    [{ TICK_INTERVAL_MS: '500' }, 'TICK_INTERVAL_MS', />= 1000/]
  ]
  for (const [env, name, detail] of cases) {
    const dataDir = tempDir(t)
    const run = (): unknown => loadConfig({ DATA_DIR: dataDir, ...env })
    t.throws(run, ConfigError, `${JSON.stringify(env)} is refused`)
    try {
      run()
    } catch (err) {
      const message = (err as Error).message
      t.match(message, new RegExp(`^invalid configuration: ${name}\\b`), `the message names ${name}: ${message}`)
      if (detail !== undefined) t.match(message, detail)
      for (const value of Object.values(env)) {
        if (name === 'JWT_SECRET' || name === 'GATEWAY_TOKEN') t.notMatch(message, value, 'a secret is never echoed')
      }
    }
  }
})

t.test('with DATABASE_URL both secrets are required and the missing one is named', async (t) => {
  const dataDir = join(tempDir(t), 'data')
  t.throws(() => loadConfig({ DATA_DIR: dataDir, DATABASE_URL: PG_URL, JWT_SECRET }),
    { name: 'ConfigError', message: /GATEWAY_TOKEN is required when DATABASE_URL is set/ })
  t.throws(() => loadConfig({ DATA_DIR: dataDir, DATABASE_URL: PG_URL, GATEWAY_TOKEN }),
    { name: 'ConfigError', message: /JWT_SECRET is required when DATABASE_URL is set/ })
  t.throws(() => loadConfig({ DATA_DIR: dataDir, DATABASE_URL: PG_URL, GATEWAY_TOKEN, JWT_SECRET: '' }),
    { message: /JWT_SECRET is required/ }, 'an empty value is a missing value')
  t.notOk(existsSync(dataDir), 'nothing is generated into DATA_DIR in Postgres mode')

  const config = loadConfig({ DATA_DIR: dataDir, DATABASE_URL: PG_URL, GATEWAY_TOKEN, JWT_SECRET })
  t.equal(config.gatewayToken, GATEWAY_TOKEN)
  t.equal(config.jwtSecret, JWT_SECRET)

  // Asking for one secret only (what `admin-token` and `gateway-token` do).
  t.equal(loadConfig({ DATA_DIR: dataDir, DATABASE_URL: PG_URL, JWT_SECRET }, ['JWT_SECRET']).jwtSecret, JWT_SECRET)
  t.equal(loadConfig({ DATA_DIR: dataDir, DATABASE_URL: PG_URL, JWT_SECRET }, ['JWT_SECRET']).gatewayToken, '')
  t.throws(() => loadConfig({ DATA_DIR: dataDir, DATABASE_URL: PG_URL, GATEWAY_TOKEN }, ['JWT_SECRET']), { message: /JWT_SECRET is required/ })
})

t.test('in PGlite mode missing secrets are generated into DATA_DIR (0600) and reused', async (t) => {
  const dataDir = join(tempDir(t), 'nested', 'data')
  const first = loadConfig({ DATA_DIR: dataDir })
  t.type(first.gatewayToken, 'string')
  t.ok(first.gatewayToken.length >= 32, 'a long random gateway token')
  t.ok(first.jwtSecret.length >= 32, 'a JWT secret long enough for the schema')
  t.not(first.gatewayToken, first.jwtSecret)
  for (const file of ['gateway-token', 'jwt-secret']) {
    const mode = statSync(join(dataDir, file)).mode & 0o777
    t.equal(mode.toString(8), '600', `${file} is readable by its owner only`)
  }
  t.equal((statSync(dataDir).mode & 0o777).toString(8), '700', 'DATA_DIR itself is private')
  t.equal(readFileSync(join(dataDir, 'gateway-token'), 'utf8').trim(), first.gatewayToken)
  t.equal(readFileSync(join(dataDir, 'jwt-secret'), 'utf8').trim(), first.jwtSecret)

  const second = loadConfig({ DATA_DIR: dataDir })
  t.equal(second.gatewayToken, first.gatewayToken, 'the next start uses the same gateway token')
  t.equal(second.jwtSecret, first.jwtSecret, 'and the same JWT secret')

  const fromEnv = loadConfig({ DATA_DIR: dataDir, GATEWAY_TOKEN })
  t.equal(fromEnv.gatewayToken, GATEWAY_TOKEN, 'the environment wins over the stored token')
  t.equal(fromEnv.jwtSecret, first.jwtSecret)
  t.equal(readFileSync(join(dataDir, 'gateway-token'), 'utf8').trim(), first.gatewayToken, 'and the stored one is left alone')

  t.equal(secretSource(fromEnv, { GATEWAY_TOKEN }, 'GATEWAY_TOKEN'), 'environment variable GATEWAY_TOKEN')
  t.equal(secretSource(fromEnv, { GATEWAY_TOKEN }, 'JWT_SECRET'), join(dataDir, 'jwt-secret'))
})

t.test('only the asked secret is generated', async (t) => {
  const dataDir = tempDir(t)
  const config = loadConfig({ DATA_DIR: dataDir }, ['JWT_SECRET'])
  t.ok(config.jwtSecret.length >= 32)
  t.equal(config.gatewayToken, '')
  t.ok(existsSync(join(dataDir, 'jwt-secret')))
  t.notOk(existsSync(join(dataDir, 'gateway-token')))
})

t.test('a damaged secret file is refused, not replaced', async (t) => {
  const dataDir = tempDir(t)
  writeFileSync(join(dataDir, 'jwt-secret'), 'tiny\n', { mode: 0o600 })
  t.throws(() => loadConfig({ DATA_DIR: dataDir }), { name: 'ConfigError', message: /jwt-secret holds no usable JWT_SECRET; delete it/ })
  t.equal(readFileSync(join(dataDir, 'jwt-secret'), 'utf8'), 'tiny\n')
})

t.test('readEnv validates without generating anything', async (t) => {
  const dataDir = join(tempDir(t), 'never')
  const env = readEnv({ DATA_DIR: dataDir, PORT: '1234' })
  t.equal(env.PORT, 1234)
  t.notOk(existsSync(dataDir))
})
