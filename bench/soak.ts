// Soak (issue #8): two instances (child processes, `node bin/scopegate.js
// serve`) on one Postgres schema, N simulated devices that pair, connect
// (alternating instances), call methods, and are revoked (scope revoke, token
// revoke, device removal; over REST on either instance or over WS from an
// admin device) and re-approved, for a bounded time on loopback only.
//
// It prints progress every ~10 s, and at the end: errors (unexpected closes,
// answers, frames), leaks (RSS, heap after a full GC and active handles of
// each instance, sampled over time, and after every client left), and whether
// every audit row matches what the soak did (counted by action, by device and
// by actor against its own log). Exits non-zero on any error, mismatch or leak.
//
//   npm run soak                                   # 1,000 devices, 300 s
//   SOAK_DEVICES=200 SOAK_SECONDS=60 npm run soak
//
// test/soak-small.test.ts runs the same module with 20 devices for ~10 s.
import { randomBytes } from 'node:crypto'
import { pathToFileURL } from 'node:url'
import pg from 'pg'
import { TestDevice, TestSocket, type ConnectOptions, type Frame } from '../test/helpers/device.ts'
import { startInstance, type Instance, type ProbeReport } from '../test/helpers/instance.ts'
import { dropSchema, TEST_DATABASE_URL, uniqueSchema } from '../test/helpers/server.ts'

const READ = 'operator.read'
const WRITE = 'operator.write'
const DEVICE_SCOPES = [READ, WRITE]
const ADMIN_SUB = 'soak-admin'
/** How long an expected close may take to arrive (a notification crosses instances through Postgres). */
const EXPECTED_CLOSE_MS = 15_000

export interface SoakOptions {
  devices: number
  seconds: number
  /** Revocations per second (default: max(2, devices / 100)). */
  actionsPerSecond?: number
  /** Progress and leak samples every this many ms (default 10,000). */
  sampleMs?: number
  log?: (line: string) => void
  /** Postgres URL (default TEST_DATABASE_URL). */
  databaseUrl?: string
}

export interface Sample {
  atS: number
  instance: string
  rssMiB: number
  heapMiB: number
  handles: number
  sockets: number
  timers: number
  connections: number
  /** Database pool clients (scopegate_db_pool_connections total): TCP sockets that may stay open. */
  pool: number
}

export interface SoakReport {
  devices: number
  seconds: number
  counts: Record<string, number>
  errors: string[]
  auditMismatches: string[]
  leaks: string[]
  samples: Sample[]
  baseline: Record<string, ProbeReport>
  drained: Record<string, ProbeReport>
  auditRows: number
  instanceErrors: string[]
  ok: boolean
}

type ActionKind = 'scope-revoke' | 'token-revoke' | 'remove'
const CLOSE_REASON: Record<ActionKind, string> = {
  'scope-revoke': `scope revoked (${WRITE})`,
  'token-revoke': 'device token revoked',
  remove: 'device removed'
}
const AUDIT_ACTION: Record<ActionKind, string> = {
  'scope-revoke': 'scope.revoked',
  'token-revoke': 'token.revoked',
  remove: 'device.removed'
}

/** How long any answer may take before the soak calls it a hang (the server is slow, not wrong, below this). */
const ANSWER_MS = 30_000
const TRY_AGAIN_LATER = { code: 1013, reason: 'try again later' }
/**
 * How long to wait before reading over REST what became of a WS call whose
 * socket closed before the answer: longer than a transaction may run
 * (Prisma's 5 s), so that one still in flight has committed or rolled back.
 */
const SETTLE_MS = 6000

let sequence = 0
/** A request and its answer, waiting up to ANSWER_MS. */
async function call (socket: TestSocket, method: string, params?: unknown): Promise<Frame> {
  const id = `s${++sequence}`
  socket.send({ type: 'req', id, method, ...(params !== undefined && { params }) })
  return await socket.next((f) => f.type === 'res' && f.id === id, ANSWER_MS)
}

/**
 * Opens a socket and answers the challenge like TestDevice.connect, but waits
 * up to ANSWER_MS and never leaves a socket behind. `res` is null when the
 * server closed the socket before answering (an instance failing closed
 * closes handshakes in progress with 1013).
 */
async function connect (device: TestDevice, url: string, opts: ConnectOptions): Promise<{ socket: TestSocket, res: Frame | null, ms: number }> {
  const started = performance.now()
  const socket = await TestSocket.open(url)
  try {
    const challenge = (await socket.event('connect.challenge', ANSWER_MS)).payload as { nonce: string, ts: number }
    const res = await call(socket, 'connect', device.connectParams(challenge, opts))
    return { socket, res, ms: performance.now() - started }
  } catch (err) {
    if (socket.ws.readyState === socket.ws.CLOSED) return { socket, res: null, ms: performance.now() - started }
    socket.ws.terminate()
    throw err
  }
}

const isTryAgainLater = (close: { code: number, reason: string }): boolean => close.code === TRY_AGAIN_LATER.code && close.reason === TRY_AGAIN_LATER.reason

