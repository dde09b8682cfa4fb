import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { BusMessage } from '../db/bus.ts'
import { Errors } from '../errors.ts'
import { errors } from '../schemas/common.ts'
import { ADMIN_EVENTS, EventHub, formatEvent, type AdminEventPayloads, type EventSubscriber } from './hub.ts'

/** A comment line this often keeps proxies and idle timeouts from cutting a quiet stream. */
const KEEPALIVE_MS = 15_000
/** A stream whose unsent output passes this is ended ('slow consumer'), never buffered without bound. */
const MAX_BUFFERED_BYTES = 1024 * 1024
/** setTimeout's limit; a token valid for longer is simply not timed. */
const MAX_TIMER_MS = 2 ** 31 - 1

const eventsSchema = {
  summary: 'Live admin events (server-sent events over a streaming response)',
  description: [
    'A `text/event-stream` response that stays open. Send the admin JWT in the Authorization header ',
    '(read it with fetch() and a streaming body: EventSource cannot send headers, and the token never goes in a URL). ',
    `Events: ${ADMIN_EVENTS.map((e) => `\`${e}\``).join(', ')}; each \`data\` is one JSON object. `,
    '`ready` comes first: reload your lists then, and apply the events that follow. ',
    'Changes made on any instance sharing the database arrive on every instance\'s streams. ',
    'The stream ends with an `end` event when the token expires, the instance loses its database listener ',
    '(reconnect: 503 until it is back) or shuts down. Viewers may read it.'
  ].join(''),
  tags: ['events'],
  response: {
    200: {
      description: 'The event stream',
      content: { 'text/event-stream': { schema: Type.String({ description: 'event: <name>\\ndata: <JSON>\\n\\n, repeated; `: keepalive` comments in between' }) } }
    },
    ...errors(401, 429, 503)
  }
}

/** `GET /api/v1/events`: registered under /api/v1, behind the admin JWT hook. */
const eventRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const hub = new EventHub(async (id) => await app.pairing.get(id), (err) => app.log.warn({ err: err.message }, 'could not deliver an admin event'))
  const onMessage = (message: BusMessage): void => { hub.onMessage(message) }
  // Without the listener, events would be missed silently: end the streams; reconnects get 503 until it is back.
  const onReadiness = (ready: boolean): void => { if (!ready) hub.endAll('service unavailable') }
  app.bus.on('message', onMessage)
  app.readiness.on('change', onReadiness)
  app.addHook('preClose', async () => { hub.endAll('service restart') })
  app.addHook('onClose', async () => {
    app.bus.off('message', onMessage)
    app.readiness.off('change', onReadiness)
  })

  app.get('/events', { schema: eventsSchema }, async (request, reply) => {
    if (!app.readiness.ready) throw new Errors.Unavailable('notification listener not connected')
    const exp = 'exp' in request.user ? request.user.exp : undefined
    reply.hijack()
    const raw = reply.raw
    raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      // Tells nginx-style proxies not to buffer the stream.
      'x-accel-buffering': 'no'
    })
    let ended = false
    const cleanup = (): void => {
      ended = true
      clearInterval(keepalive)
      clearTimeout(expiry)
      unsubscribe()
    }
    const subscriber: EventSubscriber = {
      write: (text) => {
        if (ended) return false
        raw.write(text)
        return raw.writableLength <= MAX_BUFFERED_BYTES
      },
      end: (reason: AdminEventPayloads['end']['reason']) => {
        if (ended) return
        cleanup()
        raw.end(formatEvent({ event: 'end', data: { reason } }))
        request.log.debug({ actor: request.user.sub, reason }, 'admin event stream ended')
      }
    }
    const keepalive = setInterval(() => { subscriber.write(': keepalive\n\n') }, KEEPALIVE_MS).unref()
    // A stream lives no longer than the token that opened it.
    const expiry = typeof exp === 'number'
      ? setTimeout(() => { subscriber.end('token expired') }, Math.min(MAX_TIMER_MS, Math.max(0, exp * 1000 - Date.now()))).unref()
      : undefined
    const unsubscribe = hub.subscribe(subscriber)
    raw.on('close', cleanup)
    subscriber.write(formatEvent({ event: 'ready', data: { ts: Date.now() } }))
  })
}

export default eventRoutes
