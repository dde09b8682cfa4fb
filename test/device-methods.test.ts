import { createHash, randomUUID } from 'node:crypto'
import t from 'tap'
import { assertOpen, TestDevice, type Frame, type TestSocket } from './helpers/device.ts'
import { connectWithDeviceToken, pairDevice, requestPairing } from './helpers/pairing.ts'
import { startServer } from './helpers/server.ts'

// One server for the whole file. `pairer` holds operator.pairing and operator.read
// and stays connected throughout: every method call below comes from it unless said.
const server = await startServer(t)
const gatewayToken = server.config.gatewayToken
const pairerDevice = await pairDevice(server, ['operator.pairing', 'operator.read'], { teardown: t })
const pairer = pairerDevice.socket

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex')

function missingScope (scope: string): Record<string, unknown> {
  return { code: 'FORBIDDEN', message: `missing scope: ${scope}`, details: { code: 'MISSING_SCOPE', missingScope: scope, requiredScopes: [scope] } }
}

function invalidParams (field: string): Record<string, unknown> {
  return { code: 'INVALID_REQUEST', message: `invalid params: ${field}`, details: { code: 'INVALID_PARAMS', field } }
}

async function pairEvent (socket: TestSocket, event: 'device.pair.requested' | 'device.pair.resolved', requestId: string): Promise<Frame> {
  return await socket.next((f) => f.type === 'event' && f.event === event && f.payload?.requestId === requestId)
}

t.test('device.pair.list returns {pending, paired} with the entry fields of PROTOCOL.md', async (t) => {
  const newcomer = new TestDevice()
  const { requestId } = await requestPairing(server, ['operator.read'], {
    device: newcomer,
    deviceFamily: 'Phone',
    clientId: 'cli',
    mode: 'cli',
    tamper: (params) => { params.client.displayName = 'pocket' }
  })
  const requested = await pairEvent(pairer, 'device.pair.requested', requestId)
  t.match(requested.payload, { requestId, deviceId: newcomer.id, role: 'operator', scopes: ['operator.read'], reason: 'not-paired' })

  const res = await pairer.request('device.pair.list')
  t.equal(res.ok, true, JSON.stringify(res.error))
  t.same(Object.keys(res.payload).sort(), ['paired', 'pending'])

  const pending = res.payload.pending.find((p: { requestId: string }) => p.requestId === requestId)
  t.match(pending, {
    requestId,
    deviceId: newcomer.id,
    publicKey: newcomer.publicKey,
    platform: 'linux',
    deviceFamily: 'phone',
    clientId: 'cli',
    clientMode: 'cli',
    displayName: 'pocket',
    role: 'operator',
    roles: ['operator'],
    scopes: ['operator.read'],
    approvedScopes: [],
    reason: 'not-paired',
    isRepair: false,
    ts: Number
  })
  t.ok(Math.abs(pending.ts - Date.now()) < 60_000)

  const paired = res.payload.paired.find((p: { deviceId: string }) => p.deviceId === pairerDevice.device.id)
  t.match(paired, {
    deviceId: pairerDevice.device.id,
    publicKey: pairerDevice.device.publicKey,
    platform: 'linux',
    deviceFamily: '',
    role: 'operator',
    roles: ['operator'],
    scopes: ['operator.pairing', 'operator.read'],
    createdAtMs: Number,
    approvedAtMs: Number,
    tokens: [{ role: 'operator', scopes: ['operator.pairing', 'operator.read'], createdAtMs: Number }]
  })
  t.notOk(res.payload.paired.some((p: { deviceId: string }) => p.deviceId === newcomer.id), 'a pending device is not paired')
  const text = JSON.stringify(res.payload)
  t.notOk(text.includes(pairerDevice.deviceToken), 'no token secret')
  t.notOk(text.includes(sha256(pairerDevice.deviceToken)), 'no token hash')

  // Params may be absent or empty.
  const withEmpty = await pairer.request('device.pair.list', {})
  t.equal(withEmpty.ok, true)
  t.equal((await pairer.request('device.pair.reject', { requestId })).ok, true, 'cleanup')
})

