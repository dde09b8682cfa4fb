import { readFileSync } from 'node:fs'
import { STATUS_CODES } from 'node:http'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyError, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import fp from 'fastify-plugin'
import secureJson from 'secure-json-parse'
import adminJwt from './auth/admin-jwt.ts'
import { systemClock, type Clock } from './clock.ts'
import { fastifyTrustProxy, type Config } from './config.ts'
import consolePlugin from './console/plugin.ts'
import auditRoutes from './audit/routes.ts'
import cronPlugin from './cron/plugin.ts'
import cronRoutes from './cron/routes.ts'
import { isDatabaseUnavailable } from './db/errors.ts'
import dbPlugin from './db/plugin.ts'
import devicesPlugin from './devices/plugin.ts'
import deviceRoutes from './devices/routes.ts'
import eventRoutes from './events/routes.ts'
import gatewayPlugin from './gateway/plugin.ts'
import metricsPlugin from './metrics/plugin.ts'
import pairingPlugin from './pairing/plugin.ts'
import pairingRoutes from './pairing/routes.ts'
import { bufferedStdout } from './logging.ts'
import policiesPlugin from './policies/plugin.ts'
import { registerRestRateLimit } from './rest-rate-limit.ts'
import { ErrorResponse } from './schemas/common.ts'
import { registerValidation } from './schemas/validation.ts'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
    /** The time token expiry is decided by (BuildOptions.clock). */
    clock: Clock
  }
}

export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version

export interface BuildOptions {
  /** Where log lines go (default stdout); tests pass a stream to read them. */
  logStream?: NodeJS.WritableStream
  /** The clock that decides token expiry (default: the system clock); tests pass one they advance. */
  clock?: Clock
}

/** Never let a secret reach a log line, whatever gets logged. */
export const LOG_REDACT = [
  'req.headers.authorization', 'req.headers.cookie', 'headers.authorization',
  '*.token', '*.deviceToken', '*.signature', '*.jwtSecret', '*.gatewayToken', '*.auth', '*.device.signature'
]

/** Builds the whole application from explicitly registered plugins. */
export async function buildApp (config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const stdout = options.logStream === undefined ? bufferedStdout() : undefined
  const logger: FastifyServerOptions['logger'] = {
    level: config.logLevel,
    redact: { paths: LOG_REDACT, censor: '[redacted]' },
    stream: options.logStream ?? stdout?.stream,
    ...(stdout !== undefined && { hooks: { streamWrite: stdout.noteWrite } })
  }
  // Ids may be up to 128 characters (API.md); Fastify's default path parameter limit is 100.
  // trustProxy (TRUST_PROXY) decides request.ip, which every per-IP limit uses.
  const app = Fastify({ logger, bodyLimit: 1024 * 1024, forceCloseConnections: true, routerOptions: { maxParamLength: 256 }, trustProxy: fastifyTrustProxy(config.trustProxy),
    // Start-up migrates and plans timers; on a busy 2-core machine that can take more than Fastify's 10 s default.
    pluginTimeout: 60_000 }).withTypeProvider<TypeBoxTypeProvider>()
  if (stdout !== undefined) app.addHook('onClose', async () => { stdout.stop() })

  await app.register(fp(async (instance) => { instance.decorate('config', config) }, { name: 'config' }))
  await app.register(fp(async (instance) => { instance.decorate('clock', options.clock ?? systemClock) }, { name: 'clock' }))
  registerBodyParsing(app)
  registerValidation(app)
  registerErrorHandling(app)
  app.addSchema(ErrorResponse)
  await registerOpenApi(app)

  await app.register(dbPlugin)
  await app.register(metricsPlugin)
  await app.register(adminJwt)
  await app.register(pairingPlugin)
  await app.register(devicesPlugin)
  await app.register(cronPlugin)
  await app.register(gatewayPlugin, { version: VERSION })

  // Probes are polled every few seconds: keep them out of the info log.
  app.get('/healthz', { schema: { hide: true }, logLevel: 'warn' }, async () => ({ ok: true }))
  app.get('/readyz', { schema: { hide: true }, logLevel: 'warn' }, async (_request, reply) => {
    const checks = await app.readiness.probe()
    const ok = checks.db && checks.migrations && checks.listener
    return await reply.status(ok ? 200 : 503).send({ ok, checks })
  })
  app.get('/api/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger())

  await app.register(async (api) => {
    await registerRestRateLimit(api)
    api.addHook('onRequest', api.requireAdmin)
    // One line per admin change, with who made it (reads are in the request log already).
    api.addHook('onResponse', async (request, reply) => {
      if (request.method === 'GET' || request.method === 'HEAD') return
      request.log.info({ actor: request.user?.sub, method: request.method, route: request.routeOptions.url, statusCode: reply.statusCode }, 'admin action')
    })
    await api.register(pairingRoutes)
    await api.register(deviceRoutes)
    await api.register(auditRoutes)
    await api.register(cronRoutes)
    await api.register(eventRoutes)
    await api.register(policiesPlugin)
  }, { prefix: '/api/v1' })
  await app.register(consolePlugin)

  return app
}

/** OpenAPI 3 generated from the route schemas; Swagger UI at /docs. */
async function registerOpenApi (app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'scopegate admin API', version: VERSION, description: 'Pairing requests, devices, scope grants, tokens and audit. Every route needs an admin JWT (scopegate admin-token).' },
      components: { securitySchemes: { adminJwt: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
      security: [{ adminJwt: [] }]
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}` }
  })
  await app.register(swaggerUi, { routePrefix: '/docs' })
}

/** JSON bodies; an empty body means `{}` (API.md), with or without a content-type. */
function registerBodyParsing (app: FastifyInstance): void {
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString()
    if (text.trim() === '') {
      done(null, {})
      return
    }
    try {
      done(null, secureJson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' }))
    } catch (err) {
      done(Object.assign(new Error(`body is not valid JSON: ${(err as Error).message}`), { statusCode: 400, code: 'FST_ERR_CTP_INVALID_JSON' }), undefined)
    }
  })
  app.addHook('preValidation', async (request) => {
    if (request.body === undefined && request.method !== 'GET' && request.method !== 'HEAD' && request.method !== 'DELETE') request.body = {}
  })
}

/** The one mapping from errors to HTTP responses, in Fastify's error shape. */
function registerErrorHandling (app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (isDatabaseUnavailable(err)) {
      request.log.warn({ err: err.message }, 'database unavailable')
      return reply.status(503).header('retry-after', '1').send({ statusCode: 503, code: 'UNAVAILABLE', error: httpStatusText(503), message: 'database unavailable, try again later' })
    }
    const status = err.statusCode !== undefined && err.statusCode >= 400 ? err.statusCode : 500
    if (status >= 500 && status !== 503) request.log.error({ err }, 'request failed')
    return reply.status(status).send({
      statusCode: status,
      code: err.code ?? (status >= 500 ? 'INTERNAL' : 'BAD_REQUEST'),
      error: httpStatusText(status),
      message: status >= 500 && status !== 503 ? 'internal server error' : err.message
    })
  })
  app.setNotFoundHandler((request, reply) => {
    return reply.status(404).send({ statusCode: 404, code: 'ROUTE_NOT_FOUND', error: 'Not Found', message: `Route ${request.method} ${request.url.split('?')[0]} not found` })
  })
}

function httpStatusText (status: number): string {
  return STATUS_CODES[status] ?? 'Error'
}
