// The gateway against a bare `ws` server, measured in the same run by the
// same client: authorized RPC throughput and latency, full handshakes per
// second, memory per idle authenticated connection, and the Ed25519 verify
// rate of one core. Each load first runs WARM_UP_SECONDS (1) unmeasured on both
// servers alike. Each figure is the median of RUNS runs (default 3), each
// with its own baseline. Prints a table and one JSON line. A figure, not a test.
//
//   npm run bench:gateway                  # Postgres at TEST_DATABASE_URL
//   BENCH_DB=pglite npm run bench:gateway  # embedded PGlite
import { generateKeyPairSync, sign, verify } from 'node:crypto'
import { loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'
import type { TestDevice } from '../test/helpers/device.ts'
import { metricValue } from '../test/helpers/metrics.ts'
import { collectGarbage, cpuMs, DATABASE, gatewayHandshake, loopFor, machineCpuMs, median, openBare, openGateway, rpcLoad, rssBytes, startGateway, startProcess, type Server } from './lib.ts'

const RUNS = Number(process.env.RUNS ?? 3)
const RPC_CONNECTIONS = Number(process.env.RPC_CONNECTIONS ?? 50)
const RPC_SECONDS = Number(process.env.RPC_SECONDS ?? 5)
const HANDSHAKE_SECONDS = Number(process.env.HANDSHAKE_SECONDS ?? 5)
const HANDSHAKE_CONCURRENCY = Number(process.env.HANDSHAKE_CONCURRENCY ?? 16)
/** Each load first runs this long unmeasured, on both servers alike, so that figures are of JIT-compiled code. */
const WARM_UP_SECONDS = Number(process.env.WARM_UP_SECONDS ?? 1)
const IDLE_CONNECTIONS = Number(process.env.IDLE_CONNECTIONS ?? 2000)
const IDLE_WARM_UP = 200
const IDLE_STEPS = 5
const INSPECT = '--inspect=127.0.0.1:0'
const BARE = fileURLToPath(new URL('./bare-ws-server.mjs', import.meta.url))

async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

function closeAll (sockets: WebSocket[]): void {
  for (const ws of sockets) ws.terminate()
}

/** Connect-and-close loops with `concurrency` clients for `seconds`. */
interface HandshakeFigures {
  rate: number
  /** Server CPU (user + system) per handshake, µs. */
  serverCpuUs: number
  /** This client's CPU per handshake, µs. */
  clientCpuUs: number
  /** The rest of the machine's busy CPU per handshake (the database's processes, the kernel's network work), µs. */
  otherCpuUs: number
  /** Idle CPU per handshake over both cores, µs: above zero, the loop waited rather than ran out of CPU. */
  idleUs: number
}

async function handshakeLoad (server: Server, seconds: number, concurrency: number, once: () => Promise<void>): Promise<HandshakeFigures> {
  const pid = server.child.pid ?? 0
  const serverBefore = cpuMs(pid)
  const clientBefore = process.cpuUsage()
  const machineBefore = machineCpuMs()
  const count = await loopFor(seconds, concurrency, once)
  const machine = machineCpuMs()
  const client = process.cpuUsage(clientBefore)
  const serverMs = cpuMs(pid) - serverBefore
  const clientMs = (client.user + client.system) / 1000
  const perHandshakeUs = (ms: number): number => (ms * 1000) / count
  return {
    rate: count / seconds,
    serverCpuUs: perHandshakeUs(serverMs),
    clientCpuUs: perHandshakeUs(clientMs),
    otherCpuUs: perHandshakeUs(Math.max(0, machine.busy - machineBefore.busy - serverMs - clientMs)),
    idleUs: perHandshakeUs((machine.total - machineBefore.total) - (machine.busy - machineBefore.busy))
  }
}

async function bareHandshake (port: number): Promise<void> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false })
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
  await new Promise<void>((resolve) => { ws.once('close', () => resolve()); ws.close() })
}

