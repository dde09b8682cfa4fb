import type { AdminEvent } from './types.ts'

export type StreamStatus = 'connecting' | 'live' | 'offline'

export interface StreamHandlers {
  onEvent: (event: AdminEvent) => void
  onStatus: (status: StreamStatus) => void
  /** The server refused the token (401): stop, sign out. */
  onUnauthorized: () => void
}

const EVENT_NAMES = new Set<string>(['ready', 'device.pair.requested', 'device.pair.resolved', 'device.changed', 'cron', 'end'])

/** Parses complete server-sent events out of `buffer`; returns the unparsed rest. */
export function parseEvents (buffer: string, emit: (name: string, data: string) => void): string {
  const blocks = buffer.split(/\r?\n\r?\n/)
  const rest = blocks.pop() ?? ''
  for (const block of blocks) {
    let name = 'message'
    const data: string[] = []
    for (const line of block.split(/\r?\n/)) {
      if (line === '' || line.startsWith(':')) continue
      const colon = line.indexOf(':')
      const field = colon === -1 ? line : line.slice(0, colon)
      const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '')
      if (field === 'event') name = value
      else if (field === 'data') data.push(value)
    }
    if (data.length > 0) emit(name, data.join('\n'))
  }
  return rest
}

/**
 * Follows GET /api/v1/events with fetch() and a streaming body: EventSource
 * cannot send the Authorization header, and the token must never be put in a
 * URL. Reconnects with backoff; every (re)connect starts with `ready`, on
 * which callers reload what they show. Returns a function that stops it.
 */
export function followEvents (token: string, handlers: StreamHandlers): () => void {
  const controller = new AbortController()
  let backoffMs = 1000
  let stopped = false

  const once = async (): Promise<'retry' | 'stop'> => {
    handlers.onStatus('connecting')
    const res = await fetch('/api/v1/events', {
      headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
      cache: 'no-store',
      signal: controller.signal
    })
    if (res.status === 401) {
      handlers.onUnauthorized()
      return 'stop'
    }
    if (!res.ok || res.body === null) return 'retry'
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
    let buffer = ''
    let ended = ''
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      buffer = parseEvents(buffer + value, (name, data) => {
        if (!EVENT_NAMES.has(name)) return
        const event = { event: name, data: JSON.parse(data) as unknown } as AdminEvent
        if (event.event === 'ready') {
          backoffMs = 1000
          handlers.onStatus('live')
        }
        if (event.event === 'end') ended = event.data.reason
        handlers.onEvent(event)
      })
    }
    if (ended === 'token expired') {
      handlers.onUnauthorized()
      return 'stop'
    }
    return 'retry'
  }

  void (async () => {
    while (!stopped) {
      let outcome: 'retry' | 'stop' = 'retry'
      try {
        outcome = await once()
      } catch {
        outcome = 'retry'
      }
      if (stopped || outcome === 'stop') return
      handlers.onStatus('offline')
      await new Promise((resolve) => setTimeout(resolve, backoffMs))
      backoffMs = Math.min(15_000, backoffMs * 2)
    }
  })()

  return () => {
    stopped = true
    controller.abort()
  }
}