t.test('device.pair.approve approves another device; device.pair.resolved (approved) reaches the pairing connection', async (t) => {
  const { device, requestId } = await requestPairing(server, ['operator.read'])
  await pairEvent(pairer, 'device.pair.requested', requestId)

  const res = await pairer.request('device.pair.approve', { requestId })
  t.equal(res.ok, true, JSON.stringify(res.error))
  t.same(Object.keys(res.payload).sort(), ['device', 'requestId'])
  t.equal(res.payload.requestId, requestId)
  t.match(res.payload.device, { deviceId: device.id, publicKey: device.publicKey, role: 'operator', roles: ['operator'], scopes: ['operator.read'], createdAtMs: Number, approvedAtMs: Number })

  const resolved = await pairEvent(pairer, 'device.pair.resolved', requestId)
  t.same(Object.keys(resolved.payload).sort(), ['decision', 'deviceId', 'requestId', 'ts'])
  t.match(resolved.payload, { requestId, deviceId: device.id, decision: 'approved', ts: Number })

  const admitted = await device.connect(server.wsUrl, { token: gatewayToken, scopes: ['operator.read'] })
  t.equal(admitted.res.ok, true, 'the approved device is admitted')
  await admitted.socket.close()

  const audit = await server.api('GET', `/api/v1/audit?deviceId=${device.id}&action=pairing.approved`)
  t.equal(audit.body.items[0]?.actor, pairerDevice.device.id, 'the approving device is the audit actor')

  const again = await pairer.request('device.pair.approve', { requestId })
  t.same(again.error, {
    code: 'INVALID_REQUEST',
    message: `pairing request ${requestId} is approved`,
    details: { code: 'PAIRING_REQUEST_NOT_PENDING', requestId, state: 'approved' }
  })
  await assertOpen(t, pairer, 'pairer')
})

t.test('approving operator.admin without holding it is FORBIDDEN missing scope: operator.admin; narrowing to operator.read works', async (t) => {
  const { device, requestId } = await requestPairing(server, ['operator.read', 'operator.admin'])

  const denied = await pairer.request('device.pair.approve', { requestId })
  t.equal(denied.ok, false)
  t.same(denied.error, missingScope('operator.admin'))
  await assertOpen(t, pairer, 'a missing scope is not a pairing problem')
  const explicit = await pairer.request('device.pair.approve', { requestId, scopes: ['operator.read', 'operator.admin'] })
  t.same(explicit.error, missingScope('operator.admin'))

  const still = await server.api('GET', `/api/v1/pairing-requests/${requestId}`)
  t.equal(still.body.state, 'pending', 'the refused approval changed nothing')

  const narrowed = await pairer.request('device.pair.approve', { requestId, scopes: ['operator.read'] })
  t.equal(narrowed.ok, true, JSON.stringify(narrowed.error))
  t.match(narrowed.payload.device, { deviceId: device.id, scopes: ['operator.read'] })
  t.match((await pairEvent(pairer, 'device.pair.resolved', requestId)).payload, { decision: 'approved' })

  const reader = await device.connect(server.wsUrl, { token: gatewayToken, scopes: ['operator.read'] })
  t.equal(reader.res.ok, true)
  await reader.socket.close()
  const admin = await device.connect(server.wsUrl, { token: gatewayToken, scopes: ['operator.admin'] })
  t.equal(admin.res.error?.message, 'pairing required (scope-upgrade)', 'operator.admin was not granted')
  await admin.socket.closed
})

t.test('a connection holding operator.admin may approve anything, operator.admin included', async (t) => {
  const admin = await pairDevice(server, ['operator.admin'], { keepOpen: true })
  const socket = admin.conn.socket
  const { device, requestId } = await requestPairing(server, ['operator.admin'])
  const res = await socket.request('device.pair.approve', { requestId })
  t.equal(res.ok, true, JSON.stringify(res.error))
  t.match(res.payload.device, { deviceId: device.id, scopes: ['operator.admin'] })
  const listed = await socket.request('device.pair.list')
  t.equal(listed.ok, true, 'operator.admin implies operator.pairing')
  await socket.close()
})

