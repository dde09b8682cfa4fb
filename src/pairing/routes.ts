import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { approveRequestSchema, getRequestSchema, listRequestsSchema, rejectRequestSchema } from './schemas.ts'

/** Admin REST for pairing requests; the WS methods call the same service functions. */
const pairingRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/pairing-requests', { schema: listRequestsSchema }, async (request) => {
    const { state = 'pending', limit = 50, cursor } = request.query
    return await app.pairing.list({ state, limit, ...(cursor !== undefined && { cursor }) })
  })

  app.get('/pairing-requests/:id', { schema: getRequestSchema }, async (request) => {
    return await app.pairing.get(request.params.id)
  })

  app.post('/pairing-requests/:id/approve', { schema: approveRequestSchema }, async (request) => {
    return await app.pairing.approve(request.params.id, request.body.scopes, request.user.sub)
  })

  app.post('/pairing-requests/:id/reject', { schema: rejectRequestSchema }, async (request) => {
    return await app.pairing.reject(request.params.id, request.user.sub)
  })
}

export default pairingRoutes
