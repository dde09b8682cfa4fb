// Device token expiry with a clock the test moves (buildApp's `clock`
// option): no short TTLs, no sleeps. The server runs with the production
// default DEVICE_TOKEN_TTL_MS (30 days) unless a test says otherwise.
import t from 'tap'
import { assertOpen } from './helpers/device.ts'
import { ManualClock } from './helpers/clock.ts'
import { pairDevice } from './helpers/pairing.ts'
import { startServer } from './helpers/server.ts'

const DAY_MS = 86_400_000
const TTL_MS = 30 * DAY_MS

t.test('a connection that logged in with a device token closes `device token expired` when the token expires, not before', async (t) => {
  const clock = new ManualClock()
  const server = await startServer(t, {}, false, { clock })
  t.equal(server.config.deviceTokenTtlMs, TTL_MS, 'the production default')
  const { device, deviceToken, hello } = await pairDevice(server, ['operator.read'])
  t.equal(hello.auth.issuedAtMs, clock.now(), 'the token is minted at the clock\'s time')

  const withToken = await device.connect(server.wsUrl, { deviceToken, scopes: ['operator.read'] })
  t.equal(withToken.res.ok, true)
  const withGatewayToken = await device.connect(server.wsUrl, { token: server.config.gatewayToken, scopes: ['operator.read'] })
  t.equal(withGatewayToken.res.ok, true)

  clock.advance(TTL_MS - 1)
  await assertOpen(t, withToken.socket, 'one millisecond before the expiry')

  clock.advance(1)
  t.same(await withToken.socket.closedWithin(5000), { code: 1008, reason: 'device token expired' })
  await assertOpen(t, withGatewayToken.socket, 'a connection that logged in with the gateway token')
  await withGatewayToken.socket.close()
})

t.test('an expired token is refused at connect; the next connect with the gateway token mints a new one', async (t) => {
  const clock = new ManualClock()
  const server = await startServer(t, {}, false, { clock })
  const { device, deviceToken } = await pairDevice(server, ['operator.read'])

  clock.advance(TTL_MS - 1)
  const stillValid = await device.connect(server.wsUrl, { deviceToken, scopes: ['operator.read'] })
  t.equal(stillValid.res.ok, true, 'valid until its last millisecond')
  await stillValid.socket.close()

  clock.advance(1)
  const expired = await device.connect(server.wsUrl, { deviceToken, scopes: ['operator.read'] })
  t.same(expired.res.error, { code: 'INVALID_REQUEST', message: 'device token expired', details: { code: 'AUTH_DEVICE_TOKEN_EXPIRED' } })
  t.same(await expired.socket.closed, { code: 1008, reason: 'device token expired' })

  const renewed = await device.connect(server.wsUrl, { token: server.config.gatewayToken, scopes: ['operator.read'] })
  t.type(renewed.res.payload?.auth?.deviceToken, 'string', 'a new token in hello-ok')
  t.not(renewed.res.payload.auth.deviceToken, deviceToken)
  t.equal(renewed.res.payload.auth.issuedAtMs, clock.now())
  await renewed.socket.close()

  const listed = await server.api('GET', `/api/v1/devices/${device.id}`)
  t.equal(listed.body.tokens[0].expiresAtMs, clock.now() + TTL_MS, 'the new token expires a TTL after it was minted')
})

t.test('rotation extends the expiry; tokensExpiringWithinMs lists by the same clock', async (t) => {
  const clock = new ManualClock()
  const server = await startServer(t, {}, false, { clock })
  const { device } = await pairDevice(server, ['operator.read'])
  const mintedAtMs = clock.now()

  const expiring = async (withinMs: number): Promise<string[]> =>
    (await server.api('GET', `/api/v1/devices?tokensExpiringWithinMs=${withinMs}`)).body.items.map((d: { deviceId: string }) => d.deviceId)
  t.same(await expiring(TTL_MS - 1), [], 'not within a TTL minus 1 ms')
  t.same(await expiring(TTL_MS), [device.id])

  clock.advance(20 * DAY_MS)
  t.same(await expiring(10 * DAY_MS), [device.id], 'ten days left after twenty')

  const rotated = await server.api('POST', `/api/v1/devices/${device.id}/tokens/operator/rotate`, { body: {} })
  t.equal(rotated.status, 200)
  t.equal(rotated.body.rotatedAtMs, clock.now())
  t.equal(rotated.body.expiresAtMs, clock.now() + TTL_MS, 'a full TTL from the rotation')
  t.ok(rotated.body.expiresAtMs > mintedAtMs + TTL_MS)
  t.same(await expiring(10 * DAY_MS), [], 'no longer expiring soon')

  const conn = await device.connect(server.wsUrl, { deviceToken: rotated.body.token, scopes: ['operator.read'] })
  t.equal(conn.res.ok, true)
  clock.advance(10 * DAY_MS)
  await assertOpen(t, conn.socket, 'past the first token\'s expiry')
  clock.advance(20 * DAY_MS)
  t.same(await conn.socket.closedWithin(5000), { code: 1008, reason: 'device token expired' }, 'closes at the rotated token\'s expiry')
})

