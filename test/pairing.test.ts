// Pairing over the wire (PROTOCOL.md handshake steps 6 and 7) against a real
// server, real Postgres and real signing WebSocket clients. No mocks.
import t from 'tap'
import pg from 'pg'
import { TestDevice, type CloseInfo, type ConnectOptions, type Frame, type TestSocket } from './helpers/device.ts'
import { startServer, TEST_DATABASE_URL, type TestServer } from './helpers/server.ts'

type Test = Parameters<Parameters<typeof t.test>[0]>[0]

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const READ = 'operator.read'
const WRITE = 'operator.write'
const ADMIN = 'operator.admin'
const PAIRING = 'operator.pairing'

const server = await startServer(t)

const db = new pg.Client({ connectionString: TEST_DATABASE_URL })
await db.connect()
t.teardown(async () => { await db.end() })

interface AuditRow { actor: string, action: string, device_id: string | null, request_id: string | null, details: Record<string, unknown> }

async function auditRows (srv: TestServer, requestId: string): Promise<AuditRow[]> {
  const { rows } = await db.query<AuditRow>(
    `SELECT actor, action, device_id, request_id::text AS request_id, details FROM "${srv.config.databaseSchema}".audit_log WHERE request_id = $1 ORDER BY id`,
    [requestId]
  )
  return rows
}

interface Refusal { res: Frame, error: any, details: any, close: CloseInfo }

/** Connects with the gateway token, expects a refusal and waits for the close. */
async function refused (srv: TestServer, device: TestDevice, opts: ConnectOptions = {}): Promise<Refusal> {
  const { socket, res } = await device.connect(srv.wsUrl, { token: srv.config.gatewayToken, ...opts })
  const close = await socket.closed
  if (res.ok !== false) throw new Error(`expected a refusal, got ${JSON.stringify(res)}`)
  return { res, error: res.error, details: res.error.details, close }
}

interface Admitted { socket: TestSocket, hello: any }

/** Connects with the gateway token (unless opts say otherwise) and expects hello-ok. */
async function admitted (srv: TestServer, device: TestDevice, opts: ConnectOptions = {}): Promise<Admitted> {
  const { socket, res } = await device.connect(srv.wsUrl, { ...(opts.deviceToken === undefined && { token: srv.config.gatewayToken }), ...opts })
  if (res.ok !== true) {
    await socket.close()
    throw new Error(`expected hello-ok, got ${JSON.stringify(res)}`)
  }
  return { socket, hello: res.payload }
}

