import type { ErrorShape } from './frames.ts'

/**
 * Token buckets for the WebSocket limits (HANDSHAKE_RATE_PER_IP,
 * RPC_RATE_PER_CONN). Written here rather than taken from a library: the
 * check sits on the per-message path and must be synchronous and
 * allocation-free, which the promise-based limiters on the registry
 * (rate-limiter-flexible, limiter) are not. REST uses @fastify/rate-limit.
 *
 * A bucket holds up to `burst` tokens and refills at `ratePerSec`; each
 * event takes one. An empty bucket answers how long until a token is back.
 */
export class TokenBucket {
  #tokens: number
  #updatedAtMs: number

  constructor (readonly ratePerSec: number, readonly burst: number, nowMs: number = Date.now()) {
    this.#tokens = burst
    this.#updatedAtMs = nowMs
  }

  /** Takes a token: 0 when allowed, else the milliseconds until one is available. */
  take (nowMs: number = Date.now()): number {
    this.#refill(nowMs)
    if (this.#tokens >= 1) {
      this.#tokens -= 1
      return 0
    }
    return Math.max(1, Math.ceil((1 - this.#tokens) * 1000 / this.ratePerSec))
  }

  /** True when the bucket is full again: it then means the same as no bucket at all. */
  isFull (nowMs: number = Date.now()): boolean {
    this.#refill(nowMs)
    return this.#tokens >= this.burst
  }

  #refill (nowMs: number): void {
    const elapsed = nowMs - this.#updatedAtMs
    if (elapsed <= 0) return
    this.#tokens = Math.min(this.burst, this.#tokens + elapsed * this.ratePerSec / 1000)
    this.#updatedAtMs = nowMs
  }
}

export interface KeyedLimiterOptions {
  ratePerSec: number
  burst: number
  /** Most keys held at once; beyond it the oldest are dropped (default 100,000). */
  maxKeys?: number
  /** How often full (idle) buckets are swept away (default 10 s). */
  sweepIntervalMs?: number
}

/**
 * One bucket per key (a remote address), with bounded memory: a bucket that
 * has refilled is forgotten by a periodic sweep (it would behave exactly like
 * a new one), and past `maxKeys` the oldest keys are dropped first.
 */
export class KeyedRateLimiter {
  readonly #buckets = new Map<string, TokenBucket>()
  readonly #maxKeys: number
  readonly #sweep: NodeJS.Timeout

  constructor (private readonly options: KeyedLimiterOptions) {
    this.#maxKeys = options.maxKeys ?? 100_000
    this.#sweep = setInterval(() => this.sweep(), options.sweepIntervalMs ?? 10_000).unref()
  }

  get size (): number {
    return this.#buckets.size
  }

  /** 0 when `key` may go ahead, else the milliseconds until it may. */
  take (key: string, nowMs: number = Date.now()): number {
    let bucket = this.#buckets.get(key)
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#maxKeys) this.#evictOldest()
      bucket = new TokenBucket(this.options.ratePerSec, this.options.burst, nowMs)
      this.#buckets.set(key, bucket)
    }
    return bucket.take(nowMs)
  }

  /** Forgets every bucket that has refilled (an idle key). */
  sweep (nowMs: number = Date.now()): void {
    for (const [key, bucket] of this.#buckets) {
      if (bucket.isFull(nowMs)) this.#buckets.delete(key)
    }
  }

  stop (): void {
    clearInterval(this.#sweep)
    this.#buckets.clear()
  }

  #evictOldest (): void {
    // Maps iterate in insertion order: drop the oldest tenth in one go.
    let toDrop = Math.max(1, Math.floor(this.#maxKeys / 10))
    for (const key of this.#buckets.keys()) {
      this.#buckets.delete(key)
      if (--toDrop === 0) break
    }
  }
}

/** The answer to a request over a limit (PROTOCOL.md): the socket stays open unless said otherwise. */
export function rateLimitedError (retryAfterMs: number): ErrorShape {
  return { code: 'RATE_LIMITED', message: 'rate limited', retryAfterMs }
}
