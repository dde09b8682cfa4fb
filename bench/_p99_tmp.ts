import { median, openGateway, rpcLoad, startGateway, startProcess } from './lib.ts'
import WebSocket from 'ws'
const SECONDS = Number(process.env.SECONDS ?? 3)
const variants = (process.env.VARIANTS ?? '|--single-threaded-gc').split('|')
const bare = await startProcess([new URL('./bare-ws-server.mjs', import.meta.url).pathname], {}, /listening (\d+)/)
const bs = await Promise.all(Array.from({ length: 50 }, async () => { const ws = new WebSocket(`ws://127.0.0.1:${bare.port}/`, { perMessageDeflate: false }); await new Promise((r) => ws.once('open', r)); return ws }))
const gws = []
for (const v of variants) {
  const [args = '', envs = ''] = v.split(';')
  const gw = await startGateway(args.split(' ').filter(Boolean), undefined, Object.fromEntries(envs.split(' ').filter(Boolean).map((kv) => kv.split('='))))
  gws.push({ v, gw, sockets: await openGateway(gw.server.port, gw.device, gw.deviceToken, 50) })
}
const res: Record<string, { rate: number[], p99: number[] }> = {}
for (let round = 0; round < Number(process.env.ROUNDS ?? 6); round++) {
  await rpcLoad(bs, 0.5)
  const b = await rpcLoad(bs, SECONDS)
  for (const { v, sockets } of gws) {
    await rpcLoad(sockets, 0.5)
    const r = await rpcLoad(sockets, SECONDS)
    const e = res[v] ??= { rate: [], p99: [] }
    e.rate.push(r.rate / b.rate); e.p99.push(r.p99 / b.p99)
    console.log(round, JSON.stringify(v), (r.rate / b.rate).toFixed(3), (r.p99 / b.p99).toFixed(3), r.p99.toFixed(2), b.p99.toFixed(2))
  }
}
for (const [v, e] of Object.entries(res)) console.log('MEDIAN', JSON.stringify(v), median(e.rate).toFixed(3), median(e.p99).toFixed(3))
for (const s of bs) s.terminate()
await bare.stop()
for (const { gw, sockets } of gws) { for (const s of sockets) s.terminate(); await gw.cleanup() }
