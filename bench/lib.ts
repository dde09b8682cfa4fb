// Shared by the benchmark scripts: a server in its own process (so its CPU
// and RSS are its own), and a gateway with one paired device ready to connect.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'
import { signAdminToken } from '../src/auth/admin-jwt.ts'
import { TestDevice } from '../test/helpers/device.ts'
import { dropSchema, TEST_DATABASE_URL, uniqueSchema } from '../test/helpers/server.ts'

export const DATABASE = process.env.BENCH_DB === 'pglite' ? 'pglite' : 'postgres'
const BIN = fileURLToPath(new URL('../bin/scopegate.js', import.meta.url))

export interface Server {
  child: ChildProcess
  port: number
  /** Everything the process printed up to its ready line (stdout and stderr). */
  output: string
  stop: () => Promise<void>
}

export async function startProcess (args: string[], env: Record<string, string>, ready: RegExp): Promise<Server> {
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const port = await new Promise<number>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      out += chunk.toString()
      const match = ready.exec(out)
      if (match !== null) resolve(Number(match[1]))
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', (chunk: Buffer) => { out += chunk.toString() })
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)))
  })
  child.stdout?.resume()
  return {
    child,
    port,
    output: out,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
  }
}

/**
 * A full garbage collection in a server started with `--inspect=127.0.0.1:0`,
 * through the inspector protocol (HeapProfiler.collectGarbage), so that an RSS
 * reading holds what the server keeps and not garbage it has not collected yet.
 */
export async function collectGarbage (server: Server): Promise<void> {
  const url = /Debugger listening on (ws:\/\/\S+)/.exec(server.output)?.[1]
  if (url === undefined) throw new Error('the server was not started with --inspect')
  const ws = new WebSocket(url)
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
  await new Promise<void>((resolve) => {
    ws.on('message', (data) => { if ((JSON.parse(data.toString()) as { id?: number }).id === 1) resolve() })
    ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' }))
  })
  ws.close()
}

export function rssBytes (pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1]
  return Number(kb) * 1024
}

/** User + system CPU time of a process so far, in ms (from /proc, so it works for a child). */
export function cpuMs (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
  const ticks = Number(fields[11]) + Number(fields[12])
  return ticks * 10
}

/** The whole machine's CPU time so far, in ms (/proc/stat): busy (everything but idle and iowait) and total. */
export function machineCpuMs (): { busy: number, total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number) ?? []
  const total = fields.reduce((sum, value) => sum + value, 0)
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0)
  return { busy: (total - idle) * 10, total: total * 10 }
}

export interface Gateway { server: Server, device: TestDevice, deviceToken: string, cleanup: () => Promise<void> }

/**
 * A gateway process (`nodeArgs` e.g. --cpu-prof) with one device paired for
 * operator.read and its device token; `bin`: another build's bin/scopegate.js
 * (bench/ab.ts compares two); `extraEnv`: environment for this gateway alone.
 */
export async function startGateway (nodeArgs: string[] = [], bin: string = BIN, extraEnv: Record<string, string> = {}): Promise<Gateway> {
  const gatewayToken = randomBytes(24).toString('base64url')
  const jwtSecret = randomBytes(32).toString('base64url')
  const dataDir = mkdtempSync(join(tmpdir(), 'scopegate-bench-'))
  const schema = uniqueSchema('bench')
  const env: Record<string, string> = {
    PORT: '0', GATEWAY_TOKEN: gatewayToken, JWT_SECRET: jwtSecret, DATA_DIR: dataDir,
    ...(DATABASE === 'postgres' && { DATABASE_URL: TEST_DATABASE_URL, DATABASE_SCHEMA: schema })
  }
  // At info level for its "Server listening" line; connection outcomes are logged asynchronously.
  const server = await startProcess([...nodeArgs, bin, 'serve'], { ...env, LOG_LEVEL: 'info', ...process.env.BENCH_ENV_OVERRIDE !== undefined && JSON.parse(process.env.BENCH_ENV_OVERRIDE) as Record<string, string>, ...extraEnv }, /Server listening at http:\/\/127\.0\.0\.1:(\d+)/)
  const url = `ws://127.0.0.1:${server.port}/`
  const device = new TestDevice()
  const refused = await device.connect(url, { token: gatewayToken, scopes: ['operator.read'] })
  await refused.socket.closed
  const admin = signAdminToken(jwtSecret, { sub: 'bench', role: 'admin' }, 3_600_000)
  const approve = await fetch(`http://127.0.0.1:${server.port}/api/v1/pairing-requests/${refused.res.error.details.requestId as string}/approve`, {
    method: 'POST', headers: { authorization: `Bearer ${admin}` }
  })
  if (approve.status !== 200) throw new Error(`approve failed: ${approve.status}`)
  const minted = await device.connect(url, { token: gatewayToken, scopes: ['operator.read'] })
  const deviceToken = minted.res.payload.auth.deviceToken as string
  await minted.socket.close()
  return {
    server,
    device,
    deviceToken,
    cleanup: async () => {
      await server.stop()
      rmSync(dataDir, { recursive: true, force: true })
      if (DATABASE === 'postgres') await dropSchema(schema)
    }
  }
}

