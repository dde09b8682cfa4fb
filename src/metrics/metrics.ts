import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import { ROLES } from '../auth/scopes.ts'
import { RpcTally, TallyHistogram } from './rpc-series.ts'

/** Counts a source reports when scraped. */
export type CountSource = () => Record<string, number>

export interface PoolStats {
  total: number
  idle: number
  waiting: number
}

/** Label of an RPC whose method the gateway does not know (never the name sent). */
export const UNKNOWN_METHOD = 'unknown'

/** Peer close codes worth a label of their own; anything else a peer sends is `other`. */
const STANDARD_CLOSE_CODES = new Set([1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 1015])

const SECONDS_FAST = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
const SECONDS_LAG = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
const SECONDS_SCHEDULER = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

/**
 * The Prometheus series of one app instance, on a registry of its own (tests
 * run several apps in one process; the global default registry is never
 * used). Every label value comes from a fixed set: method names the gateway
 * knows, outcome and error codes, close reasons by kind, roles.
 */
export class Metrics {
  readonly registry = new Registry()
  /** Open WebSocket connections by role; `pending` have not finished the handshake. */
  readonly connections: Gauge<'role'>
  readonly handshakes: Counter<'outcome'>
  readonly rpcs: Counter<'method' | 'outcome'>
  readonly rpcDuration: TallyHistogram
  readonly closes: Counter<'code' | 'reason'>
  readonly rateLimited: Counter<'limit'>
  readonly notificationLag: Histogram<'kind'>
  readonly schedulerFires: Counter
  readonly schedulerLag: Histogram
  readonly dbPool: Gauge<'state'>
  readonly deviceAccessBatches: Histogram
  #connectionSource: CountSource | undefined
  #poolSource: (() => PoolStats) | undefined
  /** RPC counts and durations by method, tallied in place on the per-message path (rpc-series.ts). */
  readonly #rpcTallies = new Map<string, RpcTally>()

