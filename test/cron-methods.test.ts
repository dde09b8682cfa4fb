import { randomUUID } from 'node:crypto'
import { Cron } from 'croner'
import t, { type Test } from 'tap'
import { TestDevice, type Frame, type TestSocket } from './helpers/device.ts'
import { pairDevice } from './helpers/pairing.ts'
import { startServer } from './helpers/server.ts'

// One server for the whole file; every connection below is a real device that
// signs its challenge. `admin` (operator.admin) adds the jobs and owns them.
const server = await startServer(t)
const gatewayToken = server.config.gatewayToken
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

const admin = await pairDevice(server, ['operator.admin'], { teardown: t })
const reader = await pairDevice(server, ['operator.read'], { teardown: t })
const writer = await pairDevice(server, ['operator.write'], { teardown: t })
const pairingOnly = await pairDevice(server, ['operator.pairing'], { teardown: t })

function missingScope (scope: string): Record<string, unknown> {
  return { code: 'FORBIDDEN', message: `missing scope: ${scope}`, details: { code: 'MISSING_SCOPE', missingScope: scope, requiredScopes: [scope] } }
}

function notFound (id: string): Record<string, unknown> {
  return { code: 'INVALID_REQUEST', message: `cron job not found: ${id}`, details: { code: 'CRON_JOB_NOT_FOUND', id } }
}

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))
const inMs = (ms: number): string => new Date(Date.now() + ms).toISOString()

/** A call that must succeed; returns its payload. */
async function ok (t: Test, socket: TestSocket, method: string, params?: unknown): Promise<any> {
  const res = await socket.request(method, params)
  t.equal(res.ok, true, `${method} succeeds: ${JSON.stringify(res.error)}`)
  return res.payload
}

async function add (t: Test, params: Record<string, unknown>): Promise<any> {
  return await ok(t, admin.socket, 'cron.add', params)
}

/** Asserts an INVALID_REQUEST naming `field`, and that the socket still answers. */
async function rejectsNaming (t: Test, socket: TestSocket, method: string, params: unknown, field: string): Promise<void> {
  const res = await socket.request(method, params)
  t.equal(res.ok, false, `${method} ${JSON.stringify(params)} is refused`)
  t.equal(res.error?.code, 'INVALID_REQUEST', `${field}: INVALID_REQUEST`)
  t.ok(typeof res.error?.message === 'string' && res.error.message.includes(field), `message names ${field}: ${res.error?.message}`)
  t.equal(res.error?.details?.field, field, `details.field is ${field}`)
  t.notOk(socket.isClosed, 'the socket stays open')
  t.equal((await socket.request('health')).ok, true, 'and still answers')
}

function cronEvent (socket: TestSocket, jobId: string, action: string, timeoutMs = 3000): Promise<Frame> {
  return socket.next((f) => f.type === 'event' && f.event === 'cron' && f.payload?.jobId === jobId && f.payload?.action === action, timeoutMs)
}

function fireEvent (socket: TestSocket, jobId: string, timeoutMs = 3000): Promise<Frame> {
  return socket.next((f) => f.type === 'event' && f.event === 'cron.fire' && f.payload?.jobId === jobId, timeoutMs)
}

const clientFrame = (at: string): Record<string, unknown> => ({
  name: 'n',
  enabled: true,
  schedule: { kind: 'at', at },
  sessionTarget: 'main',
  wakeMode: 'now',
  payload: { kind: 'systemEvent', text: 't' }
})

const JOB_KEYS = ['createdAtMs', 'deleteAfterRun', 'enabled', 'id', 'name', 'ownerDeviceId', 'payload', 'schedule', 'state', 'updatedAtMs']

t.test('cron.status and status on a fresh gateway; status needs operator.read', async (t) => {
  t.same(await ok(t, reader.socket, 'cron.status', {}), { enabled: true, jobs: 0, nextWakeAtMs: null })
  t.same((await pairingOnly.socket.request('status')).error, missingScope('operator.read'))
  const status = await ok(t, reader.socket, 'status')
  t.same(Object.keys(status).sort(), ['gateway', 'ok', 'scheduler', 'ts'])
  t.equal(status.ok, true)
  t.type(status.ts, 'number')
  t.match(status.gateway, { version: '0.1.0', instance: String, uptimeMs: Number, connections: Number })
  t.ok(status.gateway.connections >= 4, 'counts the open connections')
  t.match(status.scheduler, { enabled: true, instance: status.gateway.instance, fired: 0, jobs: 0, nextWakeAtMs: null })
  t.ok('plannedWakeAtMs' in status.scheduler)
  t.equal(await ok(t, writer.socket, 'status').then((s) => s.ok), true, 'operator.write implies operator.read')
})

