// Scheduler throughput and lag with 3 instances on one Postgres: JOBS jobs
// (default 5000, no owner) come due at the same moment; a reader connected to
// instance A receives every cron.fire. Prints fires/s and due-to-delivery lag
// (p50/p99), plus how the runs spread over the instances. A figure, not a test.
import { randomBytes } from 'node:crypto'
import { TestDevice } from '../test/helpers/device.ts'
import { insertDueJobs, runCounts, waitFor } from '../test/helpers/cron.ts'
import { dropSchema, startServer, uniqueSchema, type TestServer } from '../test/helpers/server.ts'

const JOBS = Number(process.env.JOBS ?? 5000)
const INSTANCES = Number(process.env.INSTANCES ?? 3)

function percentile (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN
}

async function main (): Promise<void> {
  const t = { teardown: () => {} }
  const shared = { databaseSchema: uniqueSchema('benchsched'), gatewayToken: randomBytes(24).toString('base64url'), jwtSecret: randomBytes(32).toString('base64url'), logLevel: 'warn' as const }
  const servers: TestServer[] = []
  for (let i = 0; i < INSTANCES; i++) servers.push(await startServer(t, shared, true))
  const a = servers[0] as TestServer
  try {
    const reader = new TestDevice()
    const refused = await reader.connect(a.wsUrl, { token: a.config.gatewayToken, scopes: ['operator.read'] })
    await refused.socket.closed
    await a.api('POST', `/api/v1/pairing-requests/${refused.res.error.details.requestId}/approve`)
    const { socket } = await reader.connect(a.wsUrl, { token: a.config.gatewayToken, scopes: ['operator.read'] })
    const received: number[] = []
    socket.ws.on('message', (data) => { if (data.toString().includes('"cron.fire"')) received.push(Date.now()) })

    const dueAtMs = Date.now() + 2000
    const ids = await insertDueJobs(a, JOBS, dueAtMs)
    await waitFor(async () => received.length >= JOBS, 300_000, 50)
    const lags = received.map((at) => at - dueAtMs).sort((x, y) => x - y)
    const spanMs = Math.max(1, (received.at(-1) ?? dueAtMs) - dueAtMs)
    const counts = await runCounts(a, ids)
    const result = {
      bench: 'scheduler',
      database: 'postgres',
      instances: INSTANCES,
      jobs: JOBS,
      delivered: received.length,
      firesPerSecond: Math.round(received.length / (spanMs / 1000)),
      lagP50Ms: percentile(lags, 50),
      lagP99Ms: percentile(lags, 99),
      jobsRunTwice: counts.jobsWithMoreThanOne,
      runsPerInstance: Object.values(counts.byInstance)
    }
    console.log(`scheduler, ${INSTANCES} instances, ${JOBS} jobs due at once: ${result.firesPerSecond} fires/s, due-to-delivery lag p50 ${result.lagP50Ms} ms, p99 ${result.lagP99Ms} ms, jobs run twice: ${result.jobsRunTwice}, runs per instance ${JSON.stringify(result.runsPerInstance)}`)
    console.log(JSON.stringify(result))
    await socket.close()
  } finally {
    for (const server of servers) await server.close()
    await dropSchema(shared.databaseSchema)
  }
}

await main()
