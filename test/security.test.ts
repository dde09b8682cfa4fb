// The security suite (issue #8): each attack a named test, each asserting
// zero unauthorized grants by reading the database and the REST API after it.
// Some of these cases also live next to the behaviour they test (handshake,
// rest-auth, device-methods); this file is the one place the suite is whole.
import { createHmac, randomUUID } from 'node:crypto'
import t from 'tap'
import { TestDevice, TestSocket, type Frame } from './helpers/device.ts'
import { HOSTILE_STRINGS, SQL_STRINGS } from './helpers/hostile.ts'
import { pairDevice, requestPairing, type PairedTestDevice } from './helpers/pairing.ts'
import { startServer, type ApiResponse } from './helpers/server.ts'

const READ = 'operator.read'
const WRITE = 'operator.write'
const ADMIN = 'operator.admin'
const PAIRING = 'operator.pairing'

const server = await startServer(t)
const sql = server.app.db.sql

type Test = Pick<typeof t, 'equal' | 'same' | 'ok' | 'match' | 'notOk' | 'fail'>

/** Everything that grants: approved roles and scopes, live tokens, approved requests. */
async function grants (): Promise<string> {
  const roles = await sql.query<{ device_id: string, role: string, scopes: string[] }>('SELECT device_id, role, scopes FROM device_roles ORDER BY device_id, role')
  const tokens = await sql.query<{ device_id: string, role: string, token_id: string, revoked: boolean, scopes: string[] }>(
    'SELECT device_id, role, token_id, revoked_at IS NOT NULL AS revoked, scopes FROM device_tokens ORDER BY device_id, role')
  const approved = await sql.query<{ id: string, granted_scopes: string[] }>("SELECT id::text, granted_scopes FROM pairing_requests WHERE state = 'approved' ORDER BY id")
  return JSON.stringify({ roles: roles.rows, tokens: tokens.rows, approved: approved.rows })
}

/** Runs `attack` and asserts that it changed no grant, no token and no approval. */
async function noGrant (t: Test, attack: () => Promise<void>): Promise<void> {
  const before = await grants()
  await attack()
  t.equal(await grants(), before, 'zero unauthorized grants: roles, scopes, tokens and approvals are unchanged')
}

/** A refusal from PROTOCOL.md's table: the error frame and the close that follows. */
async function refused (t: Test, res: Frame, closed: Promise<{ code: number, reason: string }>, reason: string, detailsCode: string, code = 1008): Promise<void> {
  t.match(res, { type: 'res', ok: false, error: { code: 'INVALID_REQUEST', message: reason, details: { code: detailsCode } } }, `answered ${detailsCode}`)
  t.same(await closed, { code, reason }, `closed ${code} ${reason}`)
}

/** A device paired for `scopes` whose token was minted (kept closed). */
async function paired (scopes: string[]): Promise<PairedTestDevice> {
  return await pairDevice(server, scopes)
}

/** Opens a socket and sends the connect `build` makes from this socket's own challenge. */
async function connectWith (build: (challenge: { nonce: string, ts: number }) => Record<string, unknown>): Promise<{ res: Frame, socket: TestSocket }> {
  const socket = await TestSocket.open(server.wsUrl)
  const challenge = (await socket.event('connect.challenge')).payload as { nonce: string, ts: number }
  const res = await socket.request('connect', build(challenge))
  return { res, socket }
}

t.test('a replayed challenge signature on a new socket is refused (device nonce mismatch)', async (t) => {
  const victim = await paired([READ])
  const first = await victim.device.connect(server.wsUrl, { token: server.config.gatewayToken, scopes: [READ] })
  t.equal(first.res.ok, true, 'the original connect is admitted')
  // Exactly what went over the wire the first time (same nonce, same signature).
  const captured = victim.device.connectParams(first.challenge, { token: server.config.gatewayToken, scopes: [READ] })
  await first.socket.close()
  await noGrant(t, async () => {
    for (const auth of [{ token: server.config.gatewayToken }, { deviceToken: victim.deviceToken }]) {
      const replay = await connectWith(() => ({ ...captured, auth }))
      await refused(t, replay.res, replay.socket.closed, 'device nonce mismatch', 'DEVICE_AUTH_NONCE_MISMATCH')
    }
    // Replayed with the new socket's nonce put in: the signature no longer matches.
    const patched = await connectWith((challenge) => ({ ...captured, device: { ...(captured.device as object), nonce: challenge.nonce } }))
    await refused(t, patched.res, patched.socket.closed, 'device signature invalid', 'DEVICE_AUTH_SIGNATURE_INVALID')
  })
})

