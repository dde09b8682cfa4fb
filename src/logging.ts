import pino from 'pino'

/** How long a log line may wait in the buffer before it is written. */
export const LOG_FLUSH_INTERVAL_MS = 200

export interface BufferedLogDestination {
  stream: pino.DestinationStream
  /** Marks the buffer as holding lines (pino's streamWrite hook). */
  noteWrite: (line: string) => string
  /** Writes what is buffered now and stops the timer (on close). */
  stop: () => void
}

/**
 * Standard output, buffered: lines are written in batches every
 * LOG_FLUSH_INTERVAL_MS (or once 4 KiB wait) instead of one write per line,
 * which costs a syscall per connection under load. pino flushes the buffer
 * synchronously when the process exits.
 */
export function bufferedStdout (): BufferedLogDestination {
  const stream = pino.destination({ dest: 1, sync: false, minLength: 4096 })
  let pending = false
  const timer = setInterval(() => {
    if (!pending) return
    pending = false
    stream.flush()
  }, LOG_FLUSH_INTERVAL_MS).unref()
  return {
    stream,
    noteWrite: (line) => {
      pending = true
      return line
    },
    stop: () => {
      clearInterval(timer)
      if (pending) stream.flushSync()
      pending = false
    }
  }
}