/** Bounded samples of a latency, for p50 / p99. */
class Latency {
  readonly #samples: number[] = []
  add (ms: number): void { if (this.#samples.length < 200_000) this.#samples.push(ms) }
  summary (): string {
    const sorted = [...this.#samples].sort((a, b) => a - b)
    const at = (p: number): string => (sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] ?? NaN).toFixed(1)
    return `n ${sorted.length}, p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${(sorted.at(-1) ?? NaN).toFixed(1)} ms`
  }
}

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))
const mib = (bytes: number): number => Math.round(bytes / 104857.6) / 10
const sum = (record: Record<string, number>): number => Object.values(record).reduce((a, b) => a + b, 0)

/** The soak's own log of what it did, in the audit log's terms: action → device → actor → count. */
class Ledger {
  readonly rows = new Map<string, number>()
  record (action: string, deviceId: string, actor: string): void {
    const key = `${action}\t${deviceId}\t${actor}`
    this.rows.set(key, (this.rows.get(key) ?? 0) + 1)
  }
}

/**
 * The admin device (operator.admin) with one connection per instance, opened
 * again when an instance closed it (failing closed, say). A call whose socket
 * closes before the answer has an unknown outcome: 'unknown'.
 */
class Admin {
  readonly #sockets: Array<TestSocket | null>
  readonly #opening: Array<Promise<TestSocket> | null>
  constructor (readonly device: TestDevice, readonly token: string, private readonly instances: Instance[], sockets: TestSocket[]) {
    this.#sockets = [...sockets]
    this.#opening = instances.map(() => null)
  }

  get deviceId (): string { return this.device.id }

