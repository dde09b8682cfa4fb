import websocket from '@fastify/websocket'
import type { IncomingMessage } from 'node:http'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { isCovered } from '../auth/scopes.ts'
import { withTimeout, type BusMessage, type PairDecision } from '../db/bus.ts'
import { DeviceAccessLoader } from '../devices/access.ts'
import { LastSeenRecorder } from '../devices/service.ts'
import { CronDelivery } from '../cron/delivery.ts'
import { cronMethods } from '../methods/cron.ts'
import { deviceMethods } from '../methods/devices.ts'
import { statusMethods } from '../methods/status.ts'
import { healthMethods } from '../methods/health.ts'
import { MethodTable } from '../methods/index.ts'
import { Close, wsErrorClose } from './close.ts'
import { GatewayConnection, type GatewayPolicy } from './connection.ts'
import { enforce, isEnforcement } from './enforcement.ts'
import { hashGatewayToken } from './handshake.ts'
import { KeyedRateLimiter } from './rate-limit.ts'
import { ConnectionRegistry } from './registry.ts'

export const GATEWAY_EVENTS = ['connect.challenge', 'tick', 'device.pair.requested', 'device.pair.resolved', 'cron', 'cron.fire', 'shutdown'] as const

// Payloads of the events sent from here (the client SDK shares these types).
export interface TickEvent { ts: number }
export interface ShutdownEvent { reason: string, restartExpectedMs?: number }
export interface PairResolvedEvent { requestId: string, deviceId: string, decision: PairDecision, ts: number }

declare module 'fastify' {
  interface FastifyInstance {
    gateway: { registry: ConnectionRegistry }
  }
}

export interface GatewayPluginOptions {
  version: string
}

