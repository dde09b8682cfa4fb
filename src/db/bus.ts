import { EventEmitter } from 'node:events'
import type { Database } from './database.ts'

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
 */
export class NotifyBus extends EventEmitter<{ message: [BusMessage], error: [Error] }> {
  readonly channel: string
  #unlisten: (() => Promise<void>) | undefined

  constructor (private readonly db: Database) {
    super()
    this.channel = `scopegate_${db.schema}`.toLowerCase()
  }

  async start (): Promise<void> {
    this.#unlisten = await this.db.listen(this.channel, (payload) => this.#receive(payload), (err) => this.emit('error', err))
  }

  async publish (message: BusMessage): Promise<void> {
    await this.db.notify(this.channel, JSON.stringify(message))
  }

  async stop (): Promise<void> {
    await this.#unlisten?.()
    this.#unlisten = undefined
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
