import t from 'tap'
import { pairDevice, requestPairing } from './helpers/pairing.ts'
import { startInstances, type Teardown, type TestServer } from './helpers/server.ts'

/** Two instances sharing one Postgres schema and the same secrets. */
async function startPair (t: Teardown): Promise<[TestServer, TestServer]> {
  return await startInstances(t, 2, 'multi') as [TestServer, TestServer]
}

t.test('two instances on one database', async (t) => {
  const [a, b] = await startPair(t)

  t.test('revoking a scope on instance A closes the socket on instance B with the exact reason', async (t) => {
    const { device, deviceToken } = await pairDevice(a, ['operator.read', 'operator.write'])
    const onB = await device.connect(b.wsUrl, { deviceToken, scopes: ['operator.read', 'operator.write'] })
    t.equal(onB.res.ok, true, 'admitted on B with the token minted on A')
    const readOnly = await device.connect(b.wsUrl, { deviceToken, scopes: ['operator.read'] })
    const revoked = await a.api('DELETE', `/api/v1/devices/${device.id}/roles/operator/scopes/operator.write`)
    t.equal(revoked.status, 200)
    t.same(await onB.socket.closed, { code: 1008, reason: 'scope revoked (operator.write)' })
    const health = await readOnly.socket.request('health')
    t.equal(health.ok, true, 'a connection the change leaves covered stays open')
    await readOnly.socket.close()
  })

  t.test('removing a device on B closes its socket on A', async (t) => {
    const { device, deviceToken } = await pairDevice(b, ['operator.read'])
    const onA = await device.connect(a.wsUrl, { deviceToken, scopes: ['operator.read'] })
    t.equal(onA.res.ok, true)
    t.equal((await b.api('DELETE', `/api/v1/devices/${device.id}`)).status, 200)
    t.same(await onA.socket.closed, { code: 1008, reason: 'device removed' })
  })

  t.test('rotating a token on A closes the sockets on B that logged in with the old one', async (t) => {
    const { device, deviceToken } = await pairDevice(a, ['operator.read'])
    const onB = await device.connect(b.wsUrl, { deviceToken, scopes: ['operator.read'] })
    t.equal(onB.res.ok, true)
    const rotated = await a.api('POST', `/api/v1/devices/${device.id}/tokens/operator/rotate`)
    t.equal(rotated.status, 200)
    t.same(await onB.socket.closed, { code: 1008, reason: 'device token revoked' })
    const stale = await device.connect(b.wsUrl, { deviceToken, scopes: ['operator.read'] })
    t.equal(stale.res.error.details.code, 'AUTH_DEVICE_TOKEN_MISMATCH')
    const fresh = await device.connect(b.wsUrl, { deviceToken: rotated.body.token, scopes: ['operator.read'] })
    t.equal(fresh.res.ok, true)
    await fresh.socket.close()
  })

  t.test('pairing events reach operator.pairing connections on the other instance', async (t) => {
    const { device: admin, deviceToken } = await pairDevice(a, ['operator.pairing'])
    const watcher = await admin.connect(b.wsUrl, { deviceToken, scopes: ['operator.pairing'] })
    t.equal(watcher.res.ok, true)
    const { device: newcomer, requestId } = await requestPairing(a, ['operator.read'])
    const requested = await watcher.socket.event('device.pair.requested')
    t.match(requested.payload, { requestId, deviceId: newcomer.id, scopes: ['operator.read'], reason: 'not-paired' })
    t.equal((await a.api('POST', `/api/v1/pairing-requests/${requestId}/reject`)).status, 200)
    const resolved = await watcher.socket.event('device.pair.resolved')
    t.match(resolved.payload, { requestId, deviceId: newcomer.id, decision: 'rejected' })
    t.type(resolved.payload.ts, 'number')
    await watcher.socket.close()
  })

  t.test('approve and reject of one request from two instances: exactly one wins, one audit decision', async (t) => {
    const rounds = Number(process.env.RACE_ROUNDS ?? 200)
    let approvedWins = 0
    let rejectedWins = 0
    for (let round = 0; round < rounds; round++) {
      const { requestId } = await requestPairing(a, ['operator.read'])
      const [approve, reject] = await Promise.all([
        a.api('POST', `/api/v1/pairing-requests/${requestId}/approve`),
        b.api('POST', `/api/v1/pairing-requests/${requestId}/reject`)
      ])
      const statuses = [approve.status, reject.status].sort()
      if (statuses[0] !== 200 || statuses[1] !== 409) {
        t.fail(`round ${round}: statuses ${JSON.stringify(statuses)}`)
        break
      }
      const loser = approve.status === 409 ? approve : reject
      if (loser.body.code !== 'PAIRING_REQUEST_NOT_PENDING') t.fail(`round ${round}: loser code ${loser.body.code}`)
      if (approve.status === 200) approvedWins++
      else rejectedWins++
      const { rows } = await a.app.db.sql.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM audit_log WHERE request_id = $1 AND action IN ('pairing.approved', 'pairing.rejected')", [requestId])
      if (rows[0]?.n !== 1) t.fail(`round ${round}: ${rows[0]?.n} decisions in the audit log`)
    }
    t.equal(approvedWins + rejectedWins, rounds, `${rounds} races, one winner each (approve ${approvedWins}, reject ${rejectedWins})`)
  })

  t.test('two approvals with different scopes from two instances: one wins', async (t) => {
    for (let round = 0; round < 20; round++) {
      const { device, requestId } = await requestPairing(a, ['operator.read', 'operator.write'])
      const [first, second] = await Promise.all([
        a.api('POST', `/api/v1/pairing-requests/${requestId}/approve`, { body: { scopes: ['operator.read'] } }),
        b.api('POST', `/api/v1/pairing-requests/${requestId}/approve`, { body: { scopes: ['operator.write'] } })
      ])
      t.same([first.status, second.status].sort(), [200, 409], `round ${round}`)
      const winner = first.status === 200 ? first : second
      const device2 = await a.api('GET', `/api/v1/devices/${device.id}`)
      t.same(device2.body.scopes, winner.body.device.scopes, 'the device holds exactly the winner\'s scopes')
    }
  })
})