t.test('cron.add with the exact frame existing clients send, then cron.status on a second short read connection', async (t) => {
  const at = inMs(3_600_000)
  const before = Date.now()
  const job = await add(t, clientFrame(at))
  const after = Date.now()
  t.same(Object.keys(job).sort(), [...JOB_KEYS, 'sessionTarget', 'wakeMode'].sort(), 'every field of a job, plus the uninterpreted ones')
  t.match(job.id, UUID_RE)
  t.equal(job.name, 'n')
  t.equal(job.enabled, true)
  t.same(job.schedule, { kind: 'at', at })
  t.same(job.payload, { kind: 'systemEvent', text: 't' })
  t.equal(job.deleteAfterRun, true, 'deleteAfterRun defaults to true for at')
  t.equal(job.ownerDeviceId, admin.device.id, 'owned by the device that added it')
  t.equal(job.sessionTarget, 'main')
  t.equal(job.wakeMode, 'now')
  t.ok(job.createdAtMs >= before && job.createdAtMs <= after)
  t.equal(job.updatedAtMs, job.createdAtMs)
  t.same(job.state, { nextRunAtMs: Date.parse(at) })

  // Existing clients follow up on their own short operator.read connection.
  const short = await reader.device.connect(server.wsUrl, { token: gatewayToken, scopes: ['operator.read'] })
  t.equal(short.res.ok, true)
  t.same(await ok(t, short.socket, 'cron.status', {}), { enabled: true, jobs: 1, nextWakeAtMs: Date.parse(at) })
  await short.socket.close()

  t.same(await ok(t, reader.socket, 'cron.get', { id: job.id }), job, 'cron.get returns it unchanged')
  const listed = (await ok(t, reader.socket, 'cron.list', {})).jobs.find((j: { id: string }) => j.id === job.id)
  t.same(listed, job, 'cron.list returns it unchanged')
  const rest = await server.api('GET', `/api/v1/cron/jobs/${job.id}`)
  t.equal(rest.status, 200)
  t.same(rest.body, job, 'REST GET returns it unchanged')
  t.same(await ok(t, admin.socket, 'cron.remove', { id: job.id }), { ok: true, removed: true })
})

t.test('unknown fields (delivery, agentId, …) are stored and returned unchanged everywhere', async (t) => {
  const extra = {
    sessionTarget: 'isolated',
    wakeMode: 'next-heartbeat',
    delivery: { mode: 'announce', channel: 'telegram', to: '+15550100', bestEffort: true, nested: { list: [1, 'two', null] } },
    agentId: 'ops'
  }
  const job = await add(t, { name: 'extras', description: 'd', schedule: { kind: 'every', everyMs: 3_600_000 }, payload: { kind: 'agentTurn', message: 'm' }, ...extra })
  t.match(job, { ...extra, description: 'd', deleteAfterRun: false, enabled: true })
  for (const [key, value] of Object.entries(extra)) t.same(job[key], value, `cron.add returns ${key}`)
  const got = await ok(t, reader.socket, 'cron.get', { id: job.id })
  t.same(got, job, 'cron.get')
  const listed = (await ok(t, reader.socket, 'cron.list', { limit: 1000 })).jobs.find((j: { id: string }) => j.id === job.id)
  t.same(listed, job, 'cron.list')
  const rest = await server.api('GET', `/api/v1/cron/jobs/${job.id}`)
  t.same(rest.body, job, 'REST GET')
  const restList = await server.api('GET', '/api/v1/cron/jobs?limit=500')
  t.same(restList.body.items.find((j: { id: string }) => j.id === job.id), job, 'REST list')
  await ok(t, admin.socket, 'cron.remove', { id: job.id })
})

t.test('defaults: enabled true, deleteAfterRun false for every/cron; every first fires everyMs after add', async (t) => {
  const before = Date.now()
  const every = await add(t, { name: 'every', schedule: { kind: 'every', everyMs: 60_000 }, payload: { kind: 'systemEvent', text: 'e' } })
  const after = Date.now()
  t.equal(every.enabled, true)
  t.equal(every.deleteAfterRun, false)
  t.ok(every.state.nextRunAtMs >= before + 60_000 && every.state.nextRunAtMs <= after + 60_000, `nextRunAtMs ≈ now + everyMs (${every.state.nextRunAtMs - before})`)
  t.equal(every.state.nextRunAtMs, every.createdAtMs + 60_000)
  const cron = await add(t, { name: 'cron', schedule: { kind: 'cron', expr: '0 9 * * *' }, payload: { kind: 'systemEvent', text: 'c' } })
  t.equal(cron.enabled, true)
  t.equal(cron.deleteAfterRun, false)
  const at = await add(t, { name: 'at', schedule: { kind: 'at', at: inMs(3_600_000) }, payload: { kind: 'systemEvent', text: 'a' }, deleteAfterRun: false })
  t.equal(at.deleteAfterRun, false, 'an explicit deleteAfterRun wins')
  const disabled = await add(t, { name: 'off', enabled: false, schedule: { kind: 'every', everyMs: 1000 }, payload: { kind: 'systemEvent', text: 'o' } })
  t.equal(disabled.enabled, false)
  t.same(disabled.state, {}, 'a disabled job has no nextRunAtMs')
  for (const job of [every, cron, at, disabled]) await ok(t, admin.socket, 'cron.remove', { id: job.id })
})