/** The WebSocket RPC endpoint at `/`: handshake, methods, events, keepalive. */
async function gatewayPlugin (app: FastifyInstance, opts: GatewayPluginOptions): Promise<void> {
  const { config, db, bus, pairing, devices, cron, scheduler } = app
  const startedAtMs = Date.now()
  const registry = new ConnectionRegistry()
  const methods = new MethodTable([
    healthMethods,
    statusMethods(opts.version, startedAtMs, registry, cron, scheduler),
    cronMethods(cron, scheduler),
    deviceMethods(pairing, devices)
  ])
  const delivery = new CronDelivery(db.sql, db.prisma, registry)
  const lastSeen = new LastSeenRecorder(db.sql, 2000, (err) => app.log.warn({ err: err.message }, 'could not record last seen'))
  const policy: GatewayPolicy = {
    maxPayload: config.maxPayloadBytes,
    maxBufferedBytes: config.maxBufferedBytes,
    tickIntervalMs: config.tickIntervalMs,
    handshakeTimeoutMs: config.handshakeTimeoutMs,
    rpcRatePerConn: config.rpcRatePerConn
  }
  const deps = {
    handshake: { sql: db.sql, access: new DeviceAccessLoader(db.sql, { onBatch: (lookups) => app.metrics.deviceAccessBatch(lookups) }), pairing, gatewayTokenHash: hashGatewayToken(config.gatewayToken), deviceTokenTtlMs: config.deviceTokenTtlMs, now: () => app.clock.now() },
    methods,
    registry,
    lastSeen,
    policy,
    log: app.log,
    clock: app.clock,
    serverVersion: opts.version,
    events: GATEWAY_EVENTS,
    startedAtMs,
    metrics: app.metrics,
    isReady: () => app.readiness.ready,
    onAdmitted: (conn: GatewayConnection) => {
      const deviceId = conn.admission?.deviceId
      if (deviceId != null && conn.admission?.pendingFires === true) {
        delivery.deliverPending(conn, deviceId).catch((err: unknown) => app.log.warn({ err: (err as Error).message }, 'could not deliver kept cron fires'))
      }
    }
  }
  const sockets = new Set<GatewayConnection>()
  app.metrics.countConnections(() => {
    const counts: Record<string, number> = { pending: sockets.size - registry.size }
    for (const conn of registry) {
      const role = conn.admission?.role ?? 'pending'
      counts[role] = (counts[role] ?? 0) + 1
    }
    return counts
  })
  // HANDSHAKE_RATE_PER_IP: one bucket per request.ip (X-Forwarded-For only under TRUST_PROXY).
  const rate = config.handshakeRatePerIp
  const handshakeLimiter = rate > 0 ? new KeyedRateLimiter({ ratePerSec: rate, burst: rate }) : null
  app.addHook('onClose', async () => { handshakeLimiter?.stop() })

  await app.register(websocket, {
    options: { maxPayload: config.maxPayloadBytes, perMessageDeflate: false },
    // A peer's protocol error (a frame over maxPayload, bad UTF-8, …) is the peer's doing, not a fault here:
    // ws has already begun the close with its code (1009, 1007, 1002), which the connection counts and logs
    // at debug. The default handler would log it at error (any client could flood the log) and terminate
    // the socket under that close frame. Anything else is ours: logged at error, socket terminated.
    errorHandler: (err, socket, request) => {
      if (wsErrorClose(err) !== undefined) return
      request.log.error({ err }, 'websocket handler failed')
      socket.terminate()
    },
    // Graceful shutdown: let in-flight RPCs answer (bounded), then `shutdown` and 1012 to everyone.
    preClose: (done) => {
      const drained = Promise.all([...sockets].map(async (conn) => await conn.drain()))
      void withTimeout(drained, Math.max(100, Math.floor(config.shutdownGraceMs / 2))).catch(() => {}).then(() => {
        for (const conn of sockets) {
          conn.sendEvent('shutdown', { reason: 'service restart' } satisfies ShutdownEvent)
          conn.close(Close.serviceRestart)
        }
        done()
      })
    }
  })
  app.decorate('gateway', { registry })
  // The 101 response and the challenge that follows it in the same tick go out in one write (one segment,
  // one wake-up of the client) instead of two: ws writes the 101 right after 'headers', then the route
  // handler below sends the challenge synchronously; nextTick uncorks once both are buffered.
  app.websocketServer.on('headers', (_headers: string[], request: IncomingMessage) => {
    const socket = request.socket
    socket.cork()
    process.nextTick(() => socket.uncork())
  })

  app.get('/', { websocket: true, logLevel: 'warn', schema: { hide: true } }, (socket, request) => {
    const conn = new GatewayConnection(socket, deps, request.ip)
    // MAX_CONNECTIONS counts every open socket, handshakes included; one over it is closed 1013 at once.
    if (config.maxConnections > 0 && sockets.size >= config.maxConnections) {
      app.metrics.limited('connections')
      conn.refuseOverCapacity()
      return
    }
    sockets.add(conn)
    socket.once('close', () => sockets.delete(conn))
    const retryAfterMs = handshakeLimiter?.take(request.ip) ?? 0
    if (retryAfterMs > 0) app.metrics.limited('handshake')
    conn.start(retryAfterMs)
  })

  const keepalive = setInterval(() => {
    const ts = Date.now()
    for (const conn of registry) {
      if (!conn.alive) {
        conn.terminate('keepalive timeout')
        continue
      }
      conn.alive = false
      conn.socket.ping()
      conn.sendEvent('tick', { ts } satisfies TickEvent)
    }
  }, config.tickIntervalMs).unref()

  const onBusMessage = (message: BusMessage): void => {
    void deliver(message).catch((err: unknown) => app.log.warn({ err }, 'could not deliver a notification'))
  }
  const deliver = async (message: BusMessage): Promise<void> => {
    if (isEnforcement(message)) {
      app.metrics.notification(message.kind, message.sentAtMs)
      const closed = await enforce(message, registry, db.sql)
      if (closed > 0) app.log.info({ kind: message.kind, deviceId: message.deviceId, closed, lagMs: Date.now() - message.sentAtMs }, 'closed connections after a change')
      return
    }
    switch (message.kind) {
      case 'cron.fires':
      case 'cron.runs':
      case 'cron.job':
        await delivery.onMessage(message)
        return
      case 'pair.requested': {
        const request = await pairing.get(message.requestId)
        pairing.scheduleExpiry(request.expiresAtMs)
        broadcast('device.pair.requested', request, 'operator.pairing')
        return
      }
      case 'pair.resolved': {
        const { requestId, deviceId, decision, ts } = message
        broadcast('device.pair.resolved', { requestId, deviceId, decision, ts } satisfies PairResolvedEvent, 'operator.pairing')
      }
    }
  }
  const broadcast = (event: string, payload: unknown, scope: string): void => {
    for (const conn of registry) {
      if (conn.admission !== undefined && isCovered(scope, conn.admission.scopes)) conn.sendEvent(event, payload)
    }
  }
  bus.on('message', onBusMessage)

  // Fail closed: without the database or the listener, no connection may rely on its cached rights.
  const onReadiness = (ready: boolean): void => {
    if (ready) {
      scheduler.wake()
      return
    }
    for (const conn of sockets) conn.close(Close.tryAgainLater)
  }
  app.readiness.on('change', onReadiness)

  app.addHook('onClose', async () => {
    clearInterval(keepalive)
    bus.off('message', onBusMessage)
    app.readiness.off('change', onReadiness)
    await lastSeen.flush()
  })
}

export default fp(gatewayPlugin, { name: 'gateway', dependencies: ['db', 'metrics', 'pairing', 'devices', 'cron', 'clock'] })
