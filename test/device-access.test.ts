// The handshake's one database read, batched: lookups made in the same turn
// of the event loop go to the database as one query, and each gets exactly
// what it would have got alone. On PGlite and on Postgres.
import t from 'tap'
import type { HotSqlClient } from '../src/db/database.ts'
import { DeviceAccessLoader, type DeviceAccess } from '../src/devices/access.ts'
import { TestDevice } from './helpers/device.ts'
import { pairDevice } from './helpers/pairing.ts'
import { metricValue } from './helpers/metrics.ts'
import { startServer } from './helpers/server.ts'

// PGlite starts in seconds; this file starts it twice.
t.setTimeout(180_000)

/** The real client, with the statements it is asked to run counted. */
function counted (sql: HotSqlClient): { sql: HotSqlClient, statements: () => number } {
  let statements = 0
  return {
    sql: {
      query: async (text, params) => await sql.query(text, params),
      prepared: async (query, params) => {
        statements++
        return await sql.prepared(query, params)
      }
    },
    statements: () => statements
  }
}

for (const database of ['pglite', 'postgres'] as const) {
  t.test(`${database}: one query for the lookups of one turn, each answered as if alone`, async (t) => {
    const server = await startServer(t, database === 'pglite' ? { databaseUrl: undefined } : {})
    const reader = await pairDevice(server, ['operator.read'])
    const writer = await pairDevice(server, ['operator.read', 'operator.write'], { platform: 'darwin', deviceFamily: 'MacBookPro' })
    const stranger = new TestDevice()
    const revoked = await server.api('DELETE', `/api/v1/devices/${writer.device.id}/tokens/operator`)
    t.equal(revoked.status, 200, JSON.stringify(revoked.body))

    const { sql, statements } = counted(server.app.db.sql)
    const batches: number[] = []
    const loader = new DeviceAccessLoader(sql, { onBatch: (n) => batches.push(n) })
    const asks: Array<[string, string]> = [
      [reader.device.id, 'operator'],
      [writer.device.id, 'operator'],
      [stranger.id, 'operator'],
      [reader.device.id, 'node'],
      [reader.device.id, 'operator'],
      ["'); DROP TABLE devices; --", 'operator'],
      ['back\\slash "quote" ünï©ødé', "it's"]
    ]
    const together = await Promise.all(asks.map(async ([id, role]) => await loader.load(id, role)))
    t.equal(statements(), 1, 'seven lookups made together: one statement')
    t.same(batches, [7])

    const [readerAccess, writerAccess, strangerAccess, readerAsNode, readerAgain, injected, escaped] = together as Array<DeviceAccess | null>
    t.match(readerAccess, { platform: 'linux', deviceFamily: '', roleScopes: ['operator.read'], pendingFires: false, tokenTtlMs: null, token: { revoked: false } })
    t.match(readerAccess?.token?.id, /^[0-9a-f-]{36}$/)
    t.type(readerAccess?.token?.expiresAtMs, 'number', 'the token expires (DEVICE_TOKEN_TTL_MS)')
    t.match(writerAccess, { platform: 'darwin', deviceFamily: 'macbookpro', token: { revoked: true } }, 'the other device, with its revoked token')
    t.same([...(writerAccess?.roleScopes ?? [])].sort(), ['operator.read', 'operator.write'])
    t.equal(strangerAccess, null, 'an unknown device: null')
    t.match(readerAsNode, { platform: 'linux', roleScopes: null, token: null }, 'paired, but not for this role')
    t.same(readerAgain, readerAccess, 'the same lookup twice in a batch: the same answer')
    t.equal(injected, null, 'an id that looks like SQL is only a value')
    t.equal(escaped, null, 'backslashes, quotes and non-ASCII text are only values')

    // Each alone, in turns of its own: the same answers, one statement each.
    for (const [index, [id, role]] of asks.entries()) {
      t.same(await loader.load(id, role), together[index], `alone: ${id.slice(0, 8)} as ${role}`)
    }
    t.equal(statements(), 1 + asks.length)
    const devices = await server.app.db.sql.query<{ n: number }>('SELECT count(*)::int AS n FROM devices')
    t.equal(devices.rows[0]?.n, 2, 'the devices table is intact')
  })

  t.test(`${database}: a batch is cut at maxBatch, and a failed query fails every lookup in it`, async (t) => {
    const server = await startServer(t, database === 'pglite' ? { databaseUrl: undefined } : {})
    const paired = await pairDevice(server, ['operator.read'])
    const { sql, statements } = counted(server.app.db.sql)
    const batches: number[] = []
    const loader = new DeviceAccessLoader(sql, { maxBatch: 2, onBatch: (n) => batches.push(n) })
    const answers = await Promise.all(Array.from({ length: 5 }, async () => await loader.load(paired.device.id, 'operator')))
    t.equal(statements(), 3)
    t.same(batches, [2, 2, 1])
    for (const access of answers) t.same(access?.roleScopes, ['operator.read'])

    await server.close()
    const failed = await Promise.allSettled([loader.load(paired.device.id, 'operator'), loader.load(paired.device.id, 'node')])
    t.same(failed.map((r) => r.status), ['rejected', 'rejected'], 'the database is gone: both lookups fail, neither hangs')
  })

  t.test(`${database}: concurrent handshakes of paired devices share queries and are all admitted with their own scopes`, async (t) => {
    const server = await startServer(t, database === 'pglite' ? { databaseUrl: undefined } : {})
    const readers = await Promise.all(Array.from({ length: 4 }, async () => await pairDevice(server, ['operator.read'])))
    const writers = await Promise.all(Array.from({ length: 4 }, async () => await pairDevice(server, ['operator.read', 'operator.write'])))
    const queriesBefore = await metricValue(server.httpUrl, 'scopegate_device_access_batch_size_count')
    const lookupsBefore = await metricValue(server.httpUrl, 'scopegate_device_access_batch_size_sum')

    const rounds = 5
    const attempts = Array.from({ length: rounds }, () => [
      ...readers.map((paired) => ({ paired, scopes: ['operator.read'], ok: true })),
      ...writers.map((paired) => ({ paired, scopes: ['operator.read', 'operator.write'], ok: true })),
      // A reader asking beyond its grant, in the same burst: refused, scope-upgrade, whatever the others got.
      ...readers.slice(0, 1).map((paired) => ({ paired, scopes: ['operator.write'], ok: false }))
    ]).flat()
    const results = await Promise.all(attempts.map(async ({ paired, scopes }) => await paired.device.connect(server.wsUrl, { deviceToken: paired.deviceToken, scopes })))
    for (const [i, { res, socket }] of results.entries()) {
      const attempt = attempts[i]!
      if (attempt.ok) {
        t.same(res.ok === true ? res.payload.auth.scopes : res.error, attempt.scopes, 'admitted with its own scopes')
      } else {
        t.equal(res.error?.details?.reason, 'scope-upgrade', 'the upgrade ask is refused')
      }
      await socket.close()
    }
    const queries = (await metricValue(server.httpUrl, 'scopegate_device_access_batch_size_count')) - queriesBefore
    const lookups = (await metricValue(server.httpUrl, 'scopegate_device_access_batch_size_sum')) - lookupsBefore
    t.equal(lookups, attempts.length, 'every handshake looked its device up')
    t.ok(queries >= 1 && queries <= attempts.length, `${lookups} lookups in ${queries} queries`)
  })
}
