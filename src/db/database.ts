import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PGlite } from '@electric-sql/pglite'
import { PrismaPg } from '@prisma/adapter-pg'
import pg from 'pg'
import { PrismaPGlite } from 'pglite-prisma-adapter'
import { PrismaClient } from '../generated/prisma/client.ts'

/** The raw SQL surface shared by a pg pool, a pg client and PGlite. */
export interface SqlClient {
  query<R = Record<string, unknown>>(text: string, params?: unknown[]): Promise<{ rows: R[] }>
}

/**
 * A hot query run as a named prepared statement on Postgres (parsed and
 * planned once per pooled connection instead of once per call); PGlite runs
 * it as a plain query.
 */
export interface PreparedQuery {
  name: string
  text: string
}

export interface HotSqlClient extends SqlClient {
  prepared<R = Record<string, unknown>>(query: PreparedQuery, params: unknown[]): Promise<{ rows: R[] }>
}

/** One connection on which a migration runs start to end. */
export interface MigrationSession extends SqlClient {
  exec(sql: string): Promise<void>
  release(): void
}

export interface Database {
  kind: 'postgres' | 'pglite'
  schema: string
  prisma: PrismaClient
  /** For the hot path (one indexed query per handshake) and for locks. */
  sql: HotSqlClient
  session(): Promise<MigrationSession>
  /** Subscribes to a notification channel; resolves once LISTEN is in place. */
  listen(channel: string, onPayload: (payload: string) => void, onError: (err: Error) => void): Promise<Listener>
  /** Answers quickly when the database is reachable (readiness). */
  ping(): Promise<void>
  /** The pg pool's clients (metrics); null on PGlite, which has no pool. */
  poolStats(): PoolStats | null
  notify(channel: string, payload: string): Promise<void>
  close(): Promise<void>
}

/** A LISTEN subscription: its own connection on Postgres, so it can be lost and checked. */
export interface Listener {
  ping(): Promise<void>
  close(): Promise<void>
}

export interface PoolStats {
  total: number
  idle: number
  waiting: number
}

export class DatabaseInUseError extends Error {
  override name = 'DatabaseInUseError'
}

export interface DatabaseOptions {
  databaseUrl: string | undefined
  schema: string
  dataDir: string
  poolSize?: number
}

export async function openDatabase (options: DatabaseOptions): Promise<Database> {
  return options.databaseUrl === undefined
    ? await openPGlite(options.dataDir)
    : openPostgres(options.databaseUrl, options.schema, options.poolSize ?? 10)
}

/** A parameter of a PGlite EXECUTE as an SQL literal: text escaped by pg's escapeLiteral, numbers, booleans, NULL. */
export function sqlLiteral (value: unknown): string {
  if (value === null || value === undefined) return 'NULL'
  if (typeof value === 'string') return pg.escapeLiteral(value)
  if (typeof value === 'number' && Number.isFinite(value)) return String(value)
  if (typeof value === 'boolean') return value ? 'TRUE' : 'FALSE'
  throw new TypeError(`no SQL literal for a parameter of type ${typeof value}`)
}

function quoteIdent (name: string): string {
  return `"${name.replace(/"/g, '""')}"`
}

function openPostgres (connectionString: string, schema: string, max: number): Database {
  const clientConfig: pg.ClientConfig = { connectionString, options: `-c search_path=${quoteIdent(schema)}` }
  const pool = new pg.Pool({ ...clientConfig, max, connectionTimeoutMillis: 5000, application_name: 'scopegate' })
  // An idle client that loses its server emits here; the pool replaces it.
  pool.on('error', () => {})
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool, { schema }) })
  const listeners = new Set<pg.Client>()
  return {
    kind: 'postgres',
    schema,
    prisma,
    sql: {
      query: async <R>(text: string, params?: unknown[]) => await pool.query(text, params) as unknown as { rows: R[] },
      prepared: async <R>(query: PreparedQuery, params: unknown[]) => await pool.query({ name: query.name, text: query.text, values: params }) as unknown as { rows: R[] }
    },
    async session () {
      const client = await pool.connect()
      return {
        query: async <R>(text: string, params?: unknown[]) => await client.query(text, params) as unknown as { rows: R[] },
        exec: async (sql) => { await client.query(sql) },
        release: () => client.release()
      }
    },
    async listen (channel, onPayload, onError) {
      // Named so that operators (and tests) can tell it apart in pg_stat_activity.
      const client = new pg.Client({ ...clientConfig, connectionTimeoutMillis: 5000, application_name: `scopegate-listener:${schema}`.slice(0, 63) })
      let failed = false
      let established = false
      const fail = (err: Error): void => {
        if (failed || !established || !listeners.has(client)) return
        failed = true
        listeners.delete(client)
        void client.end().catch(() => {})
        onError(err)
      }
      client.on('error', fail)
      client.on('end', () => fail(new Error('notification listener disconnected')))
      client.on('notification', (msg) => { if (msg.channel === channel && msg.payload !== undefined) onPayload(msg.payload) })
      listeners.add(client)
      try {
        await client.connect()
        await client.query(`LISTEN ${quoteIdent(channel)}`)
        established = true
      } catch (err) {
        listeners.delete(client)
        await client.end().catch(() => {})
        throw err
      }
      return {
        ping: async () => { await client.query('SELECT 1') },
        close: async () => {
          listeners.delete(client)
          await client.end().catch(() => {})
        }
      }
    },
    async ping () {
      // Every pooled client busy (a burst of slow queries) is not a lost
      // database: ask over a connection of its own rather than queue behind them.
      if (pool.idleCount === 0 && pool.totalCount >= max) {
        const client = new pg.Client({ ...clientConfig, connectionTimeoutMillis: 5000, application_name: 'scopegate-ping' })
        client.on('error', () => {})
        try {
          await client.connect()
          await client.query('SELECT 1')
        } finally {
          await client.end().catch(() => {})
        }
        return
      }
      await pool.query('SELECT 1')
    },
    poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    async notify (channel, payload) {
      await pool.query('SELECT pg_notify($1, $2)', [channel, payload])
    },
    async close () {
      await Promise.all([...listeners].map(async (client) => {
        listeners.delete(client)
        await client.end().catch(() => {})
      }))
      await prisma.$disconnect()
      await pool.end()
    }
  }
}