/**
 * Upgrade, challenge, signed connect, hello-ok, with a client as lean as the
 * bare one: resolves with the open socket and no listener of its own left on
 * it, so that what the socket does next costs the client what a bare ws
 * socket costs (no frame log, no parse of every answer).
 */
export async function admitGateway (port: number, device: TestDevice, deviceToken: string): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false })
  await new Promise<void>((resolve, reject) => {
    ws.once('error', reject)
    ws.once('message', (challengeData) => {
      const challenge = (JSON.parse(challengeData.toString()) as { payload: { nonce: string, ts: number } }).payload
      ws.once('message', (helloData) => {
        ws.off('error', reject)
        const text = helloData.toString()
        if (text.includes('"hello-ok"')) resolve()
        else reject(new Error(`handshake failed: ${text}`))
      })
      ws.send(JSON.stringify({ type: 'req', id: 'c', method: 'connect', params: device.connectParams(challenge, { deviceToken, scopes: ['operator.read'] }) }))
    })
  })
  // Errors after the handshake (a reset under load) must not crash the client.
  ws.on('error', () => {})
  return ws
}

/** The gateway's side of the handshake loop: admitted, then closed. */
export async function gatewayHandshake (port: number, device: TestDevice, deviceToken: string): Promise<void> {
  const ws = await admitGateway(port, device, deviceToken)
  await new Promise<void>((resolve) => { ws.once('close', () => resolve()); ws.close() })
}

/** Runs `once` back to back on `concurrency` loops for `seconds`; how many completed. */
export async function loopFor (seconds: number, concurrency: number, once: () => Promise<void>): Promise<number> {
  const deadline = performance.now() + seconds * 1000
  let count = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < deadline) {
      await once()
      count++
    }
  }))
  return count
}

export function median (values: number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50)
}

export function percentile (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN
}

/** N connections, one request in flight each, for `seconds`: requests/s and latency percentiles. */
export async function rpcLoad (sockets: WebSocket[], seconds: number): Promise<{ rate: number, count: number, p50: number, p99: number }> {
  const latencies: number[] = []
  const deadline = performance.now() + seconds * 1000
  let count = 0
  await Promise.all(sockets.map(async (ws, index) => {
    let seq = 0
    while (performance.now() < deadline) {
      const id = `${index}-${seq++}`
      const started = performance.now()
      await new Promise<void>((resolve) => {
        const onMessage = (data: WebSocket.RawData): void => {
          if (!data.toString().includes(`"id":"${id}"`)) return
          ws.off('message', onMessage)
          resolve()
        }
        ws.on('message', onMessage)
        ws.send(`{"type":"req","id":"${id}","method":"health"}`)
      })
      latencies.push(performance.now() - started)
      count++
    }
  }))
  latencies.sort((a, b) => a - b)
  return { rate: count / seconds, count, p50: percentile(latencies, 50), p99: percentile(latencies, 99) }
}

/** `count` connections to the bare ws server, 50 at a time like openGateway's, so both servers see the same arrival pattern. */
export async function openBare (port: number, count: number): Promise<WebSocket[]> {
  const sockets: WebSocket[] = []
  for (let i = 0; i < count; i += 50) {
    sockets.push(...await Promise.all(Array.from({ length: Math.min(50, count - i) }, async () => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false })
      await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
      return ws
    })))
  }
  return sockets
}

export async function openGateway (port: number, device: TestDevice, deviceToken: string, count: number): Promise<WebSocket[]> {
  const sockets: WebSocket[] = []
  // A few at a time, like clients arriving.
  for (let i = 0; i < count; i += 50) {
    sockets.push(...await Promise.all(Array.from({ length: Math.min(50, count - i) }, async () => await admitGateway(port, device, deviceToken))))
  }
  return sockets
}

