import t from 'tap'
import type WebSocket from 'ws'
import { ConfigError, DEFAULT_LIMITS, loadConfig, parseTrustProxy } from '../src/config.ts'
import { KeyedRateLimiter, TokenBucket } from '../src/gateway/rate-limit.ts'
import { TestDevice, TestSocket, type ConnectResult, type Frame } from './helpers/device.ts'
import { metricValue } from './helpers/metrics.ts'
import { startServer, type TestServer } from './helpers/server.ts'

// Each limit of API.md against a real server with small configured values,
// and `0` turning it off: MAX_CONNECTIONS, HANDSHAKE_RATE_PER_IP,
// RPC_RATE_PER_CONN, REST_RATE_PER_MIN, and TRUST_PROXY deciding whose
// address the per-IP limits count.

/** A device-less connection with the gateway token: the cheapest full handshake. */
async function probe (server: TestServer, wsOptions?: WebSocket.ClientOptions): Promise<ConnectResult> {
  return await new TestDevice().connect(server.wsUrl, { noDevice: true, token: server.config.gatewayToken }, wsOptions)
}

function forwardedFor (ip: string): WebSocket.ClientOptions {
  return { headers: { 'x-forwarded-for': ip } }
}

async function metric (server: TestServer, series: string): Promise<number> {
  return await metricValue(server.httpUrl, series)
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

t.test('configuration: defaults, overrides, 0, and TRUST_PROXY forms', async (t) => {
  const base = { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/test', GATEWAY_TOKEN: 'g'.repeat(24), JWT_SECRET: 's'.repeat(40) }
  t.match(loadConfig(base), { ...DEFAULT_LIMITS, trustProxy: false, maxPayloadBytes: 1024 * 1024, maxBufferedBytes: 4 * 1024 * 1024, handshakeTimeoutMs: 10_000 })
  t.same(DEFAULT_LIMITS, { maxConnections: 10_000, handshakeRatePerIp: 5000, rpcRatePerConn: 2000, restRatePerMin: 6000 }, 'the defaults README documents')
  t.match(loadConfig({ ...base, MAX_CONNECTIONS: '0', HANDSHAKE_RATE_PER_IP: '0', RPC_RATE_PER_CONN: '0', REST_RATE_PER_MIN: '0' }),
    { maxConnections: 0, handshakeRatePerIp: 0, rpcRatePerConn: 0, restRatePerMin: 0 })
  t.match(loadConfig({ ...base, MAX_CONNECTIONS: '2', HANDSHAKE_RATE_PER_IP: '3', RPC_RATE_PER_CONN: '4', REST_RATE_PER_MIN: '5', TRUST_PROXY: 'true' }),
    { maxConnections: 2, handshakeRatePerIp: 3, rpcRatePerConn: 4, restRatePerMin: 5, trustProxy: true })
  t.equal(parseTrustProxy('false'), false)
  t.equal(parseTrustProxy('TRUE'), true)
  t.equal(parseTrustProxy('2'), 2)
  t.same(parseTrustProxy('10.0.0.0/8, 127.0.0.1,::1, fd00::/8,loopback, 192.168.0.0/255.255.0.0'), ['10.0.0.0/8', '127.0.0.1', '::1', 'fd00::/8', 'loopback', '192.168.0.0/255.255.0.0'])
  for (const bad of ['yes', '10.0.0.0/33', '300.1.1.1', 'proxy.example.com', ',']) {
    t.throws(() => loadConfig({ ...base, TRUST_PROXY: bad }), ConfigError, `TRUST_PROXY=${bad}`)
    t.throws(() => loadConfig({ ...base, TRUST_PROXY: bad }), /TRUST_PROXY/)
  }
  for (const name of ['MAX_CONNECTIONS', 'HANDSHAKE_RATE_PER_IP', 'RPC_RATE_PER_CONN', 'REST_RATE_PER_MIN']) {
    t.throws(() => loadConfig({ ...base, [name]: '-1' }), new RegExp(name), `${name}=-1`)
    t.throws(() => loadConfig({ ...base, [name]: 'many' }), new RegExp(name), `${name}=many`)
  }
})

t.test('token buckets', async (t) => {
  const bucket = new TokenBucket(10, 2, 0)
  t.equal(bucket.take(0), 0)
  t.equal(bucket.take(0), 0)
  t.equal(bucket.take(0), 100, 'empty: a token is back in 100 ms at 10/s')
  t.equal(bucket.take(50), 50)
  t.equal(bucket.take(100), 0, 'refilled')
  t.notOk(bucket.isFull(100))
  t.ok(bucket.isFull(10_000), 'never above the burst')

  const limiter = new KeyedRateLimiter({ ratePerSec: 1, burst: 1, maxKeys: 20, sweepIntervalMs: 60_000 })
  t.teardown(() => limiter.stop())
  t.equal(limiter.take('a', 0), 0)
  t.ok(limiter.take('a', 0) > 0)
  t.equal(limiter.take('b', 0), 0, 'keys are apart')
  limiter.sweep(500)
  t.equal(limiter.size, 2, 'buckets not yet refilled are kept')
  limiter.sweep(1000)
  t.equal(limiter.size, 0, 'idle (refilled) buckets are forgotten')
  for (let i = 0; i < 100; i++) limiter.take(`k${i}`, 2000)
  t.ok(limiter.size <= 20, `bounded: ${limiter.size} keys`)
})

t.test('MAX_CONNECTIONS: one over the limit is closed 1013 try again later, without a challenge', async (t) => {
  const server = await startServer(t, { maxConnections: 2 })
  const first = await TestSocket.open(server.wsUrl)
  await first.event('connect.challenge')
  const second = await probe(server)
  t.equal(second.res.ok, true, 'a socket still in its handshake and an admitted one both count')
  const third = await TestSocket.open(server.wsUrl)
  t.same(await third.closedWithin(), { code: 1013, reason: 'try again later' })
  t.same(third.frames, [], 'no challenge for a refused socket')

  await first.close()
  const again = await probe(server)
  t.equal(again.res.ok, true, 'room again once one closed')
  t.teardown(() => again.socket.close())
  t.equal(await metric(server, 'scopegate_rate_limited_total{limit="connections"}'), 1)
  t.equal(await metric(server, 'scopegate_handshakes_total{outcome="OVER_CAPACITY"}'), 1)
  t.equal(await metric(server, 'scopegate_closes_total{code="1013",reason="try again later"}'), 1)
  await second.socket.close()
})

t.test('MAX_CONNECTIONS=0 sets no limit', async (t) => {
  const server = await startServer(t, { maxConnections: 0 })
  const sockets = await Promise.all(Array.from({ length: 20 }, async () => await TestSocket.open(server.wsUrl)))
  for (const socket of sockets) await socket.event('connect.challenge')
  t.equal(sockets.filter((s) => !s.isClosed).length, 20)
  for (const socket of sockets) await socket.close()
})

t.test('HANDSHAKE_RATE_PER_IP: over it the connect is answered RATE_LIMITED with retryAfterMs and closed 1008', async (t) => {
  const server = await startServer(t, { handshakeRatePerIp: 2 })
  const admitted = [await probe(server), await probe(server)]
  for (const conn of admitted) t.equal(conn.res.ok, true)
  const limited = await probe(server)
  t.match(limited.res, { ok: false, error: { code: 'RATE_LIMITED', message: 'rate limited', retryAfterMs: Number } })
  t.same(Object.keys(limited.res.error).sort(), ['code', 'message', 'retryAfterMs'])
  const retryAfterMs = limited.res.error.retryAfterMs as number
  t.ok(retryAfterMs > 0 && retryAfterMs <= 500, `retryAfterMs ${retryAfterMs} (one token per 500 ms)`)
  t.same(await limited.socket.closedWithin(), { code: 1008, reason: 'rate limited' })
  t.equal(admitted.filter((c) => c.socket.isClosed).length, 0, 'the admitted stay open')

  await sleep(retryAfterMs + 20)
  const later = await probe(server)
  t.equal(later.res.ok, true, 'admitted once retryAfterMs has passed')
  t.equal(await metric(server, 'scopegate_handshakes_total{outcome="RATE_LIMITED"}'), 1)
  t.equal(await metric(server, 'scopegate_rate_limited_total{limit="handshake"}'), 1)
  t.match(server.logs(), /"outcome":"RATE_LIMITED","remoteAddress":"127\.0\.0\.1"/)
  for (const conn of [...admitted, later]) await conn.socket.close()
})

t.test('HANDSHAKE_RATE_PER_IP=0 sets no limit', async (t) => {
  const server = await startServer(t, { handshakeRatePerIp: 0 })
  const results = await Promise.all(Array.from({ length: 30 }, async () => await probe(server)))
  t.equal(results.filter((r) => r.res.ok === true).length, 30)
  for (const r of results) await r.socket.close()
})

t.test('RPC_RATE_PER_CONN: over it a request gets RATE_LIMITED and the socket stays open', async (t) => {
  const server = await startServer(t, { rpcRatePerConn: 5 })
  const { socket, res } = await probe(server)
  t.equal(res.ok, true)
  t.teardown(() => socket.close())
  for (let i = 0; i < 8; i++) socket.send({ type: 'req', id: `h${i}`, method: 'health' })
  const answers: Frame[] = []
  for (let i = 0; i < 8; i++) answers.push(await socket.next((f) => f.type === 'res' && f.id === `h${i}`))
  const ok = answers.filter((a) => a.ok === true).length
  const limited = answers.filter((a) => a.error?.code === 'RATE_LIMITED')
  t.ok(ok >= 5 && limited.length >= 2 && ok + limited.length === 8, `burst of 5 answered, the rest limited (${ok} ok, ${limited.length} limited)`)
  for (const answer of limited) {
    t.same(Object.keys(answer.error).sort(), ['code', 'message', 'retryAfterMs'])
    t.equal(answer.error.message, 'rate limited')
    t.ok(answer.error.retryAfterMs > 0 && answer.error.retryAfterMs <= 200, `retryAfterMs ${answer.error.retryAfterMs}`)
  }
  t.equal(socket.isClosed, false, 'the socket stays open')
  await sleep(Math.max(...limited.map((a) => a.error.retryAfterMs as number)) + 20)
  t.equal((await socket.request('health')).ok, true, 'answered again after retryAfterMs')
  t.equal(await metric(server, 'scopegate_rpc_requests_total{method="health",outcome="RATE_LIMITED"}'), limited.length)
  t.equal(await metric(server, 'scopegate_rate_limited_total{limit="rpc"}'), limited.length)
})

t.test('RPC_RATE_PER_CONN=0 sets no limit', async (t) => {
  const server = await startServer(t, { rpcRatePerConn: 0 })
  const { socket } = await probe(server)
  t.teardown(() => socket.close())
  for (let i = 0; i < 100; i++) socket.send({ type: 'req', id: `h${i}`, method: 'health' })
  let ok = 0
  for (let i = 0; i < 100; i++) if ((await socket.next((f) => f.type === 'res' && f.id === `h${i}`)).ok === true) ok++
  t.equal(ok, 100)
})

t.test('REST_RATE_PER_MIN: 429 with retry-after in Fastify\'s error shape; probes and metrics are never limited', async (t) => {
  const server = await startServer(t, { restRatePerMin: 3 })
  for (let i = 0; i < 2; i++) t.equal((await server.api('GET', '/api/v1/devices')).status, 200)
  t.equal((await server.api('GET', '/api/v1/devices', { token: null })).status, 401, 'unauthenticated requests count too')
  const limited = await server.api('GET', '/api/v1/devices')
  t.equal(limited.status, 429)
  t.match(limited.body, { statusCode: 429, code: 'RATE_LIMITED', error: 'Too Many Requests', message: /rate limit exceeded/ })
  const retryAfter = Number(limited.headers.get('retry-after'))
  t.ok(Number.isInteger(retryAfter) && retryAfter > 0 && retryAfter <= 60, `retry-after ${limited.headers.get('retry-after')} s`)
  t.equal((await server.api('POST', '/api/v1/cron/jobs', { body: {} })).status, 429, 'every /api/v1 route shares the budget')
  t.equal((await server.api('GET', '/api/v1/devices', { token: null })).status, 429, 'limited before the JWT check')
  for (let i = 0; i < 5; i++) {
    t.equal((await fetch(`${server.httpUrl}/healthz`)).status, 200)
    t.equal((await fetch(`${server.httpUrl}/metrics`)).status, 200)
  }
  t.equal(await metric(server, 'scopegate_rate_limited_total{limit="rest"}'), 3)
})

t.test('REST_RATE_PER_MIN=0 sets no limit', async (t) => {
  const server = await startServer(t, { restRatePerMin: 0 })
  const statuses = await Promise.all(Array.from({ length: 30 }, async () => (await server.api('GET', '/api/v1/devices')).status))
  t.same(new Set(statuses), new Set([200]))
  t.equal((await server.api('GET', '/api/v1/devices')).headers.get('x-ratelimit-limit'), null)
})

t.test('TRUST_PROXY: X-Forwarded-For decides request.ip for the per-IP limits, and only when trusted', async (t) => {
  const limits = { handshakeRatePerIp: 1, restRatePerMin: 1 }
  for (const trustProxy of [true, ['127.0.0.1'], 1] as const) {
    await t.test(`trusted (${JSON.stringify(trustProxy)})`, async (t) => {
      const server = await startServer(t, { ...limits, trustProxy: trustProxy as true | string[] | number })
      const a = await probe(server, forwardedFor('203.0.113.7'))
      t.equal(a.res.ok, true)
      const aAgain = await probe(server, forwardedFor('203.0.113.7'))
      t.equal(aAgain.res.error?.code, 'RATE_LIMITED', 'the same forwarded address is limited')
      const b = await probe(server, forwardedFor('198.51.100.9'))
      t.equal(b.res.ok, true, 'another forwarded address has a bucket of its own')
      t.match(server.logs(), /"outcome":"RATE_LIMITED","remoteAddress":"203\.0\.113\.7"/, 'request.ip is the forwarded address')

      const headers = { 'x-forwarded-for': '203.0.113.7' }
      t.equal((await server.api('GET', '/api/v1/devices', { headers })).status, 200)
      t.equal((await server.api('GET', '/api/v1/devices', { headers })).status, 429)
      t.equal((await server.api('GET', '/api/v1/devices', { headers: { 'x-forwarded-for': '198.51.100.9' } })).status, 200)
      for (const conn of [a, b]) await conn.socket.close()
    })
  }

  await t.test('not trusted (default): the header is ignored', async (t) => {
    const server = await startServer(t, limits)
    t.equal(server.config.trustProxy, false)
    const a = await probe(server, forwardedFor('203.0.113.7'))
    t.equal(a.res.ok, true)
    const b = await probe(server, forwardedFor('198.51.100.9'))
    t.equal(b.res.error?.code, 'RATE_LIMITED', 'both come from 127.0.0.1, whatever they claim')
    t.match(server.logs(), /"outcome":"RATE_LIMITED","remoteAddress":"127\.0\.0\.1"/)
    t.equal((await server.api('GET', '/api/v1/devices', { headers: { 'x-forwarded-for': '203.0.113.7' } })).status, 200)
    t.equal((await server.api('GET', '/api/v1/devices', { headers: { 'x-forwarded-for': '198.51.100.9' } })).status, 429)
    await a.socket.close()
  })

  await t.test('a proxy list that does not include the peer: the header is ignored', async (t) => {
    const server = await startServer(t, { ...limits, trustProxy: ['10.0.0.0/8'] })
    t.equal((await probe(server, forwardedFor('203.0.113.7'))).res.ok, true)
    t.equal((await probe(server, forwardedFor('198.51.100.9'))).res.error?.code, 'RATE_LIMITED')
  })
})
