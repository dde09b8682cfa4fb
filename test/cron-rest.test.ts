import { randomUUID } from 'node:crypto'
import { Cron } from 'croner'
import t, { type Test } from 'tap'
import { TestDevice, type Frame, type TestSocket } from './helpers/device.ts'
import { pairDevice } from './helpers/pairing.ts'
import { startServer, type ApiResponse } from './helpers/server.ts'

// One server for the whole file. The REST mirror of cron.*: jobs added here
// have no owner, so their fires go to every operator.read connection online.
const server = await startServer(t)
const gatewayToken = server.config.gatewayToken
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const alice = server.adminToken('admin', 'alice@example.test')
const viewer = server.adminToken('viewer', 'vic')

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))
const inMs = (ms: number): string => new Date(Date.now() + ms).toISOString()

function fireEvent (socket: TestSocket, jobId: string, timeoutMs = 3000): Promise<Frame> {
  return socket.next((f) => f.type === 'event' && f.event === 'cron.fire' && f.payload?.jobId === jobId, timeoutMs)
}

function cronEvent (socket: TestSocket, jobId: string, action: string, timeoutMs = 3000): Promise<Frame> {
  return socket.next((f) => f.type === 'event' && f.event === 'cron' && f.payload?.jobId === jobId && f.payload?.action === action, timeoutMs)
}

async function post (t: Test, body: Record<string, unknown>, token = alice): Promise<any> {
  const res = await server.api('POST', '/api/v1/cron/jobs', { body, token })
  t.equal(res.status, 200, `POST /cron/jobs: ${JSON.stringify(res.body)}`)
  return res.body
}

function notFound (id: string): Record<string, unknown> {
  return { statusCode: 404, code: 'CRON_JOB_NOT_FOUND', error: 'Not Found', message: `cron job not found: ${id}` }
}

function badRequest (t: Test, res: ApiResponse, field: string): void {
  t.equal(res.status, 400, `400 for ${field}: ${JSON.stringify(res.body)}`)
  t.same(Object.keys(res.body).sort(), ['code', 'error', 'message', 'statusCode'])
  t.match(res.body, { statusCode: 400, error: 'Bad Request' })
  t.ok(typeof res.body.message === 'string' && res.body.message.includes(field), `the message names ${field}: ${res.body.message}`)
}

const every = (name: string, extra: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ name, schedule: { kind: 'every', everyMs: 3_600_000 }, payload: { kind: 'systemEvent', text: name }, ...extra })

t.test('POST /cron/jobs takes cron.add params and answers the job, with no owner and the unknown fields unchanged', async (t) => {
  const at = inMs(3_600_000)
  const body = { name: 'n', enabled: true, schedule: { kind: 'at', at }, sessionTarget: 'main', wakeMode: 'now', payload: { kind: 'systemEvent', text: 't' }, delivery: { mode: 'announce', to: 'ops' }, agentId: 'a' }
  const before = Date.now()
  const job = await post(t, body)
  t.same(Object.keys(job).sort(), ['agentId', 'createdAtMs', 'deleteAfterRun', 'delivery', 'enabled', 'id', 'name', 'payload', 'schedule', 'sessionTarget', 'state', 'updatedAtMs', 'wakeMode'])
  t.match(job.id, UUID_RE)
  t.notOk('ownerDeviceId' in job, 'a REST job has no owner')
  t.same({ ...job, id: 'x', createdAtMs: 0, updatedAtMs: 0 }, {
    ...body, id: 'x', deleteAfterRun: true, createdAtMs: 0, updatedAtMs: 0, state: { nextRunAtMs: Date.parse(at) }
  })
  t.ok(job.createdAtMs >= before)

  const got = await server.api('GET', `/api/v1/cron/jobs/${job.id}`)
  t.equal(got.status, 200)
  t.same(got.body, job, 'GET returns it unchanged')

  const cronJob = await post(t, { name: 'c', schedule: { kind: 'cron', expr: '0 9 * * *', tz: 'Europe/Berlin' }, payload: { kind: 'agentTurn', message: 'm' } })
  t.match(cronJob, { enabled: true, deleteAfterRun: false })
  t.equal(cronJob.state.nextRunAtMs, new Cron('0 9 * * *', { timezone: 'Europe/Berlin', paused: true }).nextRun(new Date(cronJob.createdAtMs))?.getTime())
  const everyJob = await post(t, every('e'))
  t.equal(everyJob.state.nextRunAtMs, everyJob.createdAtMs + 3_600_000)
  for (const id of [job.id, cronJob.id, everyJob.id]) t.equal((await server.api('DELETE', `/api/v1/cron/jobs/${id}`)).status, 200)
})

