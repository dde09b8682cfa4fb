// Two builds of the gateway under the same load at the same time: the same
// client drives both at once, so whatever else the machine is doing slows
// both alike, and the ratios of their CPU per operation and of their latency
// (p50 and p99 of each call, or of each whole handshake) hold where a
// before/after pair of runs swings by ±30%. For "what did this change buy".
// A figure, not a test.
//
//   git worktree add /tmp/before <commit> && (cd /tmp/before && npm ci)
//   B=/tmp/before npx tsx bench/ab.ts               # RPC (health) calls
//   MODE=handshake B=/tmp/before npx tsx bench/ab.ts  # full handshakes
//
// A is this checkout (or A=<dir>); each directory needs its dist/ built. For
// one build under two sets of Node flags, give B the same directory and set
// A_NODE_ARGS / B_NODE_ARGS (e.g. B_NODE_ARGS=--max-semi-space-size=4), or
// A_ENV / B_ENV as JSON (e.g. B_ENV='{"DATABASE_URL":"postgres://postgres@/test?host=/var/run/postgresql"}'
// for Postgres over its Unix socket).
import { resolve } from 'node:path'
import { cpuMs, DATABASE, gatewayHandshake, loopFor, median, openGateway, percentile, rpcLoad, startGateway, type Gateway } from './lib.ts'

const MODE = process.env.MODE === 'handshake' ? 'handshake' : 'rpc'
const ROUNDS = Number(process.env.ROUNDS ?? 5)
const SECONDS = Number(process.env.SECONDS ?? 3)
const CONNECTIONS = Number(process.env.RPC_CONNECTIONS ?? 50)
const CONCURRENCY = Number(process.env.HANDSHAKE_CONCURRENCY ?? 16)

function binOf (dir: string): string {
  return resolve(dir, 'bin/scopegate.js')
}

interface Side { name: string, gateway: Gateway }

interface Figures { opsPerSecond: number, cpuUsPerOp: number, p50Ms: number, p99Ms: number }

function envOf (name: string): Record<string, string> {
  const text = process.env[name]
  return text === undefined ? {} : JSON.parse(text) as Record<string, string>
}

function nodeArgs (name: string): string[] {
  return (process.env[name] ?? '').split(' ').filter((arg) => arg !== '')
}

/** Full handshakes on `concurrency` loops for SECONDS: how many, and the time each took from upgrade to close. */
async function handshakeLoad (gateway: Gateway, concurrency: number): Promise<{ count: number, p50: number, p99: number }> {
  const latencies: number[] = []
  const count = await loopFor(SECONDS, concurrency, async () => {
    const started = performance.now()
    await gatewayHandshake(gateway.server.port, gateway.device, gateway.deviceToken)
    latencies.push(performance.now() - started)
  })
  latencies.sort((a, b) => a - b)
  return { count, p50: percentile(latencies, 50), p99: percentile(latencies, 99) }
}

async function measure (sides: Side[], load: (side: Side) => Promise<{ count: number, p50: number, p99: number }>): Promise<Figures[]> {
  const before = sides.map((side) => cpuMs(side.gateway.server.child.pid ?? 0))
  const results = await Promise.all(sides.map(load))
  return sides.map((side, i) => {
    const used = cpuMs(side.gateway.server.child.pid ?? 0) - (before[i] ?? 0)
    const { count, p50, p99 } = results[i] ?? { count: 0, p50: NaN, p99: NaN }
    return { opsPerSecond: count / SECONDS, cpuUsPerOp: (used * 1000) / count, p50Ms: p50, p99Ms: p99 }
  })
}