/**
 * RSS growth per idle connection, on a server started for this alone: a
 * warm-up batch pays for code and buffers allocated once; then
 * IDLE_CONNECTIONS arrive in IDLE_STEPS steps, each followed by a full
 * garbage collection (through the inspector) and an RSS reading, and the
 * figure is the median step's growth per connection. Uncollected handshake
 * garbage never lands in a reading, and a one-off release of start-up memory
 * back to the OS (which made single readings negative) moves one step, not
 * the median.
 */
async function idleMemoryPerConnection (server: Server, open: (count: number) => Promise<WebSocket[]>): Promise<number> {
  const pid = server.child.pid ?? 0
  const sockets = await open(IDLE_WARM_UP)
  const settledRss = async (): Promise<number> => {
    await collectGarbage(server)
    await sleep(300)
    return rssBytes(pid)
  }
  let last = await settledRss()
  const perConnection: number[] = []
  const step = Math.ceil(IDLE_CONNECTIONS / IDLE_STEPS)
  for (let opened = 0; opened < IDLE_CONNECTIONS; opened += step) {
    const batch = await open(Math.min(step, IDLE_CONNECTIONS - opened))
    sockets.push(...batch)
    const rss = await settledRss()
    perConnection.push((rss - last) / batch.length)
    last = rss
  }
  closeAll(sockets)
  return median(perConnection)
}

function verifyRatePerCore (): number {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519')
  const message = Buffer.from('v3|' + 'a'.repeat(200))
  const signature = sign(null, message, privateKey)
  const started = performance.now()
  let count = 0
  while (performance.now() - started < 1000) {
    verify(null, message, publicKey, signature)
    count++
  }
  return count / ((performance.now() - started) / 1000)
}

interface RunResult {
  rpcRatio: number
  rpcP99Ratio: number
  gatewayRps: number
  bareRps: number
  gatewayP50: number
  gatewayP99: number
  bareP99: number
  handshakeRatio: number
  gatewayHandshakes: number
  bareHandshakes: number
  gatewayHandshakeServerCpuUs: number
  bareHandshakeServerCpuUs: number
  gatewayHandshakeClientCpuUs: number
  bareHandshakeClientCpuUs: number
  gatewayHandshakeOtherCpuUs: number
  bareHandshakeOtherCpuUs: number
  gatewayHandshakeIdleUs: number
  bareHandshakeIdleUs: number
  /** Handshakes per device-access query (the gateway batches the lookups of one event-loop turn). */
  lookupsPerQuery: number
  memoryAboveBareKiB: number
  gatewayKiB: number
  bareKiB: number
}

/** Idle memory on a fresh pair of servers started with the inspector, for the GC before each reading. */
async function idleMemory (): Promise<{ bareBytes: number, gatewayBytes: number }> {
  const bare = await startProcess([INSPECT, BARE], {}, /listening (\d+)/)
  const gateway = await startGateway([INSPECT])
  try {
    const bareBytes = await idleMemoryPerConnection(bare, async (count) => await openBare(bare.port, count))
    const gatewayBytes = await idleMemoryPerConnection(gateway.server, async (count) => await openGateway(gateway.server.port, gateway.device, gateway.deviceToken, count))
    return { bareBytes, gatewayBytes }
  } finally {
    await bare.stop()
    await gateway.cleanup()
  }
}