t.test('device.pair.reject rejects a request; a decided request is no longer pending', async (t) => {
  const { device, requestId } = await requestPairing(server, ['operator.read'])

  const res = await pairer.request('device.pair.reject', { requestId })
  t.equal(res.ok, true, JSON.stringify(res.error))
  t.same(res.payload, { requestId, deviceId: device.id })
  const resolved = await pairEvent(pairer, 'device.pair.resolved', requestId)
  t.same(Object.keys(resolved.payload).sort(), ['decision', 'deviceId', 'requestId', 'ts'])
  t.match(resolved.payload, { requestId, deviceId: device.id, decision: 'rejected', ts: Number })
  t.equal((await server.api('GET', `/api/v1/pairing-requests/${requestId}`)).body.state, 'rejected')

  const notPending = {
    code: 'INVALID_REQUEST',
    message: `pairing request ${requestId} is rejected`,
    details: { code: 'PAIRING_REQUEST_NOT_PENDING', requestId, state: 'rejected' }
  }
  t.same((await pairer.request('device.pair.reject', { requestId })).error, notPending)
  t.same((await pairer.request('device.pair.approve', { requestId })).error, notPending)

  const again = await device.connect(server.wsUrl, { token: gatewayToken, scopes: ['operator.read'] })
  t.equal(again.res.error?.message, 'pairing required (not-paired)', 'a rejected device is still not paired')
  t.not(again.res.error?.details.requestId, requestId, 'and asks again with a new request')
  await again.socket.closed
  await assertOpen(t, pairer, 'pairer')
})

t.test('an unknown requestId is INVALID_REQUEST unknown requestId: <id> with details.code PAIRING_REQUEST_NOT_FOUND', async (t) => {
  for (const requestId of [randomUUID(), 'not-a-request']) {
    for (const method of ['device.pair.approve', 'device.pair.reject']) {
      const res = await pairer.request(method, { requestId })
      t.equal(res.ok, false)
      t.match(res.error, { code: 'INVALID_REQUEST', message: `unknown requestId: ${requestId}`, details: { code: 'PAIRING_REQUEST_NOT_FOUND' } }, `${method} ${requestId}`)
    }
  }
  await assertOpen(t, pairer, 'pairer')
})

t.test('device.pair.remove unpairs a device; its socket closes 1008 device removed', async (t) => {
  const target = await pairDevice(server, ['operator.read'], { keepOpen: true })
  const res = await pairer.request('device.pair.remove', { deviceId: target.device.id })
  t.equal(res.ok, true, JSON.stringify(res.error))
  t.same(res.payload, { deviceId: target.device.id })
  t.same(await target.conn.socket.closedWithin(), { code: 1008, reason: 'device removed' })

  const again = await target.device.connect(server.wsUrl, { token: gatewayToken, scopes: ['operator.read'] })
  t.equal(again.res.error?.message, 'pairing required (not-paired)')
  await again.socket.closed

  const twice = await pairer.request('device.pair.remove', { deviceId: target.device.id })
  t.match(twice.error, { code: 'INVALID_REQUEST', message: `unknown deviceId: ${target.device.id}`, details: { code: 'DEVICE_NOT_FOUND' } })
  const audit = await server.api('GET', `/api/v1/audit?deviceId=${target.device.id}&action=device.removed`)
  t.equal(audit.body.items[0]?.actor, pairerDevice.device.id)
  await assertOpen(t, pairer, 'pairer')
})