/**
 * PGlite runs inside this process; a second process on the same data
 * directory would corrupt it, so a pid lock file keeps it out.
 */
async function openPGlite (dataDir: string): Promise<Database> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  const lockFile = join(dataDir, 'pglite.lock')
  acquireLock(lockFile)
  let db: PGlite
  try {
    db = await PGlite.create(join(dataDir, 'pglite'))
  } catch (err) {
    rmSync(lockFile, { force: true })
    throw err
  }
  const prisma = new PrismaClient({ adapter: new PrismaPGlite(db) })
  // A hot query is planned once (PREPARE) and run with EXECUTE: in PGlite, parsing and planning the
  // device-access query each time was about half of its cost (700 -> 385 µs here). PGlite takes no
  // bind parameters for EXECUTE, so the values go in as escaped literals (sqlLiteral).
  const prepared = new Map<string, Promise<void>>()
  const prepareOnce = async (query: PreparedQuery): Promise<void> => {
    let done = prepared.get(query.name)
    if (done === undefined) {
      done = db.exec(`PREPARE ${quoteIdent(query.name)} AS ${query.text}`).then(() => {})
      done.catch(() => prepared.delete(query.name))
      prepared.set(query.name, done)
    }
    await done
  }
  return {
    kind: 'pglite',
    schema: 'public',
    prisma,
    sql: {
      query: async (text, params) => await db.query(text, params),
      prepared: async <R>(query: PreparedQuery, params: unknown[]) => {
        const execute = `EXECUTE ${quoteIdent(query.name)}(${params.map(sqlLiteral).join(', ')})`
        await prepareOnce(query)
        try {
          return await db.query<R>(execute)
        } catch (err) {
          // 26000: the statement is gone (a DEALLOCATE on the session): prepare it again, once.
          if ((err as { code?: unknown }).code !== '26000') throw err
          prepared.delete(query.name)
          await prepareOnce(query)
          return await db.query<R>(execute)
        }
      }
    },
    async session () {
      // PGlite is a single session: the migration runs on it directly.
      return {
        query: (text, params) => db.query(text, params),
        exec: async (sql) => { await db.exec(sql) },
        release: () => {}
      }
    },
    async listen (channel, onPayload) {
      const unlisten = await db.listen(channel, onPayload)
      // In-process: it cannot be lost on its own.
      return { ping: async () => {}, close: async () => { await unlisten() } }
    },
    async ping () {
      await db.query('SELECT 1')
    },
    poolStats: () => null,
    async notify (channel, payload) {
      await db.query('SELECT pg_notify($1, $2)', [channel, payload])
    },
    async close () {
      await prisma.$disconnect()
      await db.close()
      rmSync(lockFile, { force: true })
    }
  }
}

function acquireLock (lockFile: string): void {
  try {
    writeFileSync(lockFile, String(process.pid), { flag: 'wx', mode: 0o600 })
    return
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  const holder = Number(readFileSync(lockFile, 'utf8'))
  if (Number.isInteger(holder) && holder !== process.pid && isAlive(holder)) {
    throw new DatabaseInUseError(
      `the embedded database in ${join(lockFile, '..')} is in use by process ${holder}; ` +
      'PGlite serves one process only: stop it, use another DATA_DIR, or set DATABASE_URL to run several instances')
  }
  if (holder === process.pid) throw new DatabaseInUseError(`the embedded database in ${join(lockFile, '..')} is already open in this process`)
  writeFileSync(lockFile, String(process.pid), { mode: 0o600 })
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