t.test('a signature made for another nonce is refused (device signature invalid)', async (t) => {
  const victim = await paired([READ])
  await noGrant(t, async () => {
    const attempt = await connectWith((challenge) => {
      const params = victim.device.connectParams(challenge, { token: server.config.gatewayToken, scopes: [READ], nonce: randomUUID() })
      params.device.nonce = challenge.nonce
      return params
    })
    await refused(t, attempt.res, attempt.socket.closed, 'device signature invalid', 'DEVICE_AUTH_SIGNATURE_INVALID')
  })
})

t.test('a signedAt outside ±120 s is refused (device signature expired), even when correctly signed', async (t) => {
  const victim = await paired([READ])
  await noGrant(t, async () => {
    for (const skew of [-121_000, 121_000, -86_400_000, 10 * 365 * 86_400_000]) {
      const attempt = await connectWith((challenge) => victim.device.connectParams(challenge, { token: server.config.gatewayToken, scopes: [READ], signedAt: Date.now() + skew }))
      await refused(t, attempt.res, attempt.socket.closed, 'device signature expired', 'DEVICE_AUTH_SIGNATURE_EXPIRED')
    }
  })
})

t.test('a key that does not hash to the device id is refused (device identity mismatch); another key over the victim\'s key is invalid', async (t) => {
  const victim = await paired([ADMIN])
  const attacker = new TestDevice()
  await noGrant(t, async () => {
    // The attacker's key and signature, presented under the admin device's id.
    const claimed = await attacker.connect(server.wsUrl, { token: server.config.gatewayToken, scopes: [ADMIN], tamper: (p) => { p.device.id = victim.device.id } })
    await refused(t, claimed.res, claimed.socket.closed, 'device identity mismatch', 'DEVICE_AUTH_DEVICE_ID_MISMATCH')
    // The victim's id and public key, signed with the attacker's key.
    const forged = await attacker.connect(server.wsUrl, { token: server.config.gatewayToken, scopes: [ADMIN], tamper: (p) => { p.device.id = victim.device.id; p.device.publicKey = victim.device.publicKey } })
    await refused(t, forged.res, forged.socket.closed, 'device signature invalid', 'DEVICE_AUTH_SIGNATURE_INVALID')
  })
})

t.test('v2/v3 downgrade: v2 is accepted as PROTOCOL.md allows, but what v2 leaves unsigned still goes through the pairing check, and no other form passes', async (t) => {
  const device = new TestDevice()
  const victim = await pairDevice(server, [READ], { device, platform: 'linux', deviceFamily: 'desktop' })
  const v2 = await device.connect(server.wsUrl, { deviceToken: victim.deviceToken, scopes: [READ], platform: 'linux', deviceFamily: 'desktop', signatureVersion: 'v2' })
  t.equal(v2.res.ok, true, 'a v2 signature with the approved metadata is admitted (allowed)')
  await v2.socket.close()
  await noGrant(t, async () => {
    // v2 does not sign platform/deviceFamily: changing them is still a metadata upgrade, never an admission.
    const moved = await device.connect(server.wsUrl, { deviceToken: victim.deviceToken, scopes: [READ], platform: 'windows', deviceFamily: 'desktop', signatureVersion: 'v2' })
    t.match(moved.res.error, { code: 'NOT_PAIRED', details: { reason: 'metadata-upgrade' } }, 'changed unsigned metadata: pairing required (metadata-upgrade)')
    await moved.socket.closed
    // A v3 signature whose signed platform is altered after signing does not fall back to v2.
    const altered = await device.connect(server.wsUrl, { deviceToken: victim.deviceToken, scopes: [READ], platform: 'linux', deviceFamily: 'desktop', tamper: (p) => { p.client.platform = 'windows' } })
    await refused(t, altered.res, altered.socket.closed, 'device signature invalid', 'DEVICE_AUTH_SIGNATURE_INVALID')
    // Forms other than v2 and v3 (another version prefix, or none) are invalid.
    for (const prefix of ['v1', 'v4', 'V3', '']) {
      const other = await device.connect(server.wsUrl, {
        deviceToken: victim.deviceToken,
        scopes: [READ],
        platform: 'linux',
        deviceFamily: 'desktop',
        tamper: (p) => {
          const text = [prefix, device.id, 'test', 'backend', 'operator', READ, p.device.signedAt, victim.deviceToken, p.device.nonce, 'linux', 'desktop'].join('|')
          p.device.signature = device.sign(text)
        }
      })
      await refused(t, other.res, other.socket.closed, 'device signature invalid', 'DEVICE_AUTH_SIGNATURE_INVALID')
    }
  })
})

