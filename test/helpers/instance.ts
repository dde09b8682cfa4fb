// A server instance as it runs in production: `node bin/scopegate.js serve`
// in a child process of its own, so that a crash, an unhandled rejection (which
// ends a Node process) or a leak is the instance's and can be seen from here.
// The fuzz test and the soak (bench/soak.ts) use it. The child is started with
// probe-preload.cjs, which answers SIGWINCH with its heap after a full GC and its
// active handles; nothing in src/ knows about it.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { signAdminToken, type AdminRole } from '../../src/auth/admin-jwt.ts'
import type { ApiResponse } from './server.ts'
import { freePort } from './ports.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const BIN = join(ROOT, 'bin', 'scopegate.js')
const PRELOAD = fileURLToPath(new URL('./probe-preload.cjs', import.meta.url))

export interface InstanceSecrets {
  databaseUrl: string
  databaseSchema: string
  gatewayToken: string
  jwtSecret: string
}

export function instanceSecrets (databaseUrl: string, databaseSchema: string): InstanceSecrets {
  return { databaseUrl, databaseSchema, gatewayToken: randomBytes(24).toString('base64url'), jwtSecret: randomBytes(32).toString('base64url') }
}

export interface ProbeReport {
  /** V8 heap in use right after a full GC. */
  heapUsed: number
  rss: number
  /** process.getActiveResourcesInfo() counted by kind (TCPSocketWrap, Timeout, …). */
  resources: Record<string, number>
}

export interface Exit { code: number | null, signal: NodeJS.Signals | null }

export interface Instance {
  name: string
  pid: number
  port: number
  wsUrl: string
  httpUrl: string
  /** A stand-in for TestServer's config in the pairing helpers. */
  config: { gatewayToken: string, jwtSecret: string }
  /** Everything the instance wrote to stdout and stderr (probe lines excepted). */
  output: () => string
  /** Log lines at level error (50) or fatal (60). */
  errorLines: () => string[]
  /** Settles when the process exits, for whatever reason. */
  exited: Promise<Exit>
  /** null while it runs. */
  exit: () => Exit | null
  adminToken: (role?: AdminRole, sub?: string) => string
  api: (method: string, path: string, options?: { body?: unknown, token?: string | null, rawBody?: string, headers?: Record<string, string> }) => Promise<ApiResponse>
  /** Full GC in the instance, then its heap, RSS and handles. */
  probe: () => Promise<ProbeReport>
  /** Resident set size from /proc, without disturbing the process. */
  rss: () => number
  /** /metrics as a map of `name{labels}` to value. */
  metrics: () => Promise<Map<string, number>>
  /** SIGTERM and wait for the exit (SIGKILL after `graceMs`). */
  stop: (graceMs?: number) => Promise<Exit>
}

export interface InstanceOptions {
  name?: string
  secrets: InstanceSecrets
  /** More environment (MAX_PAYLOAD_BYTES, LOG_LEVEL, …). */
  env?: Record<string, string>
}

/**
 * One HTTP request on a connection of its own, closed after the answer. fetch
 * keeps connections alive for as long as the server's keep-alive hint (72 s
 * with Fastify), which would show up as sockets the instance holds.
 */