t.test('GET /cron/jobs lists {items, nextCursor}, newest first, with limit and cursor', async (t) => {
  const ids: string[] = []
  for (let i = 0; i < 5; i++) ids.push((await post(t, every(`list ${i}`, { enabled: i !== 2 }))).id)
  const all = await server.api('GET', '/api/v1/cron/jobs')
  t.equal(all.status, 200)
  t.same(Object.keys(all.body).sort(), ['items', 'nextCursor'])
  t.same(all.body.items.map((j: { id: string }) => j.id), [...ids].reverse(), 'newest first, disabled ones included')
  t.equal(all.body.nextCursor, null)

  const seen: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const page: ApiResponse = await server.api('GET', `/api/v1/cron/jobs?limit=2${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`)
    t.equal(page.status, 200)
    t.ok(page.body.items.length <= 2)
    seen.push(...page.body.items.map((j: { id: string }) => j.id))
    cursor = page.body.nextCursor
    pages++
  } while (cursor !== null && pages < 10)
  t.equal(pages, 3)
  t.same(seen, [...ids].reverse(), 'cursor paging visits every job once')

  badRequest(t, await server.api('GET', '/api/v1/cron/jobs?limit=501'), 'limit')
  t.equal((await server.api('GET', '/api/v1/cron/jobs?cursor=garbage')).status, 400)
  t.equal((await server.api('GET', '/api/v1/cron/jobs', { token: null })).status, 401)
  for (const id of ids) await server.api('DELETE', `/api/v1/cron/jobs/${id}`)
})

t.test('400 names the field', async (t) => {
  const base = every('v')
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ schedule: base.schedule, payload: base.payload }, 'name'],
    [{ ...base, name: '' }, 'name'],
    [{ ...base, schedule: { kind: 'hourly' } }, 'schedule.kind'],
    [{ ...base, schedule: { kind: 'every', everyMs: 10 } }, 'schedule.everyMs'],
    [{ ...base, schedule: { kind: 'cron', expr: 'not a cron' } }, 'schedule.expr'],
    [{ ...base, schedule: { kind: 'cron', expr: '0 0 0 1 1 * 2030' } }, 'schedule.expr'],
    [{ ...base, schedule: { kind: 'cron', expr: '0 9 * * *', tz: 'Mars/Olympus' } }, 'schedule.tz'],
    [{ ...base, schedule: { kind: 'at', at: 'tomorrow' } }, 'schedule.at'],
    [{ ...base, payload: { kind: 'shout' } }, 'payload.kind'],
    [{ ...base, payload: { kind: 'systemEvent', text: { not: 'a string' } } }, 'payload.text']
  ]
  for (const [body, field] of cases) badRequest(t, await server.api('POST', '/api/v1/cron/jobs', { body }), field)
  const typed = await server.api('POST', '/api/v1/cron/jobs', { body: { ...base, schedule: { kind: 'every', everyMs: 10 } } })
  t.equal(typed.body.code, 'INVALID_PARAMS')
  t.equal((await server.api('GET', '/api/v1/cron/jobs')).body.items.length, 0, 'nothing stored')

  const job = await post(t, base)
  badRequest(t, await server.api('PATCH', `/api/v1/cron/jobs/${job.id}`, { body: { id: randomUUID() } }), 'patch.id')
  badRequest(t, await server.api('PATCH', `/api/v1/cron/jobs/${job.id}`, { body: { schedule: { kind: 'every', everyMs: 10 } } }), 'patch.schedule.everyMs')
  badRequest(t, await server.api('PATCH', `/api/v1/cron/jobs/${job.id}`, { body: { enabled: 'nope' } }), 'patch.enabled')
  badRequest(t, await server.api('POST', `/api/v1/cron/jobs/${job.id}/run`, { body: { mode: 'sometimes' } }), 'mode')
  badRequest(t, await server.api('GET', `/api/v1/cron/jobs/${job.id}/runs?limit=0`), 'limit')
  await server.api('DELETE', `/api/v1/cron/jobs/${job.id}`)
})