t.test('the device token of another device is refused (device token mismatch)', async (t) => {
  const admin = await paired([ADMIN])
  const reader = await paired([READ])
  await noGrant(t, async () => {
    const stolen = await reader.device.connect(server.wsUrl, { deviceToken: admin.deviceToken, scopes: [READ] })
    await refused(t, stolen.res, stolen.socket.closed, 'unauthorized: device token mismatch', 'AUTH_DEVICE_TOKEN_MISMATCH')
    const asAdmin = await reader.device.connect(server.wsUrl, { deviceToken: admin.deviceToken, scopes: [ADMIN] })
    await refused(t, asAdmin.res, asAdmin.socket.closed, 'unauthorized: device token mismatch', 'AUTH_DEVICE_TOKEN_MISMATCH')
    const newcomer = await new TestDevice().connect(server.wsUrl, { deviceToken: admin.deviceToken, scopes: [ADMIN] })
    await refused(t, newcomer.res, newcomer.socket.closed, 'unauthorized: device token mismatch', 'AUTH_DEVICE_TOKEN_MISMATCH')
  })
})

t.test('a revoked device token is refused, and its live socket is closed', async (t) => {
  const victim = await paired([READ])
  const live = await victim.device.connect(server.wsUrl, { deviceToken: victim.deviceToken, scopes: [READ] })
  t.equal(live.res.ok, true)
  t.equal((await server.api('DELETE', `/api/v1/devices/${victim.device.id}/tokens/operator`)).status, 200)
  t.same(await live.socket.closedWithin(), { code: 1008, reason: 'device token revoked' })
  await noGrant(t, async () => {
    const again = await victim.device.connect(server.wsUrl, { deviceToken: victim.deviceToken, scopes: [READ] })
    await refused(t, again.res, again.socket.closed, 'unauthorized: device token mismatch', 'AUTH_DEVICE_TOKEN_MISMATCH')
  })
  const rotated = await server.api('POST', `/api/v1/devices/${victim.device.id}/tokens/operator/rotate`)
  t.equal(rotated.status, 200)
  await noGrant(t, async () => {
    const old = await victim.device.connect(server.wsUrl, { deviceToken: victim.deviceToken, scopes: [READ] })
    await refused(t, old.res, old.socket.closed, 'unauthorized: device token mismatch', 'AUTH_DEVICE_TOKEN_MISMATCH')
  })
})

t.test('scope widening through reconnect with the shared gateway token or the own device token is a pairing request, never a grant', async (t) => {
  const reader = await paired([READ])
  await noGrant(t, async () => {
    for (const credentials of [{ token: server.config.gatewayToken }, { deviceToken: reader.deviceToken }, { token: server.config.gatewayToken, deviceToken: reader.deviceToken }]) {
      for (const scopes of [[ADMIN], [READ, WRITE], [READ, PAIRING], [WRITE]]) {
        const wider = await reader.device.connect(server.wsUrl, { ...credentials, scopes })
        t.match(wider.res.error, { code: 'NOT_PAIRED', details: { code: 'PAIRING_REQUIRED', reason: 'scope-upgrade', approvedScopes: [READ] } }, `${JSON.stringify(scopes)}: scope-upgrade`)
        t.same(await wider.socket.closed, { code: 1008, reason: 'pairing required (scope-upgrade)' })
      }
    }
    // Another device reusing the same shared gateway token gets nothing of the reader's.
    const other = await new TestDevice().connect(server.wsUrl, { token: server.config.gatewayToken, scopes: [READ] })
    t.match(other.res.error, { code: 'NOT_PAIRED', details: { reason: 'not-paired' } })
    await other.socket.closed
    // A probe on the gateway token asking for admin is admitted with no scope at all.
    const probe = await new TestDevice().connect(server.wsUrl, { token: server.config.gatewayToken, scopes: [ADMIN], noDevice: true })
    t.same(probe.res.payload?.auth?.scopes, [], 'a probe holds no scope')
    t.match(await probe.socket.request('device.pair.list'), { ok: false, error: { code: 'FORBIDDEN' } })
    await probe.socket.close()
  })
})

