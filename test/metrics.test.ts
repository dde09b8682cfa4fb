import { register as globalRegistry } from 'prom-client'
import t from 'tap'
import { waitFor } from './helpers/cron.ts'
import { TestDevice, TestSocket } from './helpers/device.ts'
import { pairDevice } from './helpers/pairing.ts'
import { startServer, type TestServer } from './helpers/server.ts'

// GET /metrics against a real server after real traffic: refused and
// admitted connects, RPCs that succeed and fail, closes by the gateway and by
// the peer, an enforcement notification, a cron fire.

interface Sample { name: string, labels: Record<string, string>, value: number }

/** Prometheus text exposition, samples only. */
function parseMetrics (text: string): Sample[] {
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line)
    if (match === null) throw new Error(`unparsable metrics line: ${line}`)
    const labels: Record<string, string> = {}
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1] as string] = (pair[2] as string).replace(/\\(.)/g, '$1')
    samples.push({ name: match[1] as string, labels, value: Number(match[3]) })
  }
  return samples
}

async function scrape (server: TestServer): Promise<{ text: string, samples: Sample[], contentType: string | null, status: number }> {
  const res = await fetch(`${server.httpUrl}/metrics`)
  const text = await res.text()
  return { text, samples: parseMetrics(text), contentType: res.headers.get('content-type'), status: res.status }
}

/** The value of one series (labels must match exactly those given), or undefined. */
function value (samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.keys(labels).length === Object.keys(s.labels).length &&
    Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value
}

const server = await startServer(t)
const token = server.config.gatewayToken