t.test('device.token.rotate answers {deviceId, role, token, scopes, rotatedAtMs}; the old token stops working and its socket closes', async (t) => {
  const target = await pairDevice(server, ['operator.read'])
  const oldConn = await connectWithDeviceToken(server, target, ['operator.read'])

  const res = await pairer.request('device.token.rotate', { deviceId: target.device.id, role: 'operator' })
  t.equal(res.ok, true, JSON.stringify(res.error))
  t.same(Object.keys(res.payload).sort(), ['deviceId', 'role', 'rotatedAtMs', 'scopes', 'token'])
  t.match(res.payload, { deviceId: target.device.id, role: 'operator', token: String, scopes: ['operator.read'], rotatedAtMs: Number })
  t.not(res.payload.token, target.deviceToken)
  t.same(await oldConn.socket.closedWithin(), { code: 1008, reason: 'device token revoked' })

  const old = await target.device.connect(server.wsUrl, { deviceToken: target.deviceToken, scopes: ['operator.read'] })
  t.equal(old.res.error?.message, 'unauthorized: device token mismatch')
  await old.socket.closed
  const fresh = await target.device.connect(server.wsUrl, { deviceToken: res.payload.token, scopes: ['operator.read'] })
  t.equal(fresh.res.ok, true, 'the new token works')
  await fresh.socket.close()
  const shown = await server.api('GET', `/api/v1/devices/${target.device.id}`)
  t.notOk(JSON.stringify(shown.body).includes(res.payload.token), 'shown only in the rotate answer')

  // A token carries the device's scopes: minting one beyond the caller's own is a grant it cannot make.
  const privileged = await pairDevice(server, ['operator.admin'])
  const beyond = await pairer.request('device.token.rotate', { deviceId: privileged.device.id, role: 'operator' })
  t.same(beyond.error, missingScope('operator.admin'))

  const badRole = await pairer.request('device.token.rotate', { deviceId: target.device.id, role: 'admin' })
  t.match(badRole.error, { code: 'INVALID_REQUEST', message: 'invalid role: admin (expected operator or node)', details: { code: 'INVALID_ROLE' } })
  const unknown = await pairer.request('device.token.rotate', { deviceId: 'nope', role: 'operator' })
  t.match(unknown.error, { code: 'INVALID_REQUEST', message: 'unknown deviceId: nope', details: { code: 'DEVICE_NOT_FOUND' } })
  await assertOpen(t, pairer, 'pairer')
})

t.test('device.token.revoke answers {deviceId, role, revokedAtMs} and closes the sockets that logged in with the token', async (t) => {
  const target = await pairDevice(server, ['operator.read'])
  const tokenConn = await connectWithDeviceToken(server, target, ['operator.read'])

  const res = await pairer.request('device.token.revoke', { deviceId: target.device.id, role: 'operator' })
  t.equal(res.ok, true, JSON.stringify(res.error))
  t.same(Object.keys(res.payload).sort(), ['deviceId', 'revokedAtMs', 'role'])
  t.match(res.payload, { deviceId: target.device.id, role: 'operator', revokedAtMs: Number })
  t.same(await tokenConn.socket.closedWithin(), { code: 1008, reason: 'device token revoked' })

  const minted = await target.device.connect(server.wsUrl, { token: gatewayToken, scopes: ['operator.read'] })
  t.equal(minted.res.ok, true)
  t.type(minted.res.payload.auth.deviceToken, 'string', 'the next gateway-token connect mints a new token')
  await minted.socket.close()

  const noToken = await pairer.request('device.token.revoke', { deviceId: target.device.id, role: 'node' })
  t.match(noToken.error, { code: 'INVALID_REQUEST', details: { code: 'DEVICE_TOKEN_NOT_FOUND' } })
  await assertOpen(t, pairer, 'pairer')
})

