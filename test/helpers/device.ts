import { createHash, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto'
import type { Test } from 'tap'
import WebSocket from 'ws'

export interface Frame {
  type: string
  [key: string]: any
}

export interface CloseInfo {
  code: number
  reason: string
}

/** A real WebSocket client that records every frame and the close. */
export class TestSocket {
  readonly frames: Frame[] = []
  readonly closed: Promise<CloseInfo>
  #consumed = new Set<Frame>()
  #waiters: Array<() => void> = []
  #nextId = 0

  private constructor (readonly ws: WebSocket) {
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() })
        this.#wake()
      })
    })
    ws.on('message', (data) => {
      this.frames.push(JSON.parse(data.toString()) as Frame)
      this.#wake()
    })
    ws.on('error', () => {})
  }

  /** `options`: ws client options, e.g. `headers` (X-Forwarded-For in the TRUST_PROXY tests). */
  static async open (url: string, options?: WebSocket.ClientOptions): Promise<TestSocket> {
    const ws = new WebSocket(url, options)
    const socket = new TestSocket(ws)
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
    })
    return socket
  }

  get isClosed (): boolean {
    return this.ws.readyState === WebSocket.CLOSED || this.ws.readyState === WebSocket.CLOSING
  }

  #wake (): void {
    const waiters = this.#waiters
    this.#waiters = []
    for (const wake of waiters) wake()
  }

  /** The first frame not yet taken that matches, waiting for it if needed. */
  async next (match: (frame: Frame) => boolean = () => true, timeoutMs = 5000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const found = this.frames.find((frame) => !this.#consumed.has(frame) && match(frame))
      if (found !== undefined) {
        this.#consumed.add(found)
        return found
      }
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error(`socket closed while waiting for a frame; got ${JSON.stringify(this.frames)}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`no matching frame within ${timeoutMs} ms; got ${JSON.stringify(this.frames)}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  async event (name: string, timeoutMs?: number): Promise<Frame> {
    return await this.next((frame) => frame.type === 'event' && frame.event === name, timeoutMs)
  }

  send (frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame))
  }

  /** Sends a request and waits for its response frame. */
  async request (method: string, params?: unknown, id = `r${++this.#nextId}`): Promise<Frame> {
    this.send({ type: 'req', id, method, ...(params !== undefined && { params }) })
    return await this.next((frame) => frame.type === 'res' && frame.id === id)
  }

  /**
   * The close, or `{ code: -1, reason: 'not closed within <ms> ms' }` if the
   * socket is still open after `ms`: an assertion on the close then fails
   * showing that, and the test goes on.
   */
  async closedWithin (ms = 5000): Promise<CloseInfo> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<CloseInfo>((resolve) => { timer = setTimeout(() => resolve({ code: -1, reason: `not closed within ${ms} ms` }), ms) })
    try {
      return await Promise.race([this.closed, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  async close (): Promise<CloseInfo> {
    if (!this.isClosed) this.ws.close()
    return await this.closed
  }
}

/** Asserts that the socket is open and still answers requests (a health request). */
export async function assertOpen (t: Pick<Test, 'notOk' | 'equal'>, socket: TestSocket, label: string): Promise<void> {
  t.notOk(socket.isClosed, `${label}: socket is open`)
  const health = await socket.request('health')
  t.equal(health.ok, true, `${label}: socket still answers health`)
}

export interface ConnectOptions {
  role?: string
  scopes?: string[]
  token?: string
  deviceToken?: string
  platform?: string
  deviceFamily?: string
  clientId?: string
  mode?: string
  signatureVersion?: 'v3' | 'v2'
  signedAt?: number
  nonce?: string
  minProtocol?: number
  maxProtocol?: number
  /** Connect without a device identity (a probe). */
  noDevice?: boolean
  /** Changes the params after they were signed. */
  tamper?: (params: Record<string, any>) => void
}

export interface ConnectResult {
  socket: TestSocket
  challenge: { nonce: string, ts: number }
  res: Frame
}

/** A device with its own Ed25519 key that signs the challenge like real clients do. */
export class TestDevice {
  readonly id: string
  readonly publicKey: string
  readonly #privateKey: KeyObject

  constructor () {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519')
    this.publicKey = publicKey.export({ format: 'jwk' }).x as string
    this.id = createHash('sha256').update(Buffer.from(this.publicKey, 'base64url')).digest('hex')
    this.#privateKey = privateKey
  }

  sign (text: string): string {
    return sign(null, Buffer.from(text), this.#privateKey).toString('base64url')
  }

  connectParams (challenge: { nonce: string, ts: number }, opts: ConnectOptions = {}): Record<string, any> {
    const role = opts.role ?? 'operator'
    const scopes = opts.scopes ?? []
    const clientId = opts.clientId ?? 'test'
    const mode = opts.mode ?? 'backend'
    const platform = opts.platform ?? 'linux'
    const signedAt = opts.signedAt ?? challenge.ts
    const nonce = opts.nonce ?? challenge.nonce
    const signedToken = opts.token ?? opts.deviceToken ?? ''
    const norm = (value: string | undefined): string => (value ?? '').trim().toLowerCase()
    const v2 = ['v2', this.id, clientId, mode, role, scopes.join(','), signedAt, signedToken, nonce].join('|')
    const text = opts.signatureVersion === 'v2' ? v2 : `v3${v2.slice(2)}|${norm(platform)}|${norm(opts.deviceFamily)}`
    const auth: Record<string, string> = {}
    if (opts.token !== undefined) auth.token = opts.token
    if (opts.deviceToken !== undefined) auth.deviceToken = opts.deviceToken
    const params: Record<string, any> = {
      minProtocol: opts.minProtocol ?? 4,
      maxProtocol: opts.maxProtocol ?? 4,
      client: { id: clientId, version: '1.0.0', platform, mode, ...(opts.deviceFamily !== undefined && { deviceFamily: opts.deviceFamily }) },
      role,
      scopes,
      auth,
      ...(!opts.noDevice && { device: { id: this.id, publicKey: this.publicKey, signature: this.sign(text), signedAt, nonce } })
    }
    opts.tamper?.(params)
    return params
  }

  /** Opens a socket, answers the challenge and returns the connect response. */
  async connect (url: string, opts: ConnectOptions = {}, wsOptions?: WebSocket.ClientOptions): Promise<ConnectResult> {
    const socket = await TestSocket.open(url, wsOptions)
    const challengeFrame = await socket.event('connect.challenge')
    const challenge = challengeFrame.payload as { nonce: string, ts: number }
    const res = await socket.request('connect', this.connectParams(challenge, opts), `c-${randomUUID()}`)
    return { socket, challenge, res }
  }
}