  async #socket (i: number): Promise<TestSocket> {
    const open = this.#sockets[i]
    if (open != null && !open.isClosed) return open
    this.#opening[i] ??= (async () => {
      for (let attempt = 0; attempt < 60; attempt++) {
        try {
          const conn = await connect(this.device, (this.instances[i] as Instance).wsUrl, { deviceToken: this.token, scopes: ['operator.admin'] })
          if (conn.res?.ok === true) {
            this.#sockets[i] = conn.socket
            return conn.socket
          }
          conn.socket.ws.terminate()
        } catch {}
        await sleep(1000)
      }
      throw new Error(`the admin device could not connect to ${(this.instances[i] as Instance).name} again`)
    })().finally(() => { this.#opening[i] = null })
    return await this.#opening[i]
  }

  async call (i: number, method: string, params: unknown): Promise<Frame | 'unknown'> {
    const socket = await this.#socket(i)
    try {
      return await call(socket, method, params)
    } catch (err) {
      if (socket.isClosed) return 'unknown'
      throw err
    }
  }

  async close (): Promise<void> {
    for (const socket of this.#sockets) if (socket != null) await socket.close()
  }
}

interface Context {
  instances: Instance[]
  gatewayToken: string
  admin: Admin
  ledger: Ledger
  counts: Record<string, number>
  errors: string[]
  stopping: boolean
  /** Set once every device has ended: the approver may stop then. */
  approverStop: boolean
  deadline: number
  /** No new revocation this close to the deadline. */
  tailMs: number
  approvals: Array<{ device: SimDevice, requestId: string, done: () => void }>
  /** Round-robin counters, one per choice, so that the choices do not lock step. */
  turns: Record<string, number>
  connectLatency: Latency
  rpcLatency: Latency
}

function turn (ctx: Context, name: string, of: number): number {
  const n = ctx.turns[name] ?? 0
  ctx.turns[name] = n + 1
  return n % of
}

function count (ctx: Context, name: string, by = 1): void {
  ctx.counts[name] = (ctx.counts[name] ?? 0) + by
}

function fail (ctx: Context, message: string): void {
  count(ctx, 'errors')
  if (ctx.errors.length < 200) ctx.errors.push(message)
}

/** A device as a real client runs it: pair, connect, call, and follow the server when it is closed. */
class SimDevice {
  readonly device = new TestDevice()
  token: string | null = null
  socket: TestSocket | null = null
  online = false
  /** Under an admin action: no other action may pick it until it is back online. */
  busy = false
  expected: { reason: string, atMs: number } | null = null
  /** The admin action behind `expected`: settles true once the server has done it, false when it did nothing. */
  performed: Promise<boolean> | null = null
  /** How the current connection logged in: only a device-token login is closed by a token revoke (PROTOCOL.md). */
  authMethod: 'token' | 'device-token' | null = null
  readonly requestIds = new Set<string>()
  #attempt = 0

  constructor (readonly index: number, private readonly ctx: Context) {}

  get id (): string { return this.device.id }

  async run (startDelayMs: number): Promise<void> {
    await sleep(startDelayMs)
    while (!this.ctx.stopping) {
      try {
        await this.#once()
      } catch (err) {
        if (!this.ctx.stopping) fail(this.ctx, `${this.id.slice(0, 8)}: ${(err as Error).message.slice(0, 300)}`)
        await sleep(500)
      }
    }
  }

  async #once (): Promise<void> {
    const ctx = this.ctx
    if (this.expected !== null) {
      // The last close was not the one expected (an instance failing closed got there first): what the
      // action did is learnt from its outcome, as a client learns it from its next connect.
      const reason = this.expected.reason
      if (await this.performed === true) this.#applied(reason)
      else this.expected = null
      count(ctx, 'revocation overtaken by a fail-closed close')
    }
    // Spread over the instances: each device starts on its own and alternates on every connect.
    const instance = ctx.instances[(this.index + this.#attempt++) % ctx.instances.length] as Instance
    const credentials = this.token !== null ? { deviceToken: this.token } : { token: ctx.gatewayToken }
    const { socket, res, ms } = await connect(this.device, instance.wsUrl, { ...credentials, scopes: DEVICE_SCOPES })
    count(ctx, 'connects')
    if (res === null) {
      const closed = await socket.closed
      if (isTryAgainLater(closed)) {
        count(ctx, `closed 1013 before the answer (fail-closed, retried) on ${instance.name}`)
        await sleep(1000)
        return
      }
      if (!ctx.stopping) fail(ctx, `${this.id.slice(0, 8)} on ${instance.name}: closed ${JSON.stringify(closed)} before answering connect`)
      return
    }
    ctx.connectLatency.add(ms)
    if (res.ok !== true) {
      const closed = await socket.closedWithin(5000)
      const error = res.error as { code?: string, details?: { reason?: string, requestId?: string } } | undefined
      if (error?.code === 'NOT_PAIRED' && typeof error.details?.requestId === 'string' && closed.reason === `pairing required (${error.details.reason ?? ''})`) {
        count(ctx, `refused pairing required (${error.details.reason ?? ''})`)
        const requestId = error.details.requestId
        if (!this.requestIds.has(requestId)) {
          this.requestIds.add(requestId)
          ctx.ledger.record('pairing.requested', this.id, this.id)
        }
        // Wait for the admin to approve, as a person would, then connect again.
        await new Promise<void>((resolve) => { ctx.approvals.push({ device: this, requestId, done: resolve }) })
        return
      }
      if (ctx.stopping) return
      if (error?.code === 'UNAVAILABLE' && isTryAgainLater(closed)) {
        // Documented for a database out of reach (or saturated): retryable. Counted, and tried again.
        count(ctx, `refused UNAVAILABLE, close 1013 (retried) on ${instance.name}`)
        await sleep(1000)
        return
      }
      fail(ctx, `${this.id.slice(0, 8)} on ${instance.name}: connect refused ${JSON.stringify(res.error)} then ${JSON.stringify(closed)}`)
      // As a client would: a device token the server no longer knows is dropped for the gateway token.
      if ((error?.details as { code?: string } | undefined)?.code === 'AUTH_DEVICE_TOKEN_MISMATCH') this.token = null
      await sleep(1000)
      return
    }
    const auth = (res.payload as { auth?: { deviceToken?: unknown, method?: 'token' | 'device-token' } }).auth
    if (typeof auth?.deviceToken === 'string') this.token = auth.deviceToken
    this.authMethod = auth?.method ?? null
    count(ctx, 'admitted')
    this.socket = socket
    this.online = true
    this.busy = false
    await this.#serve(socket, instance)
    this.online = false
    this.socket = null
  }

  /** Calls methods until the socket closes; then checks the close was one an admin action asked for. */
  async #serve (socket: TestSocket, instance: Instance): Promise<void> {
    const ctx = this.ctx
    const methods = ['health', 'status', 'cron.list', 'cron.status']
    let closedInfo: { code: number, reason: string } | null = null
    void socket.closed.then((info) => { closedInfo = info })
    while (closedInfo === null && !ctx.stopping) {
      await Promise.race([sleep(500 + Math.random() * 3000), socket.closed])
      if (closedInfo !== null || ctx.stopping) break
      const method = methods[Math.floor(Math.random() * methods.length)] as string
      let answer: Frame
      const started = performance.now()
      try {
        answer = await call(socket, method, method === 'cron.list' ? { limit: 10 } : undefined)
      } catch (err) {
        if (socket.isClosed) break // closed while waiting: judged below
        fail(ctx, `${this.id.slice(0, 8)} on ${instance.name}: ${method}: ${(err as Error).message.slice(0, 200)}`)
        continue
      }
      ctx.rpcLatency.add(performance.now() - started)
      const code = (answer.error as { code?: string } | undefined)?.code
      if (answer.ok === true) count(ctx, 'rpc ok')
      else if (code === 'RATE_LIMITED') count(ctx, 'rpc RATE_LIMITED')
      else if (code === 'UNAVAILABLE' && (answer.error as { retryable?: boolean }).retryable === true) count(ctx, `rpc UNAVAILABLE (retryable) on ${instance.name}`)
      else fail(ctx, `${this.id.slice(0, 8)} on ${instance.name}: ${method} answered ${JSON.stringify(answer.error)}`)
    }
    const unexpectedFrames = socket.frames.filter((f) => !(f.type === 'res' || (f.type === 'event' && (f.event === 'connect.challenge' || f.event === 'tick'))))
    if (unexpectedFrames.length > 0) fail(ctx, `${this.id.slice(0, 8)}: unexpected frames ${JSON.stringify(unexpectedFrames).slice(0, 300)}`)
    if (ctx.stopping && closedInfo === null) {
      await socket.close()
      return
    }
    const closed = await socket.closed
    const expected = this.expected
    if (expected !== null && closed.code === 1008 && closed.reason === expected.reason) {
      count(ctx, `closed ${closed.reason}`)
      this.#applied(expected.reason)
      return
    }
    if (isTryAgainLater(closed)) {
      // Documented fail-closed: the instance lost its database or listener (or could not reach it in time) and closed everyone.
      count(ctx, `closed 1013 try again later (fail-closed) on ${instance.name}`)
      if (expected !== null) {
        if (await this.performed === true) this.#applied(expected.reason)
        else this.expected = null
      }
      await sleep(1000)
      return
    }
    if (ctx.stopping && closed.code === 1012) return
    fail(ctx, `${this.id.slice(0, 8)} on ${instance.name}: unexpected close ${closed.code} ${JSON.stringify(closed.reason)} (expected ${JSON.stringify(expected?.reason ?? 'none')})`)
    this.expected = null
  }

  /** What a client does after the server told it why: a revoked or removed device forgets its token. */
  #applied (reason: string): void {
    this.expected = null
    if (reason !== CLOSE_REASON['scope-revoke']) this.token = null
  }
}

