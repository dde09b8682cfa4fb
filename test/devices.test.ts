import { createHash } from 'node:crypto'
import SwaggerParser from '@apidevtools/swagger-parser'
import pg from 'pg'
import t from 'tap'
import { assertOpen } from './helpers/device.ts'
import { connectWithDeviceToken, pairDevice, requestPairing } from './helpers/pairing.ts'
import { startServer, TEST_DATABASE_URL } from './helpers/server.ts'

// One server for the whole file; every test pairs devices of its own.
const server = await startServer(t)
const gatewayToken = server.config.gatewayToken

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex')
const unknownHexId = (): string => sha256(`no such device ${Math.random()}`)

async function tokenRows (deviceId: string): Promise<Array<Record<string, unknown>>> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL })
  await client.connect()
  try {
    const { rows } = await client.query(`SELECT * FROM "${server.config.databaseSchema}".device_tokens WHERE device_id = $1`, [deviceId])
    return rows
  } finally {
    await client.end()
  }
}

function notFound (id: string): Record<string, unknown> {
  return { statusCode: 404, code: 'DEVICE_NOT_FOUND', error: 'Not Found', message: `unknown deviceId: ${id}` }
}

t.test('GET /api/v1/devices lists paired devices newest first as {items, nextCursor} and pages with limit and cursor', async (t) => {
  const older = await pairDevice(server, ['operator.read'])
  const newer = await pairDevice(server, ['operator.read'])

  const all = await server.api('GET', '/api/v1/devices')
  t.equal(all.status, 200)
  t.same(Object.keys(all.body).sort(), ['items', 'nextCursor'])
  t.equal(all.body.nextCursor, null, 'one page holds them all')
  const ids = all.body.items.map((d: { deviceId: string }) => d.deviceId)
  t.ok(ids.indexOf(newer.device.id) >= 0 && ids.indexOf(newer.device.id) < ids.indexOf(older.device.id), 'newest first')
  for (let i = 1; i < all.body.items.length; i++) {
    t.ok(all.body.items[i - 1].createdAtMs >= all.body.items[i].createdAtMs, 'ordered by creation, newest first')
  }

  const first = await server.api('GET', '/api/v1/devices?limit=1')
  t.equal(first.status, 200)
  t.equal(first.body.items.length, 1)
  t.equal(first.body.items[0].deviceId, ids[0])
  t.type(first.body.nextCursor, 'string')

  const second = await server.api('GET', `/api/v1/devices?limit=1&cursor=${encodeURIComponent(first.body.nextCursor)}`)
  t.equal(second.status, 200)
  t.equal(second.body.items.length, 1)
  t.equal(second.body.items[0].deviceId, ids[1])

  // Walking the pages one by one gives the unpaged list, with no repeat and no gap.
  const walked: string[] = []
  let cursor: string | null = null
  do {
    const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`
    const page = await server.api('GET', `/api/v1/devices?limit=1${query}`)
    t.equal(page.status, 200)
    walked.push(...page.body.items.map((d: { deviceId: string }) => d.deviceId))
    cursor = page.body.nextCursor
  } while (cursor !== null && walked.length <= ids.length)
  t.same(walked, ids)

  const badCursor = await server.api('GET', '/api/v1/devices?cursor=not-a-cursor')
  t.equal(badCursor.status, 400)
  t.equal(badCursor.body.code, 'INVALID_CURSOR')
  // Well-formed JSON, but a time no page ever ended at: still not a cursor this API returned.
  const forged = Buffer.from(JSON.stringify([1e20, 'x'])).toString('base64url')
  const forgedRes = await server.api('GET', `/api/v1/devices?cursor=${forged}`)
  t.equal(forgedRes.status, 400, 'a forged cursor is 400')
  t.equal(forgedRes.body.code, 'INVALID_CURSOR')
  for (const limit of ['0', '501', 'x']) {
    const bad = await server.api('GET', `/api/v1/devices?limit=${limit}`)
    t.equal(bad.status, 400, `limit=${limit} is refused`)
    t.match(bad.body.message, /limit/, 'the message names the field')
  }
})

t.test('GET /api/v1/devices?tokensExpiringWithinMs lists only devices with a live token expiring within that time', async (t) => {
  const withToken = await pairDevice(server, ['operator.read'])
  // Approved, but never connected since: no token yet.
  const { device: noToken, requestId } = await requestPairing(server, ['operator.read'])
  const approved = await server.api('POST', `/api/v1/pairing-requests/${requestId}/approve`)
  t.equal(approved.status, 200)
  // A revoked token expires never.
  const revoked = await pairDevice(server, ['operator.read'])
  t.equal((await server.api('DELETE', `/api/v1/devices/${revoked.device.id}/tokens/operator`)).status, 200)

  const ttl = server.config.deviceTokenTtlMs
  const soon = await server.api('GET', '/api/v1/devices?tokensExpiringWithinMs=60000')
  t.equal(soon.status, 200)
  t.same(soon.body.items, [], 'no token expires within a minute')
  t.equal(soon.body.nextCursor, null)

  const later = await server.api('GET', `/api/v1/devices?tokensExpiringWithinMs=${ttl + 60_000}`)
  t.equal(later.status, 200)
  const ids = later.body.items.map((d: { deviceId: string }) => d.deviceId)
  t.ok(ids.includes(withToken.device.id), 'a device whose token expires within the window is listed')
  t.notOk(ids.includes(noToken.id), 'a device without a token is not')
  t.notOk(ids.includes(revoked.device.id), 'a device whose token was revoked is not')
  const entry = later.body.items.find((d: { deviceId: string }) => d.deviceId === withToken.device.id)
  t.ok(entry.tokens[0].expiresAtMs <= Date.now() + ttl + 60_000)

  for (const huge of ['9007199254740991', '100000000000000000000']) {
    const all = await server.api('GET', `/api/v1/devices?tokensExpiringWithinMs=${huge}`)
    t.equal(all.status, 200, `a window of ${huge} ms is every expiring token`)
    t.ok(all.body.items?.some((d: { deviceId: string }) => d.deviceId === withToken.device.id))
  }

  const negative = await server.api('GET', '/api/v1/devices?tokensExpiringWithinMs=-1')
  t.equal(negative.status, 400)
  t.match(negative.body.message, /tokensExpiringWithinMs/)
})

t.test('GET /api/v1/devices/:id answers the paired entry of PROTOCOL.md, never a token secret or hash', async (t) => {
  const before = Date.now()
  const paired = await pairDevice(server, ['operator.write', 'operator.read'], { platform: 'Linux ', deviceFamily: 'Desktop' })
  const res = await server.api('GET', `/api/v1/devices/${paired.device.id}`)
  t.equal(res.status, 200)
  const device = res.body
  t.match(device, {
    deviceId: paired.device.id,
    publicKey: paired.device.publicKey,
    platform: 'linux',
    deviceFamily: 'desktop',
    role: 'operator',
    roles: ['operator'],
    scopes: ['operator.read', 'operator.write'],
    createdAtMs: Number,
    approvedAtMs: Number
  })
  t.ok(device.createdAtMs >= before - 1000 && device.createdAtMs <= Date.now())
  t.ok(device.approvedAtMs >= device.createdAtMs)
  t.equal(device.tokens.length, 1)
  t.match(device.tokens[0], { role: 'operator', scopes: ['operator.read', 'operator.write'], createdAtMs: Number })
  t.notOk('revokedAtMs' in device.tokens[0])
  t.same(Object.keys(device.tokens[0]).filter((k) => !['role', 'scopes', 'createdAtMs', 'rotatedAtMs', 'revokedAtMs', 'expiresAtMs'].includes(k)), [],
    'a token entry has only the documented fields')

  const text = JSON.stringify(device)
  t.notOk(text.includes(paired.deviceToken), 'the device token is nowhere in the JSON')
  t.notOk(text.includes(sha256(paired.deviceToken)), 'nor its hash')
  t.notMatch(text, /"(token|tokenHash|hash|token_hash|secret)"/, 'no field carries a secret')

  const listed = await server.api('GET', '/api/v1/devices')
  const listText = JSON.stringify(listed.body)
  t.notOk(listText.includes(paired.deviceToken), 'the list never shows the token')
  t.notOk(listText.includes(sha256(paired.deviceToken)), 'nor its hash')
})

t.test('unknown device ids answer 404 DEVICE_NOT_FOUND on every device route, whatever their shape', async (t) => {
  for (const id of [unknownHexId(), 'not-a-device', 'ABC', 'x'.repeat(100), 'x'.repeat(101)]) {
    const get = await server.api('GET', `/api/v1/devices/${id}`)
    t.equal(get.status, 404, `GET ${id}`)
    t.same(get.body, notFound(id))
    const del = await server.api('DELETE', `/api/v1/devices/${id}`)
    t.equal(del.status, 404, `DELETE ${id}`)
    t.same(del.body, notFound(id))
  }
  // API.md: ids are valid up to 128 characters (beyond Fastify's default path parameter limit of 100).
  const longId = 'x'.repeat(128)
  const long = await server.api('GET', `/api/v1/devices/${longId}`)
  t.equal(long.status, 404, 'a 128-character id that matches nothing is 404')
  t.same(long.body, notFound(longId))
  const id = unknownHexId()
  const routes: Array<[string, string, unknown?]> = [
    ['PUT', `/api/v1/devices/${id}/roles/operator/scopes`, { scopes: ['operator.read'] }],
    ['POST', `/api/v1/devices/${id}/roles/operator/scopes`, { scopes: ['operator.read'] }],
    ['DELETE', `/api/v1/devices/${id}/roles/operator/scopes/operator.read`],
    ['POST', `/api/v1/devices/${id}/tokens/operator/rotate`, {}],
    ['DELETE', `/api/v1/devices/${id}/tokens/operator`]
  ]
  for (const [method, path, body] of routes) {
    const res = await server.api(method, path, body === undefined ? {} : { body })
    t.equal(res.status, 404, `${method} ${path}`)
    t.same(res.body, notFound(id))
  }
  const tooLong = await server.api('GET', `/api/v1/devices/${'x'.repeat(129)}`)
  t.equal(tooLong.status, 400, 'an id over 128 characters is invalid input')
  t.match(tooLong.body, { statusCode: 400, error: 'Bad Request', message: /id/ })
})

t.test('DELETE /api/v1/devices/:id unpairs the device: its socket closes 1008 device removed and it must pair again', async (t) => {
  const paired = await pairDevice(server, ['operator.read'], { keepOpen: true })
  const other = await pairDevice(server, ['operator.read'], { keepOpen: true })

  const res = await server.api('DELETE', `/api/v1/devices/${paired.device.id}`)
  t.equal(res.status, 200)
  t.same(res.body, { deviceId: paired.device.id })
  t.same(await paired.conn.socket.closedWithin(), { code: 1008, reason: 'device removed' })
  await assertOpen(t, other.conn.socket, 'another device')

  t.same((await server.api('GET', `/api/v1/devices/${paired.device.id}`)).body, notFound(paired.device.id))
  const again = await paired.device.connect(server.wsUrl, { token: gatewayToken, scopes: ['operator.read'] })
  t.equal(again.res.ok, false)
  t.equal(again.res.error.code, 'NOT_PAIRED')
  t.equal(again.res.error.message, 'pairing required (not-paired)')
  t.same(await again.socket.closed, { code: 1008, reason: 'pairing required (not-paired)' })
  t.same(await tokenRows(paired.device.id), [], 'its token is gone with it')

  const twice = await server.api('DELETE', `/api/v1/devices/${paired.device.id}`)
  t.equal(twice.status, 404)
  t.same(twice.body, notFound(paired.device.id))
  await other.conn.socket.close()
})

t.test('PUT .../roles/operator/scopes sets the scopes exactly and closes only the sockets left uncovered', async (t) => {
  const paired = await pairDevice(server, ['operator.read', 'operator.write'])
  const reader = await connectWithDeviceToken(server, paired, ['operator.read'])
  const writer = await connectWithDeviceToken(server, paired, ['operator.write'])

  const res = await server.api('PUT', `/api/v1/devices/${paired.device.id}/roles/operator/scopes`, { body: { scopes: ['operator.read'] } })
  t.equal(res.status, 200)
  t.match(res.body, { deviceId: paired.device.id, role: 'operator', roles: ['operator'], scopes: ['operator.read'] })
  t.same(res.body.tokens.map((tok: { scopes: string[] }) => tok.scopes), [['operator.read']], 'the token follows the grant')
  t.same(await writer.socket.closedWithin(), { code: 1008, reason: 'scope revoked (operator.write)' })
  await assertOpen(t, reader.socket, 'operator.read still covered')

  // Set to a larger list: nothing is removed, nothing closes.
  const grown = await server.api('PUT', `/api/v1/devices/${paired.device.id}/roles/operator/scopes`, { body: { scopes: ['operator.pairing', 'operator.admin', 'operator.read'] } })
  t.equal(grown.status, 200)
  t.same(grown.body.scopes, ['operator.admin', 'operator.pairing', 'operator.read'], 'stored sorted')
  const pairer = await connectWithDeviceToken(server, paired, ['operator.pairing'])

  // Dropping several: the reason names the first removed scope in sorted order.
  const shrunk = await server.api('PUT', `/api/v1/devices/${paired.device.id}/roles/operator/scopes`, { body: { scopes: ['operator.read'] } })
  t.equal(shrunk.status, 200)
  t.same(shrunk.body.scopes, ['operator.read'])
  t.same(await pairer.socket.closedWithin(), { code: 1008, reason: 'scope revoked (operator.admin)' })
  await assertOpen(t, reader.socket, 'operator.read still covered after the second set')

  const refused = await paired.device.connect(server.wsUrl, { deviceToken: paired.deviceToken, scopes: ['operator.write'] })
  t.equal(refused.res.error?.message, 'pairing required (scope-upgrade)', 'a removed scope needs a new approval')
  await refused.socket.closed

  const empty = await server.api('PUT', `/api/v1/devices/${paired.device.id}/roles/operator/scopes`, { body: { scopes: [] } })
  t.equal(empty.status, 200)
  t.same(empty.body.scopes, [])
  t.same(await reader.socket.closedWithin(), { code: 1008, reason: 'scope revoked (operator.read)' })

  const invalidRole = await server.api('PUT', `/api/v1/devices/${paired.device.id}/roles/admin/scopes`, { body: { scopes: ['operator.read'] } })
  t.equal(invalidRole.status, 400)
  t.match(invalidRole.body, { statusCode: 400, code: 'INVALID_ROLE', error: 'Bad Request', message: 'invalid role: admin (expected operator or node)' })
  const invalidScope = await server.api('PUT', `/api/v1/devices/${paired.device.id}/roles/operator/scopes`, { body: { scopes: ['operator.read', 'operator.bogus'] } })
  t.equal(invalidScope.status, 400)
  t.same(invalidScope.body, { statusCode: 400, code: 'INVALID_SCOPE', error: 'Bad Request', message: 'invalid scope: operator.bogus' })
  const noBody = await server.api('PUT', `/api/v1/devices/${paired.device.id}/roles/operator/scopes`, { body: {} })
  t.equal(noBody.status, 400)
  t.match(noBody.body.message, /scopes/, 'a missing field is named')
  t.same((await server.api('GET', `/api/v1/devices/${paired.device.id}`)).body.scopes, [], 'refused changes change nothing')
})

t.test('a socket is covered through implication: it stays open while any held scope implies its own, and closes naming the removed one', async (t) => {
  const paired = await pairDevice(server, ['operator.write'])
  const reader = await connectWithDeviceToken(server, paired, ['operator.read'])
  t.same(reader.res.payload.auth.scopes, ['operator.read'], 'operator.write covers operator.read')
  const other = await connectWithDeviceToken(server, paired, ['operator.read'])

  // operator.write goes, operator.admin comes: operator.read is still covered.
  const swapped = await server.api('PUT', `/api/v1/devices/${paired.device.id}/roles/operator/scopes`, { body: { scopes: ['operator.admin'] } })
  t.equal(swapped.status, 200)
  const writer = await connectWithDeviceToken(server, paired, ['operator.write'])
  await assertOpen(t, reader.socket, 'covered by operator.admin')

  const revoked = await server.api('DELETE', `/api/v1/devices/${paired.device.id}/roles/operator/scopes/operator.admin`)
  t.equal(revoked.status, 200)
  t.same(revoked.body.scopes, [])
  for (const conn of [reader, other, writer]) {
    t.same(await conn.socket.closedWithin(), { code: 1008, reason: 'scope revoked (operator.admin)' })
  }
})

t.test('POST .../roles/operator/scopes adds scopes and keeps every socket open', async (t) => {
  const paired = await pairDevice(server, ['operator.read'])
  const reader = await connectWithDeviceToken(server, paired, ['operator.read'])

  const res = await server.api('POST', `/api/v1/devices/${paired.device.id}/roles/operator/scopes`, { body: { scopes: ['operator.write', 'operator.read'] } })
  t.equal(res.status, 200)
  t.match(res.body, { deviceId: paired.device.id, role: 'operator', scopes: ['operator.read', 'operator.write'] })

  const writer = await paired.device.connect(server.wsUrl, { deviceToken: paired.deviceToken, scopes: ['operator.write'] })
  t.equal(writer.res.ok, true, 'the added scope is usable without a new pairing')
  t.same(writer.res.payload.auth.scopes, ['operator.write'])
  await assertOpen(t, reader.socket, 'adding closes nothing')

  const invalidScope = await server.api('POST', `/api/v1/devices/${paired.device.id}/roles/operator/scopes`, { body: { scopes: ['admin'] } })
  t.equal(invalidScope.status, 400)
  t.same(invalidScope.body, { statusCode: 400, code: 'INVALID_SCOPE', error: 'Bad Request', message: 'invalid scope: admin' })
  const invalidRole = await server.api('POST', `/api/v1/devices/${paired.device.id}/roles/viewer/scopes`, { body: { scopes: ['operator.read'] } })
  t.equal(invalidRole.status, 400)
  t.equal(invalidRole.body.code, 'INVALID_ROLE')
  await reader.socket.close()
  await writer.socket.close()
})

t.test('DELETE .../roles/operator/scopes/:scope revokes one scope and closes the sockets using it', async (t) => {
  const paired = await pairDevice(server, ['operator.read', 'operator.write'])
  const writer = await connectWithDeviceToken(server, paired, ['operator.write'])
  const reader = await connectWithDeviceToken(server, paired, ['operator.read'])

  const res = await server.api('DELETE', `/api/v1/devices/${paired.device.id}/roles/operator/scopes/operator.write`)
  t.equal(res.status, 200)
  t.match(res.body, { deviceId: paired.device.id, role: 'operator', scopes: ['operator.read'] })
  t.same(await writer.socket.closedWithin(), { code: 1008, reason: 'scope revoked (operator.write)' })
  await assertOpen(t, reader.socket, 'a socket with operator.read only')

  const notHeld = await server.api('DELETE', `/api/v1/devices/${paired.device.id}/roles/operator/scopes/operator.write`)
  t.equal(notHeld.status, 404)
  t.same(notHeld.body, {
    statusCode: 404,
    code: 'SCOPE_NOT_GRANTED',
    error: 'Not Found',
    message: `device ${paired.device.id} holds no scope operator.write for role operator`
  })
  const invalidRole = await server.api('DELETE', `/api/v1/devices/${paired.device.id}/roles/superuser/scopes/operator.read`)
  t.equal(invalidRole.status, 400)
  t.same(invalidRole.body, { statusCode: 400, code: 'INVALID_ROLE', error: 'Bad Request', message: 'invalid role: superuser (expected operator or node)' })
  const invalidScope = await server.api('DELETE', `/api/v1/devices/${paired.device.id}/roles/operator/scopes/operator.everything`)
  t.equal(invalidScope.status, 400)
  t.same(invalidScope.body, { statusCode: 400, code: 'INVALID_SCOPE', error: 'Bad Request', message: 'invalid scope: operator.everything' })
  const otherRole = await server.api('DELETE', `/api/v1/devices/${paired.device.id}/roles/node/scopes/operator.read`)
  t.equal(otherRole.status, 404, 'a role the device is not paired for')
  t.equal(otherRole.body.code, 'DEVICE_ROLE_NOT_FOUND')

  const last = await server.api('DELETE', `/api/v1/devices/${paired.device.id}/roles/operator/scopes/operator.read`)
  t.equal(last.status, 200)
  t.same(last.body.scopes, [])
  t.same(await reader.socket.closedWithin(), { code: 1008, reason: 'scope revoked (operator.read)' })
})

t.test('POST .../tokens/operator/rotate returns a new token once; the old one stops working and its sockets close', async (t) => {
  const paired = await pairDevice(server, ['operator.read', 'operator.write'])
  const oldTokenConn = await connectWithDeviceToken(server, paired, ['operator.read'])
  const gatewayConn = await paired.device.connect(server.wsUrl, { token: gatewayToken, scopes: ['operator.read'] })
  t.equal(gatewayConn.res.ok, true)
  t.notOk('deviceToken' in gatewayConn.res.payload.auth, 'no token is minted while one is live')

  const before = Date.now()
  const res = await server.api('POST', `/api/v1/devices/${paired.device.id}/tokens/operator/rotate`)
  t.equal(res.status, 200)
  const rotated = res.body
  t.match(rotated, { deviceId: paired.device.id, role: 'operator', token: String, scopes: ['operator.read', 'operator.write'], rotatedAtMs: Number })
  t.ok(rotated.rotatedAtMs >= before - 1000 && rotated.rotatedAtMs <= Date.now() + 1000)
  t.not(rotated.token, paired.deviceToken)
  t.ok(rotated.token.length >= 32)

  t.same(await oldTokenConn.socket.closedWithin(), { code: 1008, reason: 'device token revoked' })
  await assertOpen(t, gatewayConn.socket, 'the socket that logged in with the gateway token')

  const old = await paired.device.connect(server.wsUrl, { deviceToken: paired.deviceToken, scopes: ['operator.read'] })
  t.equal(old.res.ok, false)
  t.match(old.res.error, { code: 'INVALID_REQUEST', message: 'unauthorized: device token mismatch', details: { code: 'AUTH_DEVICE_TOKEN_MISMATCH' } })
  t.same(await old.socket.closed, { code: 1008, reason: 'unauthorized: device token mismatch' })

  const fresh = await paired.device.connect(server.wsUrl, { deviceToken: rotated.token, scopes: ['operator.write'] })
  t.equal(fresh.res.ok, true, JSON.stringify(fresh.res))
  t.equal(fresh.res.payload.auth.method, 'device-token')
  t.same(fresh.res.payload.auth.scopes, ['operator.write'])

  const device = await server.api('GET', `/api/v1/devices/${paired.device.id}`)
  t.equal(device.status, 200)
  t.notOk(JSON.stringify(device.body).includes(rotated.token), 'the new token appears in no later response')
  t.notOk(JSON.stringify(device.body).includes(sha256(rotated.token)), 'nor its hash')
  t.equal(device.body.tokens[0].rotatedAtMs, rotated.rotatedAtMs)
  const audit = await server.api('GET', `/api/v1/audit?deviceId=${paired.device.id}`)
  t.notOk(JSON.stringify(audit.body).includes(rotated.token), 'nor the audit log')

  const rows = await tokenRows(paired.device.id)
  t.equal(rows.length, 1)
  t.equal(rows[0]?.token_hash, sha256(rotated.token), 'the column holds the SHA-256 hex of the token')
  t.match(rows[0]?.token_hash, /^[0-9a-f]{64}$/)
  t.notOk(JSON.stringify(rows).includes(rotated.token), 'the token itself is stored nowhere in the row')

  // An empty JSON body is the same as none.
  const again = await server.api('POST', `/api/v1/devices/${paired.device.id}/tokens/operator/rotate`, { body: {} })
  t.equal(again.status, 200)
  t.not(again.body.token, rotated.token)
  t.same(await fresh.socket.closedWithin(), { code: 1008, reason: 'device token revoked' })

  const narrowed = await server.api('POST', `/api/v1/devices/${paired.device.id}/tokens/operator/rotate`, { body: { scopes: ['operator.read'] } })
  t.equal(narrowed.status, 200)
  t.same(narrowed.body.scopes, ['operator.read'])
  const beyond = await server.api('POST', `/api/v1/devices/${paired.device.id}/tokens/operator/rotate`, { body: { scopes: ['operator.admin'] } })
  t.equal(beyond.status, 404)
  t.equal(beyond.body.code, 'SCOPE_NOT_GRANTED')

  const invalidRole = await server.api('POST', `/api/v1/devices/${paired.device.id}/tokens/root/rotate`)
  t.equal(invalidRole.status, 400)
  t.equal(invalidRole.body.code, 'INVALID_ROLE')
  const unpairedRole = await server.api('POST', `/api/v1/devices/${paired.device.id}/tokens/node/rotate`)
  t.equal(unpairedRole.status, 404)
  t.equal(unpairedRole.body.code, 'DEVICE_ROLE_NOT_FOUND')
  await gatewayConn.socket.close()
})

t.test('DELETE .../tokens/operator revokes the token; its sockets close and the next gateway-token connect mints a new one', async (t) => {
  const paired = await pairDevice(server, ['operator.read'])
  const tokenConn = await connectWithDeviceToken(server, paired, ['operator.read'])
  const gatewayConn = await paired.device.connect(server.wsUrl, { token: gatewayToken, scopes: ['operator.read'] })
  t.equal(gatewayConn.res.ok, true)

  const before = Date.now()
  const res = await server.api('DELETE', `/api/v1/devices/${paired.device.id}/tokens/operator`)
  t.equal(res.status, 200)
  t.same(Object.keys(res.body).sort(), ['deviceId', 'revokedAtMs', 'role'])
  t.match(res.body, { deviceId: paired.device.id, role: 'operator', revokedAtMs: Number })
  t.ok(res.body.revokedAtMs >= before - 1000 && res.body.revokedAtMs <= Date.now() + 1000)
  t.same(await tokenConn.socket.closedWithin(), { code: 1008, reason: 'device token revoked' })
  await assertOpen(t, gatewayConn.socket, 'the socket that logged in with the gateway token')

  const device = await server.api('GET', `/api/v1/devices/${paired.device.id}`)
  t.equal(device.body.tokens[0].revokedAtMs, res.body.revokedAtMs)

  const revoked = await paired.device.connect(server.wsUrl, { deviceToken: paired.deviceToken, scopes: ['operator.read'] })
  t.equal(revoked.res.ok, false)
  t.equal(revoked.res.error.message, 'unauthorized: device token mismatch')
  await revoked.socket.closed

  const minted = await paired.device.connect(server.wsUrl, { token: gatewayToken, scopes: ['operator.read'] })
  t.equal(minted.res.ok, true)
  const newToken = minted.res.payload.auth.deviceToken
  t.type(newToken, 'string', 'hello-ok carries a new device token')
  t.not(newToken, paired.deviceToken)
  await minted.socket.close()
  const withNew = await paired.device.connect(server.wsUrl, { deviceToken: newToken, scopes: ['operator.read'] })
  t.equal(withNew.res.ok, true, 'the new token works')
  await withNew.socket.close()

  const invalidRole = await server.api('DELETE', `/api/v1/devices/${paired.device.id}/tokens/guest`)
  t.equal(invalidRole.status, 400)
  t.equal(invalidRole.body.code, 'INVALID_ROLE')
  const noToken = await server.api('DELETE', `/api/v1/devices/${paired.device.id}/tokens/node`)
  t.equal(noToken.status, 404)
  t.equal(noToken.body.code, 'DEVICE_TOKEN_NOT_FOUND')
  await gatewayConn.socket.close()
})

t.test('change bodies are validated as sent: a wrong type or an unknown field is 400 naming the field, and changes nothing', async (t) => {
  const paired = await pairDevice(server, ['operator.read', 'operator.write'])
  const id = paired.device.id
  const cases: Array<[string, string, unknown, RegExp]> = [
    ['PUT', `/api/v1/devices/${id}/roles/operator/scopes`, { scopes: 'operator.read' }, /scopes/],
    ['POST', `/api/v1/devices/${id}/roles/operator/scopes`, { scopes: 'operator.admin' }, /scopes/],
    ['PUT', `/api/v1/devices/${id}/roles/operator/scopes`, { scopes: ['operator.read'], role: 'node' }, /role/],
    // A misspelt narrowing must not rotate a token with every scope.
    ['POST', `/api/v1/devices/${id}/tokens/operator/rotate`, { scope: ['operator.read'] }, /scope/],
    ['POST', `/api/v1/devices/${id}/tokens/operator/rotate`, { scopes: 'operator.read' }, /scopes/]
  ]
  for (const [method, path, body, field] of cases) {
    const res = await server.api(method, path, { body })
    t.equal(res.status, 400, `${method} ${path} ${JSON.stringify(body)}`)
    t.match(res.body, { statusCode: 400, error: 'Bad Request', message: field })
  }
  const after = await server.api('GET', `/api/v1/devices/${id}`)
  t.same(after.body.scopes, ['operator.read', 'operator.write'], 'the grant is unchanged')
  t.notOk('rotatedAtMs' in after.body.tokens[0], 'the token was not rotated')
  const connect = await paired.device.connect(server.wsUrl, { deviceToken: paired.deviceToken, scopes: ['operator.read'] })
  t.equal(connect.res.ok, true, 'the token still works')
  await connect.socket.close()
})

t.test('a viewer JWT reads every device route and gets 403 on every change; no JWT is 401', async (t) => {
  const paired = await pairDevice(server, ['operator.read', 'operator.write'])
  const id = paired.device.id
  const viewer = server.adminToken('viewer', 'vera')
  for (const path of ['/api/v1/devices', `/api/v1/devices/${id}`, `/api/v1/audit?deviceId=${id}`, '/api/v1/audit']) {
    const res = await server.api('GET', path, { token: viewer })
    t.equal(res.status, 200, `viewer GET ${path}`)
  }
  const mutating: Array<[string, string, unknown?]> = [
    ['DELETE', `/api/v1/devices/${id}`],
    ['PUT', `/api/v1/devices/${id}/roles/operator/scopes`, { scopes: ['operator.read'] }],
    ['POST', `/api/v1/devices/${id}/roles/operator/scopes`, { scopes: ['operator.admin'] }],
    ['DELETE', `/api/v1/devices/${id}/roles/operator/scopes/operator.write`],
    ['POST', `/api/v1/devices/${id}/tokens/operator/rotate`, {}],
    ['DELETE', `/api/v1/devices/${id}/tokens/operator`]
  ]
  for (const [method, path, body] of mutating) {
    const res = await server.api(method, path, { token: viewer, ...(body !== undefined && { body }) })
    t.equal(res.status, 403, `viewer ${method} ${path}`)
    t.match(res.body, { statusCode: 403, code: 'FORBIDDEN', error: 'Forbidden', message: String })
    const anonymous = await server.api(method, path, { token: null, ...(body !== undefined && { body }) })
    t.equal(anonymous.status, 401, `no JWT ${method} ${path}`)
    t.match(anonymous.body, { statusCode: 401, error: 'Unauthorized', code: String, message: String })
  }
  for (const path of ['/api/v1/devices', `/api/v1/devices/${id}`, '/api/v1/audit']) {
    const res = await server.api('GET', path, { token: null })
    t.equal(res.status, 401, `no JWT GET ${path}`)
    t.match(res.body, { statusCode: 401, error: 'Unauthorized' })
    const bad = await server.api('GET', path, { token: 'not.a.jwt' })
    t.equal(bad.status, 401, `bad JWT GET ${path}`)
  }
  const after = await server.api('GET', `/api/v1/devices/${id}`)
  t.match(after.body, { scopes: ['operator.read', 'operator.write'] }, 'nothing changed')
  t.equal(after.body.tokens[0].revokedAtMs, undefined)
  const audit = await server.api('GET', `/api/v1/audit?deviceId=${id}`)
  t.same(audit.body.items.map((e: { action: string }) => e.action), ['pairing.approved', 'pairing.requested'], 'no change was audited')
})

t.test('GET /api/v1/audit lists each change newest first with the JWT sub as actor, filters by device and action, and pages', async (t) => {
  const paired = await pairDevice(server, ['operator.read', 'operator.write'])
  const id = paired.device.id
  const alice = server.adminToken('admin', 'alice')
  const steps: Array<[string, string, unknown?]> = [
    ['PUT', `/api/v1/devices/${id}/roles/operator/scopes`, { scopes: ['operator.read'] }],
    ['POST', `/api/v1/devices/${id}/roles/operator/scopes`, { scopes: ['operator.write', 'operator.pairing'] }],
    ['DELETE', `/api/v1/devices/${id}/roles/operator/scopes/operator.pairing`],
    ['POST', `/api/v1/devices/${id}/tokens/operator/rotate`, {}],
    ['DELETE', `/api/v1/devices/${id}/tokens/operator`],
    ['DELETE', `/api/v1/devices/${id}`]
  ]
  for (const [method, path, body] of steps) {
    const res = await server.api(method, path, { token: alice, ...(body !== undefined && { body }) })
    t.equal(res.status, 200, `${method} ${path}`)
  }

  const res = await server.api('GET', `/api/v1/audit?deviceId=${id}`)
  t.equal(res.status, 200)
  t.same(Object.keys(res.body).sort(), ['items', 'nextCursor'])
  t.equal(res.body.nextCursor, null)
  const items = res.body.items as Array<Record<string, any>>
  t.same(items.map((e) => [e.action, e.actor]), [
    ['device.removed', 'alice'],
    ['token.revoked', 'alice'],
    ['token.rotated', 'alice'],
    ['scope.revoked', 'alice'],
    ['scopes.added', 'alice'],
    ['scopes.set', 'alice'],
    ['pairing.approved', 'test-admin'],
    ['pairing.requested', id]
  ])
  for (const entry of items) {
    t.match(entry, { id: String, atMs: Number, actor: String, action: String, deviceId: id, details: Object })
    t.same(Object.keys(entry).filter((k) => !['id', 'atMs', 'actor', 'action', 'deviceId', 'requestId', 'details'].includes(k)), [])
  }
  for (let i = 1; i < items.length; i++) {
    t.ok(BigInt(items[i - 1]!.id) > BigInt(items[i]!.id), 'ids descend')
    t.ok(items[i - 1]!.atMs >= items[i]!.atMs, 'newest first')
  }
  t.equal(items[6]!.requestId, paired.requestId)
  t.match(items[5]!.details, { role: 'operator', before: ['operator.read', 'operator.write'], after: ['operator.read'] })
  t.notOk(JSON.stringify(items).includes(paired.deviceToken), 'no token in the audit log')

  const revokes = await server.api('GET', `/api/v1/audit?deviceId=${id}&action=scope.revoked`)
  t.equal(revokes.status, 200)
  t.equal(revokes.body.items.length, 1)
  t.match(revokes.body.items[0], { action: 'scope.revoked', actor: 'alice', deviceId: id, details: { role: 'operator' } })

  const byAction = await server.api('GET', '/api/v1/audit?action=device.removed&limit=500')
  t.ok(byAction.body.items.length >= 1)
  t.ok(byAction.body.items.every((e: { action: string }) => e.action === 'device.removed'), 'only the asked action')
  t.ok(byAction.body.items.some((e: { deviceId: string }) => e.deviceId === id))

  const none = await server.api('GET', `/api/v1/audit?deviceId=${unknownHexId()}`)
  t.same(none.body, { items: [], nextCursor: null })

  const walked: string[] = []
  let cursor: string | null = null
  for (let page = 0; page < 20; page++) {
    const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`
    const res: { status: number, body: any } = await server.api('GET', `/api/v1/audit?deviceId=${id}&limit=3${query}`)
    t.equal(res.status, 200)
    t.ok(res.body.items.length <= 3)
    walked.push(...res.body.items.map((e: { id: string }) => e.id))
    cursor = res.body.nextCursor
    if (cursor === null) break
  }
  t.same(walked, items.map((e) => e.id), 'pages of 3 give the same entries in the same order')
  const one = await server.api('GET', `/api/v1/audit?deviceId=${id}&limit=1`)
  t.equal(one.body.items.length, 1)
  t.equal(one.body.items[0].action, 'device.removed')
  t.type(one.body.nextCursor, 'string')
  const next = await server.api('GET', `/api/v1/audit?deviceId=${id}&limit=1&cursor=${one.body.nextCursor}`)
  t.equal(next.body.items[0].action, 'token.revoked')

  for (const bad of ['abc', '-1', '1.5', '9223372036854775808', '99999999999999999999']) {
    const badCursor = await server.api('GET', `/api/v1/audit?cursor=${bad}`)
    t.equal(badCursor.status, 400, `cursor=${bad}`)
    t.equal(badCursor.body.code, 'INVALID_CURSOR')
  }
  const largest = await server.api('GET', `/api/v1/audit?deviceId=${id}&cursor=9223372036854775807`)
  t.equal(largest.status, 200, 'the largest bigint is a cursor before every entry')
  t.equal(largest.body.items.length, items.length)
})

