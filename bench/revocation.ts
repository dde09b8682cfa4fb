// Revocation latency across instances: the time from the admin call on
// instance A (REST DELETE of a scope) to the close frame on instance B.
// Prints p50/p99/max over TRIALS trials (default 200) on the Postgres at
// TEST_DATABASE_URL. A figure, never a timed assertion.
import { randomBytes } from 'node:crypto'
import { TestDevice } from '../test/helpers/device.ts'
import { dropSchema, startServer, uniqueSchema, type TestServer } from '../test/helpers/server.ts'

const TRIALS = Number(process.env.TRIALS ?? 200)

function percentile (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN
}

async function main (): Promise<void> {
  const teardowns: Array<() => unknown> = []
  const t = { teardown: (fn: () => unknown) => { teardowns.push(fn) } }
  const shared = { databaseSchema: uniqueSchema('benchrevoke'), gatewayToken: randomBytes(24).toString('base64url'), jwtSecret: randomBytes(32).toString('base64url'), logLevel: 'warn' as const }
  const a: TestServer = await startServer(t, shared, true)
  const b: TestServer = await startServer(t, shared, true)
  try {
    const device = new TestDevice()
    const scopes = ['operator.read', 'operator.write']
    const refused = await device.connect(a.wsUrl, { token: a.config.gatewayToken, scopes })
    await refused.socket.closed
    await a.api('POST', `/api/v1/pairing-requests/${refused.res.error.details.requestId}/approve`)
    const first = await device.connect(a.wsUrl, { token: a.config.gatewayToken, scopes })
    const deviceToken: string = first.res.payload.auth.deviceToken
    await first.socket.close()

    const samples: number[] = []
    for (let trial = 0; trial < TRIALS; trial++) {
      const onB = await device.connect(b.wsUrl, { deviceToken, scopes })
      if (onB.res.ok !== true) throw new Error(`connect failed: ${JSON.stringify(onB.res)}`)
      const started = performance.now()
      const revoke = a.api('DELETE', `/api/v1/devices/${device.id}/roles/operator/scopes/operator.write`)
      const closed = await onB.socket.closed
      samples.push(performance.now() - started)
      if (closed.reason !== 'scope revoked (operator.write)') throw new Error(`unexpected close ${JSON.stringify(closed)}`)
      await revoke
      await a.api('POST', `/api/v1/devices/${device.id}/roles/operator/scopes`, { body: { scopes: ['operator.write'] } })
    }
    samples.sort((x, y) => x - y)
    const result = {
      bench: 'revocation-a-to-b',
      database: 'postgres',
      trials: samples.length,
      p50Ms: +percentile(samples, 50).toFixed(2),
      p99Ms: +percentile(samples, 99).toFixed(2),
      maxMs: +(samples.at(-1) ?? NaN).toFixed(2),
      targetP99Ms: 100
    }
    console.log(`revocation A->B over ${result.trials} trials: p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms, max ${result.maxMs} ms (target p99 <= 100 ms)`)
    console.log(JSON.stringify(result))
  } finally {
    await a.close()
    await b.close()
    await dropSchema(shared.databaseSchema)
    for (const fn of teardowns) await fn()
  }
}

await main()