async function requestState (ctx: Context, requestId: string): Promise<string> {
  const instance = ctx.instances[turn(ctx, 'reconcile', ctx.instances.length)] as Instance
  const res = await instance.api('GET', `/api/v1/pairing-requests/${requestId}`, { token: instance.adminToken('viewer', ADMIN_SUB) })
  return res.status === 200 ? String((res.body as { state?: unknown }).state) : `unreadable (${res.status})`
}

/** Whether a token revoke or a removal happened, read over REST (for a WS call whose answer never came). */
async function wasPerformed (ctx: Context, target: SimDevice, kind: ActionKind): Promise<boolean> {
  const instance = ctx.instances[turn(ctx, 'reconcile', ctx.instances.length)] as Instance
  const res = await instance.api('GET', `/api/v1/devices/${target.id}`, { token: instance.adminToken('viewer', ADMIN_SUB) })
  if (kind === 'remove') return res.status === 404
  const tokens = (res.body as { tokens?: Array<{ role: string, revokedAtMs?: number }> }).tokens ?? []
  return tokens.some((token) => token.role === 'operator' && token.revokedAtMs !== undefined)
}

/** Approves every request devices wait on, over REST on either instance or over WS from the admin device. */
async function approver (ctx: Context): Promise<void> {
  while (!ctx.approverStop || ctx.approvals.length > 0) {
    const job = ctx.approvals.shift()
    if (job === undefined) {
      await sleep(20)
      continue
    }
    const channel = turn(ctx, 'approve', 3)
    try {
      if (channel < 2) {
        const instance = ctx.instances[channel] as Instance
        const res = await instance.api('POST', `/api/v1/pairing-requests/${job.requestId}/approve`, { token: instance.adminToken('admin', ADMIN_SUB) })
        if (res.status === 503) {
          count(ctx, `approve 503 (retried) on ${instance.name}`)
          setTimeout(() => ctx.approvals.push(job), 500)
          continue
        }
        if (res.status !== 200) throw new Error(`REST approve on ${instance.name}: ${res.status} ${JSON.stringify(res.body)}`)
        ctx.ledger.record('pairing.approved', job.device.id, ADMIN_SUB)
      } else {
        const res = await ctx.admin.call(turn(ctx, 'approve-socket', ctx.instances.length), 'device.pair.approve', { requestId: job.requestId })
        if (res === 'unknown') {
          // The socket closed before the answer: once anything in flight has settled, ask REST what became of the request.
          await sleep(SETTLE_MS)
          const state = await requestState(ctx, job.requestId)
          count(ctx, `approve over WS: socket closed before the answer, request found ${state}`)
          if (state === 'pending') {
            ctx.approvals.push(job)
            continue
          }
          if (state !== 'approved') throw new Error(`request ${state} after an approval with no answer`)
          ctx.ledger.record('pairing.approved', job.device.id, ctx.admin.deviceId)
          count(ctx, 'approved')
          job.done()
          continue
        }
        if ((res.error as { code?: string } | undefined)?.code === 'UNAVAILABLE') {
          count(ctx, 'approve UNAVAILABLE (retried) over WS')
          setTimeout(() => ctx.approvals.push(job), 500)
          continue
        }
        if (res.ok !== true) throw new Error(`WS approve: ${JSON.stringify(res.error)}`)
        ctx.ledger.record('pairing.approved', job.device.id, ctx.admin.deviceId)
      }
      count(ctx, 'approved')
    } catch (err) {
      fail(ctx, `approve ${job.requestId}: ${(err as Error).message.slice(0, 300)}`)
    }
    job.done()
  }
}

