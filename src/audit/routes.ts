import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { errors, ListQuery, Page } from '../schemas/common.ts'
import { listAudit } from './service.ts'

export const AuditEntrySchema = Type.Object({
  id: Type.String(),
  atMs: Type.Number(),
  actor: Type.String(),
  action: Type.String(),
  deviceId: Type.Optional(Type.String()),
  requestId: Type.Optional(Type.String()),
  details: Type.Record(Type.String(), Type.Unknown())
})

const auditRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/audit', {
    schema: {
      summary: 'The audit log, newest first',
      tags: ['audit'],
      querystring: Type.Object({
        deviceId: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
        action: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
        ...ListQuery
      }),
      response: { 200: Page(AuditEntrySchema), ...errors(400, 401) }
    }
  }, async (request) => {
    const { deviceId, action, limit = 50, cursor } = request.query
    return await listAudit(app.db.prisma, {
      limit,
      ...(deviceId !== undefined && { deviceId }),
      ...(action !== undefined && { action }),
      ...(cursor !== undefined && { cursor })
    })
  })
}

export default auditRoutes
