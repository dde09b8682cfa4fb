import { createHash, randomUUID } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Database } from './database.ts'

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../prisma/migrations/', import.meta.url))

export interface Migration {
  name: string
  sql: string
  checksum: string
}

export function readMigrations (dir: string = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort()
    .map((name) => {
      const sql = readFileSync(`${dir}/${name}/migration.sql`, 'utf8')
      return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') }
    })
}

// The table exactly as `prisma migrate deploy` creates it, so both agree.
const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
  "id" VARCHAR(36) PRIMARY KEY NOT NULL,
  "checksum" VARCHAR(64) NOT NULL,
  "finished_at" TIMESTAMPTZ,
  "migration_name" VARCHAR(255) NOT NULL,
  "logs" TEXT,
  "rolled_back_at" TIMESTAMPTZ,
  "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
  "applied_steps_count" INTEGER NOT NULL DEFAULT 0
)`

interface AppliedRow {
  migration_name: string
  checksum: string
  finished_at: Date | null
}

export interface MigrationResult {
  applied: string[]
  alreadyApplied: string[]
}

export class MigrationError extends Error {
  override name = 'MigrationError'
}

/**
 * Applies pending migrations under a Postgres advisory lock, so instances that
 * start together take turns and each migration runs once. Each migration and
 * its `_prisma_migrations` row commit together.
 */
export async function migrate (db: Database, migrations: Migration[] = readMigrations()): Promise<MigrationResult> {
  const session = await db.session()
  const schema = `"${db.schema.replace(/"/g, '""')}"`
  const lockKey = `scopegate:migrate:${db.schema}`
  try {
    // The lock comes first: CREATE SCHEMA IF NOT EXISTS is not safe against a
    // concurrent one (duplicate key in pg_namespace), so it must run under it.
    await session.query('SELECT pg_advisory_lock(hashtext($1))', [lockKey])
    try {
      await session.exec(`CREATE SCHEMA IF NOT EXISTS ${schema}`)
      await session.exec(`SET search_path TO ${schema}`)
      await session.exec(MIGRATIONS_TABLE)
      const { rows } = await session.query<AppliedRow>(
        'SELECT migration_name, checksum, finished_at FROM "_prisma_migrations" WHERE rolled_back_at IS NULL')
      const applied = new Map(rows.map((row) => [row.migration_name, row]))
      const result: MigrationResult = { applied: [], alreadyApplied: [] }
      for (const migration of migrations) {
        const row = applied.get(migration.name)
        if (row?.finished_at) {
          if (row.checksum !== migration.checksum) {
            throw new MigrationError(`migration ${migration.name} was changed after it was applied (checksum differs); add a new migration instead`)
          }
          result.alreadyApplied.push(migration.name)
          continue
        }
        if (row) throw new MigrationError(`migration ${migration.name} started earlier but never finished; resolve it by hand before starting`)
        await applyOne(session, migration)
        result.applied.push(migration.name)
      }
      return result
    } finally {
      await session.query('SELECT pg_advisory_unlock(hashtext($1))', [lockKey])
    }
  } finally {
    session.release()
  }
}

async function applyOne (session: Awaited<ReturnType<Database['session']>>, migration: Migration): Promise<void> {
  await session.exec('BEGIN')
  try {
    await session.exec(migration.sql)
    await session.query(
      `INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, started_at, applied_steps_count)
       VALUES ($1, $2, now(), $3, now(), 1)`,
      [randomUUID(), migration.checksum, migration.name])
    await session.exec('COMMIT')
  } catch (err) {
    await session.exec('ROLLBACK')
    throw new MigrationError(`migration ${migration.name} failed: ${(err as Error).message}`)
  }
}

/** Whether every migration in the repo is applied (for readiness). */
export async function migrationsApplied (db: Database, migrations: Migration[] = readMigrations()): Promise<boolean> {
  const { rows } = await db.sql.query<{ migration_name: string }>(
    'SELECT migration_name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL')
  const done = new Set(rows.map((row) => row.migration_name))
  return migrations.every((migration) => done.has(migration.name))
}