t.test('the OpenAPI document is valid OpenAPI 3, needs no JWT and lists every /api/v1 route; /docs/ serves Swagger UI', async (t) => {
  const res = await server.api('GET', '/api/v1/openapi.json', { token: null })
  t.equal(res.status, 200)
  const doc = res.body
  t.match(doc.openapi, /^3\./)
  await t.resolves(SwaggerParser.validate(structuredClone(doc)), 'SwaggerParser.validate accepts it')

  // Every admin route of API.md that this server registers is documented, with its method.
  const documented = ['get', 'post', 'put', 'patch', 'delete']
  const apiRoutes: Array<[string, string]> = [
    ['GET', '/api/v1/pairing-requests'],
    ['GET', '/api/v1/pairing-requests/{id}'],
    ['POST', '/api/v1/pairing-requests/{id}/approve'],
    ['POST', '/api/v1/pairing-requests/{id}/reject'],
    ['GET', '/api/v1/devices'],
    ['GET', '/api/v1/devices/{id}'],
    ['DELETE', '/api/v1/devices/{id}'],
    ['PUT', '/api/v1/devices/{id}/roles/{role}/scopes'],
    ['POST', '/api/v1/devices/{id}/roles/{role}/scopes'],
    ['DELETE', '/api/v1/devices/{id}/roles/{role}/scopes/{scope}'],
    ['POST', '/api/v1/devices/{id}/tokens/{role}/rotate'],
    ['DELETE', '/api/v1/devices/{id}/tokens/{role}'],
    ['GET', '/api/v1/audit']
  ]
  const optionalRoutes: Array<[string, string]> = [
    ['GET', '/api/v1/cron/jobs'],
    ['POST', '/api/v1/cron/jobs'],
    ['GET', '/api/v1/cron/jobs/{id}'],
    ['PATCH', '/api/v1/cron/jobs/{id}'],
    ['DELETE', '/api/v1/cron/jobs/{id}'],
    ['POST', '/api/v1/cron/jobs/{id}/run'],
    ['GET', '/api/v1/cron/jobs/{id}/runs'],
    ['GET', '/api/v1/policies'],
    ['POST', '/api/v1/policies'],
    ['GET', '/api/v1/policies/{id}'],
    ['PATCH', '/api/v1/policies/{id}'],
    ['DELETE', '/api/v1/policies/{id}'],
    ['POST', '/api/v1/policies/evaluate']
  ]
  const toFastify = (path: string): string => path.replace(/\{(\w+)\}/g, ':$1')
  for (const [method, path] of apiRoutes) {
    t.ok(server.app.hasRoute({ method: method as 'GET', url: toFastify(path) }), `${method} ${path} is served`)
    t.ok(doc.paths?.[path]?.[method.toLowerCase()], `${method} ${path} is in the OpenAPI document`)
  }
  for (const [method, path] of optionalRoutes) {
    if (server.app.hasRoute({ method: method as 'GET', url: toFastify(path) })) {
      t.ok(doc.paths?.[path]?.[method.toLowerCase()], `${method} ${path} is in the OpenAPI document`)
    }
  }
  // And the document lists nothing that is not served.
  for (const [path, operations] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
    for (const method of Object.keys(operations).filter((m) => documented.includes(m))) {
      t.ok(server.app.hasRoute({ method: method.toUpperCase() as 'GET', url: toFastify(path) }), `${method.toUpperCase()} ${path} is served`)
    }
  }
  const devicesOp = doc.paths['/api/v1/devices/{id}/tokens/{role}/rotate'].post
  t.ok(devicesOp.responses['200'], 'responses are documented per status')

  const docs = await fetch(`${server.httpUrl}/docs/`)
  t.equal(docs.status, 200)
  t.match(docs.headers.get('content-type'), /text\/html/)
  t.match(await docs.text(), /<html/i)
})