async function oneRun (): Promise<RunResult> {
  const { bareBytes, gatewayBytes } = await idleMemory()
  const bare = await startProcess([BARE], {}, /listening (\d+)/)
  const gateway = await startGateway()
  try {
    const bareSockets = await openBare(bare.port, RPC_CONNECTIONS)
    await rpcLoad(bareSockets, WARM_UP_SECONDS)
    const bareRpc = await rpcLoad(bareSockets, RPC_SECONDS)
    closeAll(bareSockets)
    const gatewaySockets = await openGateway(gateway.server.port, gateway.device, gateway.deviceToken, RPC_CONNECTIONS)
    await rpcLoad(gatewaySockets, WARM_UP_SECONDS)
    const gatewayRpc = await rpcLoad(gatewaySockets, RPC_SECONDS)
    closeAll(gatewaySockets)

    await loopFor(WARM_UP_SECONDS, HANDSHAKE_CONCURRENCY, async () => await bareHandshake(bare.port))
    await loopFor(WARM_UP_SECONDS, HANDSHAKE_CONCURRENCY, async () => await gatewayHandshake(gateway.server.port, gateway.device, gateway.deviceToken))
    const bareHandshakes = await handshakeLoad(bare, HANDSHAKE_SECONDS, HANDSHAKE_CONCURRENCY, async () => await bareHandshake(bare.port))
    const batches = async (): Promise<[number, number]> => await Promise.all([
      metricValue(`http://127.0.0.1:${gateway.server.port}`, 'scopegate_device_access_batch_size_sum'),
      metricValue(`http://127.0.0.1:${gateway.server.port}`, 'scopegate_device_access_batch_size_count')
    ])
    const [lookupsBefore, queriesBefore] = await batches()
    const gatewayHandshakes = await handshakeLoad(gateway.server, HANDSHAKE_SECONDS, HANDSHAKE_CONCURRENCY, async () => await gatewayHandshake(gateway.server.port, gateway.device, gateway.deviceToken))
    const [lookupsAfter, queriesAfter] = await batches()

    return {
      rpcRatio: gatewayRpc.rate / bareRpc.rate,
      rpcP99Ratio: gatewayRpc.p99 / bareRpc.p99,
      gatewayRps: gatewayRpc.rate,
      bareRps: bareRpc.rate,
      gatewayP50: gatewayRpc.p50,
      gatewayP99: gatewayRpc.p99,
      bareP99: bareRpc.p99,
      handshakeRatio: gatewayHandshakes.rate / bareHandshakes.rate,
      gatewayHandshakes: gatewayHandshakes.rate,
      bareHandshakes: bareHandshakes.rate,
      gatewayHandshakeServerCpuUs: gatewayHandshakes.serverCpuUs,
      bareHandshakeServerCpuUs: bareHandshakes.serverCpuUs,
      gatewayHandshakeClientCpuUs: gatewayHandshakes.clientCpuUs,
      bareHandshakeClientCpuUs: bareHandshakes.clientCpuUs,
      gatewayHandshakeOtherCpuUs: gatewayHandshakes.otherCpuUs,
      bareHandshakeOtherCpuUs: bareHandshakes.otherCpuUs,
      gatewayHandshakeIdleUs: gatewayHandshakes.idleUs,
      bareHandshakeIdleUs: bareHandshakes.idleUs,
      lookupsPerQuery: (lookupsAfter - lookupsBefore) / Math.max(1, queriesAfter - queriesBefore),
      memoryAboveBareKiB: (gatewayBytes - bareBytes) / 1024,
      gatewayKiB: gatewayBytes / 1024,
      bareKiB: bareBytes / 1024
    }
  } finally {
    await bare.stop()
    await gateway.cleanup()
  }
}