t.test('bad params are INVALID_REQUEST naming the field, and the socket stays open', async (t) => {
  const cases: Array<[string, unknown, string]> = [
    ['device.pair.approve', {}, 'requestId'],
    ['device.pair.approve', { requestId: 7 }, 'requestId'],
    ['device.pair.approve', { requestId: '' }, 'requestId'],
    ['device.pair.approve', { requestId: randomUUID(), scopes: [] }, 'scopes'],
    ['device.pair.approve', { requestId: randomUUID(), scopes: 'operator.read' }, 'scopes'],
    ['device.pair.approve', { requestId: randomUUID(), scopes: [3] }, 'scopes[0]'],
    ['device.pair.reject', {}, 'requestId'],
    ['device.pair.remove', {}, 'deviceId'],
    ['device.pair.remove', { deviceId: null }, 'deviceId'],
    ['device.token.rotate', { role: 'operator' }, 'deviceId'],
    ['device.token.rotate', { deviceId: 'x' }, 'role'],
    ['device.token.revoke', { deviceId: 'x' }, 'role'],
    ['device.token.revoke', { deviceId: 'x', role: 5 }, 'role']
  ]
  for (const [method, params, field] of cases) {
    const res = await pairer.request(method, params)
    t.same(res.error, invalidParams(field), `${method} ${JSON.stringify(params)}`)
  }

  const notObject = await pairer.request('device.pair.approve', 'operator.read')
  t.match(notObject.error, { code: 'INVALID_REQUEST', message: /^invalid params: params\b/, details: { code: 'INVALID_PARAMS', field: 'params' } })

  const { requestId } = await requestPairing(server, ['operator.read'])
  const unknownScope = await pairer.request('device.pair.approve', { requestId, scopes: ['operator.bogus'] })
  t.same(unknownScope.error, {
    code: 'INVALID_REQUEST',
    message: 'invalid scope: operator.bogus',
    details: { code: 'INVALID_SCOPE', scope: 'operator.bogus' }
  }, 'an unknown scope string is INVALID_SCOPE, not a missing scope')
  const notRequested = await pairer.request('device.pair.approve', { requestId, scopes: ['operator.pairing'] })
  t.match(notRequested.error, { code: 'INVALID_REQUEST', details: { code: 'SCOPES_NOT_REQUESTED' } }, 'only a subset of the requested scopes')
  t.equal((await server.api('GET', `/api/v1/pairing-requests/${requestId}`)).body.state, 'pending', 'nothing was approved')
  t.equal((await pairer.request('device.pair.reject', { requestId })).ok, true, 'cleanup')

  const unknownMethod = await pairer.request('device.pair.frobnicate', {})
  t.equal(unknownMethod.error?.message, 'unknown method: device.pair.frobnicate')
  await assertOpen(t, pairer, 'pairer')
})

t.test('a connection without operator.pairing gets FORBIDDEN missing scope: operator.pairing and stays open', async (t) => {
  const reader = await pairDevice(server, ['operator.read', 'operator.write'], { keepOpen: true })
  const socket = reader.conn.socket
  const calls: Array<[string, unknown]> = [
    ['device.pair.list', undefined],
    ['device.pair.approve', { requestId: randomUUID() }],
    ['device.pair.reject', { requestId: randomUUID() }],
    ['device.pair.remove', { deviceId: pairerDevice.device.id }],
    ['device.token.rotate', { deviceId: pairerDevice.device.id, role: 'operator' }],
    ['device.token.revoke', { deviceId: pairerDevice.device.id, role: 'operator' }],
    // The scope is checked before the params.
    ['device.pair.approve', {}]
  ]
  for (const [method, params] of calls) {
    const res = await socket.request(method, params)
    t.same(res.error, missingScope('operator.pairing'), method)
  }
  await assertOpen(t, socket, 'reader')
  t.equal((await server.api('GET', `/api/v1/devices/${pairerDevice.device.id}`)).status, 200, 'nothing was removed')

  // Pairing events go to operator.pairing connections only.
  const { requestId } = await requestPairing(server, ['operator.read'])
  await pairEvent(pairer, 'device.pair.requested', requestId)
  t.equal((await pairer.request('device.pair.reject', { requestId })).ok, true)
  await pairEvent(pairer, 'device.pair.resolved', requestId)
  await socket.request('health')
  t.notOk(socket.frames.some((f) => f.type === 'event' && String(f.event).startsWith('device.pair.')), 'the reader saw no pairing event')
  await socket.close()
})

t.test('a probe (no device, gateway token) is admitted with no scopes and is FORBIDDEN too', async (t) => {
  const probe = await new TestDevice().connect(server.wsUrl, { noDevice: true, token: gatewayToken, scopes: ['operator.pairing', 'operator.admin'], mode: 'probe', minProtocol: 3 })
  t.equal(probe.res.ok, true, JSON.stringify(probe.res))
  t.same(probe.res.payload.auth.scopes, [])
  for (const method of ['device.pair.list', 'device.pair.approve', 'device.token.rotate']) {
    const res = await probe.socket.request(method, {})
    t.same(res.error, missingScope('operator.pairing'), method)
  }
  await assertOpen(t, probe.socket, 'probe')
  await probe.socket.close()
})
