import { randomBytes } from 'node:crypto'
import WebSocket, { type ClientOptions, type RawData } from 'ws'
import type { Role, Scope } from '../auth/scopes.ts'
import type { ConnectParams } from '../gateway/frames.ts'
import { GatewayError, type ErrorPayload } from './errors.ts'
import type { GatewayEventName, GatewayEvents } from './events.ts'
import { DeviceIdentity } from './identity.ts'
import type { MethodName, ParamsOf, ResultOf } from './methods.ts'

/** The protocol version this client speaks (PROTOCOL.md). */
export const PROTOCOL_VERSION = 4
export const SDK_VERSION = '0.1.0'

/** The `connect` response payload (PROTOCOL.md, Handshake step 7). */
export interface HelloOk {
  type: 'hello-ok'
  protocol: number
  server: { version: string, connId: string }
  features: { methods: string[], events: string[] }
  snapshot: Record<string, unknown>
  auth: { method: 'token' | 'device-token', role: Role, scopes: Scope[], deviceToken?: string, issuedAtMs?: number }
  policy: { maxPayload: number, maxBufferedBytes: number, tickIntervalMs: number }
}

/** `client` in the connect params; every field has a default. */
export interface ClientInfo {
  /** Default `gateway-client`. */
  id?: string
  version?: string
  /** Default process.platform; sent and signed trimmed and lower-cased. */
  platform?: string
  deviceFamily?: string
  /** Default `backend`. */
  mode?: string
  instanceId?: string
  displayName?: string
}

export interface ReconnectOptions {
  /** First delay (default 500 ms), multiplied by `factor` (default 2) per attempt, capped at `maxDelayMs` (default 30 s). */
  initialDelayMs?: number
  maxDelayMs?: number
  factor?: number
  /** Each delay is drawn from [delay × (1 − jitter), delay] (default 0.5). */
  jitter?: number
  /** Give up after this many failed attempts (default: never). */
  maxAttempts?: number
}

export interface GatewayClientOptions {
  /** ws:// or wss:// URL of the gateway, e.g. ws://127.0.0.1:18789/ */
  url: string
  /** The identity file (JSON, 0600): created with a new Ed25519 key (and its directory) on first use. */
  identityPath: string
  /** The shared gateway token; needed until the device holds its own device token (kept in the identity file). */
  gatewayToken?: string
  role?: Role
  scopes?: readonly Scope[]
  client?: ClientInfo
  caps?: string[]
  /** How long a call waits for its answer, a wait for a reconnect included (default 30 s). */
  callTimeoutMs?: number
  /** How long from opening the socket to hello-ok (default 15 s). */
  connectTimeoutMs?: number
  /**
   * A connection that hears nothing (no frame, no ping) this long is dropped
   * and reconnected; default twice the gateway's tickIntervalMs plus 10 s; 0: never.
   */
  idleTimeoutMs?: number
  /** Reconnect after retryable closes (1001, 1006, 1011, 1012, 1013, 1014); default on. */
  reconnect?: boolean | ReconnectOptions
  /** Passed to the ws constructor (headers, TLS options, …). */
  wsOptions?: ClientOptions
}

export interface ConnectOptions {
  /** Retry failures that may pass (with the reconnect backoff) instead of rejecting at once. */
  retry?: boolean
}

export interface CallOptions {
  timeoutMs?: number
  signal?: AbortSignal
}

/** Params may be left out when every field is optional. */
export type CallArgs<M extends MethodName> = Record<never, never> extends ParamsOf<M>
  ? [params?: ParamsOf<M>, options?: CallOptions]
  : [params: ParamsOf<M>, options?: CallOptions]

export type ClientState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed'

export interface CloseInfo {
  code: number
  reason: string
  /** True when the client is about to reconnect; false: it stopped for good. */
  willReconnect: boolean
  /** The refusal that ended a reconnect (a PairingRequiredError, an auth failure, …). */
  error?: GatewayError
}