async function main (): Promise<void> {
  const loadBefore = loadavg()[0] ?? 0
  const runs: RunResult[] = []
  for (let i = 0; i < RUNS; i++) {
    const run = await oneRun()
    runs.push(run)
    process.stderr.write(`run ${i + 1}/${RUNS}: ${JSON.stringify(run)}\n`)
  }
  const m = (key: keyof RunResult): number => median(runs.map((run) => run[key]))
  const verifyPerSecond = verifyRatePerCore()
  const round = (value: number, digits = 2): number => Number(value.toFixed(digits))
  const rows: Array<[string, string, string, string]> = [
    ['authorized RPC (health), 50 conns', `${round(m('gatewayRps'), 0)}/s, p50 ${round(m('gatewayP50'))} ms, p99 ${round(m('gatewayP99'))} ms`, `${round(m('bareRps'), 0)}/s echo, p99 ${round(m('bareP99'))} ms`, `${round(m('rpcRatio'))}x rate (target >= 0.9), p99 ${round(m('rpcP99Ratio'))}x (target <= 1.25)`],
    ['full handshakes (paired device)', `${round(m('gatewayHandshakes'), 0)}/s`, `${round(m('bareHandshakes'), 0)}/s connect+close`, `${round(m('handshakeRatio'))}x (target >= 0.7)`],
    ['CPU per handshake: server / client / rest of the machine (database, kernel) / idle', `${round(m('gatewayHandshakeServerCpuUs'), 0)} / ${round(m('gatewayHandshakeClientCpuUs'), 0)} / ${round(m('gatewayHandshakeOtherCpuUs'), 0)} / ${round(m('gatewayHandshakeIdleUs'), 0)} µs`, `${round(m('bareHandshakeServerCpuUs'), 0)} / ${round(m('bareHandshakeClientCpuUs'), 0)} / ${round(m('bareHandshakeOtherCpuUs'), 0)} / ${round(m('bareHandshakeIdleUs'), 0)} µs`, `${round(m('gatewayHandshakeServerCpuUs') / m('bareHandshakeServerCpuUs'))}x server CPU`],
    ['handshakes per device-access query', `${round(m('lookupsPerQuery'))}`, '', 'one query per turn of the event loop'],
    [`memory per idle conn (${IDLE_CONNECTIONS})`, `${round(m('gatewayKiB'), 1)} KiB`, `${round(m('bareKiB'), 1)} KiB`, `+${round(m('memoryAboveBareKiB'), 1)} KiB (target <= 12)`],
    ['Ed25519 verify, one core', `${round(verifyPerSecond, 0)}/s`, '', '']
  ]
  const loadAfter = loadavg()[0] ?? 0
  console.log(`\nscopegate vs bare ws, ${DATABASE}, median of ${RUNS} runs (each with its own baseline); 1-minute load average ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after`)
  console.log('| measure | scopegate | bare ws | ratio |\n|---|---|---|---|')
  for (const row of rows) console.log(`| ${row.join(' | ')} |`)
  console.log(JSON.stringify({
    bench: 'gateway-vs-ws',
    database: DATABASE,
    runs: RUNS,
    loadAverage: [round(loadBefore), round(loadAfter)],
    rpcRatio: round(m('rpcRatio')),
    rpcP99Ratio: round(m('rpcP99Ratio')),
    gatewayRps: round(m('gatewayRps'), 0),
    bareRps: round(m('bareRps'), 0),
    handshakeRatio: round(m('handshakeRatio')),
    gatewayHandshakesPerSecond: round(m('gatewayHandshakes'), 0),
    bareHandshakesPerSecond: round(m('bareHandshakes'), 0),
    gatewayHandshakeServerCpuUs: round(m('gatewayHandshakeServerCpuUs'), 0),
    bareHandshakeServerCpuUs: round(m('bareHandshakeServerCpuUs'), 0),
    gatewayHandshakeClientCpuUs: round(m('gatewayHandshakeClientCpuUs'), 0),
    bareHandshakeClientCpuUs: round(m('bareHandshakeClientCpuUs'), 0),
    gatewayHandshakeOtherCpuUs: round(m('gatewayHandshakeOtherCpuUs'), 0),
    bareHandshakeOtherCpuUs: round(m('bareHandshakeOtherCpuUs'), 0),
    gatewayHandshakeIdleUs: round(m('gatewayHandshakeIdleUs'), 0),
    bareHandshakeIdleUs: round(m('bareHandshakeIdleUs'), 0),
    lookupsPerQuery: round(m('lookupsPerQuery')),
    memoryAboveBareKiB: round(m('memoryAboveBareKiB'), 1),
    ed25519VerifyPerSecond: round(verifyPerSecond, 0)
  }))
}

await main()