t.test('cron expressions with 5 and 6 fields, UTC by default or in a tz: nextRunAtMs is what croner computes', async (t) => {
  const cases = [
    { expr: '0 9 * * *' },
    { expr: '30 9 * * 1-5', tz: 'Europe/Berlin' },
    { expr: '0 0 9 * * *', tz: 'Europe/Berlin' },
    { expr: '15 */2 * * * *' },
    { expr: '0 3 1 * *', tz: 'America/New_York' }
  ]
  for (const schedule of cases) {
    const job = await add(t, { name: schedule.expr, schedule: { kind: 'cron', ...schedule }, payload: { kind: 'systemEvent', text: 'x' } })
    t.same(job.schedule, { kind: 'cron', ...schedule }, 'the schedule is returned as sent (no tz added)')
    const expected = new Cron(schedule.expr, { timezone: schedule.tz ?? 'UTC', paused: true }).nextRun(new Date(job.createdAtMs))?.getTime()
    t.equal(job.state.nextRunAtMs, expected, `${schedule.expr} ${schedule.tz ?? 'UTC'} -> ${new Date(expected ?? 0).toISOString()}`)
    await ok(t, admin.socket, 'cron.remove', { id: job.id })
  }
  // 09:00 in Berlin is never 09:00 UTC.
  const berlin = await add(t, { name: 'b', schedule: { kind: 'cron', expr: '0 9 * * *', tz: 'Europe/Berlin' }, payload: { kind: 'systemEvent', text: 'x' } })
  const hour = new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Berlin', hour: '2-digit', minute: '2-digit', hour12: false }).format(new Date(berlin.state.nextRunAtMs))
  t.equal(hour, '09:00', 'fires at 09:00 Berlin time')
  t.not(new Date(berlin.state.nextRunAtMs).getUTCHours(), 9)
  await ok(t, admin.socket, 'cron.remove', { id: berlin.id })
})

t.test('an at time already past fires at once (and the job is deleted after its run by default)', async (t) => {
  const at = new Date(Date.now() - 60_000).toISOString()
  const job = await add(t, { name: 'late', schedule: { kind: 'at', at }, payload: { kind: 'systemEvent', text: 'late' } })
  t.equal(job.state.nextRunAtMs, Date.parse(at))
  const fire = await fireEvent(admin.socket, job.id, 1500)
  t.same(Object.keys(fire.payload).sort(), ['firedAtMs', 'jobId', 'payload', 'runId'])
  t.same(fire.payload.payload, { kind: 'systemEvent', text: 'late' })
  t.match(fire.payload.runId, UUID_RE)
  t.ok(fire.payload.firedAtMs - job.createdAtMs < 1000, `fired ${fire.payload.firedAtMs - job.createdAtMs} ms after add`)
  t.same((await reader.socket.request('cron.get', { id: job.id })).error, notFound(job.id), 'deleteAfterRun: gone')
})

t.test('validation names the field; INVALID_REQUEST and the socket stays open', async (t) => {
  const base = { name: 'v', schedule: { kind: 'every', everyMs: 60_000 }, payload: { kind: 'systemEvent', text: 't' } }
  const s = admin.socket
  await rejectsNaming(t, s, 'cron.add', { schedule: base.schedule, payload: base.payload }, 'name')
  await rejectsNaming(t, s, 'cron.add', { ...base, name: '' }, 'name')
  await rejectsNaming(t, s, 'cron.add', { ...base, name: 42 }, 'name')
  await rejectsNaming(t, s, 'cron.add', { ...base, schedule: undefined }, 'schedule')
  await rejectsNaming(t, s, 'cron.add', { ...base, schedule: { kind: 'hourly' } }, 'schedule.kind')
  await rejectsNaming(t, s, 'cron.add', { ...base, schedule: { kind: 'every', everyMs: 10 } }, 'schedule.everyMs')
  await rejectsNaming(t, s, 'cron.add', { ...base, schedule: { kind: 'every', everyMs: 1500.5 } }, 'schedule.everyMs')
  await rejectsNaming(t, s, 'cron.add', { ...base, schedule: { kind: 'every', everyMs: '60000' } }, 'schedule.everyMs')
  await rejectsNaming(t, s, 'cron.add', { ...base, schedule: { kind: 'cron', expr: 'every day at nine' } }, 'schedule.expr')
  await rejectsNaming(t, s, 'cron.add', { ...base, schedule: { kind: 'cron', expr: '61 * * * *' } }, 'schedule.expr')
  await rejectsNaming(t, s, 'cron.add', { ...base, schedule: { kind: 'cron', expr: '0 0 0 1 1 * 2030' } }, 'schedule.expr')
  await rejectsNaming(t, s, 'cron.add', { ...base, schedule: { kind: 'cron' } }, 'schedule.expr')
  await rejectsNaming(t, s, 'cron.add', { ...base, schedule: { kind: 'cron', expr: '0 9 * * *', tz: 'Mars/Olympus' } }, 'schedule.tz')
  await rejectsNaming(t, s, 'cron.add', { ...base, schedule: { kind: 'at', at: 'tomorrow' } }, 'schedule.at')
  await rejectsNaming(t, s, 'cron.add', { ...base, schedule: { kind: 'at', at: 1_900_000_000_000 } }, 'schedule.at')
  await rejectsNaming(t, s, 'cron.add', { ...base, payload: { kind: 'shout', text: 't' } }, 'payload.kind')
  await rejectsNaming(t, s, 'cron.add', { ...base, payload: { kind: 'systemEvent', text: 5 } }, 'payload.text')
  await rejectsNaming(t, s, 'cron.add', { ...base, payload: { kind: 'agentTurn' } }, 'payload.message')
  await rejectsNaming(t, s, 'cron.add', { ...base, enabled: 'yes' }, 'enabled')
  await rejectsNaming(t, s, 'cron.add', { ...base, deleteAfterRun: 1 }, 'deleteAfterRun')
  await rejectsNaming(t, s, 'cron.add', { ...base, description: 7 }, 'description')
  await rejectsNaming(t, s, 'cron.list', { limit: 0 }, 'limit')
  await rejectsNaming(t, s, 'cron.list', { offset: -1 }, 'offset')
  await rejectsNaming(t, s, 'cron.get', {}, 'id')
  await rejectsNaming(t, s, 'cron.run', { id: randomUUID(), mode: 'sometimes' }, 'mode')
  const full = await s.request('cron.add', { schedule: { kind: 'every', everyMs: 10 }, payload: base.payload })
  t.same(full.error.details, { code: 'INVALID_PARAMS', field: 'name' }, 'the first bad field is named in details')
  t.match(full.error.message, /^invalid params: name /)
  t.same(await ok(t, reader.socket, 'cron.list', { includeDisabled: true }).then((p) => p.total), 0, 'nothing was stored')
})

