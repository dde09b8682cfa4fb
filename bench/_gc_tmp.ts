import { openGateway, rpcLoad, startGateway, startProcess } from './lib.ts'
import WebSocket from 'ws'
const SECONDS = Number(process.env.SECONDS ?? 5)
function gcStats (out: string, label: string) {
  const lines = out.split('\n').filter((l) => l.includes('Scavenge'))
  const ms = lines.map((l) => Number(/, ([\d.]+) \/ [\d.]+ ms/.exec(l)?.[1] ?? NaN)).filter((n) => !Number.isNaN(n))
  ms.sort((a, b) => a - b)
  const sum = ms.reduce((a, b) => a + b, 0)
  console.log(label, 'scavenges', ms.length, 'total ms', sum.toFixed(1), 'median', ms[ms.length >> 1], 'p90', ms[Math.floor(ms.length * 0.9)], 'max', ms[ms.length - 1])
  console.log(lines.slice(-3).join('\n'))
}
const gw = await startGateway(['--trace-gc', ...(process.env.GW_ARGS ?? '').split(' ').filter(Boolean)])
let out = ''
gw.server.child.stdout?.on('data', (c: Buffer) => { out += c.toString() })
const sockets = await openGateway(gw.server.port, gw.device, gw.deviceToken, 50)
await rpcLoad(sockets, 1)
out = ''
const r = await rpcLoad(sockets, SECONDS)
console.log('gateway', r)
gcStats(out, 'gateway'); console.log(out.split('\n').filter(l => !l.includes('Scavenge')).join('\n'))
for (const s of sockets) s.terminate()
await gw.cleanup()
const bare = await startProcess(['--trace-gc', '/work/main/bench/bare-ws-server.mjs'], {}, /listening (\d+)/)
let bout = ''
bare.child.stdout?.on('data', (c: Buffer) => { bout += c.toString() })
const bs = await Promise.all(Array.from({ length: 50 }, async () => { const ws = new WebSocket(`ws://127.0.0.1:${bare.port}/`); await new Promise((r) => ws.once('open', r)); return ws }))
await rpcLoad(bs, 1)
bout = ''
const b = await rpcLoad(bs, SECONDS)
console.log('bare', b)
gcStats(bout, 'bare')
for (const s of bs) s.terminate()
await bare.stop()