/** A reconnect attempt is coming (also a retry of `connect({ retry: true })`). */
export interface ReconnectingInfo {
  attempt: number
  delayMs: number
  /** The close that led here, or the last failed attempt's. */
  code: number
  reason: string
  error?: GatewayError
}

export interface ReconnectedInfo {
  attempts: number
  downtimeMs: number
}

/** The client's own events. */
export interface ClientEvents {
  /** Every admitted connection: the first and each reconnect. */
  open: (hello: HelloOk) => void
  reconnecting: (info: ReconnectingInfo) => void
  reconnected: (hello: HelloOk, info: ReconnectedInfo) => void
  /** Every close of an admitted connection, and the end of a reconnect that failed for good. */
  close: (info: CloseInfo) => void
  /** Every event frame, those this version does not know included. */
  event: (event: string, payload: unknown, seq: number | undefined) => void
}

/** The gateway's events (PROTOCOL.md's Events table) and the client's own. */
export type GatewayClientEvents = ClientEvents & {
  [E in GatewayEventName]: (payload: GatewayEvents[E], seq: number | undefined) => void
}

/** Closes after which the client reconnects: going away, abnormal, internal error, restart, try again later, bad gateway. */
const RETRYABLE_CLOSES: ReadonlySet<number> = new Set([1001, 1006, 1011, 1012, 1013, 1014])

/** True for a close worth reconnecting after; 1008 (policy), 1002, 1003, 1009 and others are final. */
export function isRetryableClose (code: number): boolean {
  return RETRYABLE_CLOSES.has(code)
}

const RECONNECT_DEFAULTS: Required<ReconnectOptions> = { initialDelayMs: 500, maxDelayMs: 30_000, factor: 2, jitter: 0.5, maxAttempts: Infinity }

/** Exponential backoff with jitter, capped; never below `minMs` (a retryAfterMs or a restart hint). */
export function backoffDelay (attempt: number, options: ReconnectOptions = {}, minMs = 0, random: () => number = Math.random): number {
  const { initialDelayMs, maxDelayMs, factor, jitter } = { ...RECONNECT_DEFAULTS, ...options }
  const base = Math.min(maxDelayMs, initialDelayMs * factor ** Math.max(0, attempt - 1))
  const spread = Math.min(1, Math.max(0, jitter))
  return Math.max(minMs, Math.round(base * (1 - spread * random())))
}

interface PendingCall {
  method: string
  resolve: (payload: unknown) => void
  reject: (err: GatewayError) => void
  timer: NodeJS.Timeout
  cleanup: () => void
}

interface Waiter {
  resolve: () => void
  reject: (err: GatewayError) => void
}

interface Frame {
  type?: unknown
  id?: unknown
  ok?: unknown
  payload?: unknown
  error?: unknown
  event?: unknown
  seq?: unknown
}

type Listener = (...args: any[]) => void

const CLOSE_WAIT_MS = 2000
const DEVICE_TOKEN_REFUSALS = new Set(['AUTH_DEVICE_TOKEN_MISMATCH', 'AUTH_DEVICE_TOKEN_EXPIRED'])
const DEVICE_TOKEN_CLOSES = new Set(['device token revoked', 'device token expired'])

function normalize (value: string | undefined): string {
  return (value ?? '').trim().toLowerCase()
}

function parseFrame (data: RawData): Frame | undefined {
  try {
    const value: unknown = JSON.parse(data.toString())
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? value as Frame : undefined
  } catch {
    return undefined
  }
}

function errorPayload (value: unknown): ErrorPayload {
  const error = (typeof value === 'object' && value !== null ? value : {}) as Partial<ErrorPayload>
  return {
    code: typeof error.code === 'string' ? error.code : 'INTERNAL',
    message: typeof error.message === 'string' ? error.message : 'error without a message',
    ...(typeof error.details === 'object' && error.details !== null && { details: error.details }),
    ...(typeof error.retryable === 'boolean' && { retryable: error.retryable }),
    ...(typeof error.retryAfterMs === 'number' && { retryAfterMs: error.retryAfterMs })
  }
}