  constructor () {
    const registers = [this.registry]
    collectDefaultMetrics({ register: this.registry })
    const connectionSource = (): CountSource | undefined => this.#connectionSource
    const poolSource = (): (() => PoolStats) | undefined => this.#poolSource
    const rpcTallies = this.#rpcTallies
    this.connections = new Gauge({
      name: 'scopegate_connections',
      help: 'Open WebSocket connections by role (pending: handshake not finished)',
      labelNames: ['role'],
      registers,
      collect () {
        const counts = connectionSource()?.() ?? {}
        for (const role of [...ROLES, 'pending']) this.set({ role }, counts[role] ?? 0)
      }
    })
    this.handshakes = new Counter({
      name: 'scopegate_handshakes_total',
      help: 'WebSocket handshakes by outcome: ok, a pairing reason, a refusal\'s details.code, UNAVAILABLE, INTERNAL, RATE_LIMITED, OVER_CAPACITY, CONNECT_REQUIRED, CONNECT_TIMEOUT',
      labelNames: ['outcome'],
      registers
    })
    this.rpcs = new Counter({
      name: 'scopegate_rpc_requests_total',
      help: 'RPCs after the handshake by method (unknown for a method the gateway does not have) and outcome (ok or the error code)',
      labelNames: ['method', 'outcome'],
      registers,
      collect () {
        this.reset()
        for (const [method, tally] of rpcTallies) {
          for (const [outcome, count] of tally.outcomes) this.inc({ method, outcome }, count)
        }
      }
    })
    this.rpcDuration = new TallyHistogram(
      'scopegate_rpc_duration_seconds',
      'Time from an RPC\'s arrival to its response, by method',
      'method',
      SECONDS_FAST,
      rpcTallies
    )
    this.registry.registerMetric(this.rpcDuration.asMetric())
    this.closes = new Counter({
      name: 'scopegate_closes_total',
      help: 'WebSocket closes by code and reason kind (peer: the client closed or vanished)',
      labelNames: ['code', 'reason'],
      registers
    })
    this.rateLimited = new Counter({
      name: 'scopegate_rate_limited_total',
      help: 'Refusals by limit: connections (MAX_CONNECTIONS), handshake (HANDSHAKE_RATE_PER_IP), rpc (RPC_RATE_PER_CONN), rest (REST_RATE_PER_MIN)',
      labelNames: ['limit'],
      registers
    })
    this.notificationLag = new Histogram({
      name: 'scopegate_notification_lag_seconds',
      help: 'Time from an enforcement notification (revocation, removal, grant change) being sent on any instance to its arrival here, by kind',
      labelNames: ['kind'],
      buckets: SECONDS_LAG,
      registers
    })
    this.schedulerFires = new Counter({
      name: 'scopegate_scheduler_fires_total',
      help: 'Cron runs this instance fired',
      registers
    })
    this.schedulerLag = new Histogram({
      name: 'scopegate_scheduler_lag_seconds',
      help: 'Time from a cron run\'s due time to its fire',
      buckets: SECONDS_SCHEDULER,
      registers
    })
    this.deviceAccessBatches = new Histogram({
      name: 'scopegate_device_access_batch_size',
      help: 'Handshakes whose device lookup went to the database in one query (count: queries, sum: handshakes)',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128],
      registers
    })
    this.dbPool = new Gauge({
      name: 'scopegate_db_pool_connections',
      help: 'Database pool clients: total, idle, and requests waiting for one (0 for embedded PGlite)',
      labelNames: ['state'],
      registers,
      collect () {
        const stats = poolSource()?.() ?? { total: 0, idle: 0, waiting: 0 }
        this.set({ state: 'total' }, stats.total)
        this.set({ state: 'idle' }, stats.idle)
        this.set({ state: 'waiting' }, stats.waiting)
      }
    })
  }

  /** The gateway reports its open connections by role when scraped. */
  countConnections (source: CountSource): void {
    this.#connectionSource = source
  }

  /** The database reports its pool when scraped. */
  watchPool (source: () => PoolStats): void {
    this.#poolSource = source
  }

  deviceAccessBatch (lookups: number): void {
    this.deviceAccessBatches.observe(lookups)
  }

  handshake (outcome: string): void {
    this.handshakes.inc({ outcome })
  }

  /** One RPC; `method` must already be a known name or UNKNOWN_METHOD. */
  rpc (method: string, outcome: string, seconds?: number): void {
    let tally = this.#rpcTallies.get(method)
    if (tally === undefined) this.#rpcTallies.set(method, tally = new RpcTally(SECONDS_FAST))
    tally.outcome(outcome)
    if (seconds !== undefined) tally.observe(seconds)
  }

  /** A close the gateway (or ws, for a protocol error) made; `reason` is its kind, never a free-form text. */
  close (code: number, reason: string): void {
    this.closes.inc({ code: String(code), reason })
  }

  /** A close the peer made (or a connection that vanished: 1006). */
  peerClose (code: number): void {
    this.closes.inc({ code: STANDARD_CLOSE_CODES.has(code) ? String(code) : 'other', reason: 'peer' })
  }

  limited (limit: 'connections' | 'handshake' | 'rpc' | 'rest'): void {
    this.rateLimited.inc({ limit })
  }

  notification (kind: string, sentAtMs: number, nowMs: number = Date.now()): void {
    this.notificationLag.observe({ kind }, Math.max(0, nowMs - sentAtMs) / 1000)
  }

  /** Runs fired at `firedAtMs`, each with its due time. */
  fired (dueAtMs: number[], firedAtMs: number): void {
    if (dueAtMs.length === 0) return
    this.schedulerFires.inc(dueAtMs.length)
    for (const due of dueAtMs) this.schedulerLag.observe(Math.max(0, firedAtMs - due) / 1000)
  }

  async text (): Promise<string> {
    return await this.registry.metrics()
  }

  get contentType (): string {
    return this.registry.contentType
  }
}
