import { randomUUID } from 'node:crypto'
import type { TestServer } from './server.ts'

/**
 * Inserts `count` one-shot jobs due at `dueAtMs` in one statement (the REST
 * route would take seconds for thousands), then wakes every scheduler the
 * way cron.add does.
 */
export async function insertDueJobs (server: TestServer, count: number, dueAtMs: number): Promise<string[]> {
  const ids = Array.from({ length: count }, () => randomUUID())
  const at = new Date(dueAtMs).toISOString()
  await server.app.db.sql.query(
    `INSERT INTO cron_jobs (id, name, enabled, schedule, payload, delete_after_run, created_at, updated_at, next_run_at)
     SELECT id, 'load ' || ord, true, json_build_object('kind', 'at', 'at', $2::text), '{"kind":"systemEvent","text":"load"}'::jsonb,
            false, now(), now(), $2::timestamptz
     FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, ord)`, [ids, at])
  await server.app.bus.publish({ kind: 'cron.job', action: 'added', jobId: ids[0] ?? '', nextRunAtMs: dueAtMs })
  return ids
}

export interface RunCounts {
  jobsWithOneLiveRun: number
  jobsWithMoreThanOne: number
  okRuns: number
  abandoned: number
  byInstance: Record<string, number>
}

export async function runCounts (server: TestServer, ids: string[]): Promise<RunCounts> {
  const { rows } = await server.app.db.sql.query<{ job_id: string, live: number, ok: number, abandoned: number }>(
    `SELECT job_id::text, count(*) FILTER (WHERE status <> 'abandoned')::int AS live, count(*) FILTER (WHERE status = 'ok')::int AS ok,
            count(*) FILTER (WHERE status = 'abandoned')::int AS abandoned
     FROM cron_runs WHERE job_id = ANY($1::uuid[]) GROUP BY job_id`, [ids])
  const byInstance = await server.app.db.sql.query<{ instance: string, n: number }>(
    `SELECT instance, count(*)::int AS n FROM cron_runs WHERE job_id = ANY($1::uuid[]) AND status = 'ok' GROUP BY instance`, [ids])
  return {
    jobsWithOneLiveRun: rows.filter((row) => row.live === 1).length,
    jobsWithMoreThanOne: rows.filter((row) => row.live > 1).length,
    okRuns: rows.reduce((sum, row) => sum + row.ok, 0),
    abandoned: rows.reduce((sum, row) => sum + row.abandoned, 0),
    byInstance: Object.fromEntries(byInstance.rows.map((row) => [row.instance, row.n]))
  }
}

export async function waitFor (check: () => Promise<boolean>, timeoutMs: number, intervalMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
  return await check()
}