function closedError (message: string, code: number, reason: string, retryable: boolean): GatewayError {
  return new GatewayError({ code: 'CLOSED', message, closeCode: code, closeReason: reason, retryable })
}

/**
 * A device's connection to a scopegate gateway: Ed25519 identity, signed
 * handshake, typed calls and events, reconnect with backoff after retryable
 * closes. `connect()` once; `close()` stops it for good.
 */
export class GatewayClient {
  readonly identity: DeviceIdentity
  readonly #options: GatewayClientOptions
  readonly #role: Role
  readonly #scopes: Scope[]
  readonly #reconnect: Required<ReconnectOptions> | null
  readonly #listeners = new Map<string, Array<{ fn: Listener, once: boolean }>>()
  readonly #pending = new Map<string, PendingCall>()
  readonly #openWaiters = new Set<Waiter>()
  readonly #idPrefix = randomBytes(4).toString('hex')
  #seq = 0
  #state: ClientState = 'idle'
  #ws: WebSocket | undefined
  #hello: HelloOk | undefined
  #connecting: Promise<HelloOk> | undefined
  #watchdog: NodeJS.Timeout | undefined
  #sleep: { timer: NodeJS.Timeout, wake: () => void } | undefined
  #restartHintMs: number | undefined
  #closing: Promise<void> = Promise.resolve()

  constructor (options: GatewayClientOptions) {
    this.#options = options
    this.identity = DeviceIdentity.load(options.identityPath)
    this.#role = options.role ?? 'operator'
    this.#scopes = [...(options.scopes ?? [])]
    this.#reconnect = options.reconnect === false ? null : { ...RECONNECT_DEFAULTS, ...(typeof options.reconnect === 'object' ? options.reconnect : {}) }
  }