async function unknownIdIs404 (t: Test, ids: string[]): Promise<void> {
  for (const id of ids) {
    t.same((await server.api('GET', `/api/v1/cron/jobs/${id}`)).body, notFound(id), `GET ${id}`)
    t.same((await server.api('PATCH', `/api/v1/cron/jobs/${id}`, { body: { name: 'x' } })).body, notFound(id), `PATCH ${id}`)
    t.same((await server.api('DELETE', `/api/v1/cron/jobs/${id}`)).body, notFound(id), `DELETE ${id}`)
    t.same((await server.api('POST', `/api/v1/cron/jobs/${id}/run`)).body, notFound(id), `run ${id}`)
    t.same((await server.api('POST', `/api/v1/cron/jobs/${id}/run`, { body: { mode: 'due' } })).body, notFound(id), `run due ${id}`)
    t.same((await server.api('GET', `/api/v1/cron/jobs/${id}/runs`)).body, notFound(id), `runs ${id}`)
  }
}

t.test('an unknown id, whatever its shape, is 404 CRON_JOB_NOT_FOUND on every route', async (t) => {
  await unknownIdIs404(t, [randomUUID(), 'nope', '42', 'x'.repeat(100)])
  t.equal((await server.api('GET', `/api/v1/cron/jobs/${randomUUID()}`)).status, 404)
})

// API.md: ids are validated only as non-empty strings of at most 128 characters,
// and one that matches nothing is 404. Fastify's default maxParamLength (100),
// set in src/app.ts (not ours), answers 414 FST_ERR_MAX_PARAM_LENGTH for 101-128.
t.test('an unknown id of 101 to 128 characters is 404 too', async (t) => {
  await unknownIdIs404(t, ['y'.repeat(101), 'x'.repeat(128)])
})

