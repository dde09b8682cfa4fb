import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { DeviceService } from './admin.ts'

declare module 'fastify' {
  interface FastifyInstance {
    devices: DeviceService
  }
}

async function devicesPlugin (app: FastifyInstance): Promise<void> {
  app.decorate('devices', new DeviceService(app.db, app.bus, app.config.deviceTokenTtlMs, app.clock))
}

export default fp(devicesPlugin, { name: 'devices', dependencies: ['db', 'clock'] })
