import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import { MAX_TIMER_MS, type Clock, type Timer } from '../clock.ts'
import type { WebSocket, RawData } from 'ws'
import type { LastSeenRecorder } from '../devices/service.ts'
import type { MethodTable } from '../methods/index.ts'
import { UNKNOWN_METHOD, type Metrics } from '../metrics/metrics.ts'
import { Close, closeSocket, wsErrorClose, type CloseSpec } from './close.ts'
import { errorFrame, eventFrame, invalidRequest, isRequestFrame, PROTOCOL_VERSION, responseFrame, toProtocolError, type RequestFrame } from './frames.ts'
import { authenticate, unavailable, type Admission, type Challenge, type HandshakeDeps } from './handshake.ts'
import { rateLimitedError, TokenBucket } from './rate-limit.ts'
import type { ConnectionRegistry } from './registry.ts'

export interface GatewayPolicy {
  maxPayload: number
  maxBufferedBytes: number
  tickIntervalMs: number
  handshakeTimeoutMs: number
  /** RPC_RATE_PER_CONN: requests per second per connection, burst one second's worth; 0: none. */
  rpcRatePerConn: number
}

export interface ConnectionDeps {
  handshake: HandshakeDeps
  methods: MethodTable
  registry: ConnectionRegistry
  lastSeen: LastSeenRecorder
  policy: GatewayPolicy
  log: FastifyBaseLogger
  /** Decides token expiry (the challenge time, the handshake's checks, the expiry close). */
  clock: Clock
  serverVersion: string
  events: readonly string[]
  startedAtMs: number
  metrics: Metrics
  /** False while the database or the notification listener is lost: refuse, never guess. */
  isReady: () => boolean
  /** Runs after hello-ok was sent (delivers what was kept for the device). */
  onAdmitted?: (conn: GatewayConnection) => void
}

type State = 'awaiting-connect' | 'authenticating' | 'open' | 'closed'

const MAX_QUEUED_DURING_HANDSHAKE = 32

/** One WebSocket client, from challenge to close. */
export class GatewayConnection {
  readonly id = randomUUID()
  admission: Admission | undefined
  alive = true
  #state: State = 'awaiting-connect'
  #challenge: Challenge
  #timer: NodeJS.Timeout | undefined
  #expiryTimer: Timer | undefined
  #queued: RequestFrame[] = []
  #inflight = 0
  #draining = false
  #onIdle: (() => void) | undefined
  /** Set when the upgrade came over HANDSHAKE_RATE_PER_IP: the first request is answered RATE_LIMITED. */
  #rateLimitedUntilMs = 0
  readonly #rpcBucket: TokenBucket | null
  #closeCounted = false

  constructor (readonly socket: WebSocket, private readonly deps: ConnectionDeps, readonly remoteAddress: string) {
    this.#challenge = { nonce: randomUUID(), ts: deps.clock.now() }
    const rate = deps.policy.rpcRatePerConn
    this.#rpcBucket = rate > 0 ? new TokenBucket(rate, rate) : null
  }