t.test('scopes: reads need operator.read (implied by write and admin), writes need operator.admin, checked before params', async (t) => {
  const job = await add(t, { name: 'scoped', schedule: { kind: 'every', everyMs: 3_600_000 }, payload: { kind: 'systemEvent', text: 's' } })
  const reads: Array<[string, unknown]> = [['cron.list', {}], ['cron.status', {}], ['cron.get', { id: job.id }], ['cron.runs', { id: job.id }]]
  const writes: Array<[string, unknown]> = [
    ['cron.add', clientFrame(inMs(3_600_000))],
    ['cron.update', { id: job.id, patch: { name: 'x' } }],
    ['cron.remove', { id: job.id }],
    ['cron.run', { id: job.id }]
  ]
  for (const [method, params] of reads) {
    for (const conn of [reader, writer, admin]) t.equal((await conn.socket.request(method, params)).ok, true, `${method} with ${conn.hello.auth.scopes}`)
    t.same((await pairingOnly.socket.request(method, params)).error, missingScope('operator.read'), `${method} without operator.read`)
    t.same((await pairingOnly.socket.request(method, { id: 17, limit: 'x' })).error, missingScope('operator.read'), `${method}: scope before params`)
  }
  for (const [method, params] of writes) {
    for (const conn of [reader, writer, pairingOnly]) {
      t.same((await conn.socket.request(method, params)).error, missingScope('operator.admin'), `${method} with ${conn.hello.auth.scopes}`)
    }
    t.same((await reader.socket.request(method, { garbage: true, id: 17, schedule: 'nope' })).error, missingScope('operator.admin'), `${method}: garbage params still FORBIDDEN`)
  }
  t.same((await reader.socket.request('cron.add', 'not even an object')).error, missingScope('operator.admin'), 'non-object params: FORBIDDEN first')
  t.notOk(reader.socket.isClosed, 'a missing scope does not close the socket')
  t.same(await ok(t, reader.socket, 'cron.get', { id: job.id }), job, 'nothing changed')

  const unknown = await reader.socket.request('cron.nope', {})
  t.equal(unknown.error.code, 'INVALID_REQUEST')
  t.equal(unknown.error.message, 'unknown method: cron.nope')
  t.equal((await pairingOnly.socket.request('cron.nope')).error.message, 'unknown method: cron.nope')
  t.equal((await reader.socket.request('health')).ok, true, 'still open')

  // A probe (no device) holds no scope at all.
  const probe = await new TestDevice().connect(server.wsUrl, { token: gatewayToken, scopes: ['operator.admin'], noDevice: true, minProtocol: 3 })
  t.equal(probe.res.ok, true)
  t.same(probe.res.payload.auth.scopes, [])
  t.same((await probe.socket.request('cron.status', {})).error, missingScope('operator.read'))
  t.same((await probe.socket.request('status')).error, missingScope('operator.read'))
  t.same((await probe.socket.request('cron.add', clientFrame(inMs(1000)))).error, missingScope('operator.admin'))
  await probe.socket.close()
  await ok(t, admin.socket, 'cron.remove', { id: job.id })
})

t.test('an unknown id (uuid or not) is CRON_JOB_NOT_FOUND for get, update, remove, run and runs', async (t) => {
  for (const id of [randomUUID(), 'nope', '12345', 'a'.repeat(128)]) {
    t.same((await reader.socket.request('cron.get', { id })).error, notFound(id), `get ${id}`)
    t.same((await reader.socket.request('cron.runs', { id })).error, notFound(id), `runs ${id}`)
    t.same((await admin.socket.request('cron.update', { id, patch: { name: 'x' } })).error, notFound(id), `update ${id}`)
    t.same((await admin.socket.request('cron.remove', { id })).error, notFound(id), `remove ${id}`)
    t.same((await admin.socket.request('cron.run', { id })).error, notFound(id), `run ${id}`)
    t.same((await admin.socket.request('cron.run', { id, mode: 'due' })).error, notFound(id), `run due ${id}`)
  }
  t.notOk(admin.socket.isClosed)
})