async function approve (srv: TestServer, requestId: string, body?: unknown): Promise<any> {
  const res = await srv.api('POST', `/api/v1/pairing-requests/${requestId}/approve`, body === undefined ? {} : { body })
  if (res.status !== 200) throw new Error(`approve ${requestId}: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body
}

/** Pairs a device: its connect is refused, the request approved over REST. Returns the request id. */
async function pair (srv: TestServer, device: TestDevice, opts: ConnectOptions = {}, body?: unknown): Promise<string> {
  const { details } = await refused(srv, device, opts)
  await approve(srv, details.requestId, body)
  return details.requestId
}

/** The full refusal of PROTOCOL.md step 6: error frame, details and close. */
function checkRefusal (t: Test, got: Refusal, reason: string, expected: { deviceId: string, requestedRole: string, requestedScopes: string[], approvedScopes: string[] }): void {
  const { res, details } = got
  t.strictSame(Object.keys(res).sort(), ['error', 'id', 'ok', 'type'], 'a plain error response')
  t.equal(res.type, 'res')
  t.equal(res.error.code, 'NOT_PAIRED')
  t.equal(res.error.message, `pairing required (${reason})`)
  t.strictSame(details, {
    code: 'PAIRING_REQUIRED',
    reason,
    requestId: details.requestId,
    deviceId: expected.deviceId,
    requestedRole: expected.requestedRole,
    requestedScopes: expected.requestedScopes,
    approvedScopes: expected.approvedScopes,
    remediationHint: details.remediationHint
  }, 'details carry exactly the documented fields')
  t.match(details.requestId, UUID, 'requestId is a uuid')
  t.type(details.remediationHint, 'string')
  t.ok(details.remediationHint.includes(details.requestId), 'the hint names the request')
  t.ok(details.remediationHint.includes('approve'), 'the hint names the approving command')
  t.notOk(/[\r\n]/.test(details.remediationHint), 'the hint is one line')
  t.strictSame(got.close, { code: 1008, reason: `pairing required (${reason})` })
}

async function getRequest (srv: TestServer, requestId: string): Promise<any> {
  const res = await srv.api('GET', `/api/v1/pairing-requests/${requestId}`)
  if (res.status !== 200) throw new Error(`GET ${requestId}: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body
}

async function listAll (srv: TestServer, state = 'pending'): Promise<any[]> {
  const res = await srv.api('GET', `/api/v1/pairing-requests?state=${state}&limit=500`)
  if (res.status !== 200) throw new Error(`list: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body.items
}

/**
 * Resolves once every frame the server sent before now has arrived: a health
 * round trip is answered after anything queued on the socket before it.
 */
async function drain (socket: TestSocket): Promise<void> {
  const res = await socket.request('health', {})
  if (res.ok !== true) throw new Error(`health failed: ${JSON.stringify(res)}`)
}

/** The first event `name` not yet taken, among frames from index `since` on, whose payload matches. */
async function eventAfter (socket: TestSocket, name: string, since: number, match: (payload: any) => boolean = () => true, timeoutMs?: number): Promise<Frame> {
  return await socket.next((frame) => frame.type === 'event' && frame.event === name && socket.frames.indexOf(frame) >= since && match(frame.payload), timeoutMs)
}

function eventsNamed (socket: TestSocket, prefix: string): Frame[] {
  return socket.frames.filter((frame) => frame.type === 'event' && typeof frame.event === 'string' && frame.event.startsWith(prefix))
}

// ---------------------------------------------------------------- the four reasons

t.test('a new device is refused not-paired with the full error frame and close 1008', async (t) => {
  const device = new TestDevice()
  const got = await refused(server, device, { scopes: [WRITE, READ] })
  checkRefusal(t, got, 'not-paired', { deviceId: device.id, requestedRole: 'operator', requestedScopes: [WRITE, READ], approvedScopes: [] })
  const row = await getRequest(server, got.details.requestId)
  t.match(row, { requestId: got.details.requestId, deviceId: device.id, publicKey: device.publicKey, state: 'pending', reason: 'not-paired', isRepair: false, role: 'operator', roles: ['operator'], scopes: [WRITE, READ], approvedScopes: [] })
  const audit = await auditRows(server, got.details.requestId)
  t.match(audit, [{ action: 'pairing.requested', actor: device.id, device_id: device.id }])
})

t.test('a device paired for operator asking for role node is refused role-upgrade', async (t) => {
  const device = new TestDevice()
  await pair(server, device, { scopes: [READ] })
  const got = await refused(server, device, { role: 'node', scopes: [] })
  checkRefusal(t, got, 'role-upgrade', { deviceId: device.id, requestedRole: 'node', requestedScopes: [], approvedScopes: [] })
  t.match(got.details.remediationHint, /node/, 'the hint says which role is missing')
  const row = await getRequest(server, got.details.requestId)
  t.match(row, { reason: 'role-upgrade', role: 'node', roles: ['node'], isRepair: true, state: 'pending' })

  const stillOperator = await admitted(server, device, { scopes: [READ] })
  t.strictSame(stillOperator.hello.auth.scopes, [READ], 'the approved role keeps working meanwhile')
  await stillOperator.socket.close()
})

t.test('a device approved for operator.read asking for operator.admin is refused scope-upgrade and told it cannot approve itself', async (t) => {
  const device = new TestDevice()
  await pair(server, device, { scopes: [READ] })
  const got = await refused(server, device, { scopes: [ADMIN] })
  checkRefusal(t, got, 'scope-upgrade', { deviceId: device.id, requestedRole: 'operator', requestedScopes: [ADMIN], approvedScopes: [READ] })
  t.match(got.details.remediationHint, /cannot approve its own upgrade/)
  const row = await getRequest(server, got.details.requestId)
  t.match(row, { reason: 'scope-upgrade', scopes: [ADMIN], approvedScopes: [READ], isRepair: true })
})

t.test('approvedScopes in a refusal are sorted, whatever order they were asked in', async (t) => {
  const device = new TestDevice()
  await pair(server, device, { scopes: [WRITE, PAIRING, READ] })
  const got = await refused(server, device, { scopes: [READ, ADMIN] })
  checkRefusal(t, got, 'scope-upgrade', { deviceId: device.id, requestedRole: 'operator', requestedScopes: [READ, ADMIN], approvedScopes: [PAIRING, READ, WRITE] })
})

t.test('a device approved on linux coming back on macos is refused metadata-upgrade', async (t) => {
  const device = new TestDevice()
  await pair(server, device, { scopes: [READ], platform: 'linux' })
  const got = await refused(server, device, { scopes: [READ], platform: 'macos' })
  checkRefusal(t, got, 'metadata-upgrade', { deviceId: device.id, requestedRole: 'operator', requestedScopes: [READ], approvedScopes: [READ] })
  const row = await getRequest(server, got.details.requestId)
  t.match(row, { reason: 'metadata-upgrade', platform: 'macos' })
})

t.test('platform " Linux " normalizes equal to "linux" and is not a metadata upgrade', async (t) => {
  const device = new TestDevice()
  await pair(server, device, { scopes: [READ], platform: 'linux' })
  const again = await admitted(server, device, { scopes: [READ], platform: ' Linux ' })
  t.strictSame(again.hello.auth.scopes, [READ])
  await again.socket.close()

  const other = new TestDevice()
  await pair(server, other, { scopes: [READ], platform: ' MacOS ' })
  const paired = await server.api('GET', '/api/v1/pairing-requests?state=approved&limit=500')
  t.equal(paired.body.items.find((item: any) => item.deviceId === other.id)?.platform, 'macos', 'the request stores the normalized platform')
  const back = await admitted(server, other, { scopes: [READ], platform: 'macos' })
  await back.socket.close()
})

t.test('a changed deviceFamily is a metadata upgrade; a blank one equals none', async (t) => {
  const device = new TestDevice()
  await pair(server, device, { scopes: [READ] })
  const blank = await admitted(server, device, { scopes: [READ], deviceFamily: '   ' })
  await blank.socket.close()
  const got = await refused(server, device, { scopes: [READ], deviceFamily: 'iPhone' })
  checkRefusal(t, got, 'metadata-upgrade', { deviceId: device.id, requestedRole: 'operator', requestedScopes: [READ], approvedScopes: [READ] })
  t.match(await getRequest(server, got.details.requestId), { deviceFamily: 'iphone' })
})

t.test('the reasons are checked in order: role before scope before metadata', async (t) => {
  const device = new TestDevice()
  await pair(server, device, { scopes: [READ], platform: 'linux' })
  const role = await refused(server, device, { role: 'node', scopes: [ADMIN], platform: 'macos' })
  t.equal(role.details.reason, 'role-upgrade')
  const scope = await refused(server, device, { scopes: [ADMIN], platform: 'macos' })
  t.equal(scope.details.reason, 'scope-upgrade')
  t.strictSame(scope.close, { code: 1008, reason: 'pairing required (scope-upgrade)' })
})

t.test('implied scopes are covered: admin admits write, write admits read', async (t) => {
  const admin = new TestDevice()
  await pair(server, admin, { scopes: [ADMIN] })
  const asWriter = await admitted(server, admin, { scopes: [WRITE] })
  t.strictSame(asWriter.hello.auth.scopes, [WRITE], 'granted exactly what was asked')
  await asWriter.socket.close()
  const asPairing = await admitted(server, admin, { scopes: [PAIRING, READ] })
  t.strictSame(asPairing.hello.auth.scopes, [PAIRING, READ])
  await asPairing.socket.close()

  const writer = new TestDevice()
  await pair(server, writer, { scopes: [WRITE] })
  const asReader = await admitted(server, writer, { scopes: [READ] })
  t.strictSame(asReader.hello.auth.scopes, [READ])
  await asReader.socket.close()
  const notAdmin = await refused(server, writer, { scopes: [ADMIN] })
  t.equal(notAdmin.details.reason, 'scope-upgrade', 'write does not imply admin')
  const notPairing = await refused(server, writer, { scopes: [PAIRING] })
  t.equal(notPairing.details.reason, 'scope-upgrade', 'write does not imply pairing')
})

// ---------------------------------------------------------------- request reuse and supersede

t.test('the same ask twice is the same request, listed once', async (t) => {
  const device = new TestDevice()
  const first = await refused(server, device, { scopes: [READ] })
  const second = await refused(server, device, { scopes: [READ] })
  t.equal(second.details.requestId, first.details.requestId)
  const mine = (await listAll(server)).filter((item) => item.deviceId === device.id)
  t.equal(mine.length, 1, 'one pending row for the device')
  t.equal(mine[0].requestId, first.details.requestId)
  const requested = (await auditRows(server, first.details.requestId)).filter((row) => row.action === 'pairing.requested')
  t.equal(requested.length, 1, 'one pairing.requested audit row')
})

t.test('an ask that is a subset of the pending one reuses it', async (t) => {
  const device = new TestDevice()
  const first = await refused(server, device, { scopes: [READ, WRITE] })
  const subset = await refused(server, device, { scopes: [WRITE] })
  t.equal(subset.details.requestId, first.details.requestId)
  t.strictSame(subset.details.requestedScopes, [READ, WRITE], 'requestedScopes are the pending request\'s')
  const none = await refused(server, device, { scopes: [] })
  t.equal(none.details.requestId, first.details.requestId)
})

t.test('a bigger ask supersedes the pending request with the union, in first-asked order', async (t) => {
  const device = new TestDevice()
  const first = await refused(server, device, { scopes: [WRITE, READ] })
  const bigger = await refused(server, device, { scopes: [ADMIN, READ] })
  const oldId = first.details.requestId
  const newId = bigger.details.requestId
  t.not(newId, oldId, 'a new request')
  t.strictSame(bigger.details.requestedScopes, [WRITE, READ, ADMIN])
  t.equal(bigger.details.reason, 'not-paired')

  const old = await getRequest(server, oldId)
  t.equal(old.state, 'superseded')
  const fresh = await getRequest(server, newId)
  t.match(fresh, { state: 'pending', scopes: [WRITE, READ, ADMIN], roles: ['operator'] })
  const mine = (await listAll(server)).filter((item) => item.deviceId === device.id)
  t.strictSame(mine.map((item) => item.requestId), [newId], 'only the new one is pending')

  const res = await server.api('POST', `/api/v1/pairing-requests/${oldId}/approve`, { body: {} })
  t.equal(res.status, 409)
  t.strictSame(res.body, { statusCode: 409, code: 'PAIRING_REQUEST_NOT_PENDING', error: 'Conflict', message: `pairing request ${oldId} is superseded` })
  const rejectOld = await server.api('POST', `/api/v1/pairing-requests/${oldId}/reject`, { body: {} })
  t.equal(rejectOld.status, 409)
  t.equal(rejectOld.body.code, 'PAIRING_REQUEST_NOT_PENDING')

  t.match(await auditRows(server, oldId), [{ action: 'pairing.requested' }, { action: 'pairing.superseded', actor: 'system' }])

  const approved = await approve(server, newId)
  t.strictSame(approved.device.roleScopes, { operator: [ADMIN, READ, WRITE] }, 'approving the union grants all of it')
})

t.test('asking for another role while a request is pending supersedes it with both roles', async (t) => {
  const device = new TestDevice()
  const first = await refused(server, device, { role: 'node', scopes: [] })
  const operator = await refused(server, device, { scopes: [READ] })
  t.not(operator.details.requestId, first.details.requestId)
  t.equal(operator.details.requestedRole, 'operator')
  t.equal((await getRequest(server, first.details.requestId)).state, 'superseded')
  t.match(await getRequest(server, operator.details.requestId), { role: 'operator', roles: ['node', 'operator'], scopes: [READ] })
  const res = await approve(server, operator.details.requestId)
  t.strictSame(res.device.roles, ['node', 'operator'], 'approval pairs every role in the request')
  t.strictSame(res.device.roleScopes, { node: [], operator: [READ] }, 'the scopes go to the latest ask\'s role')
  const asNode = await admitted(server, device, { role: 'node', scopes: [] })
  t.equal(asNode.hello.auth.role, 'node')
  const asOperator = await admitted(server, device, { scopes: [READ] })
  t.strictSame(asOperator.hello.auth.scopes, [READ])
  await asNode.socket.close()
  await asOperator.socket.close()
})

t.test('the same scopes from another platform supersede the pending request', async (t) => {
  const device = new TestDevice()
  const first = await refused(server, device, { scopes: [READ], platform: 'linux' })
  const moved = await refused(server, device, { scopes: [READ], platform: 'windows' })
  t.not(moved.details.requestId, first.details.requestId)
  t.equal((await getRequest(server, first.details.requestId)).state, 'superseded')
  t.equal((await getRequest(server, moved.details.requestId)).platform, 'windows')
})

// ---------------------------------------------------------------- approving fewer, adding

t.test('approving fewer scopes admits exactly those; asking for the rest is a scope upgrade', async (t) => {
  const device = new TestDevice()
  const { details } = await refused(server, device, { scopes: [READ, WRITE] })
  const res = await approve(server, details.requestId, { scopes: [READ] })
  t.strictSame(res.device.roleScopes, { operator: [READ] })
  t.match(await getRequest(server, details.requestId), { state: 'approved', grantedScopes: [READ] })

  const reader = await admitted(server, device, { scopes: [READ] })
  t.strictSame(reader.hello.auth.scopes, [READ])
  await reader.socket.close()

  const writer = await refused(server, device, { scopes: [READ, WRITE] })
  checkRefusal(t, writer, 'scope-upgrade', { deviceId: device.id, requestedRole: 'operator', requestedScopes: [READ, WRITE], approvedScopes: [READ] })
})

t.test('approving adds to the scopes already approved and never removes one', async (t) => {
  const device = new TestDevice()
  await pair(server, device, { scopes: [READ] })
  const upgrade = await refused(server, device, { scopes: [PAIRING] })
  t.strictSame(upgrade.details.requestedScopes, [PAIRING])
  const res = await approve(server, upgrade.details.requestId)
  t.strictSame(res.device.roleScopes, { operator: [PAIRING, READ] }, 'read is kept')
  const both = await admitted(server, device, { scopes: [READ, PAIRING] })
  t.strictSame(both.hello.auth.scopes, [READ, PAIRING])
  await both.socket.close()

  const more = await refused(server, device, { scopes: [WRITE, ADMIN] })
  const narrowed = await approve(server, more.details.requestId, { scopes: [WRITE] })
  t.strictSame(narrowed.device.roleScopes, { operator: [PAIRING, READ, WRITE] })
  const audit = await auditRows(server, more.details.requestId)
  t.match(audit.find((row) => row.action === 'pairing.approved'), { actor: 'test-admin', details: { grantedScopes: [WRITE], requestedScopes: [WRITE, ADMIN] } })
})

t.test('an approval body outside the requested scopes is refused 400 and leaves the request pending', async (t) => {
  const device = new TestDevice()
  const { details } = await refused(server, device, { scopes: [READ, WRITE] })
  const url = `/api/v1/pairing-requests/${details.requestId}/approve`

  const extra = await server.api('POST', url, { body: { scopes: [READ, ADMIN] } })
  t.equal(extra.status, 400, 'a scope not requested')
  t.strictSame(Object.keys(extra.body).sort(), ['code', 'error', 'message', 'statusCode'])
  t.match(extra.body, { statusCode: 400, error: 'Bad Request', message: /scopes/ })
  t.match(extra.body.message, /operator\.admin/, 'names the scope not requested')

  const empty = await server.api('POST', url, { body: { scopes: [] } })
  t.equal(empty.status, 400, 'an empty list')
  t.match(empty.body, { statusCode: 400, error: 'Bad Request', message: /scopes/ })

  const unknown = await server.api('POST', url, { body: { scopes: ['operator.everything'] } })
  t.equal(unknown.status, 400, 'an unknown scope')
  t.match(unknown.body, { statusCode: 400, error: 'Bad Request', message: /scopes/ })

  const wrongType = await server.api('POST', url, { body: { scopes: READ } })
  t.equal(wrongType.status, 400, 'a string instead of a list')
  t.match(wrongType.body, { statusCode: 400, error: 'Bad Request', message: /scopes/ })

  const misspelt = await server.api('POST', url, { body: { scope: [READ] } })
  t.equal(misspelt.status, 400, 'an unknown field is not silently dropped (it would approve every scope)')
  t.match(misspelt.body, { statusCode: 400, error: 'Bad Request', message: /\bscope\b/ })

  const array = await server.api('POST', url, { body: [READ] })
  t.equal(array.status, 400, 'a list instead of an object')

  const wrongItem = await server.api('POST', url, { body: { scopes: [42] } })
  t.equal(wrongItem.status, 400, 'a number in the list')
  t.match(wrongItem.body, { statusCode: 400, message: /scopes/ })

  const nullScopes = await server.api('POST', url, { body: { scopes: null } })
  t.equal(nullScopes.status, 400, 'null')
  t.match(nullScopes.body, { statusCode: 400, message: /scopes/ })

  t.equal((await getRequest(server, details.requestId)).state, 'pending', 'nothing was decided')
  const ok = await approve(server, details.requestId, { scopes: [WRITE] })
  t.strictSame(ok.device.roleScopes, { operator: [WRITE] })
})

// ---------------------------------------------------------------- hello-ok

t.test('hello-ok grants the scopes as asked, in order, without duplicates, and the device token only once', async (t) => {
  const device = new TestDevice()
  await pair(server, device, { scopes: [READ, WRITE, PAIRING] })

  const first = await admitted(server, device, { scopes: [WRITE, READ, WRITE, PAIRING, READ] })
  const auth = first.hello.auth
  t.equal(first.hello.type, 'hello-ok')
  t.equal(first.hello.protocol, 4)
  t.equal(auth.method, 'token')
  t.equal(auth.role, 'operator')
  t.strictSame(auth.scopes, [WRITE, READ, PAIRING])
  t.type(auth.deviceToken, 'string')
  t.ok(auth.deviceToken.length >= 32, 'a long random token')
  t.type(auth.issuedAtMs, 'number')
  await first.socket.close()

  const second = await admitted(server, device, { scopes: [READ] })
  t.strictSame(second.hello.auth.scopes, [READ])
  t.notOk('deviceToken' in second.hello.auth, 'not issued a second time')
  t.notOk('issuedAtMs' in second.hello.auth)
  await second.socket.close()

  const withToken = await admitted(server, device, { deviceToken: auth.deviceToken, scopes: [PAIRING] })
  t.equal(withToken.hello.auth.method, 'device-token')
  t.strictSame(withToken.hello.auth.scopes, [PAIRING])
  t.notOk('deviceToken' in withToken.hello.auth)
  await withToken.socket.close()
})

t.test('a second role gets its own device token, separate from the first', async (t) => {
  const device = new TestDevice()
  await pair(server, device, { scopes: [READ] })
  const operator = await admitted(server, device, { scopes: [READ] })
  const operatorToken: string = operator.hello.auth.deviceToken
  t.type(operatorToken, 'string')
  await operator.socket.close()

  const nodeAsk = await refused(server, device, { role: 'node', scopes: [] })
  t.equal(nodeAsk.details.reason, 'role-upgrade')
  const res = await approve(server, nodeAsk.details.requestId)
  t.strictSame(res.device.roles, ['node', 'operator'])

  const node = await admitted(server, device, { role: 'node', scopes: [] })
  const nodeToken: string = node.hello.auth.deviceToken
  t.type(nodeToken, 'string', 'the new role gets a token at its first connect')
  t.not(nodeToken, operatorToken)
  t.equal(node.hello.auth.role, 'node')
  await node.socket.close()

  const nodeByToken = await admitted(server, device, { role: 'node', scopes: [], deviceToken: nodeToken })
  t.equal(nodeByToken.hello.auth.method, 'device-token')
  await nodeByToken.socket.close()
  const operatorByToken = await admitted(server, device, { scopes: [READ], deviceToken: operatorToken })
  t.equal(operatorByToken.hello.auth.method, 'device-token')
  await operatorByToken.socket.close()

  const crossed = await device.connect(server.wsUrl, { role: 'node', scopes: [], deviceToken: operatorToken })
  t.match(crossed.res, { ok: false, error: { code: 'INVALID_REQUEST', details: { code: 'AUTH_DEVICE_TOKEN_MISMATCH' } } })
  t.strictSame(await crossed.socket.closed, { code: 1008, reason: 'unauthorized: device token mismatch' }, 'one role\'s token does not open the other')

  const again = await admitted(server, device, { scopes: [READ] })
  t.notOk('deviceToken' in again.hello.auth, 'the operator token was not re-issued by the node approval')
  await again.socket.close()
})

// ---------------------------------------------------------------- events

t.test('pairing events reach operator.pairing connections only', async (t) => {
  const holder = new TestDevice()
  await pair(server, holder, { scopes: [PAIRING] })
  const watcher = await admitted(server, holder, { scopes: [PAIRING] })
  t.strictSame(watcher.hello.auth.scopes, [PAIRING])
  t.ok(watcher.hello.features.events.includes('device.pair.requested'))
  t.ok(watcher.hello.features.events.includes('device.pair.resolved'))

  const adminDevice = new TestDevice()
  await pair(server, adminDevice, { scopes: [ADMIN] })
  const adminWatcher = await admitted(server, adminDevice, { scopes: [ADMIN] })

  const reader = new TestDevice()
  await pair(server, reader, { scopes: [READ] })
  const readerConn = await admitted(server, reader, { scopes: [READ] })

  const probe = await new TestDevice().connect(server.wsUrl, { token: server.config.gatewayToken, noDevice: true, scopes: [PAIRING, ADMIN] })
  t.equal(probe.res.ok, true, JSON.stringify(probe.res))
  t.strictSame(probe.res.payload.auth.scopes, [], 'a device-less connection holds no scope')
  const probeSocket = probe.socket

  const newcomer = new TestDevice()
  const rejectedDevice = new TestDevice()
  const watched = new Set([newcomer.id, rejectedDevice.id])
  const about = (socket: TestSocket): Frame[] => eventsNamed(socket, 'device.pair.').filter((f) => watched.has(f.payload.deviceId))
  const forRequest = (requestId: string) => (payload: any) => payload.requestId === requestId

  // A new device is refused: the request is announced.
  const first = await refused(server, newcomer, { scopes: [READ] })
  const requested = await eventAfter(watcher.socket, 'device.pair.requested', 0, forRequest(first.details.requestId))
  t.strictSame(requested.payload, await getRequest(server, first.details.requestId), 'the payload is the pending request')
  t.match(requested.payload, { requestId: first.details.requestId, deviceId: newcomer.id, state: 'pending', scopes: [READ], reason: 'not-paired' })
  const adminRequested = await eventAfter(adminWatcher.socket, 'device.pair.requested', 0, forRequest(first.details.requestId))
  t.equal(adminRequested.payload.deviceId, newcomer.id, 'operator.admin implies operator.pairing')

  // The same ask again is the same request: no second event (checked below).
  const repeat = await refused(server, newcomer, { scopes: [READ] })
  t.equal(repeat.details.requestId, first.details.requestId)

  // A bigger ask supersedes: resolved(superseded) for the old, requested for the new.
  const bigger = await refused(server, newcomer, { scopes: [READ, WRITE] })
  const superseded = await eventAfter(watcher.socket, 'device.pair.resolved', 0, forRequest(first.details.requestId))
  t.strictSame(superseded.payload, { requestId: first.details.requestId, deviceId: newcomer.id, decision: 'superseded', ts: superseded.payload.ts })
  t.type(superseded.payload.ts, 'number')
  const requestedAgain = await eventAfter(watcher.socket, 'device.pair.requested', 0, forRequest(bigger.details.requestId))
  t.strictSame(requestedAgain.payload.scopes, [READ, WRITE])

  // Approve over REST: resolved(approved).
  await approve(server, bigger.details.requestId)
  const approvedEvent = await eventAfter(watcher.socket, 'device.pair.resolved', 0, forRequest(bigger.details.requestId))
  t.strictSame(approvedEvent.payload, { requestId: bigger.details.requestId, deviceId: newcomer.id, decision: 'approved', ts: approvedEvent.payload.ts })
  t.type(approvedEvent.payload.ts, 'number')

  // Reject over REST: resolved(rejected).
  const doomed = await refused(server, rejectedDevice, { scopes: [READ] })
  await eventAfter(watcher.socket, 'device.pair.requested', 0, forRequest(doomed.details.requestId))
  const rejectRes = await server.api('POST', `/api/v1/pairing-requests/${doomed.details.requestId}/reject`, { body: {} })
  t.equal(rejectRes.status, 200)
  const rejectedEvent = await eventAfter(watcher.socket, 'device.pair.resolved', 0, forRequest(doomed.details.requestId))
  t.strictSame(rejectedEvent.payload, { requestId: doomed.details.requestId, deviceId: rejectedDevice.id, decision: 'rejected', ts: rejectedEvent.payload.ts })
  await eventAfter(adminWatcher.socket, 'device.pair.resolved', 0, forRequest(doomed.details.requestId))

  // Every event went to every holder in one loop: a round trip on the others flushes theirs.
  await drain(readerConn.socket)
  await drain(probeSocket)
  const expected = [
    `device.pair.requested:${first.details.requestId}`,
    `device.pair.resolved:superseded:${first.details.requestId}`,
    `device.pair.requested:${bigger.details.requestId}`,
    `device.pair.resolved:approved:${bigger.details.requestId}`,
    `device.pair.requested:${doomed.details.requestId}`,
    `device.pair.resolved:rejected:${doomed.details.requestId}`
  ]
  const describe = (f: Frame): string => f.event === 'device.pair.resolved' ? `${f.event}:${f.payload.decision}:${f.payload.requestId}` : `${f.event}:${f.payload.requestId}`
  t.strictSame(about(watcher.socket).map(describe), expected, 'exactly these events, none for the repeated ask')
  t.strictSame(about(adminWatcher.socket).map(describe), expected, 'the admin connection got the same')
  t.strictSame(eventsNamed(readerConn.socket, 'device.pair.'), [], 'an operator.read connection receives no pairing event')
  t.strictSame(eventsNamed(probeSocket, 'device.pair.'), [], 'a device-less connection receives no pairing event')
  t.strictSame(probeSocket.frames.filter((f) => f.type === 'event').map((f) => f.event), ['connect.challenge'], 'a device-less connection receives nothing at all')

  await probeSocket.close()
  await readerConn.socket.close()
  await adminWatcher.socket.close()
  await watcher.socket.close()
})

// ---------------------------------------------------------------- expiry

t.test('a pending request expires TTL after creation, a repeat ask does not extend it, and a new connect makes a new one', async (t) => {
  const short = await startServer(t, { pairingRequestTtlMs: 1000 })

  // A watcher, paired within the 1 s TTL (asked again should a loaded machine be slower than that).
  const holder = new TestDevice()
  for (let attempt = 1; ; attempt++) {
    const { details } = await refused(short, holder, { scopes: [PAIRING] })
    const res = await short.api('POST', `/api/v1/pairing-requests/${details.requestId}/approve`, { body: {} })
    if (res.status === 200) break
    if (attempt === 5 || res.body.code !== 'PAIRING_REQUEST_NOT_PENDING') throw new Error(`could not pair the watcher: ${JSON.stringify(res.body)}`)
  }
  const watcher = await admitted(short, holder, { scopes: [PAIRING] })

  const device = new TestDevice()
  const first = await refused(short, device, { scopes: [READ] })
  const requestId: string = first.details.requestId
  const created = await getRequest(short, requestId)
  t.equal(created.state, 'pending')
  t.ok(Math.abs(created.expiresAtMs - created.ts - 1000) < 5, 'expires TTL after creation')

  await new Promise((resolve) => setTimeout(resolve, 200))
  const repeat = await refused(short, device, { scopes: [READ] })
  t.equal(repeat.details.requestId, requestId, 'the same request before it expires')
  t.equal((await getRequest(short, requestId)).expiresAtMs, created.expiresAtMs, 'a reuse does not extend the expiry')
  // ~1.3 s after creation.
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, created.expiresAtMs + 300 - Date.now())))

  t.equal((await getRequest(short, requestId)).state, 'expired')
  t.strictSame((await listAll(short)).filter((item) => item.deviceId === device.id), [], 'no longer listed as pending')
  t.ok((await listAll(short, 'expired')).some((item) => item.requestId === requestId), 'listed under state=expired')

  // The expiry timer wrote the audit row and announced it, before anyone tried to approve.
  const expiredEvent = await eventAfter(watcher.socket, 'device.pair.resolved', 0, (payload) => payload.requestId === requestId, 10_000)
  t.strictSame(expiredEvent.payload, { requestId, deviceId: device.id, decision: 'expired', ts: expiredEvent.payload.ts })
  const audit = await auditRows(short, requestId)
  const expiredRows = audit.filter((row) => row.action === 'pairing.expired')
  t.equal(expiredRows.length, 1, 'one pairing.expired audit row')
  t.match(expiredRows[0], { actor: 'system', device_id: device.id })

  const res = await short.api('POST', `/api/v1/pairing-requests/${requestId}/approve`, { body: {} })
  t.equal(res.status, 409)
  t.strictSame(res.body, { statusCode: 409, code: 'PAIRING_REQUEST_NOT_PENDING', error: 'Conflict', message: `pairing request ${requestId} is expired` })
  const rejectRes = await short.api('POST', `/api/v1/pairing-requests/${requestId}/reject`, { body: {} })
  t.equal(rejectRes.status, 409)
  t.equal((await auditRows(short, requestId)).filter((row) => row.action === 'pairing.expired').length, 1, 'still one expiry row')

  const again = await refused(short, device, { scopes: [READ] })
  t.not(again.details.requestId, requestId, 'a new request')
  t.equal(again.details.reason, 'not-paired')
  t.equal((await getRequest(short, again.details.requestId)).state, 'pending')
  t.equal((await getRequest(short, requestId)).state, 'expired', 'the old one stays expired, not superseded')

  await watcher.socket.close()
})

t.test('a connect that looked before an approval landed is admitted, not left with a new pending request', async (t) => {
  // The race: the connect read "not paired", then an admin approved, then the
  // connect asked for pairing. Its ask is what was approved: nothing to wait for.
  const device = new TestDevice()
  const refused = await device.connect(server.wsUrl, { token: server.config.gatewayToken, scopes: ['operator.read'], platform: 'linux' })
  await refused.socket.closed
  const requestId = refused.res.error.details.requestId as string
  t.equal((await server.api('POST', `/api/v1/pairing-requests/${requestId}/approve`)).status, 200)

  const ask = { deviceId: device.id, publicKey: device.publicKey, role: 'operator', scopes: ['operator.read'], platform: 'linux', deviceFamily: '', clientId: 'test', clientMode: 'backend' }
  const decision = await server.app.pairing.decide(ask, 'not-paired')
  t.equal(decision.kind, 'approved', 'the late ask is already approved')
  t.same(decision.kind === 'approved' ? decision.roleScopes : null, ['operator.read'], 'with the approved scopes')
  const pending = await server.api('GET', '/api/v1/pairing-requests?state=pending')
  t.same(pending.body.items.filter((r: { deviceId: string }) => r.deviceId === device.id), [], 'no pending request was created')

  const wider = await server.app.pairing.decide({ ...ask, scopes: ['operator.read', 'operator.write'] }, 'scope-upgrade')
  t.equal(wider.kind, 'pending', 'an ask beyond the approval still waits')
})