  /** An empty gateway token (an unset variable) counts as none. */
  get #gatewayToken (): string | undefined {
    const token = this.#options.gatewayToken
    return token === undefined || token === '' ? undefined : token
  }

  get deviceId (): string {
    return this.identity.deviceId
  }

  get state (): ClientState {
    return this.#state
  }

  /** The hello-ok of the current connection; undefined while not connected. */
  get hello (): HelloOk | undefined {
    return this.#hello
  }

  // ---- events ----

  on<E extends keyof GatewayClientEvents> (event: E, listener: GatewayClientEvents[E]): this {
    return this.#add(event, listener as Listener, false)
  }

  once<E extends keyof GatewayClientEvents> (event: E, listener: GatewayClientEvents[E]): this {
    return this.#add(event, listener as Listener, true)
  }

  off<E extends keyof GatewayClientEvents> (event: E, listener: GatewayClientEvents[E]): this {
    return this.#remove(event, listener as Listener)
  }

  /** How many listeners `event` has. */
  listenerCount (event: keyof GatewayClientEvents): number {
    return this.#listeners.get(event)?.length ?? 0
  }

  /** The next `event` whose payload passes `filter`; rejects on timeout or when the client stops for good. */
  async next<E extends GatewayEventName> (event: E, options: { filter?: (payload: GatewayEvents[E]) => boolean, timeoutMs?: number } = {}): Promise<GatewayEvents[E]> {
    return await new Promise((resolve, reject) => {
      const timeoutMs = options.timeoutMs ?? this.#options.callTimeoutMs ?? 30_000
      const done = (): void => {
        clearTimeout(timer)
        this.#remove(event, onEvent as Listener)
        this.#remove('close', onClose)
      }
      const onEvent = (payload: GatewayEvents[E]): void => {
        if (options.filter !== undefined && !options.filter(payload)) return
        done()
        resolve(payload)
      }
      const onClose = (info: CloseInfo): void => {
        if (info.willReconnect) return
        done()
        reject(info.error ?? closedError(`client closed while waiting for ${event}`, info.code, info.reason, false))
      }
      const timer = setTimeout(() => {
        done()
        reject(new GatewayError({ code: 'TIMEOUT', message: `no ${event} within ${timeoutMs} ms`, retryable: true }))
      }, timeoutMs)
      this.#add(event, onEvent as Listener, false)
      this.#add('close', onClose, false)
    })
  }

  #remove (event: string, fn: Listener): this {
    const list = this.#listeners.get(event)
    const at = list?.findIndex((entry) => entry.fn === fn) ?? -1
    if (list !== undefined && at >= 0) list.splice(at, 1)
    return this
  }

  #add (event: string, fn: Listener, once: boolean): this {
    const list = this.#listeners.get(event) ?? []
    list.push({ fn, once })
    this.#listeners.set(event, list)
    return this
  }

  #emit (event: string, ...args: unknown[]): void {
    const list = this.#listeners.get(event)
    if (list === undefined || list.length === 0) return
    for (const entry of [...list]) {
      if (entry.once) {
        const at = list.indexOf(entry)
        if (at < 0) continue
        list.splice(at, 1)
      }
      entry.fn(...args)
    }
  }

  // ---- connecting ----

  /**
   * Connects and resolves with hello-ok. Rejects with a PairingRequiredError
   * (not paired yet, or asking beyond its approval) or another GatewayError;
   * the client may then `connect()` again. With `retry`, failures that may
   * pass (gateway down or restarting, UNAVAILABLE, RATE_LIMITED, timeouts)
   * are retried with the reconnect backoff, emitting `reconnecting`. Once
   * admitted, the client reconnects by itself after retryable closes.
   */
  async connect (options: ConnectOptions = {}): Promise<HelloOk> {
    if (this.#state === 'closed') throw new GatewayError({ code: 'CLOSED', message: 'the client was closed' })
    if (this.#state === 'open' && this.#hello !== undefined) return this.#hello
    if (this.#connecting !== undefined) return await this.#connecting
    if (this.#state === 'reconnecting') {
      await this.#whenOpen(Infinity)
      if (this.#hello !== undefined) return this.#hello
    }
    this.#state = 'connecting'
    this.#connecting = this.#connectLoop(options.retry === true).finally(() => { this.#connecting = undefined })
    try {
      return await this.#connecting
    } catch (err) {
      if (this.#state === 'connecting') {
        this.#state = 'idle'
        this.#rejectWaiters(err as GatewayError)
      }
      throw err
    }
  }

  async #connectLoop (retry: boolean): Promise<HelloOk> {
    const options = this.#reconnect ?? RECONNECT_DEFAULTS
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#handshake()
      } catch (err) {
        if (!retry || !(err instanceof GatewayError) || !err.retryable || attempt >= options.maxAttempts || this.#state !== 'connecting') throw err
        const delayMs = backoffDelay(attempt, options, err.retryAfterMs ?? 0)
        this.#emit('reconnecting', { attempt, delayMs, code: err.closeCode ?? 1006, reason: err.closeReason ?? err.message, error: err } satisfies ReconnectingInfo)
        await this.#pause(delayMs)
        if (this.#state !== 'connecting') throw new GatewayError({ code: 'CLOSED', message: 'the client was closed' })
      }
    }
  }

  /** One connect, and once more with the gateway token if the kept device token was refused. */
  async #handshake (reconnected?: ReconnectedInfo): Promise<HelloOk> {
    const usedDeviceToken = this.identity.deviceToken(this.#role) !== undefined
    try {
      return await this.#attempt(reconnected)
    } catch (err) {
      const fallback = usedDeviceToken && this.#gatewayToken !== undefined && err instanceof GatewayError &&
        DEVICE_TOKEN_REFUSALS.has(err.detailsCode ?? '') && this.#state !== 'closed'
      if (!fallback) throw err
      // Revoked or expired: the gateway token mints a new one (PROTOCOL.md, step 7).
      this.identity.setDeviceToken(this.#role, undefined)
      return await this.#attempt(reconnected)
    }
  }

  #connectParams (challenge: { nonce: string, ts: number }): ConnectParams {
    const info = this.#options.client ?? {}
    const clientId = info.id ?? 'gateway-client'
    const mode = info.mode ?? 'backend'
    const platform = normalize(info.platform ?? process.platform)
    const deviceFamily = normalize(info.deviceFamily)
    const deviceToken = this.identity.deviceToken(this.#role)
    const gatewayToken = this.#gatewayToken
    const signedToken = deviceToken ?? gatewayToken ?? ''
    const signedAt = challenge.ts
    const text = ['v3', this.identity.deviceId, clientId, mode, this.#role, this.#scopes.join(','), signedAt, signedToken, challenge.nonce, platform, deviceFamily].join('|')
    return {
      minProtocol: PROTOCOL_VERSION,
      maxProtocol: PROTOCOL_VERSION,
      client: {
        id: clientId,
        version: info.version ?? SDK_VERSION,
        platform,
        mode,
        ...(deviceFamily !== '' && { deviceFamily }),
        ...(info.instanceId !== undefined && { instanceId: info.instanceId }),
        ...(info.displayName !== undefined && { displayName: info.displayName })
      },
      ...(this.#options.caps !== undefined && { caps: this.#options.caps }),
      role: this.#role,
      scopes: this.#scopes,
      ...(deviceToken !== undefined ? { auth: { deviceToken } } : gatewayToken !== undefined ? { auth: { token: gatewayToken } } : {}),
      device: { id: this.identity.deviceId, publicKey: this.identity.publicKey, signature: this.identity.sign(text), signedAt, nonce: challenge.nonce }
    }
  }

  /** Opens a socket, answers the challenge, and admits the connection on hello-ok. */
  async #attempt (reconnected?: ReconnectedInfo): Promise<HelloOk> {
    const timeoutMs = this.#options.connectTimeoutMs ?? 15_000
    const ws = new WebSocket(this.#options.url, { handshakeTimeout: timeoutMs, ...this.#options.wsOptions })
    this.#ws = ws
    return await new Promise<HelloOk>((resolve, reject) => {
      let phase: 'challenge' | 'hello' | 'open' | 'done' = 'challenge'
      const connectId = `${this.#idPrefix}-connect-${++this.#seq}`
      let refusal: ErrorPayload | undefined
      let socketError: Error | undefined
      const fail = (err: GatewayError): void => {
        if (phase === 'done' || phase === 'open') return
        phase = 'done'
        clearTimeout(timer)
        if (this.#ws === ws) this.#ws = undefined
        if (ws.readyState !== WebSocket.CLOSED) ws.terminate()
        reject(err)
      }
      const timer = setTimeout(() => {
        fail(new GatewayError({ code: 'TIMEOUT', message: `no hello-ok from ${this.#options.url} within ${timeoutMs} ms`, retryable: true }))
      }, timeoutMs)

      ws.on('error', (err) => { socketError = err })
      ws.on('ping', () => { if (phase === 'open') this.#watchdog?.refresh() })
      ws.on('close', (code, reasonBuffer) => {
        const reason = reasonBuffer.toString()
        if (phase === 'open') {
          this.#onClose(ws, code, reason)
          return
        }
        if (refusal !== undefined) fail(GatewayError.from(refusal, { code, reason }))
        else if (this.#state === 'closed') fail(closedError('the client was closed', code, reason, false))
        else if (socketError !== undefined && phase === 'challenge' && code === 1006) {
          fail(new GatewayError({ code: 'CONNECTION_FAILED', message: `cannot connect to ${this.#options.url}: ${socketError.message}`, retryable: true, cause: socketError }))
        } else {
          fail(closedError(`connection closed during the handshake (${code}${reason === '' ? '' : ` ${reason}`})`, code, reason, isRetryableClose(code)))
        }
      })
      ws.on('message', (data) => {
        const frame = parseFrame(data)
        if (frame === undefined) return
        if (phase === 'open') {
          this.#onFrame(ws, frame)
          return
        }
        if (phase === 'challenge' && frame.type === 'event' && frame.event === 'connect.challenge') {
          const challenge = (frame.payload ?? {}) as { nonce?: unknown, ts?: unknown }
          if (typeof challenge.nonce !== 'string' || typeof challenge.ts !== 'number') {
            // Existing clients refuse a challenge without ts, and so do we.
            fail(new GatewayError({ code: 'CONNECTION_FAILED', message: 'the gateway sent a challenge without nonce or ts' }))
            return
          }
          phase = 'hello'
          try {
            ws.send(JSON.stringify({ type: 'req', id: connectId, method: 'connect', params: this.#connectParams({ nonce: challenge.nonce, ts: challenge.ts }) }))
          } catch (err) {
            fail(new GatewayError({ code: 'CONNECTION_FAILED', message: `could not send connect: ${(err as Error).message}`, retryable: true, cause: err }))
          }
          return
        }
        if (phase !== 'hello' || frame.type !== 'res' || frame.id !== connectId) return
        if (frame.ok !== true) {
          // The close follows the refusal; it is part of the answer (its code says whether to retry).
          refusal = errorPayload(frame.error)
          setTimeout(() => ws.terminate(), CLOSE_WAIT_MS).unref()
          return
        }
        const hello = frame.payload as HelloOk
        if (this.#state === 'closed') {
          fail(closedError('the client was closed', 1000, 'client closed', false))
          return
        }
        try {
          if (typeof hello?.auth?.deviceToken === 'string') this.identity.setDeviceToken(this.#role, hello.auth.deviceToken)
        } catch (err) {
          fail(new GatewayError({ code: 'CONNECTION_FAILED', message: `could not keep the device token in ${this.identity.path}: ${(err as Error).message}`, cause: err }))
          return
        }
        phase = 'open'
        clearTimeout(timer)
        this.#admit(ws, hello, reconnected)
        resolve(hello)
      })
    })
  }

  #admit (ws: WebSocket, hello: HelloOk, reconnected?: ReconnectedInfo): void {
    this.#ws = ws
    this.#hello = hello
    this.#state = 'open'
    this.#restartHintMs = undefined
    const idle = this.#options.idleTimeoutMs ?? (hello.policy?.tickIntervalMs ?? 30_000) * 2 + 10_000
    clearTimeout(this.#watchdog)
    this.#watchdog = idle > 0 ? setTimeout(() => ws.terminate(), idle).unref() : undefined
    for (const waiter of this.#openWaiters) waiter.resolve()
    this.#openWaiters.clear()
    this.#emit('open', hello)
    if (reconnected !== undefined) this.#emit('reconnected', hello, reconnected)
  }

  #onFrame (ws: WebSocket, frame: Frame): void {
    if (ws !== this.#ws) return
    this.#watchdog?.refresh()
    if (frame.type === 'res' && typeof frame.id === 'string') {
      const call = this.#pending.get(frame.id)
      if (call === undefined) return
      call.cleanup()
      if (frame.ok === true) call.resolve(frame.payload)
      else call.reject(GatewayError.from(errorPayload(frame.error)))
      return
    }
    if (frame.type === 'event' && typeof frame.event === 'string') {
      const seq = typeof frame.seq === 'number' ? frame.seq : undefined
      if (frame.event === 'shutdown') {
        const hint = (frame.payload as { restartExpectedMs?: unknown } | undefined)?.restartExpectedMs
        if (typeof hint === 'number' && hint > 0) this.#restartHintMs = hint
      }
      this.#emit(frame.event, frame.payload, seq)
      this.#emit('event', frame.event, frame.payload, seq)
    }
  }

  #onClose (ws: WebSocket, code: number, reason: string): void {
    if (ws !== this.#ws) return
    this.#ws = undefined
    this.#hello = undefined
    clearTimeout(this.#watchdog)
    if (this.#state === 'closed') return
    const willReconnect = this.#reconnect !== null && isRetryableClose(code)
    this.#rejectPending(closedError(`connection closed (${code}${reason === '' ? '' : ` ${reason}`}) before the answer`, code, reason, willReconnect))
    if (!willReconnect) {
      // A revoked or expired device token is of no use any more: the next connect uses the gateway token.
      if (DEVICE_TOKEN_CLOSES.has(reason)) {
        try {
          this.identity.setDeviceToken(this.#role, undefined)
        } catch {
          // Kept on disk; the gateway refuses it next time, and the client then falls back to the gateway token.
        }
      }
      this.#stop({ code, reason, willReconnect: false })
      return
    }
    this.#state = 'reconnecting'
    this.#emit('close', { code, reason, willReconnect: true } satisfies CloseInfo)
    void this.#reconnectLoop(code, reason)
  }

  async #reconnectLoop (code: number, reason: string): Promise<void> {
    const options = this.#reconnect ?? RECONNECT_DEFAULTS
    const downSince = Date.now()
    let minDelay = this.#restartHintMs ?? 0
    let lastError: GatewayError | undefined
    for (let attempt = 1; ; attempt++) {
      if (attempt > options.maxAttempts) {
        this.#stop({ code, reason, willReconnect: false, ...(lastError !== undefined && { error: lastError }) })
        return
      }
      const delayMs = backoffDelay(attempt, options, minDelay)
      this.#emit('reconnecting', { attempt, delayMs, code, reason, ...(lastError !== undefined && { error: lastError }) } satisfies ReconnectingInfo)
      await this.#pause(delayMs)
      if (this.#state !== 'reconnecting') return
      try {
        await this.#handshake({ attempts: attempt, downtimeMs: Date.now() - downSince })
        return
      } catch (err) {
        if (this.#state !== 'reconnecting') return
        const error = err instanceof GatewayError ? err : new GatewayError({ code: 'CONNECTION_FAILED', message: String(err), retryable: true, cause: err })
        code = error.closeCode ?? 1006
        reason = error.closeReason ?? error.message
        if (!error.retryable) {
          this.#stop({ code, reason, willReconnect: false, error })
          return
        }
        lastError = error
        minDelay = error.retryAfterMs ?? 0
      }
    }
  }

  async #pause (ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer)
        this.#sleep = undefined
        resolve()
      }
      const timer = setTimeout(wake, ms)
      this.#sleep = { timer, wake }
    })
  }

  /** Stops for good after a final close: no reconnect, pending calls and waiters rejected. */
  #stop (info: CloseInfo): void {
    this.#state = 'closed'
    const error = info.error ?? closedError(`connection closed (${info.code}${info.reason === '' ? '' : ` ${info.reason}`})`, info.code, info.reason, false)
    this.#rejectWaiters(error)
    this.#rejectPending(error)
    this.#emit('close', info)
  }

  #rejectPending (error: GatewayError): void {
    for (const call of [...this.#pending.values()]) {
      call.cleanup()
      call.reject(error)
    }
  }

  #rejectWaiters (error: GatewayError): void {
    for (const waiter of this.#openWaiters) waiter.reject(error)
    this.#openWaiters.clear()
  }

  /** Resolves once admitted (now, or after the connect or reconnect under way), within `timeoutMs`. */
  async #whenOpen (timeoutMs: number): Promise<void> {
    if (this.#state === 'open') return
    if (this.#state === 'idle') throw new GatewayError({ code: 'NOT_CONNECTED', message: 'not connected: call connect() first' })
    if (this.#state === 'closed') throw new GatewayError({ code: 'CLOSED', message: 'the client was closed' })
    await new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const waiter: Waiter = {
        resolve: () => { clearTimeout(timer); resolve() },
        reject: (err) => { clearTimeout(timer); reject(err) }
      }
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          this.#openWaiters.delete(waiter)
          reject(new GatewayError({ code: 'TIMEOUT', message: `not connected within ${timeoutMs} ms`, retryable: true }))
        }, timeoutMs)
      }
      this.#openWaiters.add(waiter)
    })
  }

  // ---- calls ----

  /** Calls a method of PROTOCOL.md's table; rejects with a GatewayError. While reconnecting it waits (within the timeout). */
  async call<M extends MethodName> (method: M, ...args: CallArgs<M>): Promise<ResultOf<M>> {
    const [params, options] = args
    return await this.request(method, params, options) as ResultOf<M>
  }

  /** An untyped call, for methods this version does not know. */
  async request (method: string, params?: unknown, options: CallOptions = {}): Promise<unknown> {
    const timeoutMs = options.timeoutMs ?? this.#options.callTimeoutMs ?? 30_000
    const startedAt = Date.now()
    if (options.signal?.aborted === true) throw new GatewayError({ code: 'ABORTED', message: `${method} aborted` })
    await this.#whenOpen(timeoutMs)
    const ws = this.#ws
    if (ws === undefined) throw new GatewayError({ code: 'NOT_CONNECTED', message: 'not connected', retryable: true })
    const id = `${this.#idPrefix}-${++this.#seq}`
    return await new Promise<unknown>((resolve, reject) => {
      const onAbort = (): void => {
        call.cleanup()
        reject(new GatewayError({ code: 'ABORTED', message: `${method} aborted`, details: { method, id } }))
      }
      const call: PendingCall = {
        method,
        resolve,
        reject,
        timer: setTimeout(() => {
          call.cleanup()
          reject(new GatewayError({ code: 'TIMEOUT', message: `${method} got no answer within ${timeoutMs} ms`, retryable: true, details: { method, id } }))
        }, Math.max(0, timeoutMs - (Date.now() - startedAt))),
        cleanup: () => {
          clearTimeout(call.timer)
          this.#pending.delete(id)
          options.signal?.removeEventListener('abort', onAbort)
        }
      }
      this.#pending.set(id, call)
      options.signal?.addEventListener('abort', onAbort, { once: true })
      ws.send(JSON.stringify({ type: 'req', id, method, params: params ?? {} }), (err) => {
        if (err === undefined || err === null || !this.#pending.has(id)) return
        call.cleanup()
        reject(new GatewayError({ code: 'CLOSED', message: `${method} could not be sent: ${err.message}`, retryable: true, cause: err }))
      })
    })
  }

  // ---- closing ----

  /** Closes the connection and stops for good: no reconnect; pending calls reject CLOSED. */
  async close (): Promise<void> {
    if (this.#state === 'closed') {
      await this.#closing
      return
    }
    const wasActive = this.#state !== 'idle'
    this.#state = 'closed'
    this.#sleep?.wake()
    clearTimeout(this.#watchdog)
    const error = new GatewayError({ code: 'CLOSED', message: 'the client was closed' })
    this.#rejectWaiters(error)
    this.#rejectPending(error)
    const ws = this.#ws
    this.#ws = undefined
    this.#hello = undefined
    this.#closing = ws === undefined ? Promise.resolve() : closeSocket(ws)
    if (wasActive) this.#emit('close', { code: 1000, reason: 'client closed', willReconnect: false } satisfies CloseInfo)
    await this.#closing
  }
}

async function closeSocket (ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => ws.terminate(), CLOSE_WAIT_MS)
    ws.once('close', () => { clearTimeout(timer); resolve() })
    if (ws.readyState === WebSocket.CONNECTING) ws.terminate()
    else ws.close(1000, 'client closed')
  })
}
