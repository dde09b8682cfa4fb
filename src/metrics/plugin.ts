import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Metrics } from './metrics.ts'

export { Metrics } from './metrics.ts'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

/**
 * `app.metrics` (this instance's series) and `GET /metrics` in Prometheus
 * text. Outside /api/v1 and without a JWT, as scrapers expect: bind HOST or
 * firewall the port (API.md).
 */
async function metricsPlugin (app: FastifyInstance): Promise<void> {
  const metrics = new Metrics()
  // On Postgres: the pg pool that Prisma shares; PGlite has none (the gauge is left out).
  const { db } = app
  if (db.poolStats() !== null) metrics.watchPool(() => db.poolStats() ?? { total: 0, idle: 0, waiting: 0 })
  app.decorate('metrics', metrics)

  // Scraped every few seconds: keep it out of the info log, like the probes.
  app.get('/metrics', { schema: { hide: true }, logLevel: 'warn' }, async (_request, reply) => {
    return await reply.type(metrics.contentType).send(await metrics.text())
  })
}

export default fp(metricsPlugin, { name: 'metrics', dependencies: ['db'] })
