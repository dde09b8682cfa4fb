// Embedded mode end to end: no DATABASE_URL, everything in DATA_DIR.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import t from 'tap'
import { MIGRATIONS_DIR, readMigrations } from '../src/db/migrate.ts'
import { TestDevice } from './helpers/device.ts'
import { startServer } from './helpers/server.ts'

// PGlite starts in seconds, not milliseconds, and this file starts it twice.
t.setTimeout(180_000)

const SCOPES = ['operator.read', 'operator.write']

t.test('PGlite: migrate at start, pair a device, restart on the same DATA_DIR and find it paired', async (t) => {
  const first = await startServer(t, { databaseUrl: undefined })
  t.equal(first.app.db.kind, 'pglite')

  // Every migration in the repo was applied at start and recorded as Prisma records it.
  const migrations = readMigrations()
  t.ok(migrations.length > 0)
  const { rows } = await first.app.db.sql.query<{ migration_name: string, checksum: string, finished_at: Date | null, rolled_back_at: Date | null, applied_steps_count: number }>(
    'SELECT migration_name, checksum, finished_at, rolled_back_at, applied_steps_count FROM "_prisma_migrations" ORDER BY migration_name')
  t.same(rows.map((row) => row.migration_name), migrations.map((m) => m.name))
  for (const row of rows) {
    const sql = readFileSync(`${MIGRATIONS_DIR}/${row.migration_name}/migration.sql`)
    t.equal(row.checksum, createHash('sha256').update(sql).digest('hex'), `${row.migration_name}: checksum is the sha256 of migration.sql`)
    t.ok(row.finished_at instanceof Date, 'finished')
    t.equal(row.rolled_back_at, null)
    t.equal(row.applied_steps_count, 1)
  }
  t.match(first.logs(), /"database":"pglite".*"applied":\["20261126000000_init"/, 'the log says what was applied')
  const ready = await fetch(`${first.httpUrl}/healthz`)
  t.equal(ready.status, 200)

  // Pairing: refused, approved over REST, admitted with the asked scopes and a device token.
  const device = new TestDevice()
  const token = first.config.gatewayToken
  const refused = await device.connect(first.wsUrl, { token, scopes: SCOPES })
  t.equal(refused.res.ok, false)
  t.equal(refused.res.error.message, 'pairing required (not-paired)')
  t.same(await refused.socket.closed, { code: 1008, reason: 'pairing required (not-paired)' })
  const requestId = refused.res.error.details.requestId as string

  const approved = await first.api('POST', `/api/v1/pairing-requests/${requestId}/approve`)
  t.equal(approved.status, 200, JSON.stringify(approved.body))
  t.match(approved.body.device, { deviceId: device.id, scopes: SCOPES })

  const admitted = await device.connect(first.wsUrl, { token, scopes: SCOPES })
  t.equal(admitted.res.ok, true, JSON.stringify(admitted.res))
  t.equal(admitted.res.payload.type, 'hello-ok')
  t.same(admitted.res.payload.auth.scopes, SCOPES)
  const deviceToken = admitted.res.payload.auth.deviceToken as string
  t.type(deviceToken, 'string')
  t.ok(deviceToken.length > 0)
  await admitted.socket.close()
  await first.close()

  // A new process on the same DATA_DIR (same secrets, as loadConfig would read them back).
  const second = await startServer(t, {
    databaseUrl: undefined,
    dataDir: first.config.dataDir,
    gatewayToken: first.config.gatewayToken,
    jwtSecret: first.config.jwtSecret
  })
  t.match(second.logs(), /"database":"pglite".*"applied":\[\],"alreadyApplied":\d/, 'nothing to migrate the second time')
  const again = await second.app.db.sql.query<{ n: number }>('SELECT count(*)::int AS n FROM "_prisma_migrations"')
  t.equal(again.rows[0]?.n, migrations.length, 'no migration recorded twice')

  const resumed = await device.connect(second.wsUrl, { deviceToken, scopes: ['operator.read'] })
  t.equal(resumed.res.ok, true, JSON.stringify(resumed.res))
  t.equal(resumed.res.payload.auth.method, 'device-token', 'the device token survived the restart')
  t.same(resumed.res.payload.auth.scopes, ['operator.read'])
  await resumed.socket.close()

  const history = await second.api('GET', '/api/v1/pairing-requests?state=approved')
  t.equal(history.status, 200)
  t.match(history.body.items, [{ requestId, deviceId: device.id, state: 'approved' }], 'the approved request persisted')
  const stillPending = await second.api('GET', '/api/v1/pairing-requests')
  t.same(stillPending.body.items, [], 'nothing pending')

  const stranger = new TestDevice()
  const unknown = await stranger.connect(second.wsUrl, { deviceToken, scopes: ['operator.read'] })
  t.equal(unknown.res.ok, false, 'the token is bound to its device')
  await unknown.socket.closed
})

t.test('a prepared hot query answers the same on PGlite (PREPARE + EXECUTE with literals) as on Postgres, whatever the text', async (t) => {
  const tricky = ["it's", 'back\\slash', "'); DROP TABLE devices; --", '$1', 'ünï©ødé 🎉', '', "E'x'", '\\\'']
  const query = { name: 'scopegate-test-echo', text: 'SELECT $1::text AS a, $2::text AS b, $3::int AS n, $4::text AS missing' }
  for (const databaseUrl of [undefined, 'postgres']) {
    const server = databaseUrl === undefined ? await startServer(t, { databaseUrl: undefined }) : await startServer(t)
    const { sql, kind } = server.app.db
    // Several first calls at once: the statement is prepared once, not once per caller.
    const first = await Promise.all(tricky.map(async (text, i) => await sql.prepared<{ a: string, b: string, n: number, missing: null }>(query, [text, `${text}|${text}`, i, null])))
    first.forEach(({ rows }, i) => t.same(rows, [{ a: tricky[i], b: `${tricky[i]}|${tricky[i]}`, n: i, missing: null }], `${kind}: ${JSON.stringify(tricky[i])}`))
    const again = await sql.prepared<{ a: string }>(query, ['again', 'x', 0, null])
    t.equal(again.rows[0]?.a, 'again', `${kind}: the prepared statement is reused`)
    if (kind === 'pglite') {
      await sql.query(`DEALLOCATE "${query.name}"`)
      const afterDeallocate = await sql.prepared<{ a: string }>(query, ['back', 'x', 0, null])
      t.equal(afterDeallocate.rows[0]?.a, 'back', 'a statement deallocated on the session is prepared again')
    }
    if (kind === 'pglite') await t.rejects(sql.prepared(query, [{ a: 1 }, 'x', 0, null]), TypeError, 'a value with no SQL literal is refused, never stringified into the statement')
    const devices = await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM devices')
    t.equal(devices.rows.length, 1, `${kind}: the devices table is still there`)
    await server.close()
  }
})
