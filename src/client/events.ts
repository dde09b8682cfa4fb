/** Every event in PROTOCOL.md's Events table, with its payload type (the server's own). */
import type { CronEvent, CronFireEvent } from '../cron/delivery.ts'
import type { Challenge } from '../gateway/handshake.ts'
import type { GATEWAY_EVENTS, PairResolvedEvent, ShutdownEvent, TickEvent } from '../gateway/plugin.ts'
import type { PairingRequestView } from '../pairing/service.ts'

export interface GatewayEvents {
  'connect.challenge': Challenge
  tick: TickEvent
  'device.pair.requested': PairingRequestView
  'device.pair.resolved': PairResolvedEvent
  cron: CronEvent
  'cron.fire': CronFireEvent
  shutdown: ShutdownEvent
}

export type GatewayEventName = keyof GatewayEvents

// Compile-time: the map names exactly the events the gateway announces in hello-ok.
type ServerEvent = (typeof GATEWAY_EVENTS)[number]
type AssertNone<T extends never> = T
type SameEvents = AssertNone<Exclude<ServerEvent, GatewayEventName> | Exclude<GatewayEventName, ServerEvent>>

export type { Challenge, CronEvent, CronFireEvent, PairResolvedEvent, ShutdownEvent, TickEvent }