t.test('DEVICE_TOKEN_TTL_MS=0: tokens never expire, and no timer is armed', async (t) => {
  const clock = new ManualClock()
  const server = await startServer(t, { deviceTokenTtlMs: 0 }, false, { clock })
  const { device, deviceToken } = await pairDevice(server, ['operator.read'])
  const conn = await device.connect(server.wsUrl, { deviceToken, scopes: ['operator.read'] })
  t.equal(conn.res.ok, true)
  t.equal(clock.pendingTimers, 0)
  clock.advance(3650 * DAY_MS)
  await assertOpen(t, conn.socket, 'ten years later')
  await conn.socket.close()
})

t.test('a per-device token lifetime overrides DEVICE_TOKEN_TTL_MS at rotation and at the next mint; never, and back to the default', async (t) => {
  const clock = new ManualClock()
  const server = await startServer(t, {}, false, { clock })
  const { device, deviceToken } = await pairDevice(server, ['operator.read'])
  const path = `/api/v1/devices/${device.id}/token-ttl`

  const set = await server.api('PUT', path, { body: { ttlMs: 2 * DAY_MS } })
  t.equal(set.status, 200)
  t.equal(set.body.tokenTtlMs, 2 * DAY_MS, 'the device shows its override')
  t.equal(set.body.tokens[0].expiresAtMs, clock.now() + TTL_MS, 'the current token keeps its expiry until it is rotated')

  const rotated = await server.api('POST', `/api/v1/devices/${device.id}/tokens/operator/rotate`)
  t.equal(rotated.body.expiresAtMs, clock.now() + 2 * DAY_MS, 'rotation gives the token the device\'s lifetime')
  const old = await device.connect(server.wsUrl, { deviceToken, scopes: ['operator.read'] })
  t.equal(old.res.error?.details?.code, 'AUTH_DEVICE_TOKEN_MISMATCH', 'the rotated-out token no longer works')
  await old.socket.closed

  clock.advance(2 * DAY_MS)
  const expired = await device.connect(server.wsUrl, { deviceToken: rotated.body.token, scopes: ['operator.read'] })
  t.equal(expired.res.error?.details?.code, 'AUTH_DEVICE_TOKEN_EXPIRED', 'and it expires after the override, not 30 days')
  await expired.socket.closed
  const minted = await device.connect(server.wsUrl, { token: server.config.gatewayToken, scopes: ['operator.read'] })
  t.equal(minted.res.ok, true)
  await minted.socket.close()
  t.equal((await server.api('GET', `/api/v1/devices/${device.id}`)).body.tokens[0].expiresAtMs, clock.now() + 2 * DAY_MS, 'a token minted at connect has the device\'s lifetime too')

  t.equal((await server.api('PUT', path, { body: { ttlMs: 0 } })).body.tokenTtlMs, 0)
  const forever = await server.api('POST', `/api/v1/devices/${device.id}/tokens/operator/rotate`)
  t.notOk('expiresAtMs' in forever.body, '0: tokens of this device never expire')

  const reset = await server.api('PUT', path, { body: { ttlMs: null } })
  t.notOk('tokenTtlMs' in reset.body, 'null: back to the server default')
  t.equal((await server.api('POST', `/api/v1/devices/${device.id}/tokens/operator/rotate`)).body.expiresAtMs, clock.now() + TTL_MS)

  const audit = await server.api('GET', `/api/v1/audit?deviceId=${device.id}&action=token.ttl.set`)
  t.same(audit.body.items.map((row: { details: unknown }) => row.details), [{ ttlMs: null }, { ttlMs: 0 }, { ttlMs: 2 * DAY_MS }], 'each change audited, newest first')

  t.equal((await server.api('PUT', path, { body: { ttlMs: -1 } })).status, 400, 'a negative lifetime is refused')
  t.equal((await server.api('PUT', path, { body: {} })).status, 400, 'ttlMs is required (null for the default)')
  t.equal((await server.api('PUT', '/api/v1/devices/nope/token-ttl', { body: { ttlMs: 1000 } })).status, 404)
  t.equal((await server.api('PUT', path, { body: { ttlMs: 1000 }, token: server.adminToken('viewer') })).status, 403, 'viewers cannot change it')
})
