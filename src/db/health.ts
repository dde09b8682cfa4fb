import { EventEmitter } from 'node:events'
import type { FastifyBaseLogger } from 'fastify'
import { withTimeout, type NotifyBus } from './bus.ts'
import type { Database } from './database.ts'
import { migrationsApplied } from './migrate.ts'

export interface ReadinessChecks {
  db: boolean
  migrations: boolean
  listener: boolean
}

export interface ReadinessOptions {
  /** How often the database and the listener are checked. */
  intervalMs: number
  /** An answer slower than this counts as lost. */
  timeoutMs: number
}

/**
 * Whether this instance may decide anything: the database answers and the
 * notification listener is connected (without it a revocation could be
 * missed). Checked every intervalMs and on every listener event, so a loss
 * is noticed within intervalMs + timeoutMs.
 */
export class Readiness extends EventEmitter<{ change: [ready: boolean, checks: ReadinessChecks] }> {
  #db = true
  #listener = true
  #timer: NodeJS.Timeout | undefined
  #checking: Promise<void> | null = null

  constructor (
    private readonly db: Database,
    private readonly bus: NotifyBus,
    private readonly options: ReadinessOptions,
    private readonly log: FastifyBaseLogger
  ) {
    super()
  }

  get ready (): boolean {
    return this.#db && this.#listener
  }

  start (): void {
    this.bus.on('down', (err) => {
      this.log.error({ err: err.message }, 'notification listener lost; refusing connections until it is back')
      this.#set(this.#db, false)
    })
    this.bus.on('up', () => {
      this.log.info('notification listener reconnected')
      void this.check()
    })
    this.#timer = setInterval(() => { void this.check() }, this.options.intervalMs).unref()
  }

  stop (): void {
    clearInterval(this.#timer)
  }

  /** One round of checks; concurrent callers share it. */
  async check (): Promise<void> {
    this.#checking ??= this.#runChecks().finally(() => { this.#checking = null })
    await this.#checking
  }

  async #runChecks (): Promise<void> {
    const dbOk = await withTimeout(this.db.ping(), this.options.timeoutMs).then(() => true, () => false)
    const listenerOk = dbOk && await this.bus.ping(this.options.timeoutMs)
    this.#set(dbOk, listenerOk)
  }

  /** For /readyz: a live look, migrations included. */
  async probe (): Promise<ReadinessChecks> {
    await this.check()
    const migrations = this.#db && await withTimeout(migrationsApplied(this.db), this.options.timeoutMs).catch(() => false)
    return { db: this.#db, migrations, listener: this.#listener }
  }

  #set (db: boolean, listener: boolean): void {
    const before = this.ready
    if (!db && this.#db) this.log.error('database unreachable; refusing connections until it answers')
    if (db && !this.#db) this.log.info('database reachable again')
    this.#db = db
    this.#listener = listener
    if (this.ready !== before) this.emit('change', this.ready, { db, migrations: true, listener })
  }
}