t.test('PATCH, DELETE, run and runs', async (t) => {
  const job = await post(t, every('p', { sessionTarget: 'main', wakeMode: 'now' }))
  const renamed = await server.api('PATCH', `/api/v1/cron/jobs/${job.id}`, { body: { name: 'renamed', wakeMode: 'later' } })
  t.equal(renamed.status, 200)
  t.same(renamed.body, { ...job, name: 'renamed', wakeMode: 'later', updatedAtMs: renamed.body.updatedAtMs })

  const off = await server.api('PATCH', `/api/v1/cron/jobs/${job.id}`, { body: { enabled: false } })
  t.equal(off.body.enabled, false)
  t.same(off.body.state, {})
  const before = Date.now()
  const on = await server.api('PATCH', `/api/v1/cron/jobs/${job.id}`, { body: { enabled: true } })
  t.ok(on.body.state.nextRunAtMs >= before + 3_600_000 && on.body.state.nextRunAtMs <= Date.now() + 3_600_000, 're-enabled every: now + everyMs')

  const ran = await server.api('POST', `/api/v1/cron/jobs/${job.id}/run`)
  t.equal(ran.status, 200, 'no body: force')
  t.same(Object.keys(ran.body).sort(), ['ok', 'ran', 'runId'])
  t.match(ran.body, { ok: true, ran: true, runId: UUID_RE })
  const due = await server.api('POST', `/api/v1/cron/jobs/${job.id}/run`, { body: { mode: 'due' } })
  t.same(due.body, { ok: true, ran: false }, 'not due')
  const forced = await server.api('POST', `/api/v1/cron/jobs/${job.id}/run`, { body: { mode: 'force' } })
  t.equal(forced.body.ran, true)
  const empty = await server.api('POST', `/api/v1/cron/jobs/${job.id}/run`, { rawBody: '', headers: { 'content-type': 'application/json' } })
  t.equal(empty.status, 200, 'an empty JSON body means {}')
  t.equal(empty.body.ran, true)

  const runs = await server.api('GET', `/api/v1/cron/jobs/${job.id}/runs`)
  t.equal(runs.status, 200)
  t.same(Object.keys(runs.body).sort(), ['items', 'nextCursor'])
  t.equal(runs.body.nextCursor, null)
  t.same(runs.body.items.map((r: { runId: string }) => r.runId), [empty.body.runId, forced.body.runId, ran.body.runId], 'newest first')
  for (const run of runs.body.items) {
    t.same(Object.keys(run).sort(), ['dueAtMs', 'finishedAtMs', 'instance', 'jobId', 'runId', 'startedAtMs', 'status'])
    t.match(run, { jobId: job.id, status: 'ok', instance: server.app.scheduler.instanceId })
  }
  t.equal((await server.api('GET', `/api/v1/cron/jobs/${job.id}/runs?limit=1`)).body.items.length, 1)

  const removed = await server.api('DELETE', `/api/v1/cron/jobs/${job.id}`)
  t.equal(removed.status, 200)
  t.same(removed.body, { ok: true, removed: true })
  t.same((await server.api('GET', `/api/v1/cron/jobs/${job.id}`)).body, notFound(job.id))
})

t.test('a viewer may read (200) but not change (403)', async (t) => {
  const job = await post(t, every('viewed'))
  await server.api('POST', `/api/v1/cron/jobs/${job.id}/run`)
  t.equal((await server.api('GET', '/api/v1/cron/jobs', { token: viewer })).status, 200)
  t.same((await server.api('GET', `/api/v1/cron/jobs/${job.id}`, { token: viewer })).body, (await server.api('GET', `/api/v1/cron/jobs/${job.id}`)).body)
  const runs = await server.api('GET', `/api/v1/cron/jobs/${job.id}/runs`, { token: viewer })
  t.equal(runs.status, 200)
  t.equal(runs.body.items.length, 1)
  const writes: Array<[string, string, unknown]> = [
    ['POST', '/api/v1/cron/jobs', every('nope')],
    ['PATCH', `/api/v1/cron/jobs/${job.id}`, { name: 'nope' }],
    ['DELETE', `/api/v1/cron/jobs/${job.id}`, undefined],
    ['POST', `/api/v1/cron/jobs/${job.id}/run`, {}]
  ]
  for (const [method, path, body] of writes) {
    const res = await server.api(method, path, { token: viewer, ...(body !== undefined && { body }) })
    t.equal(res.status, 403, `${method} ${path}`)
    t.match(res.body, { statusCode: 403, code: 'FORBIDDEN', error: 'Forbidden' })
  }
  const after = await server.api('GET', `/api/v1/cron/jobs/${job.id}`)
  t.equal(after.body.name, 'viewed', 'unchanged')
  t.equal((await server.api('GET', `/api/v1/cron/jobs/${job.id}/runs`)).body.items.length, 1, 'not run')
  t.equal((await server.api('GET', '/api/v1/cron/jobs')).body.items.length, 1, 'nothing added')
  t.equal((await server.api('DELETE', `/api/v1/cron/jobs/${job.id}`)).status, 200)
})