t.test('cron.list: paging fields on every page, default and maximum limit, includeDisabled', async (t) => {
  const ids: string[] = []
  for (let i = 0; i < 5; i++) ids.push((await add(t, { name: `page ${i}`, schedule: { kind: 'every', everyMs: 3_600_000 }, payload: { kind: 'systemEvent', text: `${i}` } })).id)
  const off = await add(t, { name: 'disabled', enabled: false, schedule: { kind: 'every', everyMs: 3_600_000 }, payload: { kind: 'systemEvent', text: 'off' } })

  const all = await ok(t, reader.socket, 'cron.list', {})
  t.same(Object.keys(all).sort(), ['hasMore', 'jobs', 'limit', 'nextOffset', 'offset', 'snapshotRevision', 'total'])
  t.same(all.jobs.map((j: { id: string }) => j.id), ids, 'enabled jobs, oldest first; the disabled one hidden')
  t.match(all, { total: 5, offset: 0, limit: 200, hasMore: false, nextOffset: null })
  t.type(all.snapshotRevision, 'string')
  t.ok(all.snapshotRevision.length > 0, 'snapshotRevision is non-empty')

  const withDisabled = await ok(t, reader.socket, 'cron.list', { includeDisabled: true })
  t.equal(withDisabled.total, 6)
  t.same(withDisabled.jobs.map((j: { id: string }) => j.id), [...ids, off.id])
  t.equal((await ok(t, reader.socket, 'cron.list', { includeDisabled: false })).total, 5)

  const pages: any[] = []
  let offset: number | null = 0
  while (offset !== null) {
    const page: any = await ok(t, reader.socket, 'cron.list', { includeDisabled: true, limit: 4, offset })
    pages.push(page)
    offset = page.nextOffset
  }
  t.equal(pages.length, 2)
  t.same(pages[0], { ...pages[0], total: 6, offset: 0, limit: 4, hasMore: true, nextOffset: 4, snapshotRevision: all.snapshotRevision })
  t.same(Object.keys(pages[1]).sort(), Object.keys(all).sort(), 'the last page has every paging field too')
  t.match(pages[1], { total: 6, offset: 4, limit: 4, hasMore: false, nextOffset: null, snapshotRevision: all.snapshotRevision })
  t.same(pages.flatMap((p) => p.jobs.map((j: { id: string }) => j.id)), [...ids, off.id])
  const beyond = await ok(t, reader.socket, 'cron.list', { offset: 50 })
  t.same(beyond, { jobs: [], total: 5, offset: 50, limit: 200, hasMore: false, nextOffset: null, snapshotRevision: all.snapshotRevision })

  t.equal((await ok(t, reader.socket, 'cron.list', { limit: 1000 })).limit, 1000, 'limit 1000 is allowed')
  await rejectsNaming(t, reader.socket, 'cron.list', { limit: 1001 }, 'limit')
  for (const id of [...ids, off.id]) await ok(t, admin.socket, 'cron.remove', { id })
})

t.test('snapshotRevision is stable while nothing changes and moves on add, update, remove and run', async (t) => {
  const rev = async (): Promise<string> => (await ok(t, reader.socket, 'cron.list', { includeDisabled: true })).snapshotRevision
  const r0 = await rev()
  t.equal(await rev(), r0, 'stable')
  await sleep(300)
  t.equal(await rev(), r0, 'still stable a little later')
  const job = await add(t, { name: 'rev', schedule: { kind: 'every', everyMs: 3_600_000 }, payload: { kind: 'systemEvent', text: 'r' } })
  const r1 = await rev()
  t.not(r1, r0, 'changed by add')
  t.equal(await rev(), r1)
  await ok(t, admin.socket, 'cron.update', { id: job.id, patch: { name: 'rev2' } })
  const r2 = await rev()
  t.not(r2, r1, 'changed by update')
  const run = await ok(t, admin.socket, 'cron.run', { id: job.id })
  t.equal(run.ran, true)
  const r3 = await rev()
  t.not(r3, r2, 'changed by a run')
  t.equal(await rev(), r3)
  await ok(t, admin.socket, 'cron.remove', { id: job.id })
  const r4 = await rev()
  t.not(r4, r3, 'changed by remove')
  t.equal(new Set([r0, r1, r2, r3, r4]).size, 5, 'never reused')
  // A failed change changes nothing.
  await admin.socket.request('cron.update', { id: job.id, patch: { name: 'x' } })
  await admin.socket.request('cron.add', { name: 'bad', schedule: { kind: 'every', everyMs: 10 }, payload: { kind: 'systemEvent', text: 'x' } })
  t.equal(await rev(), r4, 'refused changes leave it alone')
})

