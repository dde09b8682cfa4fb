import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import pg from 'pg'
import { buildApp, type BuildOptions } from '../../src/app.ts'
import { signAdminToken, type AdminRole } from '../../src/auth/admin-jwt.ts'
import { DEFAULT_LIMITS, type Config } from '../../src/config.ts'
import { CONFIG_DEFAULTS } from './config-defaults.ts'

export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

export interface Teardown { teardown: (fn: () => unknown) => void }

export interface TestServer {
  app: FastifyInstance
  config: Config
  wsUrl: string
  httpUrl: string
  /** Everything the server logged so far. */
  logs: () => string
  adminToken: (role?: AdminRole, sub?: string) => string
  api: (method: string, path: string, options?: { body?: unknown, token?: string | null, rawBody?: string, headers?: Record<string, string> }) => Promise<ApiResponse>
  close: () => Promise<void>
}

export interface ApiResponse {
  status: number
  headers: Headers
  body: any
}

/** A schema of its own for each test file or server group, dropped afterwards. */
export function uniqueSchema (label: string): string {
  return `t_${label.replace(/[^a-z0-9]/gi, '').toLowerCase().slice(0, 20)}_${process.pid}_${randomBytes(3).toString('hex')}`
}

export async function dropSchema (schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL })
  await client.connect()
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
  } finally {
    await client.end()
  }
}

export function testConfig (overrides: Partial<Config> = {}): Config {
  return {
    port: 0,
    host: '127.0.0.1',
    databaseUrl: TEST_DATABASE_URL,
    databaseSchema: uniqueSchema('s'),
    dataDir: mkdtempSync(join(tmpdir(), 'scopegate-test-')),
    gatewayToken: randomBytes(24).toString('base64url'),
    jwtSecret: randomBytes(32).toString('base64url'),
    // The production defaults and limits: every suite runs with them on.
    ...CONFIG_DEFAULTS,
    ...DEFAULT_LIMITS,
    ...overrides
  }
}

/**
 * Starts the real app on a real port against its own Postgres schema (or
 * PGlite when databaseUrl is undefined) and tears it down with the test.
 */
export async function startServer (t: Teardown, overrides: Partial<Config> = {}, keepSchema = false, options: Pick<BuildOptions, 'clock'> = {}): Promise<TestServer> {
  const config = testConfig(overrides)
  let logText = ''
  const logStream = new PassThrough()
  logStream.on('data', (chunk: Buffer) => { logText += chunk.toString() })
  const app = await buildApp(config, { logStream, ...options })
  // config.port is 0 (any free port) unless a test restarts a server on the port it had.
  await app.listen({ port: config.port, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('server has no port')
  const httpUrl = `http://127.0.0.1:${address.port}`
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await app.close()
  }
  t.teardown(async () => {
    await close()
    if (config.databaseUrl !== undefined && !keepSchema) await dropSchema(config.databaseSchema)
    rmSync(config.dataDir, { recursive: true, force: true })
  })
  const adminToken = (role: AdminRole = 'admin', sub = 'test-admin'): string => signAdminToken(config.jwtSecret, { sub, role }, 3_600_000)
  return {
    app,
    config,
    wsUrl: `ws://127.0.0.1:${address.port}/`,
    httpUrl,
    logs: () => logText,
    adminToken,
    close,
    async api (method, path, options = {}) {
      const headers: Record<string, string> = { ...options.headers }
      const token = options.token === undefined ? adminToken() : options.token
      if (token !== null) headers.authorization = `Bearer ${token}`
      let body: string | undefined = options.rawBody
      if (options.body !== undefined) {
        body = JSON.stringify(options.body)
        headers['content-type'] = 'application/json'
      }
      const res = await fetch(httpUrl + path, { method, headers, ...(body !== undefined && { body }) })
      const text = await res.text()
      let parsed: unknown = text
      try { parsed = JSON.parse(text) } catch {}
      return { status: res.status, headers: res.headers, body: parsed }
    }
  }
}

/** The settings instances of one deployment share: a schema and the same secrets. */
export function sharedConfig (label: string): Pick<Config, 'databaseSchema' | 'gatewayToken' | 'jwtSecret'> {
  return { databaseSchema: uniqueSchema(label), gatewayToken: randomBytes(24).toString('base64url'), jwtSecret: randomBytes(32).toString('base64url') }
}

/**
 * `count` instances sharing one Postgres schema and the same secrets, like
 * replicas behind a load balancer; closed, and the schema dropped, when the test ends.
 */
export async function startInstances (t: Teardown, count: number, label: string, overrides: Partial<Config> = {}): Promise<TestServer[]> {
  const shared = { ...sharedConfig(label), ...overrides }
  const servers: TestServer[] = []
  // Registered first, so it runs after every instance's own teardown has closed it.
  t.teardown(async () => {
    for (const server of servers) await server.close()
    await dropSchema(shared.databaseSchema)
  })
  for (let i = 0; i < count; i++) servers.push(await startServer(t, shared, true))
  return servers
}