export async function httpCall (url: string, method = 'GET', headers: Record<string, string> = {}, body?: string): Promise<{ status: number, headers: Headers, text: string }> {
  return await new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers: { ...headers, connection: 'close' }, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('error', reject)
      res.on('end', () => {
        const out = new Headers()
        for (const [name, value] of Object.entries(res.headers)) {
          if (value !== undefined) out.set(name, Array.isArray(value) ? value.join(', ') : value)
        }
        resolve({ status: res.statusCode ?? 0, headers: out, text: Buffer.concat(chunks).toString() })
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}


async function waitForHealth (httpUrl: string, exited: () => Exit | null, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (exited() !== null) throw new Error('instance exited while starting')
    try {
      const res = await httpCall(`${httpUrl}/readyz`)
      if (res.status === 200) return
    } catch {}
    if (Date.now() > deadline) throw new Error(`instance not ready within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** Parses Prometheus text into `name{labels}` → value (labels as printed). */
export function parseMetrics (text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const space = line.lastIndexOf(' ')
    out.set(line.slice(0, space), Number(line.slice(space + 1)))
  }
  return out
}

/** Starts `node bin/scopegate.js serve` with the given database and secrets on a free loopback port; resolves once /readyz is 200. */
export async function startInstance (options: InstanceOptions): Promise<Instance> {
  if (!existsSync(join(ROOT, 'dist', 'cli', 'index.js'))) throw new Error('dist/ is missing: run `npm run build` first')
  const { secrets } = options
  const name = options.name ?? 'instance'
  const port = await freePort()
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: secrets.databaseUrl,
    DATABASE_SCHEMA: secrets.databaseSchema,
    GATEWAY_TOKEN: secrets.gatewayToken,
    JWT_SECRET: secrets.jwtSecret,
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'warn',
    // Unused with DATABASE_URL (PGlite only), but kept out of the work tree.
    DATA_DIR: join(tmpdir(), 'scopegate-instance-unused'),
    ...options.env
  }
  delete env.NODE_OPTIONS
  const child: ChildProcess = spawn(process.execPath, ['--expose-gc', '--require', PRELOAD, BIN, 'serve'], { env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  let exit: Exit | null = null
  const probeWaiters: Array<(report: ProbeReport) => void> = []
  let stderrBuffer = ''
  child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr?.on('data', (chunk: Buffer) => {
    stderrBuffer += chunk.toString()
    let newline: number
    while ((newline = stderrBuffer.indexOf('\n')) >= 0) {
      const line = stderrBuffer.slice(0, newline)
      stderrBuffer = stderrBuffer.slice(newline + 1)
      if (line.startsWith('@@probe ')) probeWaiters.shift()?.(JSON.parse(line.slice(8)) as ProbeReport)
      else output += line + '\n'
    }
  })
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal }
      resolve(exit)
    })
  })
  const httpUrl = `http://127.0.0.1:${port}`
  try {
    await waitForHealth(httpUrl, () => exit, 60_000)
  } catch (err) {
    child.kill('SIGKILL')
    throw new Error(`${name}: ${(err as Error).message}\n${output}`)
  }
  const pid = child.pid as number
  const adminToken = (role: AdminRole = 'admin', sub = 'suite-admin'): string => signAdminToken(secrets.jwtSecret, { sub, role }, 3_600_000)

  return {
    name,
    pid,
    port,
    wsUrl: `ws://127.0.0.1:${port}/`,
    httpUrl,
    config: { gatewayToken: secrets.gatewayToken, jwtSecret: secrets.jwtSecret },
    output: () => output,
    errorLines: () => output.split('\n').filter((line) => /"level":(50|60)\b/.test(line)),
    exited,
    exit: () => exit,
    adminToken,
    async api (method, path, opts = {}) {
      const headers: Record<string, string> = { ...opts.headers }
      const token = opts.token === undefined ? adminToken() : opts.token
      if (token !== null) headers.authorization = `Bearer ${token}`
      let body: string | undefined = opts.rawBody
      if (opts.body !== undefined) {
        body = JSON.stringify(opts.body)
        headers['content-type'] = 'application/json'
      }
      const res = await httpCall(httpUrl + path, method, headers, body)
      let parsed: unknown = res.text
      try { parsed = JSON.parse(res.text) } catch {}
      return { status: res.status, headers: res.headers, body: parsed }
    },
    async probe () {
      if (exit !== null) throw new Error(`${name} has exited (${JSON.stringify(exit)})`)
      const report = new Promise<ProbeReport>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${name}: no probe answer within 10 s`)), 10_000)
        probeWaiters.push((r) => { clearTimeout(timer); resolve(r) })
      })
      child.kill('SIGWINCH')
      return await report
    },
    rss () {
      try {
        const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
        return Number(kb) * 1024
      } catch {
        return NaN
      }
    },
    async metrics () {
      return parseMetrics((await httpCall(`${httpUrl}/metrics`)).text)
    },
    async stop (graceMs = 15_000) {
      if (exit !== null) return exit
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
      const result = await exited
      clearTimeout(timer)
      return result
    }
  }
}