t.test('approving a superseded request is 409 PAIRING_REQUEST_NOT_PENDING over REST and INVALID_REQUEST over WS, and grants nothing', async (t) => {
  const device = new TestDevice()
  const first = await requestPairing(server, [READ], { device })
  const second = await requestPairing(server, [READ, ADMIN], { device })
  t.not(second.requestId, first.requestId, 'the bigger ask superseded the first request')
  t.equal((await server.api('GET', `/api/v1/pairing-requests/${first.requestId}`)).body.state, 'superseded')
  const approver = await pairDevice(server, [ADMIN], { keepOpen: true })
  t.teardown(() => approver.socket.close())
  await noGrant(t, async () => {
    const rest = await server.api('POST', `/api/v1/pairing-requests/${first.requestId}/approve`)
    t.equal(rest.status, 409)
    t.equal(rest.body.code, 'PAIRING_REQUEST_NOT_PENDING')
    const ws = await approver.socket.request('device.pair.approve', { requestId: first.requestId })
    t.match(ws, { ok: false, error: { code: 'INVALID_REQUEST', details: { code: 'PAIRING_REQUEST_NOT_PENDING' } } })
    const rejected = await server.api('POST', `/api/v1/pairing-requests/${first.requestId}/reject`)
    t.equal(rejected.status, 409)
  })
  t.equal((await server.api('GET', `/api/v1/pairing-requests/${second.requestId}`)).body.state, 'pending', 'the superseding request is untouched')
})

t.test('approving scopes beyond the request is refused (400 / INVALID_REQUEST), and grants nothing', async (t) => {
  const { requestId } = await requestPairing(server, [READ])
  const approver = await pairDevice(server, [ADMIN], { keepOpen: true })
  t.teardown(() => approver.socket.close())
  await noGrant(t, async () => {
    for (const scopes of [[ADMIN], [READ, WRITE], [], ['operator.nope'], [READ, ADMIN]]) {
      const rest = await server.api('POST', `/api/v1/pairing-requests/${requestId}/approve`, { body: { scopes } })
      t.equal(rest.status, 400, `REST ${JSON.stringify(scopes)}: 400`)
      const ws = await approver.socket.request('device.pair.approve', { requestId, scopes })
      t.match(ws, { ok: false, error: { code: 'INVALID_REQUEST' } }, `WS ${JSON.stringify(scopes)}: INVALID_REQUEST`)
    }
  })
  t.equal((await server.api('GET', `/api/v1/pairing-requests/${requestId}`)).body.state, 'pending', 'the request is still pending')
})

t.test('a device with operator.pairing but not operator.admin cannot approve, grant or mint scopes beyond its own reach over WS', async (t) => {
  const pairer = await pairDevice(server, [PAIRING], { keepOpen: true })
  t.teardown(() => pairer.socket.close())
  const adminAsk = await requestPairing(server, [ADMIN])
  const mixedAsk = await requestPairing(server, [READ, PAIRING])
  const admin = await paired([ADMIN])
  const missing = (scope: string): Record<string, unknown> => ({ ok: false, error: { code: 'FORBIDDEN', message: `missing scope: ${scope}`, details: { code: 'MISSING_SCOPE', missingScope: scope } } })
  await noGrant(t, async () => {
    t.match(await pairer.socket.request('device.pair.approve', { requestId: adminAsk.requestId }), missing(ADMIN), 'approving an operator.admin ask')
    t.match(await pairer.socket.request('device.pair.approve', { requestId: adminAsk.requestId, scopes: [ADMIN] }), missing(ADMIN), 'naming operator.admin')
    t.match(await pairer.socket.request('device.pair.approve', { requestId: mixedAsk.requestId }), missing(READ), 'approving a read+pairing ask (read is beyond operator.pairing)')
    t.match(await pairer.socket.request('device.token.rotate', { deviceId: admin.device.id, role: 'operator' }), missing(ADMIN), 'minting a token for an admin device')
    t.match(await pairer.socket.request('device.token.rotate', { deviceId: admin.device.id, role: 'operator', scopes: [ADMIN] }), missing(ADMIN), 'minting an admin token explicitly')
    t.match(await pairer.socket.request('cron.add', { name: 'x', schedule: { kind: 'every', everyMs: 60_000 }, payload: { kind: 'systemEvent', text: 't' } }), missing(ADMIN), 'cron.add needs operator.admin')
  })
  t.equal((await server.api('GET', `/api/v1/pairing-requests/${adminAsk.requestId}`)).body.state, 'pending')
  // Within its reach it may act: narrowing the mixed ask to operator.pairing is allowed.
  const narrowed = await pairer.socket.request('device.pair.approve', { requestId: mixedAsk.requestId, scopes: [PAIRING] })
  t.equal(narrowed.ok, true, 'approving only operator.pairing is within reach')
  t.same(narrowed.payload.device.scopes, [PAIRING], 'the device holds exactly operator.pairing')
  const audit = await server.api('GET', `/api/v1/audit?deviceId=${mixedAsk.device.id}&action=pairing.approved`)
  t.match(audit.body.items[0], { actor: pairer.device.id, details: { grantedScopes: [PAIRING] } }, 'audited with the approving device as actor')
})

// ---------------------------------------------------------------------------
// Admin JWT