t.test('cron.update {id, patch}: rename, disable, re-enable, new schedule, uninterpreted fields; id cannot be patched', async (t) => {
  const job = await add(t, { name: 'u', schedule: { kind: 'every', everyMs: 3_600_000 }, payload: { kind: 'systemEvent', text: 'u' }, sessionTarget: 'main', wakeMode: 'now', agentId: 'a1' })

  const renamed = await ok(t, admin.socket, 'cron.update', { id: job.id, patch: { name: 'renamed' } })
  t.same(renamed, { ...renamed, ...job, name: 'renamed', updatedAtMs: renamed.updatedAtMs }, 'only the name (and updatedAtMs) changed')
  t.ok(renamed.updatedAtMs >= job.updatedAtMs)
  t.equal(renamed.state.nextRunAtMs, job.state.nextRunAtMs, 'a rename keeps the schedule')

  const disabled = await ok(t, admin.socket, 'cron.update', { id: job.id, patch: { enabled: false } })
  t.equal(disabled.enabled, false)
  t.notOk('nextRunAtMs' in disabled.state, 'a disabled job has no nextRunAtMs')
  t.same(disabled.state, {})

  await sleep(50)
  const before = Date.now()
  const enabled = await ok(t, admin.socket, 'cron.update', { id: job.id, patch: { enabled: true } })
  const after = Date.now()
  t.equal(enabled.enabled, true)
  t.ok(enabled.state.nextRunAtMs >= before + 3_600_000 && enabled.state.nextRunAtMs <= after + 3_600_000, 're-enabled: first fires everyMs from now')
  t.ok(enabled.state.nextRunAtMs > job.state.nextRunAtMs, 'not the old plan')

  const cronBefore = Date.now()
  const rescheduled = await ok(t, admin.socket, 'cron.update', { id: job.id, patch: { schedule: { kind: 'cron', expr: '0 7 * * 1', tz: 'Europe/Berlin' } } })
  t.same(rescheduled.schedule, { kind: 'cron', expr: '0 7 * * 1', tz: 'Europe/Berlin' })
  t.equal(rescheduled.state.nextRunAtMs, new Cron('0 7 * * 1', { timezone: 'Europe/Berlin', paused: true }).nextRun(new Date(cronBefore))?.getTime())

  const patched = await ok(t, admin.socket, 'cron.update', { id: job.id, patch: { sessionTarget: 'isolated', delivery: { mode: 'none' }, payload: { kind: 'agentTurn', message: 'hi' }, description: 'now described' } })
  t.equal(patched.sessionTarget, 'isolated', 'an uninterpreted field is patched')
  t.same(patched.delivery, { mode: 'none' }, 'and a new one added')
  t.equal(patched.wakeMode, 'now', 'the others are kept')
  t.equal(patched.agentId, 'a1')
  t.same(patched.payload, { kind: 'agentTurn', message: 'hi' })
  t.equal(patched.description, 'now described')
  t.same(await ok(t, reader.socket, 'cron.get', { id: job.id }), patched, 'cron.get agrees')

  await rejectsNaming(t, admin.socket, 'cron.update', { id: job.id, patch: { id: randomUUID() } }, 'patch.id')
  await rejectsNaming(t, admin.socket, 'cron.update', { id: job.id, patch: { ownerDeviceId: reader.device.id } }, 'patch.ownerDeviceId')
  await rejectsNaming(t, admin.socket, 'cron.update', { id: job.id, patch: { schedule: { kind: 'every', everyMs: 10 } } }, 'patch.schedule.everyMs')
  await rejectsNaming(t, admin.socket, 'cron.update', { id: job.id, patch: { name: '' } }, 'patch.name')
  await rejectsNaming(t, admin.socket, 'cron.update', { id: job.id, patch: { enabled: 'no' } }, 'patch.enabled')
  await rejectsNaming(t, admin.socket, 'cron.update', { id: job.id, patch: { description: 5 } }, 'patch.description')
  await rejectsNaming(t, admin.socket, 'cron.update', { id: job.id, patch: { deleteAfterRun: 'yes' } }, 'patch.deleteAfterRun')
  await rejectsNaming(t, admin.socket, 'cron.update', { id: job.id, patch: { payload: { kind: 'agentTurn', message: 1 } } }, 'patch.payload.message')
  await rejectsNaming(t, admin.socket, 'cron.update', { id: job.id }, 'patch')
  t.same(await ok(t, reader.socket, 'cron.get', { id: job.id }), patched, 'refused patches changed nothing')
  await ok(t, admin.socket, 'cron.remove', { id: job.id })
})

t.test('cron.remove answers {ok, removed}; the job is then not found', async (t) => {
  const job = await add(t, { name: 'gone', schedule: { kind: 'every', everyMs: 3_600_000 }, payload: { kind: 'systemEvent', text: 'g' } })
  t.same(await ok(t, admin.socket, 'cron.remove', { id: job.id }), { ok: true, removed: true })
  t.same((await reader.socket.request('cron.get', { id: job.id })).error, notFound(job.id))
  t.same((await admin.socket.request('cron.remove', { id: job.id })).error, notFound(job.id), 'a second remove: not found')
})