t.test('GET /metrics is Prometheus text, needs no JWT, and has the default process metrics', async (t) => {
  const { status, contentType, samples, text } = await scrape(server)
  t.equal(status, 200)
  t.match(contentType, /^text\/plain; version=0\.0\.4/)
  t.ok(value(samples, 'process_cpu_user_seconds_total') !== undefined, 'process CPU')
  t.ok(value(samples, 'nodejs_heap_size_total_bytes') !== undefined, 'heap')
  t.match(text, /# TYPE scopegate_rpc_duration_seconds histogram/)
  t.match(text, /# TYPE scopegate_handshakes_total counter/)
  t.equal(value(samples, 'scopegate_connections', { role: 'operator' }), 0)
  t.equal(value(samples, 'scopegate_connections', { role: 'node' }), 0)
  t.equal(value(samples, 'scopegate_connections', { role: 'pending' }), 0)
  t.equal((await server.api('GET', '/api/v1/metrics')).status, 404, 'not under /api/v1')
  t.equal(globalRegistry.getMetricsAsArray().length, 0, 'nothing on prom-client\'s global registry')
})

t.test('counters after real traffic', async (t) => {
  // A refused connect (bad gateway token) and a pairing refusal.
  const stranger = new TestDevice()
  const bad = await stranger.connect(server.wsUrl, { token: 'not-the-gateway-token', scopes: ['operator.read'] })
  t.equal(bad.res.error?.details?.code, 'AUTH_TOKEN_MISMATCH')
  await bad.socket.closed
  // pairDevice: a not-paired refusal, an approval over REST, then an admitted connect.
  const paired = await pairDevice(server, ['operator.read'], { keepOpen: true })
  const { socket } = paired.conn

  // RPCs: ok, FORBIDDEN, and an unknown method (its name must not become a label).
  t.equal((await socket.request('health')).ok, true)
  t.equal((await socket.request('health')).ok, true)
  const forbidden = await socket.request('cron.add', { name: 'x' })
  t.equal(forbidden.error?.code, 'FORBIDDEN')
  const unknown = await socket.request('no.such.method-xyz')
  t.equal(unknown.error?.code, 'INVALID_REQUEST')

  let m = await scrape(server)
  t.equal(value(m.samples, 'scopegate_connections', { role: 'operator' }), 1, 'one open operator connection')
  t.equal(value(m.samples, 'scopegate_handshakes_total', { outcome: 'AUTH_TOKEN_MISMATCH' }), 1)
  t.equal(value(m.samples, 'scopegate_handshakes_total', { outcome: 'not-paired' }), 1)
  t.equal(value(m.samples, 'scopegate_handshakes_total', { outcome: 'ok' }), 1)
  t.equal(value(m.samples, 'scopegate_rpc_requests_total', { method: 'health', outcome: 'ok' }), 2)
  t.equal(value(m.samples, 'scopegate_rpc_requests_total', { method: 'cron.add', outcome: 'FORBIDDEN' }), 1)
  t.equal(value(m.samples, 'scopegate_rpc_requests_total', { method: 'unknown', outcome: 'INVALID_REQUEST' }), 1)
  t.notMatch(m.text, /no\.such\.method-xyz/, 'an unknown method name never becomes a label')
  t.equal(value(m.samples, 'scopegate_rpc_duration_seconds_count', { method: 'health' }), 2)
  t.equal(value(m.samples, 'scopegate_rpc_duration_seconds_bucket', { method: 'health', le: '+Inf' }), 2)
  t.ok((value(m.samples, 'scopegate_rpc_duration_seconds_sum', { method: 'health' }) ?? -1) >= 0)
  t.equal(value(m.samples, 'scopegate_closes_total', { code: '1008', reason: 'unauthorized: gateway token mismatch' }), 1)
  t.equal(value(m.samples, 'scopegate_closes_total', { code: '1008', reason: 'pairing required (not-paired)' }), 1)
  t.equal(value(m.samples, 'scopegate_rate_limited_total', { limit: 'rpc' }), undefined, 'nothing was rate limited')

  // A revocation closes the connection through a notification: a close by kind, and its lag.
  const revoked = await server.api('DELETE', `/api/v1/devices/${paired.device.id}/roles/operator/scopes/operator.read`)
  t.equal(revoked.status, 200)
  t.same(await socket.closedWithin(), { code: 1008, reason: 'scope revoked (operator.read)' })
  t.ok(await waitFor(async () => value((await scrape(server)).samples, 'scopegate_closes_total', { code: '1008', reason: 'scope revoked' }) === 1, 5000, 20))
  m = await scrape(server)
  t.notOk(m.samples.some((s) => s.name === 'scopegate_closes_total' && s.labels.reason?.includes('operator.read')), 'no scope name in a close label')
  t.equal(value(m.samples, 'scopegate_notification_lag_seconds_count', { kind: 'grants.changed' }), 1)
  t.equal(value(m.samples, 'scopegate_connections', { role: 'operator' }), 0)
})

t.test('peer closes and ws protocol closes (1009) are counted, peer codes bounded', async (t) => {
  const probe = await new TestDevice().connect(server.wsUrl, { noDevice: true, token })
  t.equal(probe.res.ok, true)
  probe.socket.ws.close(1000, 'bye')
  await probe.socket.closed
  const odd = await TestSocket.open(server.wsUrl)
  await odd.event('connect.challenge')
  odd.ws.close(4321, 'a code of its own')
  await odd.closed
  const big = await TestSocket.open(server.wsUrl)
  await big.event('connect.challenge')
  big.send('x'.repeat(server.config.maxPayloadBytes + 1))
  t.equal((await big.closedWithin()).code, 1009)
  const closes = async (): Promise<Sample[]> => (await scrape(server)).samples.filter((s) => s.name === 'scopegate_closes_total')
  const counted = await waitFor(async () => {
    const samples = await closes()
    return value(samples, 'scopegate_closes_total', { code: '1000', reason: 'peer' }) === 1 &&
      value(samples, 'scopegate_closes_total', { code: 'other', reason: 'peer' }) === 1 &&
      value(samples, 'scopegate_closes_total', { code: '1009', reason: 'message too big' }) === 1
  }, 5000, 20)
  t.ok(counted, `a client close (1000, peer), a made-up code (other, peer) and a frame over the limit (1009): ${JSON.stringify(await closes())}`)
  t.notOk((await closes()).some((s) => s.labels.code === '4321'), 'a code the peer made up is not a label')
})

t.test('scheduler fires and their lag; the database pool', async (t) => {
  const at = new Date(Date.now() - 1000).toISOString()
  const added = await server.api('POST', '/api/v1/cron/jobs', { body: { name: 'metrics-fire', schedule: { kind: 'at', at }, payload: { kind: 'systemEvent', text: 'hi' } } })
  t.equal(added.status, 200, JSON.stringify(added.body))
  t.ok(await waitFor(async () => (value((await scrape(server)).samples, 'scopegate_scheduler_fires_total') ?? 0) >= 1, 10_000, 50), 'the due job fired')
  const { samples } = await scrape(server)
  t.equal(value(samples, 'scopegate_scheduler_lag_seconds_count'), value(samples, 'scopegate_scheduler_fires_total'))
  t.ok((value(samples, 'scopegate_scheduler_lag_seconds_sum') ?? 0) >= 1, 'it was due a second before it was added')
  t.ok((value(samples, 'scopegate_db_pool_connections', { state: 'total' }) ?? 0) >= 1, 'the pg pool has clients')
  t.ok(value(samples, 'scopegate_db_pool_connections', { state: 'idle' }) !== undefined)
  t.equal(value(samples, 'scopegate_db_pool_connections', { state: 'waiting' }), 0)
})

t.test('every app instance has a registry of its own', async (t) => {
  const other = await startServer(t)
  const { samples } = await scrape(other)
  t.equal(value(samples, 'scopegate_handshakes_total', { outcome: 'ok' }), undefined, 'none of the first server\'s handshakes')
  t.ok((value((await scrape(server)).samples, 'scopegate_handshakes_total', { outcome: 'ok' }) ?? 0) >= 1)
})

t.test('on embedded PGlite the pool gauge reads 0', async (t) => {
  const embedded = await startServer(t, { databaseUrl: undefined })
  const { samples } = await scrape(embedded)
  for (const state of ['total', 'idle', 'waiting']) t.equal(value(samples, 'scopegate_db_pool_connections', { state }), 0, state)
})

t.test('a socket in its handshake counts as pending; a peer that stops answering pings is closed as keepalive timeout', async (t) => {
  const ticking = await startServer(t, { tickIntervalMs: 1000 })
  const waiting = await TestSocket.open(ticking.wsUrl)
  await waiting.event('connect.challenge')
  t.equal(value((await scrape(ticking)).samples, 'scopegate_connections', { role: 'pending' }), 1)
  await waiting.close()

  const silent = await new TestDevice().connect(ticking.wsUrl, { noDevice: true, token: ticking.config.gatewayToken })
  t.equal(silent.res.ok, true)
  silent.socket.ws.pause() // no more pongs
  t.ok(await waitFor(async () => value((await scrape(ticking)).samples, 'scopegate_closes_total', { code: '1006', reason: 'keepalive timeout' }) === 1, 5000, 50),
    'terminated after a tick without a pong')
  t.equal(value((await scrape(ticking)).samples, 'scopegate_closes_total', { code: '1006', reason: 'peer' }), undefined, 'counted once, not again as a peer close')
  silent.socket.ws.terminate()
})

t.test('the RPC duration histogram is exposed exactly as prom-client exposes its own', async (t) => {
  const { Metrics } = await import('../src/metrics/metrics.ts')
  const { Histogram, Registry } = await import('prom-client')
  const metrics = new Metrics()
  const reference = new Registry()
  const histogram = new Histogram({
    name: 'scopegate_rpc_duration_seconds',
    help: 'Time from an RPC\'s arrival to its response, by method',
    labelNames: ['method'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [reference]
  })
  // On a bound, between bounds, past the last one, and a second method.
  const observations: Array<[string, number]> = [['health', 0.0005], ['health', 0.0007], ['health', 0.3], ['health', 9], ['cron.add', 0.002]]
  for (const [method, seconds] of observations) {
    metrics.rpc(method, 'ok', seconds)
    histogram.observe({ method }, seconds)
  }
  metrics.rpc('health', 'RATE_LIMITED')
  const ours = await metrics.registry.getSingleMetricAsString('scopegate_rpc_duration_seconds')
  t.equal(ours, await reference.getSingleMetricAsString('scopegate_rpc_duration_seconds'))
  t.match(ours, 'scopegate_rpc_duration_seconds_bucket{le="0.0005",method="health"} 1\n')
  t.match(ours, 'scopegate_rpc_duration_seconds_count{method="health"} 4\n')
  const counts = parseMetrics(await metrics.registry.getSingleMetricAsString('scopegate_rpc_requests_total'))
  t.same(counts.map((s) => [s.labels, s.value]), [
    [{ method: 'health', outcome: 'ok' }, 4],
    [{ method: 'health', outcome: 'RATE_LIMITED' }, 1],
    [{ method: 'cron.add', outcome: 'ok' }, 1]
  ])
  metrics.registry.resetMetrics()
  t.notMatch(await metrics.registry.getSingleMetricAsString('scopegate_rpc_duration_seconds'), /_count/)
  t.same(parseMetrics(await metrics.registry.getSingleMetricAsString('scopegate_rpc_requests_total')), [], 'the counts are reset too, not re-read from the tallies')
})
