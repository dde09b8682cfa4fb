import { EventEmitter } from 'node:events'
import type { Database, Listener } from './database.ts'

/**
 * Messages between instances. They carry ids only (NOTIFY payloads must stay
 * under 8,000 bytes); receivers read the rows they need.
 */
export type BusMessage =
  | { kind: 'pair.requested', requestId: string }
  | { kind: 'pair.resolved', requestId: string, deviceId: string, decision: PairDecision, ts: number }
  | { kind: 'device.removed', deviceId: string, sentAtMs: number }
  /** `removed`: approved scopes the change took away, sorted (scope names are ids too). */
  | { kind: 'grants.changed', deviceId: string, role: string, removed: string[], sentAtMs: number }
  /** `tokenId`: the token that stopped being valid. */
  | { kind: 'token.revoked', deviceId: string, role: string, tokenId: string, sentAtMs: number }
  | { kind: 'cron.job', action: 'added' | 'updated' | 'removed', jobId: string, nextRunAtMs: number | null }
  | { kind: 'cron.runs', action: 'started' | 'finished', runIds: string[] }
  /** Each fire as [fireId, owner deviceId or null for a broadcast]. */
  | { kind: 'cron.fires', fires: Array<[string, string | null]> }

export type PairDecision = 'approved' | 'rejected' | 'expired' | 'superseded'

/**
 * Postgres LISTEN/NOTIFY between every instance sharing the database. Every
 * instance, this one included, acts on a message only when it comes back from
 * the database, so there is one path for local and remote changes.
 *
 * A lost listener means missed notifications, so the bus says so at once
 * ('down') and reconnects with backoff ('up'); the gateway fails closed in
 * between.
 */
export class NotifyBus extends EventEmitter<{ message: [BusMessage], down: [Error], up: [] }> {
  readonly channel: string
  #listener: Listener | undefined
  #stopped = true
  #retry: NodeJS.Timeout | undefined
  #backoffMs = MIN_BACKOFF_MS

  constructor (private readonly db: Database) {
    super()
    this.channel = `scopegate_${db.schema}`.toLowerCase()
  }

  get connected (): boolean {
    return this.#listener !== undefined
  }

  async start (): Promise<void> {
    this.#stopped = false
    await this.#connect()
  }

  async publish (message: BusMessage): Promise<void> {
    await this.db.notify(this.channel, JSON.stringify(message))
  }

  /** Checks the listener's own connection; a dead one is dropped and reconnected. */
  async ping (timeoutMs: number): Promise<boolean> {
    const listener = this.#listener
    if (listener === undefined) return false
    try {
      await withTimeout(listener.ping(), timeoutMs)
      return true
    } catch (err) {
      if (this.#listener === listener) this.#lost(listener, err as Error)
      return false
    }
  }

  async stop (): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#retry)
    const listener = this.#listener
    this.#listener = undefined
    await listener?.close()
  }

  async #connect (): Promise<void> {
    let listener: Listener | undefined
    // An error can arrive while LISTEN is being set up; it then rejects db.listen itself.
    listener = await this.db.listen(this.channel, (payload) => this.#receive(payload), (err) => { if (listener !== undefined) this.#lost(listener, err) })
    this.#listener = listener
    this.#backoffMs = MIN_BACKOFF_MS
  }

  #lost (listener: Listener, err: Error): void {
    if (this.#listener !== listener) return
    this.#listener = undefined
    void listener.close()
    this.emit('down', err)
    this.#scheduleReconnect()
  }

  #scheduleReconnect (): void {
    if (this.#stopped) return
    clearTimeout(this.#retry)
    this.#retry = setTimeout(() => {
      this.#connect().then(() => this.emit('up'), () => {
        this.#backoffMs = Math.min(MAX_BACKOFF_MS, this.#backoffMs * 2)
        this.#scheduleReconnect()
      })
    }, this.#backoffMs).unref()
  }

  #receive (payload: string): void {
    let message: BusMessage
    try {
      message = JSON.parse(payload) as BusMessage
    } catch {
      return
    }
    this.emit('message', message)
  }
}

const MIN_BACKOFF_MS = 250
const MAX_BACKOFF_MS = 5000

export async function withTimeout<T> (promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}
