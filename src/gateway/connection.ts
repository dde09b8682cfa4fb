import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { WebSocket, RawData } from 'ws'
import type { LastSeenRecorder } from '../devices/service.ts'
import type { MethodTable } from '../methods/index.ts'
import { Close, closeSocket, type CloseSpec } from './close.ts'
import { errorFrame, eventFrame, invalidRequest, isRequestFrame, PROTOCOL_VERSION, responseFrame, toProtocolError, type RequestFrame } from './frames.ts'
import { authenticate, type Admission, type Challenge, type HandshakeDeps } from './handshake.ts'
import type { ConnectionRegistry } from './registry.ts'

export interface GatewayPolicy {
  maxPayload: number
  maxBufferedBytes: number
  tickIntervalMs: number
  handshakeTimeoutMs: number
}

export interface ConnectionDeps {
  handshake: HandshakeDeps
  methods: MethodTable
  registry: ConnectionRegistry
  lastSeen: LastSeenRecorder
  policy: GatewayPolicy
  log: FastifyBaseLogger
  serverVersion: string
  events: readonly string[]
  startedAtMs: number
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
  #challenge: Challenge = { nonce: randomUUID(), ts: Date.now() }
  #timer: NodeJS.Timeout | undefined
  #queued: RequestFrame[] = []

  constructor (readonly socket: WebSocket, private readonly deps: ConnectionDeps, readonly remoteAddress: string) {}

  start (): void {
    this.socket.on('message', (data, isBinary) => this.#onMessage(data, isBinary))
    this.socket.on('close', () => this.#onClose())
    this.socket.on('pong', () => { this.alive = true })
    this.socket.on('error', (err) => this.deps.log.debug({ connId: this.id, err: err.message }, 'socket error'))
    const timeout = this.deps.policy.handshakeTimeoutMs
    if (timeout > 0) this.#timer = setTimeout(() => this.close(Close.connectTimeout), timeout)
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
    closeSocket(this.socket, spec)
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
        void this.#handleRequest(frame)
    }
  }

  #onFirstRequest (frame: RequestFrame): void {
    if (frame.method !== 'connect') {
      this.send(errorFrame(frame.id, invalidRequest('connect required', { code: 'CONNECT_REQUIRED' }).shape))
      this.close(Close.connectRequired)
      return
    }
    clearTimeout(this.#timer)
    this.#state = 'authenticating'
    void this.#connect(frame)
  }

  async #connect (frame: RequestFrame): Promise<void> {
    const result = await authenticate(frame.params, this.#challenge, this.deps.handshake)
    if (this.#state === 'closed') return
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
    this.deps.onAdmitted?.(this)
    const queued = this.#queued
    this.#queued = []
    for (const next of queued) void this.#handleRequest(next)
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

  async #handleRequest (frame: RequestFrame): Promise<void> {
    const admission = this.admission
    if (admission === undefined) return
    try {
      const payload = await this.deps.methods.call(admission, this.id, frame.method, frame.params)
      this.send(responseFrame(frame.id, payload))
    } catch (err) {
      const shape = toProtocolError(err)
      if (shape.code === 'INTERNAL') this.deps.log.error({ err, connId: this.id, method: frame.method }, 'method failed')
      this.send(errorFrame(frame.id, shape))
    }
  }

  #onClose (): void {
    this.#state = 'closed'
    clearTimeout(this.#timer)
    this.deps.registry.delete(this)
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
