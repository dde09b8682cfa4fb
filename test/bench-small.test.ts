// The benchmark scripts (npm run bench, bench:ab, bench:profile, bench:variants) in small:
// each runs as it would from the command line, with tiny loads, and must end
// with its JSON line holding every figure it documents. Speed is never
// asserted (these are figures, not timed tests); what must hold at any speed
// is: the counts add up, no cron job runs twice, every revocation closes.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { openGateway, rpcLoad, startGateway } from '../bench/lib.ts'

t.setTimeout(600_000)

const ROOT = fileURLToPath(new URL('..', import.meta.url))

interface Run { code: number | null, stdout: string, stderr: string, figures: Record<string, unknown> }

async function runBench (script: string, env: Record<string, string>): Promise<Run> {
  const child = spawn(process.execPath, ['--import', 'tsx', `bench/${script}`], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  const last = stdout.trim().split('\n').filter((line) => line.startsWith('{')).at(-1) ?? '{}'
  return { code, stdout, stderr, figures: JSON.parse(last) as Record<string, unknown> }
}

function positive (t: Pick<typeof import('tap').default, 'ok'>, figures: Record<string, unknown>, keys: string[]): void {
  for (const key of keys) {
    const value = figures[key]
    t.ok(typeof value === 'number' && Number.isFinite(value) && value > 0, `${key} is a positive number (${String(value)})`)
  }
}

t.test('the benchmark client is the same for both servers: gateway sockets carry no listener of their own into the RPC load', async (t) => {
  // The bare side is a plain ws socket; a gateway socket that kept a test helper's frame recorder would
  // parse and keep every answer, charging the gateway's figures with the client's work.
  const gateway = await startGateway()
  t.teardown(gateway.cleanup)
  const sockets = await openGateway(gateway.server.port, gateway.device, gateway.deviceToken, 3)
  for (const ws of sockets) {
    t.equal(ws.readyState, ws.OPEN, 'admitted and open')
    t.equal(ws.listenerCount('message'), 0, 'no message listener left from the handshake')
  }
  const load = await rpcLoad(sockets, 0.2)
  t.ok(load.count > 0, `health calls answered on the open sockets (${load.count})`)
  for (const ws of sockets) ws.terminate()
})

t.test('bench:gateway, small, on Postgres and on PGlite: every figure of the table and the JSON line', async (t) => {
  for (const database of ['postgres', 'pglite']) {
    const run = await runBench('gateway.ts', { BENCH_DB: database, RUNS: '1', RPC_SECONDS: '1', HANDSHAKE_SECONDS: '1', WARM_UP_SECONDS: '0.2', IDLE_CONNECTIONS: '100', RPC_CONNECTIONS: '10', HANDSHAKE_CONCURRENCY: '4' })
    t.equal(run.code, 0, `${database}: exit 0 ${run.stderr.slice(-2000)}`)
    t.match(run.figures, { bench: 'gateway-vs-ws', database, runs: 1 })
    positive(t, run.figures, ['rpcRatio', 'rpcP99Ratio', 'gatewayRps', 'bareRps', 'handshakeRatio', 'gatewayHandshakesPerSecond', 'bareHandshakesPerSecond',
      'gatewayHandshakeServerCpuUs', 'bareHandshakeServerCpuUs', 'gatewayHandshakeClientCpuUs', 'bareHandshakeClientCpuUs', 'ed25519VerifyPerSecond'])
    t.ok(Number.isFinite(run.figures.memoryAboveBareKiB), 'memory per connection above bare is a number')
    const lookupsPerQuery = Number(run.figures.lookupsPerQuery)
    t.ok(lookupsPerQuery >= 1, `every device-access query carried at least one handshake's lookup (${lookupsPerQuery})`)
    for (const key of ['gatewayHandshakeOtherCpuUs', 'bareHandshakeOtherCpuUs', 'gatewayHandshakeIdleUs', 'bareHandshakeIdleUs']) {
      const value = run.figures[key]
      t.ok(typeof value === 'number' && Number.isFinite(value) && value >= 0, `${key} is a number, not negative (${String(value)})`)
    }
    t.match(run.stdout, /\| authorized RPC \(health\)/)
    t.match(run.stdout, /\| full handshakes \(paired device\)/)
    t.match(run.stdout, /\| handshakes per device-access query \| \d/)
    t.match(run.stdout, /\| memory per idle conn \(100\)/)
  }
})

t.test('bench:revocation, small: every trial ends in the close frame on the other instance', async (t) => {
  const run = await runBench('revocation.ts', { TRIALS: '5' })
  t.equal(run.code, 0, run.stderr.slice(-2000))
  t.match(run.figures, { bench: 'revocation-a-to-b', trials: 5, targetP99Ms: 100 })
  positive(t, run.figures, ['p50Ms', 'p99Ms', 'maxMs'])
})

t.test('bench:scheduler, small: every job fires once, spread over the instances', async (t) => {
  const run = await runBench('scheduler.ts', { JOBS: '60' })
  t.equal(run.code, 0, run.stderr.slice(-2000))
  t.match(run.figures, { bench: 'scheduler', instances: 3, jobs: 60, delivered: 60, jobsRunTwice: 0 })
  positive(t, run.figures, ['firesPerSecond'])
  const perInstance = run.figures.runsPerInstance as number[]
  t.equal(perInstance.reduce((sum, n) => sum + n, 0), 60, 'the instances ran 60 jobs between them')
})

t.test('bench:variants, small: a Node flag and an environment variable, each against its own baseline', async (t) => {
  const run = await runBench('variants.ts', { VARIANTS: '|--single-threaded-gc;HEALTH_CHECK_INTERVAL_MS=60000', ROUNDS: '1', SECONDS: '1', RPC_CONNECTIONS: '10' })
  t.equal(run.code, 0, run.stderr.slice(-2000))
  t.match(run.figures, { bench: 'variants', rounds: 1, variants: [{ variant: '(as shipped)' }, { variant: '--single-threaded-gc;HEALTH_CHECK_INTERVAL_MS=60000' }] })
  for (const variant of run.figures.variants as Array<Record<string, unknown>>) positive(t, variant, ['rateRatio', 'p99Ratio'])
  t.match(run.stdout, /\| --single-threaded-gc;HEALTH_CHECK_INTERVAL_MS=60000 \| \d/)
})

t.test('bench:ab, small: one build against itself, both loaded at once', async (t) => {
  for (const mode of ['rpc', 'handshake']) {
    const run = await runBench('ab.ts', { B: ROOT, MODE: mode, ROUNDS: '1', SECONDS: '1', RPC_CONNECTIONS: '10', HANDSHAKE_CONCURRENCY: '4' })
    t.equal(run.code, 0, `${mode}: ${run.stderr.slice(-2000)}`)
    t.match(run.figures, { bench: 'ab', mode, rounds: 1 })
    positive(t, run.figures, ['cpuPerOpRatioBoverA', 'rateRatioBoverA', 'p50RatioBoverA', 'p99RatioBoverA'])
  }
})

t.test('bench:profile, small: the handshake profile names the server\'s hottest functions', async (t) => {
  const run = await runBench('profile-handshake.ts', { SECONDS: '1', CONCURRENCY: '4', TOP: '5' })
  t.equal(run.code, 0, run.stderr.slice(-2000))
  t.match(run.stdout, /handshakes at concurrency 4 in 1 s/)
  t.match(run.stdout, /CPU per handshake: server \d+ µs, this client \d+ µs/)
  t.match(run.stdout, /server self time by function\n( +\d+ ms +[\d.]+ µs\/handshake .+\n){5}/)
})
