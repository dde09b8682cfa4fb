import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Scheduler } from './scheduler.ts'
import { CronService } from './service.ts'

declare module 'fastify' {
  interface FastifyInstance {
    cron: CronService
    scheduler: Scheduler
  }
}

/** The cron service and this instance's scheduler (started when the app is ready). */
async function cronPlugin (app: FastifyInstance): Promise<void> {
  const cron = new CronService(app.db, app.bus)
  const scheduler = new Scheduler(app.db, app.bus, {
    instanceId: `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`,
    leaseMs: app.config.cronLeaseMs,
    onFired: (dueAtMs, firedAtMs) => app.metrics.fired(dueAtMs, firedAtMs)
  }, app.log)
  app.decorate('cron', cron)
  app.decorate('scheduler', scheduler)
  app.bus.on('message', (message) => {
    if (message.kind === 'cron.job') scheduler.plan(message.nextRunAtMs)
  })
  app.addHook('onReady', async () => { scheduler.start() })
  app.addHook('preClose', async () => { await scheduler.stop() })
}

export default fp(cronPlugin, { name: 'cron', dependencies: ['db', 'metrics'] })