const b64url = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')
function jwt (header: Record<string, unknown>, payload: Record<string, unknown>, secret: string | null): string {
  const data = `${b64url(header)}.${b64url(payload)}`
  return `${data}.${secret === null ? '' : createHmac('sha256', secret).update(data).digest('base64url')}`
}
const now = (): number => Math.floor(Date.now() / 1000)

t.test('admin JWTs: wrong secret, alg none and expired are 401, a viewer writing is 403; none of them changes anything', async (t) => {
  const { requestId } = await requestPairing(server, [READ])
  const victim = await paired([READ, WRITE])
  const claims = { sub: 'mallory', role: 'admin', iat: now() }
  const bad: Array<[string, string, number]> = [
    ['wrong secret', jwt({ alg: 'HS256', typ: 'JWT' }, { ...claims, exp: now() + 600 }, 'not-the-secret-not-the-secret-not-the-secret'), 401],
    ['alg none', jwt({ alg: 'none', typ: 'JWT' }, { ...claims, exp: now() + 600 }, null), 401],
    ['alg none, capitalised', jwt({ alg: 'None', typ: 'JWT' }, { ...claims, exp: now() + 600 }, null), 401],
    ['expired', jwt({ alg: 'HS256', typ: 'JWT' }, { ...claims, iat: now() - 7200, exp: now() - 3600 }, server.config.jwtSecret), 401],
    ['HS512 with the right secret', (() => {
      const data = `${b64url({ alg: 'HS512', typ: 'JWT' })}.${b64url({ ...claims, exp: now() + 600 })}`
      return `${data}.${createHmac('sha512', server.config.jwtSecret).update(data).digest('base64url')}`
    })(), 401],
    ['viewer', server.adminToken('viewer', 'viewer-1'), 403]
  ]
  const writes: Array<[string, string, unknown?]> = [
    ['POST', `/api/v1/pairing-requests/${requestId}/approve`, {}],
    ['POST', `/api/v1/pairing-requests/${requestId}/reject`, {}],
    ['PUT', `/api/v1/devices/${victim.device.id}/roles/operator/scopes`, { scopes: [ADMIN] }],
    ['POST', `/api/v1/devices/${victim.device.id}/roles/operator/scopes`, { scopes: [ADMIN] }],
    ['DELETE', `/api/v1/devices/${victim.device.id}/roles/operator/scopes/${WRITE}`],
    ['POST', `/api/v1/devices/${victim.device.id}/tokens/operator/rotate`, {}],
    ['DELETE', `/api/v1/devices/${victim.device.id}/tokens/operator`],
    ['DELETE', `/api/v1/devices/${victim.device.id}`],
    ['POST', '/api/v1/cron/jobs', { name: 'x', schedule: { kind: 'every', everyMs: 60_000 }, payload: { kind: 'systemEvent', text: 't' } }]
  ]
  const auditBefore = (await server.api('GET', '/api/v1/audit?limit=500')).body.items.length
  await noGrant(t, async () => {
    for (const [name, token, status] of bad) {
      for (const [method, path, body] of writes) {
        const res = await server.api(method, path, { token, ...(body !== undefined && { body }) })
        t.equal(res.status, status, `${name}: ${method} ${path.replace(/[0-9a-f-]{36,64}/g, ':id')} is ${status}`)
      }
      if (status === 401) t.equal((await server.api('GET', '/api/v1/devices', { token })).status, 401, `${name}: reads are 401 too`)
    }
  })
  t.equal((await server.api('GET', '/api/v1/audit?limit=500')).body.items.length, auditBefore, 'no audit row was written')
  t.equal((await server.api('GET', `/api/v1/pairing-requests/${requestId}`)).body.state, 'pending')
  t.equal((await server.api('GET', `/api/v1/devices/${victim.device.id}`)).status, 200, 'the device is still there')
  t.equal((await server.api('GET', '/api/v1/cron/jobs')).body.items.length, 0, 'no cron job was added')
})

t.test('REST bodies over 1 MiB are 413 on every route that takes a body, and change nothing', async (t) => {
  const { requestId } = await requestPairing(server, [READ])
  const victim = await paired([READ])
  const big = JSON.stringify({ scopes: [READ], pad: 'x'.repeat(1024 * 1024 + 16) })
  await noGrant(t, async () => {
    for (const [method, path] of [
      ['POST', `/api/v1/pairing-requests/${requestId}/approve`],
      ['POST', `/api/v1/pairing-requests/${requestId}/reject`],
      ['PUT', `/api/v1/devices/${victim.device.id}/roles/operator/scopes`],
      ['POST', `/api/v1/devices/${victim.device.id}/roles/operator/scopes`],
      ['POST', `/api/v1/devices/${victim.device.id}/tokens/operator/rotate`],
      ['POST', '/api/v1/cron/jobs']
    ] as const) {
      const res = await server.api(method, path, { rawBody: big, headers: { 'content-type': 'application/json' } })
      t.equal(res.status, 413, `${method} ${path.replace(/[0-9a-f-]{36,64}/g, ':id')}`)
      t.equal(res.body.statusCode, 413)
    }
  })
  t.equal((await server.api('GET', `/api/v1/pairing-requests/${requestId}`)).body.state, 'pending')
})

