// Migrations: recorded in _prisma_migrations exactly as Prisma records them,
// applied once, under an advisory lock when instances start together.
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { DatabaseInUseError, openDatabase, type Database } from '../src/db/database.ts'
import { MIGRATIONS_DIR, MigrationError, migrate, migrationsApplied, readMigrations, type Migration } from '../src/db/migrate.ts'
import { dropSchema, TEST_DATABASE_URL, uniqueSchema } from './helpers/server.ts'

t.setTimeout(180_000)

type Teardown = { teardown: (fn: () => unknown) => void }

function tempDir (t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'scopegate-migrate-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A fresh Postgres schema (dropped afterwards) and `count` databases opened on it. */
async function postgres (t: Teardown, count = 1): Promise<Database[]> {
  const schema = uniqueSchema('migrate')
  const dbs = await Promise.all(Array.from({ length: count }, async () => await openDatabase({ databaseUrl: TEST_DATABASE_URL, schema, dataDir: '/nonexistent', poolSize: 2 })))
  t.teardown(async () => {
    await Promise.all(dbs.map(async (db) => { await db.close() }))
    await dropSchema(schema)
  })
  return dbs
}

interface Row { id: string, migration_name: string, checksum: string, finished_at: Date | null, rolled_back_at: Date | null, started_at: Date, applied_steps_count: number, logs: string | null }

async function recorded (db: Database): Promise<Row[]> {
  return (await db.sql.query<Row>('SELECT * FROM "_prisma_migrations" ORDER BY migration_name, started_at')).rows
}

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex')

t.test('readMigrations: every folder under prisma/migrations, in order, with the sha256 of its file', async (t) => {
  const migrations = readMigrations()
  const folders = readdirSync(MIGRATIONS_DIR, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort()
  t.same(migrations.map((m) => m.name), folders)
  for (const m of migrations) {
    t.match(m.name, /^\d{14}_[a-z0-9_]+$/, `${m.name} is named as Prisma names migrations`)
    t.equal(m.checksum, sha256(readFileSync(join(MIGRATIONS_DIR, m.name, 'migration.sql'))))
  }
})

t.test('PGlite: applied and recorded once; the second run applies nothing', async (t) => {
  const dir = tempDir(t)
  const db = await openDatabase({ databaseUrl: undefined, schema: 'public', dataDir: join(dir, 'pglite') })
  t.teardown(async () => { await db.close() })
  const migrations = readMigrations()

  t.equal(await migrationsApplied(db).catch(() => false), false, 'not ready before migrating')
  const first = await migrate(db)
  t.same(first, { applied: migrations.map((m) => m.name), alreadyApplied: [] })
  t.equal(await migrationsApplied(db), true)

  const rows = await recorded(db)
  t.same(rows.map((row) => row.migration_name), migrations.map((m) => m.name))
  for (const row of rows) {
    t.equal(row.checksum, sha256(readFileSync(join(MIGRATIONS_DIR, row.migration_name, 'migration.sql'))), `${row.migration_name} checksum`)
    t.match(row.id, /^[0-9a-f-]{36}$/)
    t.ok(row.finished_at instanceof Date && row.finished_at >= row.started_at)
    t.equal(row.rolled_back_at, null)
    t.equal(row.applied_steps_count, 1)
  }

  const second = await migrate(db)
  t.same(second, { applied: [], alreadyApplied: migrations.map((m) => m.name) })
  t.equal((await recorded(db)).length, migrations.length, 'no row added')

  // The same process cannot open the data directory twice.
  const again = openDatabase({ databaseUrl: undefined, schema: 'public', dataDir: join(dir, 'pglite') })
  await t.rejects(again, DatabaseInUseError)
  await t.rejects(again, { message: /already open in this process/ })
})

t.test('PGlite: a lock file left by a dead process is taken over', async (t) => {
  const dir = join(tempDir(t), 'pglite')
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
  const deadPid = Number(dead.stdout)
  t.ok(deadPid > 0)
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'pglite.lock'), String(deadPid))
  const db = await openDatabase({ databaseUrl: undefined, schema: 'public', dataDir: dir })
  t.equal(readFileSync(join(dir, 'pglite.lock'), 'utf8'), String(process.pid), 'the lock now names this process')
  await db.close()
  t.throws(() => readFileSync(join(dir, 'pglite.lock')), { code: 'ENOENT' }, 'close releases it')
})