/** Picks an online device now and then and revokes something of it; the device's close is then checked. */
async function revoker (ctx: Context, devices: SimDevice[], perSecond: number): Promise<void> {
  const interval = 1000 / perSecond
  const inFlight = new Set<Promise<boolean>>()
  while (!ctx.stopping) {
    await sleep(interval)
    if (Date.now() > ctx.deadline - ctx.tailMs) continue // leave time for the last closes and re-approvals
    const kinds: ActionKind[] = ['scope-revoke', 'token-revoke', 'remove']
    const kind = kinds[turn(ctx, 'kind', kinds.length)] as ActionKind
    // A token revoke closes only connections that logged in with that token (a gateway-token login stays open).
    const candidates = devices.filter((d) => d.online && !d.busy && d.expected === null && (kind !== 'token-revoke' || d.authMethod === 'device-token'))
    const target = candidates[Math.floor(Math.random() * candidates.length)]
    if (target === undefined) continue
    target.busy = true
    target.expected = { reason: CLOSE_REASON[kind], atMs: Date.now() }
    let settle: (performed: boolean) => void = () => {}
    target.performed = new Promise((resolve) => { settle = resolve })
    const action = act(ctx, target, kind, settle).catch((err: unknown) => {
      fail(ctx, `${kind} ${target.id.slice(0, 8)}: ${(err as Error).message.slice(0, 300)}`)
      target.expected = null
      target.busy = false
      settle(false)
      return false
    })
    inFlight.add(action)
    void action.finally(() => inFlight.delete(action))
  }
  await Promise.all(inFlight)
}

/** Does the action; false when the server answered "try again later" (nothing was done, the device is left alone). */
async function act (ctx: Context, target: SimDevice, kind: ActionKind, settle: (performed: boolean) => void): Promise<boolean> {
  // WS has no scope revoke: that one is REST only. The others go over REST on A, REST on B, or WS.
  const channel = kind === 'scope-revoke' ? turn(ctx, kind, 2) : turn(ctx, kind, 3)
  let actor = ADMIN_SUB
  if (channel < 2) {
    const instance = ctx.instances[channel] as Instance
    const token = instance.adminToken('admin', ADMIN_SUB)
    const path = kind === 'scope-revoke'
      ? `/api/v1/devices/${target.id}/roles/operator/scopes/${WRITE}`
      : kind === 'token-revoke' ? `/api/v1/devices/${target.id}/tokens/operator` : `/api/v1/devices/${target.id}`
    const res = await instance.api('DELETE', path, { token })
    if (res.status === 503) return unavailable(ctx, target, `action ${kind} 503 on ${instance.name}`, settle)
    if (res.status !== 200) throw new Error(`REST DELETE on ${instance.name}: ${res.status} ${JSON.stringify(res.body)}`)
  } else {
    const i = turn(ctx, 'act-socket', ctx.instances.length)
    const res = kind === 'token-revoke'
      ? await ctx.admin.call(i, 'device.token.revoke', { deviceId: target.id, role: 'operator' })
      : await ctx.admin.call(i, 'device.pair.remove', { deviceId: target.id })
    if (res === 'unknown') {
      // The socket closed before the answer: once anything in flight has settled, ask REST whether it happened.
      await sleep(SETTLE_MS)
      const done = await wasPerformed(ctx, target, kind)
      count(ctx, `action ${kind} over WS: socket closed before the answer, ${done ? 'done' : 'not done'} per REST`)
      if (!done) return unavailable(ctx, target, `action ${kind} over WS lost with its socket`, settle)
    } else {
      if ((res.error as { code?: string } | undefined)?.code === 'UNAVAILABLE') return unavailable(ctx, target, `action ${kind} UNAVAILABLE over WS`, settle)
      if (res.ok !== true) throw new Error(`WS ${kind}: ${JSON.stringify(res.error)}`)
    }
    actor = ctx.admin.deviceId
  }
  ctx.ledger.record(AUDIT_ACTION[kind], target.id, actor)
  settle(true)
  count(ctx, `action ${kind} (${channel < 2 ? `REST ${ctx.instances[channel]?.name ?? ''}` : 'WS'})`)
  // The device must be closed with the reason within the bound.
  const startedAt = Date.now()
  while (target.expected !== null && Date.now() - startedAt < EXPECTED_CLOSE_MS) await sleep(50)
  if (target.expected !== null) {
    fail(ctx, `${kind} ${target.id.slice(0, 8)}: no close ${JSON.stringify(target.expected.reason)} within ${EXPECTED_CLOSE_MS} ms`)
    target.expected = null
    target.busy = false
  }
  return true
}

function unavailable (ctx: Context, target: SimDevice, what: string, settle: (performed: boolean) => void): false {
  count(ctx, `${what} (nothing done)`)
  target.expected = null
  target.busy = false
  settle(false)
  return false
}