// ---------------------------------------------------------------------------
// SQL-looking and other hostile strings everywhere

/** A path segment: encoded, except where encodeURIComponent cannot (a lone surrogate) — sent as its UTF-8 replacement. */
function segment (value: string): string {
  return encodeURIComponent(value.replace(/[\uD800-\uDFFF]/g, '\uFFFD'))
}

async function tableCounts (): Promise<string> {
  const { rows } = await sql.query<Record<string, number>>(`SELECT
    (SELECT count(*)::int FROM devices) AS devices, (SELECT count(*)::int FROM device_roles) AS roles,
    (SELECT count(*)::int FROM device_tokens) AS tokens, (SELECT count(*)::int FROM pairing_requests) AS requests,
    (SELECT count(*)::int FROM audit_log) AS audit, (SELECT count(*)::int FROM cron_jobs) AS jobs`)
  return JSON.stringify(rows[0])
}

/** A string as a TAP message can hold it: JSON with every non-ASCII character escaped (U+2028 would end the line). */
function show (value: unknown): string {
  return (JSON.stringify(value) ?? 'undefined').replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'))
}

/** Postgres cannot store U+0000, and jsonb no lone surrogate. */
const storable = (value: string): boolean => !/\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(value)

function not5xx (t: Test, res: ApiResponse, what: string, allowed = [200, 400, 404, 409]): void {
  if (!allowed.includes(res.status)) t.fail(`${show(what)}: ${res.status} ${show(res.body).slice(0, 300)}`)
}

t.test('hostile strings in every REST path parameter, query parameter and body field: never a 5xx, and the data stays intact', async (t) => {
  const victim = await paired([READ, WRITE])
  const { requestId } = await requestPairing(server, [READ])
  const job = await server.api('POST', '/api/v1/cron/jobs', { body: { name: 'keep', schedule: { kind: 'every', everyMs: 3_600_000 }, payload: { kind: 'systemEvent', text: 't' } } })
  t.equal(job.status, 200)
  const before = await tableCounts()
  const grantsBefore = await grants()
  let checked = 0
  for (const s of HOSTILE_STRINGS) {
    const p = segment(s)
    const requests: Array<[string, string, unknown?]> = [
      ['GET', `/api/v1/pairing-requests/${p}`],
      ['POST', `/api/v1/pairing-requests/${p}/approve`, {}],
      ['POST', `/api/v1/pairing-requests/${p}/reject`, {}],
      ['GET', `/api/v1/pairing-requests?state=${p}`],
      ['GET', `/api/v1/pairing-requests?cursor=${p}`],
      ['GET', `/api/v1/pairing-requests?limit=${p}`],
      ['GET', `/api/v1/devices/${p}`],
      ['GET', `/api/v1/devices?cursor=${p}`],
      ['GET', `/api/v1/devices?tokensExpiringWithinMs=${p}`],
      ['DELETE', `/api/v1/devices/${p}`],
      ['PUT', `/api/v1/devices/${p}/roles/operator/scopes`, { scopes: [READ] }],
      ['PUT', `/api/v1/devices/${victim.device.id}/roles/${p}/scopes`, { scopes: [READ] }],
      ['POST', `/api/v1/devices/${victim.device.id}/roles/operator/scopes`, { scopes: [s] }],
      ['PUT', `/api/v1/devices/${victim.device.id}/roles/operator/scopes`, { scopes: [s] }],
      ['DELETE', `/api/v1/devices/${victim.device.id}/roles/operator/scopes/${p}`],
      ['DELETE', `/api/v1/devices/${victim.device.id}/roles/${p}/scopes/${READ}`],
      ['DELETE', `/api/v1/devices/${p}/roles/operator/scopes/${READ}`],
      ['POST', `/api/v1/devices/${p}/tokens/operator/rotate`, {}],
      ['POST', `/api/v1/devices/${victim.device.id}/tokens/${p}/rotate`, {}],
      ['POST', `/api/v1/devices/${victim.device.id}/tokens/operator/rotate`, { scopes: [s] }],
      ['DELETE', `/api/v1/devices/${p}/tokens/operator`],
      ['DELETE', `/api/v1/devices/${victim.device.id}/tokens/${p}`],
      ['POST', `/api/v1/pairing-requests/${requestId}/approve`, { scopes: [s] }],
      ['GET', `/api/v1/audit?deviceId=${p}`],
      ['GET', `/api/v1/audit?action=${p}`],
      ['GET', `/api/v1/audit?cursor=${p}`],
      ['GET', `/api/v1/cron/jobs/${p}`],
      ['PATCH', `/api/v1/cron/jobs/${p}`, { name: 'x' }],
      ['DELETE', `/api/v1/cron/jobs/${p}`],
      ['POST', `/api/v1/cron/jobs/${p}/run`, {}],
      ['GET', `/api/v1/cron/jobs/${p}/runs`],
      ['POST', `/api/v1/cron/jobs/${job.body.id}/run`, { mode: s }],
      ['POST', '/api/v1/cron/jobs', { name: 'x', schedule: { kind: s, everyMs: 60_000 }, payload: { kind: 'systemEvent', text: 't' } }],
      ['POST', '/api/v1/cron/jobs', { name: 'x', schedule: { kind: 'cron', expr: s }, payload: { kind: 'systemEvent', text: 't' } }],
      ['POST', '/api/v1/cron/jobs', { name: 'x', schedule: { kind: 'cron', expr: '0 9 * * *', tz: s }, payload: { kind: 'systemEvent', text: 't' } }],
      ['POST', '/api/v1/cron/jobs', { name: 'x', schedule: { kind: 'at', at: s }, payload: { kind: 'systemEvent', text: 't' } }],
      ['POST', '/api/v1/cron/jobs', { name: 'x', schedule: { kind: 'every', everyMs: 60_000 }, payload: { kind: s, text: 't' } }]
    ]
    for (const [method, path, body] of requests) {
      not5xx(t, await server.api(method, path, body === undefined ? {} : { body }), `${method} ${path} ${JSON.stringify(body) ?? ''}`)
      checked++
    }
  }
  t.ok(checked > 0, `${checked} requests with hostile strings, none a 5xx`)
  t.equal(await tableCounts(), before, 'every table has the rows it had (nothing dropped, deleted or added)')
  t.equal(await grants(), grantsBefore, 'zero unauthorized grants')
  t.equal((await server.api('GET', `/api/v1/devices/${victim.device.id}`)).body.deviceId, victim.device.id, 'the device reads back')
})