t.test('cron.run force runs now and the owner receives cron.fire with that runId; due on a job not due does nothing', async (t) => {
  const job = await add(t, { name: 'run me', schedule: { kind: 'every', everyMs: 3_600_000 }, payload: { kind: 'agentTurn', message: 'go' } })
  const result = await ok(t, admin.socket, 'cron.run', { id: job.id })
  t.same(Object.keys(result).sort(), ['ok', 'ran', 'runId'])
  t.match(result, { ok: true, ran: true })
  t.match(result.runId, UUID_RE)
  const fire = await fireEvent(admin.socket, job.id)
  t.same({ ...fire.payload, firedAtMs: 0 }, { jobId: job.id, runId: result.runId, payload: { kind: 'agentTurn', message: 'go' }, firedAtMs: 0 })

  const { entries } = await ok(t, reader.socket, 'cron.runs', { id: job.id })
  t.equal(entries.length, 1)
  const status = await ok(t, reader.socket, 'status')
  t.same(Object.keys(entries[0]).sort(), ['dueAtMs', 'finishedAtMs', 'instance', 'jobId', 'runId', 'startedAtMs', 'status'])
  t.match(entries[0], { runId: result.runId, jobId: job.id, status: 'ok', instance: status.gateway.instance })
  t.ok(entries[0].startedAtMs <= entries[0].finishedAtMs)
  t.ok(entries[0].dueAtMs <= entries[0].startedAtMs)

  const after = await ok(t, reader.socket, 'cron.get', { id: job.id })
  t.equal(after.state.nextRunAtMs, job.state.nextRunAtMs, 'a forced run leaves the schedule alone')
  t.equal(after.state.lastStatus, 'ok')
  t.type(after.state.lastRunAtMs, 'number')

  t.same(await ok(t, admin.socket, 'cron.run', { id: job.id, mode: 'due' }), { ok: true, ran: false }, 'not due: nothing runs')
  t.equal((await ok(t, reader.socket, 'cron.runs', { id: job.id })).entries.length, 1)
  t.same(await ok(t, admin.socket, 'cron.run', { id: job.id, mode: 'force' }).then((r) => r.ran), true, 'explicit force')
  const both = (await ok(t, reader.socket, 'cron.runs', { id: job.id })).entries
  t.equal(both.length, 2)
  t.equal((await ok(t, reader.socket, 'cron.runs', { id: job.id, limit: 1 })).entries.length, 1, 'limit')
  t.equal(both[1].runId, result.runId, 'newest first')
  await ok(t, admin.socket, 'cron.remove', { id: job.id })
})

t.test('an at job with deleteAfterRun:false is kept disabled after its run, its run in cron.runs', async (t) => {
  const at = inMs(400)
  const job = await add(t, { name: 'keep', schedule: { kind: 'at', at }, payload: { kind: 'systemEvent', text: 'keep' }, deleteAfterRun: false })
  const fire = await fireEvent(admin.socket, job.id, 2500)
  t.ok(fire.payload.firedAtMs >= Date.parse(at), 'not before its time')
  t.ok(fire.payload.firedAtMs - Date.parse(at) < 1000, `on time (${fire.payload.firedAtMs - Date.parse(at)} ms late)`)
  const kept = await ok(t, reader.socket, 'cron.get', { id: job.id })
  t.equal(kept.enabled, false)
  t.notOk('nextRunAtMs' in kept.state)
  t.match(kept.state, { lastStatus: 'ok', lastRunAtMs: Number })
  const { entries } = await ok(t, reader.socket, 'cron.runs', { id: job.id })
  t.equal(entries.length, 1)
  t.match(entries[0], { runId: fire.payload.runId, jobId: job.id, status: 'ok', dueAtMs: Date.parse(at) })
  await sleep(300)
  t.equal(admin.socket.frames.filter((f) => f.event === 'cron.fire' && f.payload.jobId === job.id).length, 1, 'fired once')
  const hidden = await ok(t, reader.socket, 'cron.list', {})
  t.notOk(hidden.jobs.some((j: { id: string }) => j.id === job.id), 'hidden from the default list')

  // Enabled again, its time is past: it fires at once, a new run of its own.
  const again = await ok(t, admin.socket, 'cron.update', { id: job.id, patch: { enabled: true } })
  t.equal(again.enabled, true)
  t.type(again.state.nextRunAtMs, 'number')
  const second = await fireEvent(admin.socket, job.id, 1500)
  t.not(second.payload.runId, fire.payload.runId)
  const both = (await ok(t, reader.socket, 'cron.runs', { id: job.id })).entries
  t.same(both.map((r: { runId: string, status: string }) => [r.runId, r.status]), [[second.payload.runId, 'ok'], [fire.payload.runId, 'ok']])
  t.match(await ok(t, reader.socket, 'cron.get', { id: job.id }), { enabled: false, state: { lastStatus: 'ok' } }, 'kept disabled again')
  t.notMatch(server.logs(), 'scheduler pass failed', 'no scheduler pass failed on the way')
  await ok(t, admin.socket, 'cron.remove', { id: job.id })
})

