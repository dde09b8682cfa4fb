import SwaggerParser from '@apidevtools/swagger-parser'
import t from 'tap'
import { signAdminToken } from '../src/auth/admin-jwt.ts'
import { EventStream } from './helpers/events.ts'
import { pairDevice, requestPairing } from './helpers/pairing.ts'
import { startInstances, startServer, type TestServer } from './helpers/server.ts'

// Two instances on one schema: a stream on A must see what happens on B.
const [a, b] = await startInstances(t, 2, 'events') as [TestServer, TestServer]

t.test('GET /api/v1/events needs an admin JWT in the Authorization header; viewers may follow it', async (t) => {
  const anonymous = await fetch(`${a.httpUrl}/api/v1/events`)
  t.equal(anonymous.status, 401)
  t.equal((await anonymous.json()).statusCode, 401)
  const bad = await fetch(`${a.httpUrl}/api/v1/events`, { headers: { authorization: 'Bearer not-a-jwt' } })
  t.equal(bad.status, 401)

  const viewer = await EventStream.open(a.httpUrl, a.adminToken('viewer', 'watcher'))
  t.equal(viewer.response.status, 200)
  t.match(viewer.response.headers.get('content-type'), /^text\/event-stream/)
  t.equal(viewer.response.headers.get('cache-control'), 'no-store')
  const ready = await viewer.event('ready')
  t.type(ready.data.ts, 'number', 'the stream opens with ready')
  t.equal(viewer.events[0]?.event, 'ready', 'ready is the first event')
  viewer.close()
})

t.test('is in the OpenAPI document, with its events described', async (t) => {
  const doc = await a.api('GET', '/api/v1/openapi.json')
  await t.resolves(SwaggerParser.validate(structuredClone(doc.body)), 'the document is still valid OpenAPI 3')
  const op = doc.body.paths['/api/v1/events']?.get
  t.ok(op, 'GET /api/v1/events is documented')
  t.ok(op.responses['200'].content['text/event-stream'], 'as a text/event-stream response')
  t.match(op.description, /device\.pair\.requested/)
  t.ok(op.responses['401'], 'and its 401')
})

t.test('a stream on instance A sees pairing requests, decisions and grant changes made through instance B', async (t) => {
  const stream = await EventStream.open(a.httpUrl, a.adminToken())
  t.teardown(() => stream.close())
  await stream.event('ready')

  const { device, requestId } = await requestPairing(b, ['operator.read', 'operator.write'], { platform: 'Linux' })
  const requested = await stream.event('device.pair.requested')
  t.equal(requested.data.requestId, requestId)
  t.equal(requested.data.deviceId, device.id)
  t.equal(requested.data.reason, 'not-paired')
  t.same(requested.data.scopes, ['operator.read', 'operator.write'])
  t.same(requested.data.approvedScopes, [])
  t.equal(requested.data.state, 'pending')

  t.equal((await b.api('POST', `/api/v1/pairing-requests/${requestId}/approve`, { body: { scopes: ['operator.read'] } })).status, 200)
  const resolved = await stream.event('device.pair.resolved')
  t.match(resolved.data, { requestId, deviceId: device.id, decision: 'approved' })

  t.equal((await b.api('DELETE', `/api/v1/devices/${device.id}/roles/operator/scopes/operator.read`)).status, 200)
  const changed = await stream.event('device.changed')
  t.match(changed.data, { deviceId: device.id, change: 'grants' })

  const paired = await pairDevice(b, ['operator.read'])
  t.equal((await b.api('POST', `/api/v1/devices/${paired.device.id}/tokens/operator/rotate`)).status, 200)
  t.match((await stream.next((e) => e.event === 'device.changed' && e.data.deviceId === paired.device.id)).data, { change: 'token' })
  t.equal((await b.api('DELETE', `/api/v1/devices/${paired.device.id}`)).status, 200)
  t.match((await stream.next((e) => e.event === 'device.changed' && e.data.change === 'removed')).data, { deviceId: paired.device.id })

  const job = await b.api('POST', '/api/v1/cron/jobs', { body: { name: 'tick', schedule: { kind: 'every', everyMs: 3_600_000 }, payload: { kind: 'systemEvent', text: 'hi' } } })
  t.equal(job.status, 200)
  t.match((await stream.next((e) => e.event === 'cron' && e.data.jobId === job.body.id)).data, { action: 'added' })
})

t.test('a rejected request arrives as requested, then resolved rejected', async (t) => {
  const stream = await EventStream.open(b.httpUrl, b.adminToken())
  t.teardown(() => stream.close())
  await stream.event('ready')
  const { requestId } = await requestPairing(a, ['operator.read'])
  t.equal((await stream.event('device.pair.requested')).data.requestId, requestId)
  t.equal((await a.api('POST', `/api/v1/pairing-requests/${requestId}/reject`)).status, 200)
  t.match((await stream.event('device.pair.resolved')).data, { requestId, decision: 'rejected' })
})

t.test('the stream ends with `end` (token expired) when the token that opened it expires', async (t) => {
  const shortLived = signAdminToken(a.config.jwtSecret, { sub: 'brief', role: 'admin' }, 1500)
  const stream = await EventStream.open(a.httpUrl, shortLived)
  await stream.event('ready')
  const end = await stream.event('end', 5000)
  t.same(end.data, { reason: 'token expired' })
  await stream.ended
  t.pass('the server closed the response')
})

t.test('losing the notification listener ends open streams with `end` (service unavailable)', async (t) => {
  const c = await startServer(t)
  const stream = await EventStream.open(c.httpUrl, c.adminToken())
  await stream.event('ready')
  // What the readiness monitor reports when the LISTEN connection drops (fail-closed.test.ts cuts it for real).
  c.app.readiness.emit('change', false, { db: true, migrations: true, listener: false })
  t.same((await stream.event('end')).data, { reason: 'service unavailable' })
  await stream.ended
})

t.test('closing the server ends open streams with `end` (service restart)', async (t) => {
  const c = await startServer(t)
  const stream = await EventStream.open(c.httpUrl, c.adminToken())
  await stream.event('ready')
  await c.close()
  t.same((await stream.event('end')).data, { reason: 'service restart' })
})
