import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { NotifyBus } from './bus.ts'
import { openDatabase, type Database } from './database.ts'
import { migrate } from './migrate.ts'

declare module 'fastify' {
  interface FastifyInstance {
    db: Database
    bus: NotifyBus
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
    bus.on('error', (err) => app.log.error({ err: err.message }, 'notification listener failed'))
    await bus.start()
    app.decorate('db', db)
    app.decorate('bus', bus)
  } catch (err) {
    await db.close()
    throw err
  }
  app.addHook('onClose', async () => {
    await app.bus.stop()
    await db.close()
  })
}

export default fp(dbPlugin, { name: 'db', dependencies: ['config'] })