t.test('cron.status counts jobs and reports the next wake-up', async (t) => {
  t.same(await ok(t, reader.socket, 'cron.status', {}), { enabled: true, jobs: 0, nextWakeAtMs: null })
  const later = await add(t, { name: 'later', schedule: { kind: 'every', everyMs: 7_200_000 }, payload: { kind: 'systemEvent', text: 'l' } })
  const sooner = await add(t, { name: 'sooner', schedule: { kind: 'every', everyMs: 3_600_000 }, payload: { kind: 'systemEvent', text: 's' } })
  const off = await add(t, { name: 'off', enabled: false, schedule: { kind: 'every', everyMs: 1000 }, payload: { kind: 'systemEvent', text: 'o' } })
  t.same(await ok(t, reader.socket, 'cron.status'), { enabled: true, jobs: 3, nextWakeAtMs: sooner.state.nextRunAtMs }, 'params may be absent')
  for (const job of [later, sooner, off]) await ok(t, admin.socket, 'cron.remove', { id: job.id })
  t.same(await ok(t, writer.socket, 'cron.status', {}), { enabled: true, jobs: 0, nextWakeAtMs: null })
})

t.test('cron events go to operator.read connections: added, updated, removed, started, finished', async (t) => {
  const job = await add(t, { name: 'ev', schedule: { kind: 'every', everyMs: 3_600_000 }, payload: { kind: 'systemEvent', text: 'ev' }, agentId: 'z' })
  for (const conn of [reader, writer, admin]) {
    const added = await cronEvent(conn.socket, job.id, 'added')
    t.same(added.payload, { jobId: job.id, action: 'added', job, nextRunAtMs: job.state.nextRunAtMs }, `added to ${conn.hello.auth.scopes}`)
  }
  const updated = await ok(t, admin.socket, 'cron.update', { id: job.id, patch: { name: 'ev2' } })
  t.same((await cronEvent(reader.socket, job.id, 'updated')).payload, { jobId: job.id, action: 'updated', job: updated, nextRunAtMs: updated.state.nextRunAtMs })
  const off = await ok(t, admin.socket, 'cron.update', { id: job.id, patch: { enabled: false } })
  t.same((await cronEvent(reader.socket, job.id, 'updated')).payload, { jobId: job.id, action: 'updated', job: off }, 'disabled: no nextRunAtMs')
  await ok(t, admin.socket, 'cron.update', { id: job.id, patch: { enabled: true } })
  await cronEvent(reader.socket, job.id, 'updated')

  const run = await ok(t, admin.socket, 'cron.run', { id: job.id })
  const started = await cronEvent(reader.socket, job.id, 'started')
  t.same(Object.keys(started.payload).sort(), ['action', 'jobId', 'run'])
  t.match(started.payload.run, { runId: run.runId, jobId: job.id, instance: String, startedAtMs: Number, dueAtMs: Number })
  // The run finishes within milliseconds, usually before 'started' is delivered: the event still shows it as it started.
  t.equal(started.payload.run.status, 'running', "'started' shows the run running, whenever it is delivered")
  t.notOk('finishedAtMs' in started.payload.run, "'started' has no finishedAtMs")
  const finished = await cronEvent(reader.socket, job.id, 'finished')
  t.match(finished.payload, { jobId: job.id, action: 'finished', run: { runId: run.runId, jobId: job.id, status: 'ok', finishedAtMs: Number } })
  t.same(finished.payload.run, (await ok(t, reader.socket, 'cron.runs', { id: job.id })).entries[0], 'the run as cron.runs shows it')
  // A 'started' notice that reaches an instance after the run finished (a fast run, a busy instance).
  await server.app.bus.publish({ kind: 'cron.runs', action: 'started', runIds: [run.runId] })
  const late = await cronEvent(reader.socket, job.id, 'started')
  const { finishedAtMs: _finishedAtMs, ...asStarted } = finished.payload.run
  t.same(late.payload.run, { ...asStarted, status: 'running' }, "a late 'started' still shows the run as it started")

  await ok(t, admin.socket, 'cron.remove', { id: job.id })
  t.same((await cronEvent(reader.socket, job.id, 'removed')).payload, { jobId: job.id, action: 'removed' })
  await cronEvent(writer.socket, job.id, 'removed')

  await sleep(200)
  t.equal(pairingOnly.socket.frames.filter((f) => f.event === 'cron').length, 0, 'nothing to a connection without operator.read')
  t.equal(pairingOnly.socket.frames.filter((f) => f.event === 'cron.fire').length, 0)
  t.equal(reader.socket.frames.filter((f) => f.event === 'cron.fire').length, 0, 'owned fires go to the owner only')
})

t.test('a fire for the owner goes to each of its connections', async (t) => {
  const second = await admin.device.connect(server.wsUrl, { token: gatewayToken, scopes: ['operator.read'] })
  t.equal(second.res.ok, true)
  const job = await add(t, { name: 'twice', schedule: { kind: 'at', at: inMs(300) }, payload: { kind: 'systemEvent', text: 'both' } })
  const [a, b] = await Promise.all([fireEvent(admin.socket, job.id, 2000), fireEvent(second.socket, job.id, 2000)])
  t.equal(a.payload.runId, b.payload.runId)
  await second.socket.close()
})