async function main (): Promise<void> {
  const bDir = process.env.B
  if (bDir === undefined) throw new Error('set B to the checkout to compare with (its dist/ built)')
  const aDir = process.env.A ?? resolve(import.meta.dirname, '..')
  const sides: Side[] = [
    { name: `A ${aDir} ${process.env.A_NODE_ARGS ?? ''} ${process.env.A_ENV ?? ''}`.trim(), gateway: await startGateway(nodeArgs('A_NODE_ARGS'), binOf(aDir), envOf('A_ENV')) },
    { name: `B ${bDir} ${process.env.B_NODE_ARGS ?? ''} ${process.env.B_ENV ?? ''}`.trim(), gateway: await startGateway(nodeArgs('B_NODE_ARGS'), binOf(bDir), envOf('B_ENV')) }
  ]
  try {
    const sockets = MODE === 'rpc'
      ? await Promise.all(sides.map(async ({ gateway }) => await openGateway(gateway.server.port, gateway.device, gateway.deviceToken, CONNECTIONS / 2)))
      : []
    const rounds: Figures[][] = []
    for (let round = 0; round < ROUNDS; round++) {
      const figures = await measure(sides, async (side) => {
        const index = sides.indexOf(side)
        if (MODE === 'rpc') return await rpcLoad(sockets[index] ?? [], SECONDS)
        return await handshakeLoad(side.gateway, CONCURRENCY / 2)
      })
      rounds.push(figures)
      process.stderr.write(`round ${round + 1}/${ROUNDS}: ${figures.map((f, i) => `${i === 0 ? 'A' : 'B'} ${f.opsPerSecond.toFixed(0)}/s ${f.cpuUsPerOp.toFixed(1)} µs p50 ${f.p50Ms.toFixed(2)} p99 ${f.p99Ms.toFixed(2)} ms`).join(', ')}\n`)
    }
    for (const list of sockets) for (const ws of list) ws.terminate()
    const cpuRatio = median(rounds.map(([a, b]) => (b?.cpuUsPerOp ?? NaN) / (a?.cpuUsPerOp ?? NaN)))
    const rateRatio = median(rounds.map(([a, b]) => (b?.opsPerSecond ?? NaN) / (a?.opsPerSecond ?? NaN)))
    const p50Ratio = median(rounds.map(([a, b]) => (b?.p50Ms ?? NaN) / (a?.p50Ms ?? NaN)))
    const p99Ratio = median(rounds.map(([a, b]) => (b?.p99Ms ?? NaN) / (a?.p99Ms ?? NaN)))
    const unit = MODE === 'rpc' ? 'call' : 'handshake'
    console.log(`${MODE} on ${DATABASE}, ${ROUNDS} rounds of ${SECONDS} s, both builds loaded at once`)
    sides.forEach((side, i) => {
      console.log(`${side.name}: median ${median(rounds.map((r) => r[i]?.opsPerSecond ?? NaN)).toFixed(0)}/s, server CPU ${median(rounds.map((r) => r[i]?.cpuUsPerOp ?? NaN)).toFixed(1)} µs per ${unit}, p50 ${median(rounds.map((r) => r[i]?.p50Ms ?? NaN)).toFixed(2)} ms, p99 ${median(rounds.map((r) => r[i]?.p99Ms ?? NaN)).toFixed(2)} ms`)
    })
    console.log(`B/A: server CPU per ${unit} ${cpuRatio.toFixed(3)}x, rate ${rateRatio.toFixed(3)}x, latency p50 ${p50Ratio.toFixed(3)}x, p99 ${p99Ratio.toFixed(3)}x (medians of the rounds' ratios)`)
    console.log(JSON.stringify({ bench: 'ab', mode: MODE, database: DATABASE, rounds: ROUNDS, cpuPerOpRatioBoverA: Number(cpuRatio.toFixed(3)), rateRatioBoverA: Number(rateRatio.toFixed(3)), p50RatioBoverA: Number(p50Ratio.toFixed(3)), p99RatioBoverA: Number(p99Ratio.toFixed(3)) }))
  } finally {
    await Promise.all(sides.map(async ({ gateway }) => { await gateway.cleanup() }))
  }
}

await main()