t.test('hostile strings stored as data (cron job fields, unknown fields) round-trip unchanged or are refused 400, never a 5xx', async (t) => {
  const created: string[] = []
  for (const s of HOSTILE_STRINGS) {
    const body = { name: `n ${s}`, description: s, schedule: { kind: 'every', everyMs: 3_600_000 }, payload: { kind: 'systemEvent', text: s }, agentId: s, delivery: { to: s, [s]: s } }
    const res = await server.api('POST', '/api/v1/cron/jobs', { body })
    not5xx(t, res, `POST /api/v1/cron/jobs with ${show(s)}`, [200, 400])
    if (!storable(s)) {
      t.match(res.body, { statusCode: 400, code: 'INVALID_PARAMS', message: /must not contain U\+0000 or a lone surrogate/ }, `${show(s)} cannot be stored: 400 naming the field`)
      continue
    }
    if (s === '__proto__') {
      // As a key ({"__proto__": …} in delivery) it is refused as prototype poisoning, on purpose.
      t.match(res.body, { statusCode: 400, code: 'FST_ERR_CTP_INVALID_JSON' }, '"__proto__" as a key: 400, prototype poisoning refused')
      continue
    }
    t.equal(res.status, 200, `${show(s)} is stored`)
    if (res.status !== 200) continue
    created.push(res.body.id)
    const back = await server.api('GET', `/api/v1/cron/jobs/${res.body.id}`)
    t.match(back.body, { name: `n ${s}`, description: s, payload: { text: s }, agentId: s, delivery: { to: s } }, `${show(s)} reads back unchanged`)
    not5xx(t, await server.api('PATCH', `/api/v1/cron/jobs/${res.body.id}`, { body: { name: s === '' ? 'x' : s, description: s } }), `PATCH with ${show(s)}`, [200, 400])
  }
  t.ok(created.length >= SQL_STRINGS.length, `${created.length} jobs with hostile strings stored`)
  for (const id of created) t.equal((await server.api('DELETE', `/api/v1/cron/jobs/${id}`)).status, 200)
})