t.test('audit rows cron.added, cron.updated, cron.removed carry the JWT sub as actor', async (t) => {
  const job = await post(t, every('audited'), alice)
  t.equal((await server.api('PATCH', `/api/v1/cron/jobs/${job.id}`, { body: { name: 'audited2' }, token: alice })).status, 200)
  t.equal((await server.api('DELETE', `/api/v1/cron/jobs/${job.id}`, { token: alice })).status, 200)
  for (const [action, details] of [
    ['cron.added', { jobId: job.id, name: 'audited' }],
    ['cron.updated', { jobId: job.id, fields: ['name'] }],
    ['cron.removed', { jobId: job.id }]
  ] as const) {
    const res = await server.api('GET', `/api/v1/audit?action=${action}`)
    t.equal(res.status, 200)
    const row = res.body.items.find((r: { details: { jobId?: string } }) => r.details.jobId === job.id)
    t.ok(row, `${action} row`)
    t.match(row, { action, actor: 'alice@example.test', details })
    t.notOk('deviceId' in row, 'no device for a REST change')
    t.type(row.atMs, 'number')
  }
  // The viewer's refused attempts left no row.
  const all = await server.api('GET', '/api/v1/audit?limit=500')
  t.notOk(all.body.items.some((r: { actor: string }) => r.actor === 'vic'))
})

t.test('a job with no owner fires cron.fire to every operator.read connection online, not to a probe', async (t) => {
  const one = await pairDevice(server, ['operator.read'], { teardown: t })
  const two = await pairDevice(server, ['operator.write'], { teardown: t })
  const pairingOnly = await pairDevice(server, ['operator.pairing'], { teardown: t })
  const probe = await new TestDevice().connect(server.wsUrl, { token: gatewayToken, scopes: ['operator.read'], noDevice: true, minProtocol: 3 })
  t.equal(probe.res.ok, true)
  t.same(probe.res.payload.auth.scopes, [])
  t.teardown(async () => { await probe.socket.close() })

  const at = inMs(400)
  const job = await post(t, { name: 'broadcast', schedule: { kind: 'at', at }, payload: { kind: 'systemEvent', text: 'to all readers' } })
  t.same((await cronEvent(one.socket, job.id, 'added')).payload, { jobId: job.id, action: 'added', job, nextRunAtMs: Date.parse(at) }, 'REST changes announce cron events too')
  const [a, b] = await Promise.all([fireEvent(one.socket, job.id, 2500), fireEvent(two.socket, job.id, 2500)])
  t.same(a.payload, b.payload, 'both devices receive the same fire')
  t.same({ ...a.payload, runId: 'r', firedAtMs: 0 }, { jobId: job.id, runId: 'r', payload: { kind: 'systemEvent', text: 'to all readers' }, firedAtMs: 0 })
  t.match(a.payload.runId, UUID_RE)
  t.ok(a.payload.firedAtMs >= Date.parse(at))
  await sleep(300)
  t.equal(probe.socket.frames.filter((f) => f.event === 'cron.fire' || f.event === 'cron').length, 0, 'a probe gets nothing')
  t.equal(pairingOnly.socket.frames.filter((f) => f.event === 'cron.fire').length, 0, 'nor a connection without operator.read')
  t.equal(one.socket.frames.filter((f) => f.event === 'cron.fire').length, 1, 'once')
  t.equal((await server.api('GET', `/api/v1/cron/jobs/${job.id}`)).status, 404, 'an at job is deleted after its run by default')

  // A forced run over REST of an ownerless job reaches the readers too.
  const kept = await post(t, every('kept'))
  const ran = await server.api('POST', `/api/v1/cron/jobs/${kept.id}/run`)
  const [c, d] = await Promise.all([fireEvent(one.socket, kept.id), fireEvent(two.socket, kept.id)])
  t.equal(c.payload.runId, ran.body.runId)
  t.equal(d.payload.runId, ran.body.runId)
  await server.api('DELETE', `/api/v1/cron/jobs/${kept.id}`)

  // A reader that connects after the fire does not get it later: ownerless fires are not kept.
  const late = await one.device.connect(server.wsUrl, { token: gatewayToken, scopes: ['operator.read'] })
  t.equal(late.res.ok, true)
  await sleep(300)
  t.equal(late.socket.frames.filter((f) => f.event === 'cron.fire').length, 0)
  await late.socket.close()
})