/** Pairs the admin device (operator.admin) and opens one admin connection per instance. */
async function pairAdmin (ctx: Context, ledger: Ledger): Promise<Admin> {
  const device = new TestDevice()
  const [a] = ctx.instances as [Instance]
  const refused = await connect(device, a.wsUrl, { token: ctx.gatewayToken, scopes: ['operator.admin'] })
  const requestId = (refused.res?.error as { details?: { requestId?: string } } | undefined)?.details?.requestId
  if (typeof requestId !== 'string') throw new Error(`admin device: expected a pairing refusal, got ${JSON.stringify(refused.res)}`)
  await refused.socket.closed
  ledger.record('pairing.requested', device.id, device.id)
  const approved = await a.api('POST', `/api/v1/pairing-requests/${requestId}/approve`, { token: a.adminToken('admin', ADMIN_SUB) })
  if (approved.status !== 200) throw new Error(`admin device approval: ${approved.status}`)
  ledger.record('pairing.approved', device.id, ADMIN_SUB)
  const sockets: TestSocket[] = []
  let token: string | null = null
  for (const instance of ctx.instances) {
    const conn = await connect(device, instance.wsUrl, token === null ? { token: ctx.gatewayToken, scopes: ['operator.admin'] } : { deviceToken: token, scopes: ['operator.admin'] })
    if (conn.res?.ok !== true) throw new Error(`admin connect: ${JSON.stringify(conn.res)}`)
    token ??= (conn.res.payload as { auth: { deviceToken: string } }).auth.deviceToken
    sockets.push(conn.socket)
  }
  return new Admin(device, token as string, ctx.instances, sockets)
}

async function sample (instance: Instance, startedAt: number): Promise<{ sample: Sample, probe: ProbeReport }> {
  const probe = await instance.probe()
  const metrics = await instance.metrics()
  const connections = [...metrics].filter(([k]) => k.startsWith('scopegate_connections{')).reduce((n, [, v]) => n + v, 0)
  return {
    probe,
    sample: {
      atS: Math.round((Date.now() - startedAt) / 1000),
      instance: instance.name,
      rssMiB: mib(instance.rss()),
      heapMiB: mib(probe.heapUsed),
      handles: sum(probe.resources),
      sockets: probe.resources.TCPSocketWrap ?? 0,
      timers: probe.resources.Timeout ?? 0,
      connections,
      pool: metrics.get('scopegate_db_pool_connections{state="total"}') ?? 0
    }
  }
}

function formatSample (s: Sample): string {
  return `${s.instance}: rss ${s.rssMiB} MiB, heap after GC ${s.heapMiB} MiB, handles ${s.handles} (TCP sockets ${s.sockets} of which db pool ${s.pool}, timers ${s.timers}), ws connections ${s.connections}`
}

/** Audit rows by action, device and actor, from the database. */
async function auditRows (databaseUrl: string, schema: string): Promise<Map<string, number>> {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    const { rows } = await client.query<{ action: string, device_id: string | null, actor: string, n: number }>(
      `SELECT action, device_id, actor, count(*)::int AS n FROM "${schema}".audit_log GROUP BY 1, 2, 3`)
    return new Map(rows.map((r) => [`${r.action}\t${r.device_id ?? ''}\t${r.actor}`, r.n]))
  } finally {
    await client.end()
  }
}

/** Compares the audit log with the soak's ledger: by (action, device, actor), then summed by action and by device. */
function compareAudit (audit: Map<string, number>, ledger: Map<string, number>): string[] {
  const mismatches: string[] = []
  for (const key of new Set([...audit.keys(), ...ledger.keys()])) {
    const got = audit.get(key) ?? 0
    const want = ledger.get(key) ?? 0
    if (got !== want) {
      const [action, device, actor] = key.split('\t')
      mismatches.push(`${action} device ${(device ?? '').slice(0, 12)} actor ${(actor ?? '').slice(0, 12)}: audit has ${got}, the soak did ${want}`)
    }
  }
  return mismatches
}

function byAction (rows: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [key, n] of rows) {
    const action = key.split('\t')[0] as string
    out[action] = (out[action] ?? 0) + n
  }
  return out
}

/** Errors grouped by their text with ids and numbers blanked, most frequent first, one example each. */
function groupErrors (errors: string[]): string[] {
  const groups = new Map<string, { n: number, example: string }>()
  for (const error of errors) {
    const key = error.replace(/[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}|[0-9a-f]{8,64}|\d+/g, '#').slice(0, 160)
    const group = groups.get(key) ?? { n: 0, example: error }
    group.n++
    groups.set(key, group)
  }
  return [...groups.values()].sort((a, b) => b.n - a.n).slice(0, 15).map((g) => `${g.n}x ${g.example.slice(0, 300)}`)
}

