import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { insertDueJobs, runCounts, waitFor } from './helpers/cron.ts'
import { dropSchema, sharedConfig, startInstances, startServer, TEST_DATABASE_URL, type TestServer } from './helpers/server.ts'

const JOBS = Number(process.env.SCHEDULER_TEST_JOBS ?? 1000)
const BIN = fileURLToPath(new URL('../bin/scopegate.js', import.meta.url))

t.test(`three instances, ${JOBS} jobs due at the same moment: each fires exactly once`, async (t) => {
  const servers = await startInstances(t, 3, 'sched3', { logLevel: 'warn' })
  const [a] = servers as [TestServer]
  const ids = await insertDueJobs(a, JOBS, Date.now() + 1500)
  const done = await waitFor(async () => (await runCounts(a, ids)).okRuns >= JOBS, 60_000, 200)
  const counts = await runCounts(a, ids)
  t.ok(done, 'every job ran')
  t.equal(counts.jobsWithOneLiveRun, JOBS, 'every job has exactly one run')
  t.equal(counts.jobsWithMoreThanOne, 0, 'no job ran twice')
  t.equal(counts.okRuns, JOBS)
  const { rows } = await a.app.db.sql.query<{ n: number }>('SELECT count(*)::int AS n FROM cron_fires WHERE job_id = ANY($1::uuid[])', [ids])
  t.equal(rows[0]?.n, JOBS, 'one fire recorded per job')
  t.comment(`runs per instance: ${JSON.stringify(Object.values(counts.byInstance))}`)
})

/** A real gateway process, so that it can be killed without a goodbye. */
function spawnInstance (env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'serve'], {
    env: { ...process.env, ...env, PORT: '0', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  return new Promise((resolve, reject) => {
    let out = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      if (out.includes('Server listening')) resolve(child)
    })
    child.stderr?.on('data', (chunk: Buffer) => { out += chunk.toString() })
    child.once('exit', (code) => reject(new Error(`instance exited early (${code}): ${out}`)))
  })
}

t.test(`an instance killed mid-run: its runs are abandoned and run again elsewhere, still once per job`, async (t) => {
  const shared = sharedConfig('schedkill')
  const leaseMs = 1500
  const env = {
    DATABASE_URL: TEST_DATABASE_URL,
    DATABASE_SCHEMA: shared.databaseSchema,
    GATEWAY_TOKEN: shared.gatewayToken,
    JWT_SECRET: shared.jwtSecret,
    CRON_LEASE_MS: String(leaseMs)
  }
  // An in-process instance to insert and observe; two more as processes, one of which dies.
  const observer = await startServer(t, { ...shared, logLevel: 'warn', cronLeaseMs: leaseMs }, true)
  const children = [await spawnInstance(env), await spawnInstance(env)]
  t.teardown(async () => {
    for (const child of children) child.kill('SIGKILL')
    await observer.close()
    await dropSchema(shared.databaseSchema)
  })
  const victim = children[0] as ChildProcess
  const ids = await insertDueJobs(observer, JOBS, Date.now() + 1500)
  const victimClaimed = await waitFor(async () => {
    const { rows } = await observer.app.db.sql.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM cron_runs WHERE instance LIKE '%:' || $1 || ':%'", [String(victim.pid)])
    return (rows[0]?.n ?? 0) > 0
  }, 20_000, 2)
  t.ok(victimClaimed, 'the victim claimed runs before it was killed')
  victim.kill('SIGKILL')
  const done = await waitFor(async () => (await runCounts(observer, ids)).okRuns >= JOBS, 60_000, 200)
  const counts = await runCounts(observer, ids)
  t.ok(done, 'every job ran despite the killed instance')
  t.equal(counts.jobsWithOneLiveRun, JOBS, 'every due occurrence has exactly one run that is not abandoned')
  t.equal(counts.jobsWithMoreThanOne, 0, 'no job ran twice')
  t.comment(`abandoned runs taken over: ${counts.abandoned}; ok runs per instance: ${JSON.stringify(Object.values(counts.byInstance))}`)
})
