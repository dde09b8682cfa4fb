// Found by the soak (issue #8): when every database pool client is busy for
// longer than Prisma waits to start a transaction (P2028), the answer must be
// the documented "try again later" (503 UNAVAILABLE with retry-after over
// REST, UNAVAILABLE retryable over WS), not a 500 / INTERNAL.
import t from 'tap'
import type { MigrationSession } from '../src/db/database.ts'
import { withTimeout } from '../src/db/bus.ts'
import { pairDevice } from './helpers/pairing.ts'
import { startServer } from './helpers/server.ts'

// Health checks far apart, so that the busy pool is not also seen as a lost database (fail-closed, tested elsewhere).
const server = await startServer(t, { healthCheckIntervalMs: 30_000, healthCheckTimeoutMs: 20_000 })

/** Checks out every client of the server's pool (10) and holds them until released, as a burst of slow queries would. */
async function exhaustPool (): Promise<() => void> {
  const held: MigrationSession[] = []
  while (held.length < 10) held.push(await server.app.db.session())
  t.equal(server.app.db.poolStats()?.idle, 0, 'no pool client is left idle')
  return () => { for (const session of held) session.release() }
}

t.test('a busy pool past the transaction wait answers 503 UNAVAILABLE (REST) and UNAVAILABLE retryable (WS), changes nothing, then recovers', async (t) => {
  const admin = await pairDevice(server, ['operator.admin'], { keepOpen: true })
  t.teardown(() => admin.socket.close())
  const victim = await pairDevice(server, ['operator.read', 'operator.write'])

  // Each of these opens a transaction first, which Prisma gives up on after 2 s without a pool client (P2028).
  const release = await exhaustPool()
  let answers
  try {
    answers = await Promise.all([
      server.api('DELETE', `/api/v1/devices/${victim.device.id}/roles/operator/scopes/operator.write`),
      admin.socket.request('cron.list', {}),
      admin.socket.request('device.token.revoke', { deviceId: victim.device.id, role: 'operator' })
    ])
  } finally {
    release()
  }
  const [rest, list, revoke] = answers
  t.equal(rest.status, 503, `REST scope revoke: ${rest.status} ${JSON.stringify(rest.body)}`)
  t.match(rest.body, { statusCode: 503, code: 'UNAVAILABLE' })
  t.equal(rest.headers.get('retry-after'), '1')
  t.match(list, { ok: false, error: { code: 'UNAVAILABLE', retryable: true } }, `WS cron.list: ${JSON.stringify(list.error)}`)
  t.match(revoke, { ok: false, error: { code: 'UNAVAILABLE', retryable: true } }, `WS device.token.revoke: ${JSON.stringify(revoke.error)}`)

  // Nothing half-done, and the same calls succeed once the pool is free.
  t.same((await server.api('GET', `/api/v1/devices/${victim.device.id}`)).body.scopes, ['operator.read', 'operator.write'], 'the scope is still granted')
  t.equal((await server.api('DELETE', `/api/v1/devices/${victim.device.id}/roles/operator/scopes/operator.write`)).status, 200)
  t.match(await admin.socket.request('cron.list', {}), { ok: true })
  t.match(await admin.socket.request('device.token.revoke', { deviceId: victim.device.id, role: 'operator' }), { ok: true })
  const errors = server.logs().split('\n').filter((line) => /"level":(50|60)/.test(line))
  t.same(errors.map((line) => line.slice(0, 300)), [], 'nothing logged at level error')
})

t.test('a busy pool is not a lost database: the health check still answers, so the instance does not fail closed', async (t) => {
  const release = await exhaustPool()
  try {
    const started = Date.now()
    const answered = await withTimeout(server.app.db.ping(), 2000).then(() => true, () => false)
    t.ok(answered, `the database ping answers while every pool client is busy (${Date.now() - started} ms)`)
    await server.app.readiness.check()
    t.equal(server.app.readiness.ready, true, 'the instance stays ready')
  } finally {
    release()
  }
})
