import t from 'tap'
import { TestDevice } from './helpers/device.ts'
import { waitFor } from './helpers/cron.ts'
import { startServer, TEST_DATABASE_URL } from './helpers/server.ts'
import { TcpProxy } from './helpers/tcp-proxy.ts'

t.test('losing the database closes every connection 1013, refuses new ones, and recovers on its own', async (t) => {
  const proxy = await TcpProxy.start()
  t.teardown(() => proxy.close())
  const server = await startServer(t, { databaseUrl: proxy.urlFor(TEST_DATABASE_URL), healthCheckIntervalMs: 250, healthCheckTimeoutMs: 500 })
  const token = server.config.gatewayToken
  const device = new TestDevice()
  const first = await device.connect(server.wsUrl, { token, scopes: ['operator.read', 'operator.write'] })
  await first.socket.closed
  t.equal((await server.api('POST', `/api/v1/pairing-requests/${first.res.error.details.requestId}/approve`)).status, 200)
  const paired = await device.connect(server.wsUrl, { token, scopes: ['operator.read'] })
  t.equal(paired.res.ok, true)
  const deviceToken: string = paired.res.payload.auth.deviceToken
  const probe = await new TestDevice().connect(server.wsUrl, { token, noDevice: true })
  t.equal(probe.res.ok, true)
  const ready = await server.api('GET', '/readyz', { token: null })
  t.same(ready.body, { ok: true, checks: { db: true, migrations: true, listener: true } })

  const cutAt = Date.now()
  proxy.cut()
  t.same(await paired.socket.closed, { code: 1013, reason: 'try again later' })
  t.same(await probe.socket.closed, { code: 1013, reason: 'try again later' })
  const closedAfterMs = Date.now() - cutAt
  t.ok(closedAfterMs < 5000, `open connections closed ${closedAfterMs} ms after the database was lost (< 5 s)`)

  const notReady = await server.api('GET', '/readyz', { token: null })
  t.equal(notReady.status, 503)
  t.equal(notReady.body.ok, false)
  t.equal(notReady.body.checks.db, false)
  t.equal((await server.api('GET', '/healthz', { token: null })).status, 200, 'the process itself is alive')

  const refused = await device.connect(server.wsUrl, { deviceToken, scopes: ['operator.read'] })
  t.match(refused.res.error, { code: 'UNAVAILABLE', retryable: true })
  t.same(await refused.socket.closed, { code: 1013, reason: 'try again later' })
  const probeRefused = await new TestDevice().connect(server.wsUrl, { token, noDevice: true })
  t.equal(probeRefused.res.error.code, 'UNAVAILABLE', 'nothing is let in, not even a probe')
  const rest = await server.api('GET', `/api/v1/devices/${device.id}`)
  t.equal(rest.status, 503)
  t.equal(rest.body.code, 'UNAVAILABLE')

  proxy.restore()
  const recovered = await waitFor(async () => (await server.api('GET', '/readyz', { token: null })).status === 200, 15_000, 200)
  t.ok(recovered, '/readyz is 200 again once the database and the listener are back')
  const back = await device.connect(server.wsUrl, { deviceToken, scopes: ['operator.read', 'operator.write'] })
  t.equal(back.res.ok, true, 'connects work again')
  const revoke = await server.api('DELETE', `/api/v1/devices/${device.id}/roles/operator/scopes/operator.write`)
  t.equal(revoke.status, 200)
  t.same(await back.socket.closed, { code: 1008, reason: 'scope revoked (operator.write)' }, 'the listener is back: revocations reach open sockets')
  t.notMatch(server.logs(), /"level":(50|60)[^\n]*uncaught/i)
})

t.test('losing only the notification listener fails closed too, until it is back', async (t) => {
  const server = await startServer(t, { healthCheckIntervalMs: 250, healthCheckTimeoutMs: 500 })
  const probe = await new TestDevice().connect(server.wsUrl, { token: server.config.gatewayToken, noDevice: true })
  t.equal(probe.res.ok, true)
  const { rows } = await server.app.db.sql.query<{ n: number }>(
    'SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = $1',
    [`scopegate-listener:${server.config.databaseSchema}`.slice(0, 63)])
  t.equal(rows[0]?.n, 1, 'the listener connection was terminated')
  t.same(await probe.socket.closed, { code: 1013, reason: 'try again later' })
  const recovered = await waitFor(async () => (await server.api('GET', '/readyz', { token: null })).status === 200, 10_000, 100)
  t.ok(recovered, 'ready again after the listener reconnects')
  const again = await new TestDevice().connect(server.wsUrl, { token: server.config.gatewayToken, noDevice: true })
  t.equal(again.res.ok, true)
  await again.socket.close()
})
