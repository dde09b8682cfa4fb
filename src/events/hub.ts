import type { BusMessage, PairDecision } from '../db/bus.ts'
import type { PairingRequestView } from '../pairing/service.ts'

/**
 * The admin event stream (`GET /api/v1/events`): what an admin screen needs
 * to stay current without polling. Each event is one server-sent event whose
 * `data` is a JSON object; clients reload the rows they show from REST.
 */
export const ADMIN_EVENTS = ['ready', 'device.pair.requested', 'device.pair.resolved', 'device.changed', 'cron', 'end'] as const
export type AdminEventName = (typeof ADMIN_EVENTS)[number]

export interface AdminEventPayloads {
  /** First event of every stream: from now on nothing is missed (reload the lists now). */
  ready: { ts: number }
  /** The pending request, as `GET /api/v1/pairing-requests/:id` shows it. */
  'device.pair.requested': PairingRequestView
  'device.pair.resolved': { requestId: string, deviceId: string, decision: PairDecision, ts: number }
  /** A device's rows changed: removed, grants changed, or a token revoked or rotated. */
  'device.changed': { deviceId: string, change: 'removed' | 'grants' | 'token', ts: number }
  /** A job was added, updated or removed, or runs started or finished. */
  cron: { action: 'added' | 'updated' | 'removed' | 'started' | 'finished', jobId?: string, runIds?: string[], ts: number }
  /** Last event before the server ends the stream; reconnect unless the token expired. */
  end: { reason: 'token expired' | 'service unavailable' | 'service restart' | 'slow consumer' }
}

export type AdminEvent = { [K in AdminEventName]: { event: K, data: AdminEventPayloads[K] } }[AdminEventName]

/** One server-sent event, as written on the wire. */
export function formatEvent (event: AdminEvent): string {
  return `event: ${event.event}\ndata: ${JSON.stringify(event.data)}\n\n`
}

/**
 * Turns a bus message (ids only, from any instance) into the admin event, or
 * null when admins need not hear of it. `getRequest` reads a pairing request.
 */
export async function toAdminEvent (message: BusMessage, getRequest: (id: string) => Promise<PairingRequestView>): Promise<AdminEvent | null> {
  const ts = Date.now()
  switch (message.kind) {
    case 'pair.requested': {
      const request = await getRequest(message.requestId)
      // Decided (or superseded) before we read it: its pair.resolved follows, and a request that is no longer pending is not news.
      return request.state === 'pending' ? { event: 'device.pair.requested', data: request } : null
    }
    case 'pair.resolved':
      return { event: 'device.pair.resolved', data: { requestId: message.requestId, deviceId: message.deviceId, decision: message.decision, ts: message.ts } }
    case 'device.removed':
      return { event: 'device.changed', data: { deviceId: message.deviceId, change: 'removed', ts } }
    case 'grants.changed':
      return { event: 'device.changed', data: { deviceId: message.deviceId, change: 'grants', ts } }
    case 'token.revoked':
      return { event: 'device.changed', data: { deviceId: message.deviceId, change: 'token', ts } }
    case 'cron.job':
      return { event: 'cron', data: { action: message.action, jobId: message.jobId, ts } }
    case 'cron.runs':
      return { event: 'cron', data: { action: message.action, runIds: message.runIds, ts } }
    case 'cron.fires':
      return null
  }
}

export interface EventSubscriber {
  /** Writes one formatted event; false when the subscriber is gone or too slow. */
  write: (text: string) => boolean
  end: (reason: AdminEventPayloads['end']['reason']) => void
}

/**
 * Fans bus messages out to this instance's open admin streams. Every instance
 * hears every change through the NotifyBus (LISTEN/NOTIFY), so a stream on
 * any instance sees changes made on all of them. A message is turned into an
 * event once, however many streams are open.
 */
export class EventHub {
  readonly #subscribers = new Set<EventSubscriber>()
  #queue: Promise<void> = Promise.resolve()

  constructor (
    private readonly getRequest: (id: string) => Promise<PairingRequestView>,
    private readonly onError: (err: Error) => void
  ) {}

  get size (): number {
    return this.#subscribers.size
  }

  subscribe (subscriber: EventSubscriber): () => void {
    this.#subscribers.add(subscriber)
    return () => { this.#subscribers.delete(subscriber) }
  }

  /** Bus messages are handled one after another, so events keep the order of the notifications. */
  onMessage (message: BusMessage): void {
    if (this.#subscribers.size === 0) return
    this.#queue = this.#queue.then(async () => {
      const event = await toAdminEvent(message, this.getRequest)
      if (event !== null) this.broadcast(event)
    }).catch((err: unknown) => { this.onError(err as Error) })
  }

  broadcast (event: AdminEvent): void {
    const text = formatEvent(event)
    for (const subscriber of this.#subscribers) {
      if (!subscriber.write(text)) subscriber.end('slow consumer')
    }
  }

  /** Ends every stream (listener lost, shutdown): clients reconnect and reload. */
  endAll (reason: AdminEventPayloads['end']['reason']): void {
    for (const subscriber of [...this.#subscribers]) subscriber.end(reason)
  }
}
