import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { NotifyBus } from './bus.ts'
import { openDatabase, type Database } from './database.ts'
import { Readiness } from './health.ts'
import { migrate } from './migrate.ts'

declare module 'fastify' {
  interface FastifyInstance {
    db: Database
    bus: NotifyBus
    readiness: Readiness
  }
}

/** Opens the store (Postgres or embedded PGlite), migrates it, and listens for notifications. */
async function dbPlugin (app: FastifyInstance): Promise<void> {
  const { config } = app
  const db = await openDatabase({ databaseUrl: config.databaseUrl, schema: config.databaseSchema, dataDir: `${config.dataDir}/pglite` })
  try {
    const result = await migrate(db)
    app.log.info({ database: db.kind, schema: db.schema, applied: result.applied, alreadyApplied: result.alreadyApplied.length }, 'database ready')
    const bus = new NotifyBus(db)
    await bus.start()
    const readiness = new Readiness(db, bus, { intervalMs: config.healthCheckIntervalMs, timeoutMs: config.healthCheckTimeoutMs }, app.log)
    readiness.start()
    app.decorate('db', db)
    app.decorate('bus', bus)
    app.decorate('readiness', readiness)
  } catch (err) {
    await db.close()
    throw err
  }
  app.addHook('onClose', async () => {
    app.readiness.stop()
    await app.bus.stop()
    await db.close()
  })
}

export default fp(dbPlugin, { name: 'db', dependencies: ['config'] })
