/**
 * The time the gateway decides token expiry by, and the timers that act on
 * it. Production uses the system clock; tests pass a clock they advance
 * (buildApp's `clock` option) instead of waiting for a short TTL to pass.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now: () => number
  /** Runs `fn` once after `delayMs` of this clock's time; never keeps the process alive. */
  setTimer: (fn: () => void, delayMs: number) => Timer
}

export interface Timer {
  cancel: () => void
}

/** setTimeout holds at most ~24.8 days; longer waits are split by the caller. */
export const MAX_TIMER_MS = 2 ** 31 - 1

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer (fn, delayMs) {
    const timer = setTimeout(fn, Math.min(Math.max(0, delayMs), MAX_TIMER_MS))
    timer.unref()
    return { cancel: () => clearTimeout(timer) }
  }
}
