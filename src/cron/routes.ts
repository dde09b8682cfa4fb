import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { errors, IdParam, ListQuery, Page } from '../schemas/common.ts'

const Loose = Type.Record(Type.String(), Type.Unknown())

export const CronJobSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  description: Type.Optional(Type.String()),
  enabled: Type.Boolean(),
  schedule: Type.Record(Type.String(), Type.Unknown(), { description: '{kind:"at",at:ISO} | {kind:"every",everyMs} | {kind:"cron",expr,tz?}' }),
  payload: Type.Record(Type.String(), Type.Unknown(), { description: '{kind:"systemEvent",text} | {kind:"agentTurn",message}' }),
  deleteAfterRun: Type.Boolean(),
  ownerDeviceId: Type.Optional(Type.String()),
  createdAtMs: Type.Number(),
  updatedAtMs: Type.Number(),
  state: Type.Object({
    nextRunAtMs: Type.Optional(Type.Number()),
    lastRunAtMs: Type.Optional(Type.Number()),
    lastStatus: Type.Optional(Type.String()),
    lastError: Type.Optional(Type.String())
  })
}, { additionalProperties: true, description: 'A cron job; fields the gateway does not interpret are returned unchanged' })

export const CronRunSchema = Type.Object({
  runId: Type.String(),
  jobId: Type.String(),
  status: Type.Enum(['running', 'ok', 'error', 'abandoned']),
  dueAtMs: Type.Number(),
  startedAtMs: Type.Number(),
  finishedAtMs: Type.Optional(Type.Number()),
  instance: Type.String(),
  error: Type.Optional(Type.String())
})

const JobParams = Type.Object({ id: IdParam })
const AddBody = Type.Object({
  name: Type.String(),
  description: Type.Optional(Type.String()),
  enabled: Type.Optional(Type.Boolean()),
  schedule: Loose,
  payload: Loose,
  deleteAfterRun: Type.Optional(Type.Boolean())
}, { additionalProperties: true, description: 'cron.add params (PROTOCOL.md); other fields are stored and returned unchanged' })

/** REST mirror of cron.*, for admin tools; jobs added here have no owner. */
const cronRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const tags = ['cron']

  app.get('/cron/jobs', {
    schema: { summary: 'Cron jobs, newest first', tags, querystring: Type.Object(ListQuery), response: { 200: Page(CronJobSchema), ...errors(400, 401) } }
  }, async (request) => await app.cron.page(request.query.limit ?? 50, request.query.cursor))

  app.post('/cron/jobs', {
    schema: { summary: 'Add a job (owned by nobody: its fires go to the operator.read connections online)', tags, body: AddBody, response: { 200: CronJobSchema, ...errors(400, 401, 403) } }
  }, async (request) => await app.cron.add(request.body, null, request.user.sub))

  app.get('/cron/jobs/:id', {
    schema: { summary: 'One job', tags, params: JobParams, response: { 200: CronJobSchema, ...errors(401, 404) } }
  }, async (request) => await app.cron.get(request.params.id))

  app.patch('/cron/jobs/:id', {
    schema: { summary: 'Change a job (the cron.update patch)', tags, params: JobParams, body: Loose, response: { 200: CronJobSchema, ...errors(400, 401, 403, 404) } }
  }, async (request) => await app.cron.update(request.params.id, request.body, request.user.sub))

  app.delete('/cron/jobs/:id', {
    schema: { summary: 'Remove a job', tags, params: JobParams, response: { 200: Type.Object({ ok: Type.Boolean(), removed: Type.Boolean() }), ...errors(401, 403, 404) } }
  }, async (request) => await app.cron.remove(request.params.id, request.user.sub))

  app.post('/cron/jobs/:id/run', {
    schema: {
      summary: 'Run a job now (force) or only if due (due)',
      tags,
      params: JobParams,
      body: Type.Object({ mode: Type.Optional(Type.Enum(['force', 'due'])) }, { additionalProperties: false }),
      response: { 200: Type.Object({ ok: Type.Boolean(), ran: Type.Boolean(), runId: Type.Optional(Type.String()) }), ...errors(400, 401, 403, 404) }
    }
  }, async (request) => await app.scheduler.runNow(request.params.id, request.body.mode ?? 'force'))

  app.get('/cron/jobs/:id/runs', {
    schema: {
      summary: 'Runs of a job, newest first',
      tags,
      params: JobParams,
      querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 })) }),
      response: { 200: Type.Object({ items: Type.Array(CronRunSchema), nextCursor: Type.Null() }), ...errors(401, 404) }
    }
  }, async (request) => ({ items: await app.cron.runs(request.params.id, request.query.limit ?? 50), nextCursor: null }))
}

export default cronRoutes
