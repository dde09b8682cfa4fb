import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { TestDevice } from './helpers/device.ts'
import { insertDueJobs, runCounts, waitFor } from './helpers/cron.ts'
import { dropSchema, startServer, TEST_DATABASE_URL, uniqueSchema } from './helpers/server.ts'

const BIN = fileURLToPath(new URL('../bin/scopegate.js', import.meta.url))

interface Instance { child: ChildProcess, port: number, output: () => string, exited: Promise<{ code: number | null, atMs: number }> }

function spawnInstance (env: Record<string, string>): Promise<Instance> {
  const child = spawn(process.execPath, [BIN, 'serve'], { env: { ...process.env, ...env, PORT: '0', LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const exited = new Promise<{ code: number | null, atMs: number }>((resolve) => child.once('exit', (code) => resolve({ code, atMs: Date.now() })))
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const match = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(out)
      if (match !== null) resolve({ child, port: Number(match[1]), output: () => out, exited })
    })
    child.stderr?.on('data', (chunk: Buffer) => { out += chunk.toString() })
    void exited.then(({ code }) => reject(new Error(`instance exited early (${code}): ${out}`)))
  })
}

t.test('SIGTERM: sockets get shutdown then 1012, running jobs finish or stay for another instance, exit 0', async (t) => {
  const shared = { databaseSchema: uniqueSchema('shutdown'), gatewayToken: randomBytes(24).toString('base64url'), jwtSecret: randomBytes(32).toString('base64url') }
  const env = {
    DATABASE_URL: TEST_DATABASE_URL,
    DATABASE_SCHEMA: shared.databaseSchema,
    GATEWAY_TOKEN: shared.gatewayToken,
    JWT_SECRET: shared.jwtSecret,
    CRON_LEASE_MS: '2000',
    SHUTDOWN_GRACE_MS: '8000'
  }
  const instance = await spawnInstance(env)
  t.teardown(async () => {
    instance.child.kill('SIGKILL')
    await dropSchema(shared.databaseSchema)
  })
  // An in-process instance that inserts, observes, and later finishes what is left.
  const observer = await startServer(t, { ...shared, logLevel: 'warn', cronLeaseMs: 2000 }, true)
  await observer.app.scheduler.stop()

  const probe = await new TestDevice().connect(`ws://127.0.0.1:${instance.port}/`, { token: shared.gatewayToken, noDevice: true })
  t.equal(probe.res.ok, true)

  const jobs = 600
  const ids = await insertDueJobs(observer, jobs, Date.now() + 1000)
  const started = await waitFor(async () => {
    const { rows } = await observer.app.db.sql.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM cron_runs WHERE instance LIKE '%:' || $1 || ':%'", [String(instance.child.pid)])
    return (rows[0]?.n ?? 0) > 0
  }, 15_000, 2)
  t.ok(started, 'the instance was running jobs when it got SIGTERM')
  const signalledAt = Date.now()
  instance.child.kill('SIGTERM')

  const shutdown = await probe.socket.event('shutdown')
  t.match(shutdown.payload, { reason: 'service restart' })
  t.same(await probe.socket.closed, { code: 1012, reason: 'service restart' })
  const { code, atMs } = await instance.exited
  t.equal(code, 0, 'exit code 0')
  t.ok(atMs - signalledAt < 8000, `exited ${atMs - signalledAt} ms after SIGTERM, within the grace period`)
  t.match(instance.output(), /shut down cleanly/)

  const { rows } = await observer.app.db.sql.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM cron_runs WHERE status = 'running' AND instance LIKE '%:' || $1 || ':%'", [String(instance.child.pid)])
  t.equal(rows[0]?.n, 0, 'no run was left half-done by the stopped instance')

  observer.app.scheduler.start()
  const done = await waitFor(async () => (await runCounts(observer, ids)).okRuns >= jobs, 30_000, 200)
  const counts = await runCounts(observer, ids)
  t.ok(done, 'the jobs it did not get to are run by another instance: none lost')
  t.equal(counts.jobsWithOneLiveRun, jobs, 'each job ran exactly once: none doubled')
  t.equal(counts.abandoned, 0, 'nothing had to be taken over after a lease expired')
})

t.test('a graceful close answers the requests it has read before it says shutdown and closes 1012, and nothing after', async (t) => {
  const server = await startServer(t)
  const probe = await new TestDevice().connect(server.wsUrl, { token: server.config.gatewayToken, noDevice: true })
  const ids = Array.from({ length: 20 }, (_, i) => `h${i}`)
  for (const id of ids) probe.socket.send({ type: 'req', id, method: 'health' })
  // Once the first answer is back the server is reading this socket; requests it has not read yet
  // when the close begins are simply never answered (nothing may follow a close frame).
  await probe.socket.next((frame) => frame.type === 'res' && frame.id === 'h0')
  await server.close()
  const closed = await probe.socket.closed
  t.same(closed, { code: 1012, reason: 'service restart' })
  const frames = probe.socket.frames
  const shutdownAt = frames.findIndex((frame) => frame.event === 'shutdown')
  t.ok(shutdownAt > 0, 'a shutdown event came before the close')
  t.equal(frames.length - 1, shutdownAt, 'nothing was sent after the shutdown event')
  const answers = frames.filter((frame) => frame.type === 'res')
  t.ok(answers.length >= 1, `${answers.length} of ${ids.length} requests answered before shutdown`)
  for (const res of answers) {
    t.ok(res.ok === true || res.error?.code === 'UNAVAILABLE', `${String(res.id)} answered ok, or UNAVAILABLE (retryable) once draining`)
  }
})