  /** `rateLimitedMs` > 0: this upgrade came over the per-IP handshake rate; refuse the connect. */
  start (rateLimitedMs = 0): void {
    if (rateLimitedMs > 0) this.#rateLimitedUntilMs = Date.now() + rateLimitedMs
    this.socket.on('message', (data, isBinary) => this.#onMessage(data, isBinary))
    this.socket.on('close', (code) => this.#onClose(code))
    this.socket.on('pong', () => { this.alive = true })
    this.socket.on('error', (err) => {
      this.deps.log.debug({ connId: this.id, err: err.message }, 'socket error')
      const closed = wsErrorClose(err)
      if (closed !== undefined) this.#countClose(closed.code, closed.kind)
    })
    const timeout = this.deps.policy.handshakeTimeoutMs
    if (timeout > 0) {
      this.#timer = setTimeout(() => {
        if (this.#state !== 'awaiting-connect' || this.socket.readyState !== this.socket.OPEN) return
        this.deps.metrics.handshake('CONNECT_TIMEOUT')
        this.close(Close.connectTimeout)
      }, timeout)
    }
    this.send(eventFrame('connect.challenge', this.#challenge))
  }

  get isOpen (): boolean {
    return this.#state === 'open'
  }

  /** Sends a frame, closing a reader that lets its send buffer grow past the limit. */
  send (frame: string): void {
    if (this.socket.readyState !== this.socket.OPEN) return
    const limit = this.deps.policy.maxBufferedBytes
    if (limit > 0 && this.socket.bufferedAmount + frame.length > limit) {
      this.close(Close.slowConsumer)
      setTimeout(() => this.socket.terminate(), 1000).unref()
      return
    }
    this.socket.send(frame)
  }

  sendEvent (event: string, payload: unknown): void {
    this.send(eventFrame(event, payload))
  }

  close (spec: CloseSpec): void {
    closeSocket(this.socket, spec, this.#countClose)
  }

  /** Over MAX_CONNECTIONS: no challenge, close 1013 `try again later` (retryable) at once. */
  refuseOverCapacity (): void {
    this.socket.on('error', () => {})
    this.deps.metrics.handshake('OVER_CAPACITY')
    this.close(Close.tryAgainLater)
    // Not counted against the limit: make sure a peer that never answers the close cannot linger.
    setTimeout(() => this.socket.terminate(), 1000).unref()
  }

  /** Drops a peer that stopped answering pings (no close frame: 1006). */
  terminate (kind: string): void {
    this.#countClose(1006, kind)
    this.socket.terminate()
  }

  /** Counts the first close of this socket, whoever made it. */
  readonly #countClose = (code: number, kind: string): void => {
    if (this.#closeCounted) return
    this.#closeCounted = true
    this.deps.metrics.close(code, kind)
  }

  #onMessage (data: RawData, isBinary: boolean): void {
    if (this.#state === 'closed') return
    const frame = isBinary ? undefined : parseFrame(data)
    if (frame === undefined || !isRequestFrame(frame)) {
      this.close(Close.invalidFrame)
      return
    }
    switch (this.#state) {
      case 'awaiting-connect':
        this.#onFirstRequest(frame)
        return
      case 'authenticating':
        if (this.#queued.push(frame) > MAX_QUEUED_DURING_HANDSHAKE) this.close(Close.invalidFrame)
        return
      case 'open':
        this.#handleRequest(frame)
    }
  }

  #onFirstRequest (frame: RequestFrame): void {
    if (this.#rateLimitedUntilMs > 0) {
      this.deps.metrics.handshake('RATE_LIMITED')
      this.deps.log.info({ connId: this.id, outcome: 'RATE_LIMITED', remoteAddress: this.remoteAddress }, 'connect refused')
      this.send(errorFrame(frame.id, rateLimitedError(Math.max(1, this.#rateLimitedUntilMs - Date.now()))))
      this.close(Close.rateLimited)
      return
    }
    if (frame.method !== 'connect') {
      this.deps.metrics.handshake('CONNECT_REQUIRED')
      this.send(errorFrame(frame.id, invalidRequest('connect required', { code: 'CONNECT_REQUIRED' }).shape))
      this.close(Close.connectRequired)
      return
    }
    clearTimeout(this.#timer)
    this.#state = 'authenticating'
    void this.#connect(frame)
  }

  async #connect (frame: RequestFrame): Promise<void> {
    const result = this.deps.isReady() ? await authenticate(frame.params, this.#challenge, this.deps.handshake) : unavailable()
    if (this.#state === 'closed') return
    this.deps.metrics.handshake(result.ok ? 'ok' : result.outcome)
    if (!result.ok) {
      if (result.cause !== undefined) this.deps.log.error({ err: result.cause, connId: this.id }, 'connect failed')
      else this.deps.log.info({ connId: this.id, outcome: result.outcome, remoteAddress: this.remoteAddress }, 'connect refused')
      this.send(errorFrame(frame.id, result.error))
      this.close(result.close)
      return
    }
    this.admission = result.admission
    this.#state = 'open'
    this.deps.registry.add(this)
    if (result.admission.deviceId !== null) this.deps.lastSeen.touch(result.admission.deviceId)
    this.deps.log.info({ connId: this.id, deviceId: result.admission.deviceId, role: result.admission.role, scopes: result.admission.scopes }, 'connect ok')
    this.send(responseFrame(frame.id, this.#helloOk(result.admission)))
    this.#closeWhenTokenExpires(result.admission.tokenExpiresAtMs)
    this.deps.onAdmitted?.(this)
    const queued = this.#queued
    this.#queued = []
    for (const next of queued) this.#handleRequest(next)
  }

  #helloOk (admission: Admission): unknown {
    const { policy } = this.deps
    return {
      type: 'hello-ok',
      protocol: PROTOCOL_VERSION,
      server: { version: this.deps.serverVersion, connId: this.id },
      features: { methods: this.deps.methods.names, events: this.deps.events },
      snapshot: {
        presence: [],
        health: { ok: true },
        stateVersion: { presence: 0, health: 0 },
        uptimeMs: Date.now() - this.deps.startedAtMs
      },
      auth: {
        method: admission.authMethod,
        role: admission.role,
        scopes: admission.scopes,
        ...(admission.issued !== null && { deviceToken: admission.issued.token, issuedAtMs: admission.issued.issuedAtMs })
      },
      policy: { maxPayload: policy.maxPayload, maxBufferedBytes: policy.maxBufferedBytes, tickIntervalMs: policy.tickIntervalMs }
    }
  }

  #handleRequest (frame: RequestFrame): void {
    const admission = this.admission
    if (admission === undefined) return
    // Only names the gateway knows become metric labels.
    const method = this.deps.methods.has(frame.method) ? frame.method : UNKNOWN_METHOD
    const retryAfterMs = this.#rpcBucket?.take() ?? 0
    if (retryAfterMs > 0) {
      this.deps.metrics.limited('rpc')
      this.deps.metrics.rpc(method, 'RATE_LIMITED')
      this.send(errorFrame(frame.id, rateLimitedError(retryAfterMs)))
      return
    }
    if (this.#draining) {
      this.send(errorFrame(frame.id, { code: 'UNAVAILABLE', message: 'shutting down, try again later', retryable: true }))
      return
    }
    const startedAt = performance.now()
    let answer: unknown
    try {
      answer = this.deps.methods.invoke(admission, this.id, frame.method, frame.params)
    } catch (err) {
      this.#answerError(frame, method, startedAt, err)
      return
    }
    if (!(answer instanceof Promise)) {
      this.#answer(frame, method, startedAt, answer)
      return
    }
    // Only methods that wait (the database, mostly) count as in flight for a graceful drain.
    this.#inflight++
    answer.then(
      (payload: unknown) => this.#answer(frame, method, startedAt, payload),
      (err: unknown) => this.#answerError(frame, method, startedAt, err)
    ).finally(() => {
      if (--this.#inflight === 0) this.#onIdle?.()
    })
  }

  #answer (frame: RequestFrame, method: string, startedAt: number, payload: unknown): void {
    let text: string
    try {
      text = responseFrame(frame.id, payload)
    } catch (err) {
      this.#answerError(frame, method, startedAt, err)
      return
    }
    this.send(text)
    this.deps.metrics.rpc(method, 'ok', (performance.now() - startedAt) / 1000)
  }

  #answerError (frame: RequestFrame, method: string, startedAt: number, err: unknown): void {
    const shape = toProtocolError(err)
    if (shape.code === 'INTERNAL') this.deps.log.error({ err, connId: this.id, method: frame.method }, 'method failed')
    this.send(errorFrame(frame.id, shape))
    this.deps.metrics.rpc(method, shape.code, (performance.now() - startedAt) / 1000)
  }

  /** Graceful shutdown: take no new requests, resolve when the ones in flight have answered. */
  async drain (): Promise<void> {
    this.#draining = true
    if (this.#inflight === 0) return
    await new Promise<void>((resolve) => { this.#onIdle = resolve })
  }

  /** A connection that logged in with a device token closes when that token expires. */
  #closeWhenTokenExpires (expiresAtMs: number | null): void {
    if (expiresAtMs === null) return
    const { clock } = this.deps
    // A timer holds at most ~24.8 days: wake up and look again when the expiry is further away.
    const delay = Math.min(expiresAtMs - clock.now(), MAX_TIMER_MS)
    this.#expiryTimer = clock.setTimer(() => {
      if (clock.now() >= expiresAtMs) this.close(Close.deviceTokenExpired)
      else this.#closeWhenTokenExpires(expiresAtMs)
    }, Math.max(0, delay))
  }

  #onClose (code: number): void {
    this.#state = 'closed'
    clearTimeout(this.#timer)
    this.#expiryTimer?.cancel()
    this.deps.registry.delete(this)
    // Not closed by the gateway nor by ws: the peer closed, or vanished (1006).
    if (!this.#closeCounted) {
      this.#closeCounted = true
      this.deps.metrics.peerClose(code)
    }
  }
}

function parseFrame (data: RawData): unknown {
  try {
    const value: unknown = JSON.parse(data.toString())
    return typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string' ? value : undefined
  } catch {
    return undefined
  }
}