export async function runSoak (options: SoakOptions): Promise<SoakReport> {
  const log = options.log ?? ((line: string) => { console.log(line) })
  const databaseUrl = options.databaseUrl ?? TEST_DATABASE_URL
  const sampleMs = options.sampleMs ?? 10_000
  const perSecond = options.actionsPerSecond ?? Math.max(2, options.devices / 100)
  const secrets = { databaseUrl, databaseSchema: uniqueSchema('soak'), gatewayToken: randomBytes(24).toString('base64url'), jwtSecret: randomBytes(32).toString('base64url') }
  log(`soak: ${options.devices} devices, ${options.seconds} s, ${perSecond} revocations/s, 2 instances on Postgres schema ${secrets.databaseSchema} (loopback only)`)
  // The first instance migrates the schema; the second starts on it.
  const a = await startInstance({ name: 'A', secrets })
  const b = await startInstance({ name: 'B', secrets }).catch(async (err: unknown) => { await a.stop(); throw err })
  const instances = [a, b]
  const ledger = new Ledger()
  const samples: Sample[] = []
  const baseline: Record<string, ProbeReport> = {}
  const baselineSamples: Record<string, Sample> = {}
  const drained: Record<string, ProbeReport> = {}
  const leaks: string[] = []
  /** Error-level log lines of the instances (a listener lost, a database lost, a handler that failed). */
  const instanceErrors: string[] = []
  let auditMismatches: string[] = []
  let auditTotal = 0
  const ctx: Context = {
    instances,
    gatewayToken: secrets.gatewayToken,
    admin: null as unknown as Admin, // set by pairAdmin before anything uses it
    ledger,
    counts: {},
    errors: [],
    stopping: false,
    approverStop: false,
    deadline: 0,
    tailMs: Math.min(EXPECTED_CLOSE_MS, options.seconds * 200),
    approvals: [],
    turns: {},
    connectLatency: new Latency(),
    rpcLatency: new Latency()
  }
  try {
    for (const instance of instances) {
      const first = await sample(instance, Date.now())
      baseline[instance.name] = first.probe
      baselineSamples[instance.name] = first.sample
      log(`idle ${formatSample(first.sample)}`)
    }
    ctx.admin = await pairAdmin(ctx, ledger)
    const startedAt = Date.now()
    ctx.deadline = startedAt + options.seconds * 1000
    const devices = Array.from({ length: options.devices }, (_, i) => new SimDevice(i, ctx))
    // Devices arrive over the first fifth of the run (at most 60 s), as after a restart.
    const ramp = Math.min(60_000, options.seconds * 200)
    const running = devices.map(async (d, i) => await d.run(Math.floor((i / devices.length) * ramp)))
    // Eight approvers at once: during the arrival of a thousand devices, one would queue far behind the handshakes.
    const approving = Promise.all(Array.from({ length: 8 }, async () => { await approver(ctx) }))
    const revoking = revoker(ctx, devices, perSecond)
    let nextSample = startedAt + sampleMs
    while (Date.now() < ctx.deadline) {
      await sleep(Math.max(0, Math.min(nextSample, ctx.deadline) - Date.now()))
      if (Date.now() < nextSample) continue
      nextSample += sampleMs
      const elapsed = Math.round((Date.now() - startedAt) / 1000)
      const online = devices.filter((d) => d.online).length
      const lines = [`[${elapsed}s] online ${online}/${devices.length}, connects ${ctx.counts.connects ?? 0}, rpc ok ${ctx.counts['rpc ok'] ?? 0}, approvals ${ctx.counts.approved ?? 0}, revocations ${Object.entries(ctx.counts).filter(([k]) => k.startsWith('action ')).reduce((n, [, v]) => n + v, 0)}, errors ${ctx.counts.errors ?? 0}`]
      for (const instance of instances) {
        if (instance.exit() !== null) {
          fail(ctx, `instance ${instance.name} exited ${JSON.stringify(instance.exit())}: ${instance.output().slice(-2000)}`)
          continue
        }
        const { sample: s } = await sample(instance, startedAt)
        samples.push(s)
        lines.push(`  ${formatSample(s)}`)
      }
      log(lines.join('\n'))
    }
    ctx.stopping = true
    log('stopping: every device closes its connection')
    await revoking
    // Devices still waiting for an approval get it, then see `stopping` and end.
    await Promise.all(running)
    ctx.approverStop = true
    await approving
    await ctx.admin.close()

    // Every client has left: what the instances still hold is what they would keep forever.
    await sleep(2000)
    for (const instance of instances) {
      if (instance.exit() !== null) {
        fail(ctx, `instance ${instance.name} exited ${JSON.stringify(instance.exit())}`)
        continue
      }
      const { sample: s, probe } = await sample(instance, startedAt)
      drained[instance.name] = probe
      log(`drained ${formatSample(s)}`)
      const before = baseline[instance.name] as ProbeReport
      const idle = baselineSamples[instance.name] as Sample
      if (s.connections !== 0) leaks.push(`${instance.name}: ${s.connections} connections still open after every client left`)
      // The pool grows to its size under load and keeps idle clients; any other socket is one nobody closed.
      if (s.sockets - s.pool > idle.sockets - idle.pool) leaks.push(`${instance.name}: ${s.sockets} TCP sockets held after every client left (${s.pool} pool clients), ${idle.sockets} at the start (${idle.pool} pool clients)`)
      if ((probe.resources.Timeout ?? 0) > (before.resources.Timeout ?? 0) + 16) leaks.push(`${instance.name}: ${probe.resources.Timeout ?? 0} timers after every client left (${before.resources.Timeout ?? 0} at the start)`)
      const heapBound = 32 * 1024 * 1024
      if (probe.heapUsed - before.heapUsed > heapBound) leaks.push(`${instance.name}: heap after GC grew ${mib(probe.heapUsed - before.heapUsed)} MiB (bound ${mib(heapBound)} MiB)`)
      for (const line of instance.errorLines()) instanceErrors.push(`${instance.name}: ${line.slice(0, 400)}`)
    }

    // The audit log against the soak's own ledger.
    const audit = await auditRows(databaseUrl, secrets.databaseSchema)
    auditTotal = [...audit.values()].reduce((n, v) => n + v, 0)
    auditMismatches = compareAudit(audit, ledger.rows)
    const wanted = byAction(ledger.rows)
    const got = byAction(audit)
    log(`audit: ${auditTotal} rows; by action: ${Object.entries(got).sort().map(([k, v]) => `${k} ${v}${wanted[k] === v ? '' : ` (soak did ${wanted[k] ?? 0})`}`).join(', ')}`)
    const devicesSeen = new Set([...audit.keys()].map((k) => k.split('\t')[1]))
    log(`audit: ${devicesSeen.size} devices in the audit log, ${auditMismatches.length} mismatches by (action, device, actor)`)
  } finally {
    ctx.stopping = true
    for (const instance of instances) {
      const exit = await instance.stop()
      if (exit.code !== 0) fail(ctx, `instance ${instance.name} exited ${JSON.stringify(exit)} on SIGTERM`)
    }
    await dropSchema(secrets.databaseSchema)
  }

  const report: SoakReport = {
    devices: options.devices,
    seconds: options.seconds,
    counts: ctx.counts,
    errors: ctx.errors,
    auditMismatches,
    leaks,
    samples,
    baseline,
    drained,
    auditRows: auditTotal,
    instanceErrors,
    ok: ctx.errors.length === 0 && instanceErrors.length === 0 && auditMismatches.length === 0 && leaks.length === 0
  }
  log('')
  log(`soak ${report.ok ? 'PASSED' : 'FAILED'}: ${options.devices} devices, ${options.seconds} s`)
  for (const [name, n] of Object.entries(ctx.counts).sort()) log(`  ${name}: ${n}`)
  for (const instance of instances) {
    const mine = samples.filter((s) => s.instance === instance.name)
    const first = mine[0]
    const last = mine.at(-1)
    const peak = mine.reduce((m, s) => Math.max(m, s.rssMiB), 0)
    const base = baseline[instance.name]
    const end = drained[instance.name]
    if (first !== undefined && last !== undefined) log(`  instance ${instance.name}: RSS ${first.rssMiB} → ${last.rssMiB} MiB (peak ${peak}); heap after GC ${first.heapMiB} → ${last.heapMiB} MiB; handles ${first.handles} → ${last.handles}`)
    if (base !== undefined && end !== undefined) log(`  instance ${instance.name} idle before/after: heap ${mib(base.heapUsed)} → ${mib(end.heapUsed)} MiB, RSS ${mib(base.rss)} → ${mib(end.rss)} MiB, handles ${sum(base.resources)} → ${sum(end.resources)}`)
  }
  log(`  connect (socket open to answer): ${ctx.connectLatency.summary()}`)
  log(`  RPC: ${ctx.rpcLatency.summary()}`)
  log(`  errors: ${ctx.counts.errors ?? 0}${report.errors.length > 0 ? ', by kind (first 200 kept):\n    ' + groupErrors(report.errors).join('\n    ') : ''}`)
  log(`  instance error log lines: ${instanceErrors.length}${instanceErrors.length > 0 ? '\n    ' + instanceErrors.slice(0, 10).join('\n    ') : ''}`)
  log(`  audit mismatches: ${auditMismatches.length}${auditMismatches.length > 0 ? '\n    ' + auditMismatches.slice(0, 20).join('\n    ') : ''}`)
  log(`  leaks: ${leaks.length}${leaks.length > 0 ? '\n    ' + leaks.join('\n    ') : ''}`)
  log(JSON.stringify({ soak: report.ok ? 'passed' : 'failed', devices: report.devices, seconds: report.seconds, counts: report.counts, errors: ctx.counts.errors ?? 0, instanceErrors: instanceErrors.length, auditRows: report.auditRows, auditMismatches: auditMismatches.length, leaks: leaks.length }))
  return report
}

async function main (): Promise<void> {
  const report = await runSoak({
    devices: Number(process.env.SOAK_DEVICES ?? 1000),
    seconds: Number(process.env.SOAK_SECONDS ?? 300),
    ...(process.env.SOAK_ACTIONS_PER_SEC !== undefined && { actionsPerSecond: Number(process.env.SOAK_ACTIONS_PER_SEC) })
  })
  process.exitCode = report.ok ? 0 : 1
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err)
    process.exitCode = 1
  })
}
