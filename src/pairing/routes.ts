import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Ajv } from 'ajv'
import type { FastifySchemaCompiler, FastifySchemaValidationError } from 'fastify'
import { approveRequestSchema, getRequestSchema, listRequestsSchema, rejectRequestSchema } from './schemas.ts'

/**
 * Decision bodies are validated as sent: Fastify's default validator coerces
 * (`"scopes":"operator.read"` would become a list) and silently drops unknown
 * fields (`{"scope":[…]}` would approve every requested scope). Both are 400.
 */
const strictAjv = new Ajv({ strict: false, coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false })
const strictValidator: FastifySchemaCompiler<unknown> = ({ schema }) => strictAjv.compile(schema as object)

/** Fastify's message format, naming the field for an unknown one too (`body/scope is not allowed`). */
const namingErrorFormatter = (errors: FastifySchemaValidationError[], dataVar: string): Error => new Error(errors.map((e) => {
  const extra = e.keyword === 'additionalProperties' ? (e.params as { additionalProperty?: unknown }).additionalProperty : undefined
  return typeof extra === 'string' ? `${dataVar}${e.instancePath}/${extra} is not allowed` : `${dataVar}${e.instancePath} ${e.message ?? 'is invalid'}`
}).join(', '))
const strictBody = { validatorCompiler: strictValidator, schemaErrorFormatter: namingErrorFormatter }

/** Admin REST for pairing requests; the WS methods call the same service functions. */
const pairingRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/pairing-requests', { schema: listRequestsSchema }, async (request) => {
    const { state, limit = 50, cursor } = request.query
    return await app.pairing.list({ state, limit, ...(cursor !== undefined && { cursor }) })
  })

  app.get('/pairing-requests/:id', { schema: getRequestSchema }, async (request) => {
    return await app.pairing.get(request.params.id)
  })

  app.post('/pairing-requests/:id/approve', { schema: approveRequestSchema, ...strictBody }, async (request) => {
    return await app.pairing.approve(request.params.id, request.body.scopes, request.user.sub)
  })

  app.post('/pairing-requests/:id/reject', { schema: rejectRequestSchema, ...strictBody }, async (request) => {
    return await app.pairing.reject(request.params.id, request.user.sub)
  })
}

export default pairingRoutes
