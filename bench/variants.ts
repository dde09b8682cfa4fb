// The authorized-RPC load on gateways started with other Node flags or
// environment, each against the bare `ws` baseline measured just before it in
// the same round: which of them moves the rate or the p99 tail. All servers
// stay up for the whole run and take turns under the load, so the rounds
// interleave rather than run minutes apart. A figure, not a test.
//
//   npx tsx bench/variants.ts                                        # default vs --single-threaded-gc
//   VARIANTS='|--max-semi-space-size=1|;HEALTH_CHECK_INTERVAL_MS=3600000' npx tsx bench/variants.ts
//
// VARIANTS: variants separated by `|`; each is `<node flags>;<ENV=value ...>`,
// either part may be empty (an empty variant is the gateway as it ships).
import type WebSocket from 'ws'
import { median, openBare, openGateway, rpcLoad, startGateway, startProcess, type Gateway } from './lib.ts'

const SECONDS = Number(process.env.SECONDS ?? 3)
const ROUNDS = Number(process.env.ROUNDS ?? 6)
const CONNECTIONS = Number(process.env.RPC_CONNECTIONS ?? 50)
const VARIANTS = (process.env.VARIANTS ?? '|--single-threaded-gc').split('|')
const BARE = new URL('./bare-ws-server.mjs', import.meta.url).pathname

interface Variant { name: string, gateway: Gateway, sockets: WebSocket[], rate: number[], p99: number[] }

function parseVariant (text: string): { nodeArgs: string[], env: Record<string, string> } {
  const [flags = '', assignments = ''] = text.split(';')
  const env: Record<string, string> = {}
  for (const assignment of assignments.split(' ').filter((part) => part !== '')) {
    const at = assignment.indexOf('=')
    if (at <= 0) throw new Error(`not ENV=value: ${assignment}`)
    env[assignment.slice(0, at)] = assignment.slice(at + 1)
  }
  return { nodeArgs: flags.split(' ').filter((arg) => arg !== ''), env }
}

async function main (): Promise<void> {
  const bare = await startProcess([BARE], {}, /listening (\d+)/)
  const bareSockets = await openBare(bare.port, CONNECTIONS)
  const variants: Variant[] = []
  try {
    for (const text of VARIANTS) {
      const { nodeArgs, env } = parseVariant(text)
      const gateway = await startGateway(nodeArgs, undefined, env)
      variants.push({ name: text === '' ? '(as shipped)' : text, gateway, sockets: await openGateway(gateway.server.port, gateway.device, gateway.deviceToken, CONNECTIONS), rate: [], p99: [] })
    }
    for (let round = 1; round <= ROUNDS; round++) {
      for (const variant of variants) {
        // Each variant against a baseline taken just before it, each after a short warm-up.
        await rpcLoad(bareSockets, 0.5)
        const baseline = await rpcLoad(bareSockets, SECONDS)
        await rpcLoad(variant.sockets, 0.5)
        const result = await rpcLoad(variant.sockets, SECONDS)
        variant.rate.push(result.rate / baseline.rate)
        variant.p99.push(result.p99 / baseline.p99)
        process.stderr.write(`round ${round}/${ROUNDS} ${variant.name}: ${result.rate.toFixed(0)}/s p99 ${result.p99.toFixed(2)} ms; bare ${baseline.rate.toFixed(0)}/s p99 ${baseline.p99.toFixed(2)} ms\n`)
      }
    }
  } finally {
    for (const ws of bareSockets) ws.terminate()
    await bare.stop()
    for (const variant of variants) {
      for (const ws of variant.sockets) ws.terminate()
      await variant.gateway.cleanup()
    }
  }
  console.log(`\nauthorized RPC (health) on ${CONNECTIONS} connections, median of ${ROUNDS} rounds of ${SECONDS} s, each against the bare ws echo measured just before it`)
  console.log('| variant | rate vs bare | p99 vs bare |\n|---|---|---|')
  for (const variant of variants) console.log(`| ${variant.name} | ${median(variant.rate).toFixed(3)}x | ${median(variant.p99).toFixed(3)}x |`)
  console.log(JSON.stringify({
    bench: 'variants',
    rounds: ROUNDS,
    variants: variants.map((variant) => ({ variant: variant.name, rateRatio: Number(median(variant.rate).toFixed(3)), p99Ratio: Number(median(variant.p99).toFixed(3)) }))
  }))
}

await main()
