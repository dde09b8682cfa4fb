import { readFileSync } from 'node:fs'
import { cpuMs, gatewayHandshake, loopFor, startGateway } from './lib.ts'
function busyMs () { const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number); const idle = f[3]! + f[4]!; const total = f.reduce((a, b) => a + b, 0); return { busy: (total - idle) * 10, total: total * 10 } }
const gw = await startGateway([], undefined, {})
const pid = gw.server.child.pid!
for (let r = 0; r < Number(process.env.ROUNDS ?? 3); r++) {
  const m0 = busyMs(); const s0 = cpuMs(pid); const c0 = process.cpuUsage()
  const n = await loopFor(5, Number(process.env.C ?? 16), async () => await gatewayHandshake(gw.server.port, gw.device, gw.deviceToken))
  const m1 = busyMs(); const s1 = cpuMs(pid); const c = process.cpuUsage(c0)
  const per = (ms: number) => (ms * 1000 / n).toFixed(0)
  const client = (c.user + c.system) / 1000
  console.log(`${n / 5}/s  server ${per(s1 - s0)} client ${per(client)} other(postgres+kernel) ${per(m1.busy - m0.busy - (s1 - s0) - client)} idle ${per((m1.total - m0.total) - (m1.busy - m0.busy))} µs/handshake`)
}
await gw.cleanup()
