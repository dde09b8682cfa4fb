import type { Clock, Timer } from '../../src/clock.ts'

interface Pending { atMs: number, seq: number, fn: () => void }

/**
 * A clock that stands still until the test advances it (buildApp's `clock`
 * option): token expiry is tested by moving time, not by waiting for it.
 */
export class ManualClock implements Clock {
  #nowMs: number
  #timers: Pending[] = []
  #seq = 0

  constructor (startMs: number = Date.now()) {
    this.#nowMs = startMs
  }

  readonly now = (): number => this.#nowMs

  readonly setTimer = (fn: () => void, delayMs: number): Timer => {
    const timer: Pending = { atMs: this.#nowMs + Math.max(0, delayMs), seq: this.#seq++, fn }
    this.#timers.push(timer)
    return { cancel: () => { this.#timers = this.#timers.filter((t) => t !== timer) } }
  }

  /** Timers not yet fired or cancelled. */
  get pendingTimers (): number {
    return this.#timers.length
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way, in order. */
  advance (ms: number): void {
    const target = this.#nowMs + ms
    for (;;) {
      const due = this.#timers.filter((t) => t.atMs <= target).sort((a, b) => a.atMs - b.atMs || a.seq - b.seq)[0]
      if (due === undefined) break
      this.#timers = this.#timers.filter((t) => t !== due)
      this.#nowMs = Math.max(this.#nowMs, due.atMs)
      due.fn()
    }
    this.#nowMs = target
  }
}
