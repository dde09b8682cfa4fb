import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { PolicyService } from '../policies/service.ts'
import { PairingService } from './service.ts'

declare module 'fastify' {
  interface FastifyInstance {
    pairing: PairingService
  }
}

async function pairingPlugin (app: FastifyInstance): Promise<void> {
  const pairing = new PairingService(app.db, app.bus, app.config.pairingRequestTtlMs,
    (err) => app.log.warn({ err: err.message }, 'pairing request expiry failed'), new PolicyService(app.db))
  app.decorate('pairing', pairing)
  app.addHook('onReady', async () => { await pairing.start() })
  app.addHook('preClose', async () => { pairing.stop() })
}

export default fp(pairingPlugin, { name: 'pairing', dependencies: ['db'] })
