import t from 'tap'
import { pairDevice } from './helpers/pairing.ts'
import { startServer } from './helpers/server.ts'

t.test('a connection that logged in with a device token closes `device token expired` when the token expires', async (t) => {
  const ttlMs = 1500
  const server = await startServer(t, { deviceTokenTtlMs: ttlMs })
  const token = server.config.gatewayToken
  const { device, deviceToken, hello } = await pairDevice(server, ['operator.read'])
  const issuedAtMs: number = hello.auth.issuedAtMs

  const withToken = await device.connect(server.wsUrl, { deviceToken, scopes: ['operator.read'] })
  t.equal(withToken.res.ok, true)
  const withGatewayToken = await device.connect(server.wsUrl, { token, scopes: ['operator.read'] })
  t.equal(withGatewayToken.res.ok, true)
  const closed = await withToken.socket.closed
  t.same(closed, { code: 1008, reason: 'device token expired' })
  t.ok(Date.now() >= issuedAtMs + ttlMs, 'not before the expiry')
  t.notOk(withGatewayToken.socket.isClosed, 'a connection that logged in with the gateway token stays open')
  await withGatewayToken.socket.close()

  const expired = await device.connect(server.wsUrl, { deviceToken, scopes: ['operator.read'] })
  t.same(expired.res.error, { code: 'INVALID_REQUEST', message: 'device token expired', details: { code: 'AUTH_DEVICE_TOKEN_EXPIRED' } })
  t.same(await expired.socket.closed, { code: 1008, reason: 'device token expired' })

  const renewed = await device.connect(server.wsUrl, { token, scopes: ['operator.read'] })
  t.type(renewed.res.payload.auth.deviceToken, 'string', 'the next connect with the gateway token mints a new one')
  t.not(renewed.res.payload.auth.deviceToken, deviceToken)
  await renewed.socket.close()
})
