// The soak (bench/soak.ts, `npm run soak`) in small: the same module with 20
// devices for ~10 s, two instances as child processes on one Postgres schema.
// Every device pairs, connects, calls methods and is revoked and re-approved;
// the run must end with no error, an audit log that matches what it did, and
// no leak in either instance.
import t from 'tap'
import { runSoak } from '../bench/soak.ts'

t.test('soak, small: 20 devices for 10 s on two instances: no error, the audit matches, nothing leaks', async (t) => {
  const report = await runSoak({ devices: 20, seconds: 10, sampleMs: 5000, log: (line) => { t.comment(line) } })
  t.same(report.errors, [], 'no unexpected close, answer or frame')
  t.same(report.auditMismatches, [], 'every audit row matches what the soak did (by action, device and actor)')
  t.same(report.instanceErrors, [], 'neither instance logged an error')
  t.same(report.leaks, [], 'after every client left, each instance holds no more connections, sockets, timers or heap than before')
  t.ok((report.counts.admitted ?? 0) >= 20, `${report.counts.admitted ?? 0} admitted connects`)
  t.ok((report.counts['rpc ok'] ?? 0) > 0, `${report.counts['rpc ok'] ?? 0} RPCs answered ok`)
  for (const reason of ['scope revoked (operator.write)', 'device token revoked', 'device removed']) {
    t.ok((report.counts[`closed ${reason}`] ?? 0) >= 1, `${report.counts[`closed ${reason}`] ?? 0} connections closed ${reason}, then re-approved`)
  }
  t.ok(report.auditRows > 40, `${report.auditRows} audit rows checked`)
  t.equal(report.ok, true)
})