t.test('Postgres: the table is the one prisma migrate deploy creates', async (t) => {
  const [db] = await postgres(t)
  if (db === undefined) throw new Error('no database')
  await migrate(db)
  const { rows } = await db.sql.query<{ column_name: string, data_type: string, character_maximum_length: number | null, is_nullable: string }>(
    `SELECT column_name, data_type, character_maximum_length, is_nullable FROM information_schema.columns
      WHERE table_schema = $1 AND table_name = '_prisma_migrations' ORDER BY ordinal_position`, [db.schema])
  t.same(rows.map((r) => [r.column_name, r.data_type, r.character_maximum_length, r.is_nullable]), [
    ['id', 'character varying', 36, 'NO'],
    ['checksum', 'character varying', 64, 'NO'],
    ['finished_at', 'timestamp with time zone', null, 'YES'],
    ['migration_name', 'character varying', 255, 'NO'],
    ['logs', 'text', null, 'YES'],
    ['rolled_back_at', 'timestamp with time zone', null, 'YES'],
    ['started_at', 'timestamp with time zone', null, 'NO'],
    ['applied_steps_count', 'integer', null, 'NO']
  ])
  t.same((await migrate(db)).applied, [], 'idempotent on Postgres too')
})

t.test('Postgres: two instances migrating one fresh schema at once apply each migration once', async (t) => {
  const migrations = readMigrations().map((m) => m.name)
  for (let round = 0; round < 5; round++) {
    const dbs = await postgres(t, 2)
    const results = await Promise.all(dbs.map(async (db) => await migrate(db)))
    const applied = results.flatMap((r) => r.applied).sort()
    t.same(applied, migrations, `round ${round}: every migration applied exactly once between them`)
    for (const result of results) {
      t.same([...result.applied, ...result.alreadyApplied].sort(), migrations, 'each saw every migration, applied or already there')
    }
    const rows = await recorded(dbs[0] as Database)
    t.same(rows.map((row) => row.migration_name), migrations, 'one row per migration')
  }
})

t.test('Postgres: a failing migration rolls back entirely and is not recorded', async (t) => {
  const [db] = await postgres(t)
  if (db === undefined) throw new Error('no database')
  const good: Migration = { name: '20990101000000_good', sql: 'CREATE TABLE good (id int);', checksum: sha256('CREATE TABLE good (id int);') }
  const badSql = 'CREATE TABLE half_done (id int);\nSELECT 1/0;'
  const bad: Migration = { name: '20990101000001_bad', sql: badSql, checksum: sha256(badSql) }
  await t.rejects(migrate(db, [good, bad]), { name: 'MigrationError', message: /migration 20990101000001_bad failed: division by zero/ })
  t.same((await recorded(db)).map((row) => row.migration_name), ['20990101000000_good'], 'the good one stays applied')
  const tables = await db.sql.query<{ table_name: string }>(
    "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_name IN ('good', 'half_done')", [db.schema])
  t.same(tables.rows.map((r) => r.table_name), ['good'], 'nothing of the failed one is left')

  // A migration edited after it was applied is refused, not re-run.
  const edited: Migration = { ...good, sql: good.sql + '\n-- edited', checksum: sha256(good.sql + '\n-- edited') }
  await t.rejects(migrate(db, [edited]), MigrationError)
  await t.rejects(migrate(db, [edited]), { message: /migration 20990101000000_good was changed after it was applied/ })

  // A row that started but never finished (a crash in `prisma migrate deploy`) needs a human.
  await db.sql.query(`INSERT INTO "_prisma_migrations" (id, checksum, migration_name) VALUES ('00000000-0000-0000-0000-000000000001', $1, '20990101000002_stuck')`, [sha256('x')])
  await t.rejects(migrate(db, [good, { name: '20990101000002_stuck', sql: 'SELECT 1', checksum: sha256('x') }]),
    { message: /20990101000002_stuck started earlier but never finished/ })

  // The advisory lock was released every time: another session can take it at once.
  const other = await db.session()
  try {
    const { rows } = await other.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS ok', [`scopegate:migrate:${db.schema}`])
    t.equal(rows[0]?.ok, true, 'the migration lock is free')
    await other.query('SELECT pg_advisory_unlock(hashtext($1))', [`scopegate:migrate:${db.schema}`])
  } finally {
    other.release()
  }
})