t.test('cron job fields nested deeper than can be stored are refused 400 naming the field, never a 500, over REST and WS', async (t) => {
  const admin = await pairDevice(server, [ADMIN], { keepOpen: true })
  t.teardown(() => admin.socket.close())
  const before = await tableCounts()
  for (const depth of [65, 3000, 20_000]) {
    const deep = '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)
    const add = `{"name":"x","schedule":{"kind":"every","everyMs":60000},"payload":{"kind":"systemEvent","text":"t"},"delivery":${deep}}`
    const rest = await server.api('POST', '/api/v1/cron/jobs', { rawBody: add, headers: { 'content-type': 'application/json' } })
    t.match(rest.body, { statusCode: 400, code: 'INVALID_PARAMS', message: /^invalid params: delivery(\.a)* must not be nested deeper than 64 levels$/ }, `REST, depth ${depth}: ${rest.status}`)
    admin.socket.send(`{"type":"req","id":"deep-${depth}","method":"cron.add","params":${add}}`)
    const ws = await admin.socket.next((f) => f.type === 'res' && f.id === `deep-${depth}`)
    t.match(ws, { ok: false, error: { code: 'INVALID_REQUEST', details: { code: 'INVALID_PARAMS' } } }, `WS cron.add, depth ${depth}`)
  }
  const shallow = '{"a":'.repeat(63) + '1' + '}'.repeat(63)
  const ok = await server.api('POST', '/api/v1/cron/jobs', { rawBody: `{"name":"x","schedule":{"kind":"every","everyMs":60000},"payload":{"kind":"systemEvent","text":"t"},"delivery":${shallow}}`, headers: { 'content-type': 'application/json' } })
  t.equal(ok.status, 200, 'a value 64 levels deep (the field itself and 63 below it) is stored')
  t.equal((await server.api('DELETE', `/api/v1/cron/jobs/${ok.body.id}`)).status, 200)
  t.equal(await tableCounts(), JSON.stringify({ ...JSON.parse(before), audit: JSON.parse(before).audit + 2 }), 'nothing else was stored (two audit rows: the add and the remove of the shallow job)')
})

t.test('hostile strings in connect params: a documented refusal (never 1011), stored verbatim when stored, and no grant', async (t) => {
  await noGrant(t, async () => {
    for (const s of HOSTILE_STRINGS) {
      for (const field of ['clientId', 'mode', 'platform', 'deviceFamily', 'displayName', 'token', 'role', 'nonce'] as const) {
        const device = new TestDevice()
        const opts = { token: server.config.gatewayToken, scopes: [READ] }
        const attempt = await device.connect(server.wsUrl, {
          ...opts,
          ...(field === 'clientId' && { clientId: s }),
          ...(field === 'mode' && { mode: s }),
          ...(field === 'platform' && { platform: s }),
          ...(field === 'deviceFamily' && { deviceFamily: s }),
          ...(field === 'token' && { token: s }),
          ...(field === 'role' && { role: s }),
          ...(field === 'nonce' && { nonce: s }),
          ...(field === 'displayName' && { tamper: (p) => { p.client.displayName = s } })
        })
        const close = await attempt.socket.closedWithin()
        const what = `${field} = ${show(s)}`
        if (attempt.res.ok === true) {
          t.fail(`${what}: admitted`)
          continue
        }
        const code = attempt.res.error?.code
        if (code !== 'NOT_PAIRED' && code !== 'INVALID_REQUEST') t.fail(`${what}: ${show(attempt.res.error)} ${show(close)}`)
        if (close.code !== 1008) t.fail(`${what}: closed ${close.code} ${close.reason}`)
        // Fields a pairing request stores refuse what Postgres cannot store, naming the field.
        const stored: Record<string, string> = { clientId: 'client.id', mode: 'client.mode', platform: 'client.platform', deviceFamily: 'client.deviceFamily', displayName: 'client.displayName' }
        const path = stored[field]
        if (path !== undefined && !storable(s) && close.reason !== `invalid connect params: ${path}`) t.fail(`${what}: closed ${show(close.reason)}, expected invalid connect params: ${path}`)
        if (code === 'NOT_PAIRED' && field !== 'role' && field !== 'token') {
          const stored = await server.api('GET', `/api/v1/pairing-requests/${attempt.res.error.details.requestId}`)
          const value = { clientId: stored.body.clientId, mode: stored.body.clientMode, platform: stored.body.platform, deviceFamily: stored.body.deviceFamily, displayName: stored.body.displayName }[field as string]
          // Stored as UTF-8: a lone surrogate can only come back as U+FFFD.
          const sent = Buffer.from(s).toString()
          const expected = field === 'platform' || field === 'deviceFamily' ? sent.trim().toLowerCase() : sent
          if (value !== expected) t.fail(`${what}: stored as ${show(value)}`)
        }
      }
    }
  })
  t.equal((await fetch(`${server.httpUrl}/healthz`)).status, 200)
})
