// Where a handshake's time goes: runs full handshakes (upgrade, challenge,
// signed connect, database check, hello-ok, close) against a gateway started
// with --cpu-prof, prints the CPU each side spent per handshake and the
// server's hottest functions and packages by self time. A figure, not a test.
//
//   npx tsx bench/profile-handshake.ts            # Postgres at TEST_DATABASE_URL
//   SECONDS=10 BENCH_DB=pglite npx tsx bench/profile-handshake.ts
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cpuMs, DATABASE, gatewayHandshake, loopFor, openGateway, rpcLoad, startGateway } from './lib.ts'

const SECONDS = Number(process.env.SECONDS ?? 5)
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 16)
const TOP = Number(process.env.TOP ?? 30)
/** `rpc`: profile authorized `health` calls on RPC_CONNECTIONS open connections instead of handshakes. */
const MODE = process.env.MODE === 'rpc' ? 'rpc' : 'handshake'
const RPC_CONNECTIONS = Number(process.env.RPC_CONNECTIONS ?? 50)

interface ProfileNode { id: number, callFrame: { functionName: string, url: string, lineNumber: number } }
interface CpuProfile { nodes: ProfileNode[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

function shortUrl (url: string): string {
  return url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/(src|dist|bin)\//, '$1/')
}

function packageOf (url: string): string {
  if (url === '') return '(native / gc / idle)'
  if (url.startsWith('node:')) return url
  const inModules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (inModules !== null) return inModules[1] ?? url
  return shortUrl(url)
}

/** Self time of the samples taken between `fromUs` and `toUs` (CLOCK_MONOTONIC µs, as V8 stamps them). */
function summarize (profile: CpuProfile, fromUs: number, toUs: number): { byFunction: Map<string, number>, byPackage: Map<string, number>, totalMs: number } {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]))
  const byFunction = new Map<string, number>()
  const byPackage = new Map<string, number>()
  let at = profile.startTime
  profile.samples.forEach((id, index) => {
    const micros = profile.timeDeltas[index] ?? 0
    at += micros
    if (at < fromUs || at > toUs) return
    const frame = nodes.get(id)?.callFrame
    if (frame === undefined) return
    const name = `${frame.functionName === '' ? '(anonymous)' : frame.functionName} ${shortUrl(frame.url)}:${frame.lineNumber + 1}`
    byFunction.set(name, (byFunction.get(name) ?? 0) + micros / 1000)
    const pkg = packageOf(frame.url)
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + micros / 1000)
  })
  return { byFunction, byPackage, totalMs: (toUs - fromUs) / 1000 }
}

function printTop (title: string, entries: Map<string, number>, handshakes: number): void {
  console.log(`\n${title}`)
  for (const [name, ms] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
    console.log(`${ms.toFixed(0).padStart(7)} ms ${((ms * 1000) / handshakes).toFixed(1).padStart(7)} µs/handshake  ${name}`)
  }
}

async function main (): Promise<void> {
  const profileDir = mkdtempSync(join(tmpdir(), 'scopegate-prof-'))
  const gateway = await startGateway(['--cpu-prof', `--cpu-prof-dir=${profileDir}`])
  const pid = gateway.server.child.pid ?? 0
  try {
    const sockets = MODE === 'rpc' ? await openGateway(gateway.server.port, gateway.device, gateway.deviceToken, RPC_CONNECTIONS) : []
    const fromUs = Number(process.hrtime.bigint() / 1000n)
    const serverCpuBefore = cpuMs(pid)
    const clientCpuBefore = process.cpuUsage()
    const handshakes = MODE === 'rpc'
      ? (await rpcLoad(sockets, SECONDS)).count
      : await loopFor(SECONDS, CONCURRENCY, async () => await gatewayHandshake(gateway.server.port, gateway.device, gateway.deviceToken))
    const serverCpu = cpuMs(pid) - serverCpuBefore
    const toUs = Number(process.hrtime.bigint() / 1000n)
    const clientUsage = process.cpuUsage(clientCpuBefore)
    const clientCpu = (clientUsage.user + clientUsage.system) / 1000
    console.log(`${DATABASE}: ${handshakes} ${MODE === 'rpc' ? `health calls on ${RPC_CONNECTIONS} connections` : `handshakes at concurrency ${CONCURRENCY}`} in ${SECONDS} s = ${(handshakes / SECONDS).toFixed(0)}/s`)
    console.log(`CPU per ${MODE === 'rpc' ? 'call' : 'handshake'}: server ${((serverCpu * 1000) / handshakes).toFixed(0)} µs, this client ${((clientCpu * 1000) / handshakes).toFixed(0)} µs`)
    await gateway.server.stop()
    const file = readdirSync(profileDir).find((name) => name.endsWith('.cpuprofile'))
    if (file === undefined) throw new Error('the server wrote no profile')
    const profile = JSON.parse(readFileSync(join(profileDir, file), 'utf8')) as CpuProfile
    const { byFunction, byPackage, totalMs } = summarize(profile, fromUs, toUs)
    console.log(`server profile: the ${totalMs.toFixed(0)} ms of the load`)
    printTop('server self time by package', byPackage, handshakes)
    printTop('server self time by function', byFunction, handshakes)
  } finally {
    await gateway.cleanup()
    if (process.env.KEEP_PROFILE === undefined) rmSync(profileDir, { recursive: true, force: true })
    else console.log(`profile kept in ${profileDir}`)
  }
}

await main()
