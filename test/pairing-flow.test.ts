import t from 'tap'
import { TestDevice } from './helpers/device.ts'
import { startServer } from './helpers/server.ts'

t.test('a new device is refused with not-paired, approved over REST, then admitted with a device token', async (t) => {
  const server = await startServer(t)
  const device = new TestDevice()
  const token = server.config.gatewayToken

  const refused = await device.connect(server.wsUrl, { token, scopes: ['operator.read', 'operator.write'] })
  t.equal(refused.res.ok, false)
  t.equal(refused.res.error.code, 'NOT_PAIRED')
  t.equal(refused.res.error.message, 'pairing required (not-paired)')
  const details = refused.res.error.details
  t.match(details, {
    code: 'PAIRING_REQUIRED',
    reason: 'not-paired',
    deviceId: device.id,
    requestedRole: 'operator',
    requestedScopes: ['operator.read', 'operator.write'],
    approvedScopes: []
  })
  t.match(details.requestId, /^[0-9a-f-]{36}$/)
  t.match(details.remediationHint, `scopegate requests approve ${details.requestId}`)
  t.same(await refused.socket.closed, { code: 1008, reason: 'pairing required (not-paired)' })

  const pending = await server.api('GET', '/api/v1/pairing-requests')
  t.equal(pending.status, 200)
  t.equal(pending.body.items.length, 1)
  t.match(pending.body.items[0], { requestId: details.requestId, deviceId: device.id, state: 'pending', reason: 'not-paired', isRepair: false })

  const approved = await server.api('POST', `/api/v1/pairing-requests/${details.requestId}/approve`)
  t.equal(approved.status, 200)
  t.equal(approved.body.requestId, details.requestId)
  t.match(approved.body.device, { deviceId: device.id, role: 'operator', roles: ['operator'], scopes: ['operator.read', 'operator.write'] })

  const admitted = await device.connect(server.wsUrl, { token, scopes: ['operator.read', 'operator.write'] })
  t.equal(admitted.res.ok, true, JSON.stringify(admitted.res))
  const hello = admitted.res.payload
  t.equal(hello.type, 'hello-ok')
  t.equal(hello.protocol, 4)
  t.same(hello.auth.scopes, ['operator.read', 'operator.write'])
  t.equal(hello.auth.method, 'token')
  t.type(hello.auth.deviceToken, 'string')
  const health = await admitted.socket.request('health')
  t.match(health, { ok: true, payload: { ok: true } })
  await admitted.socket.close()

  const withDeviceToken = await device.connect(server.wsUrl, { deviceToken: hello.auth.deviceToken, scopes: ['operator.read'] })
  t.equal(withDeviceToken.res.ok, true, JSON.stringify(withDeviceToken.res))
  t.equal(withDeviceToken.res.payload.auth.method, 'device-token')
  t.same(withDeviceToken.res.payload.auth.scopes, ['operator.read'])
  t.notOk('deviceToken' in withDeviceToken.res.payload.auth, 'the token is issued only once')
  await withDeviceToken.socket.close()

  t.notMatch(server.logs(), token, 'the gateway token never reaches the log')
  t.notMatch(server.logs(), hello.auth.deviceToken, 'the device token never reaches the log')
})
