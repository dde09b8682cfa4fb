// The admin REST API around pairing requests (API.md): JWT auth, statuses,
// Fastify's error shape, bodies, paging, the approve/reject race and audit
// actors. A real server on a real port; JWTs for the negative cases are signed
// by hand so the test controls alg, exp and the secret.
import { createHmac, randomUUID } from 'node:crypto'
import t from 'tap'
import pg from 'pg'
import { requestPairing, type PairingRequest } from './helpers/pairing.ts'
import { startServer, TEST_DATABASE_URL, type ApiResponse } from './helpers/server.ts'

type Test = Parameters<Parameters<typeof t.test>[0]>[0]

const READ = 'operator.read'
const WRITE = 'operator.write'

const server = await startServer(t)

const db = new pg.Client({ connectionString: TEST_DATABASE_URL })
await db.connect()
t.teardown(async () => { await db.end() })

// ---------------------------------------------------------------- helpers

const b64url = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')

/** A JWT signed by hand: HMAC with the given hash, or no signature at all when secret is null. */
function signJwt (header: Record<string, unknown>, payload: unknown, secret: string | null, hash = 'sha256'): string {
  const data = `${b64url(header)}.${b64url(payload)}`
  const signature = secret === null ? '' : createHmac(hash, secret).update(data).digest('base64url')
  return `${data}.${signature}`
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000)

function claims (extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { sub: 'hand-signed', role: 'admin', iat: nowSeconds(), exp: nowSeconds() + 3600, ...extra }
}

const HS256 = { alg: 'HS256', typ: 'JWT' }

interface AuditRow { actor: string, action: string, device_id: string | null }

async function auditRows (requestId: string): Promise<AuditRow[]> {
  const { rows } = await db.query<AuditRow>(
    `SELECT actor, action, device_id FROM "${server.config.databaseSchema}".audit_log WHERE request_id = $1 ORDER BY id`,
    [requestId]
  )
  return rows
}

/** A new device asks to pair (for read and write unless said); returns the pending request. */
async function newRequest (scopes = [READ, WRITE]): Promise<PairingRequest> {
  return await requestPairing(server, scopes)
}

/** Fastify's error shape, exactly: {statusCode, code, error, message}. */
function checkError (t: Test, res: ApiResponse, status: number, code?: string | RegExp, message?: string | RegExp): void {
  t.equal(res.status, status, `status ${status}: ${JSON.stringify(res.body)}`)
  t.strictSame(Object.keys(res.body ?? {}).sort(), ['code', 'error', 'message', 'statusCode'], 'the error shape')
  t.equal(res.body.statusCode, status)
  t.type(res.body.code, 'string')
  t.type(res.body.message, 'string')
  t.ok(res.body.message.length > 0, 'a message')
  const reason: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict', 413: 'Payload Too Large' }
  t.equal(res.body.error, reason[status])
  if (code !== undefined) t.match(res.body.code, code)
  if (message !== undefined) t.match(res.body.message, message)
  t.match(res.headers.get('content-type') ?? '', /^application\/json/)
}

async function stateOf (requestId: string): Promise<string> {
  const res = await server.api('GET', `/api/v1/pairing-requests/${requestId}`)
  return res.body.state
}

async function post (path: string, init: RequestInit): Promise<ApiResponse> {
  const res = await fetch(server.httpUrl + path, { method: 'POST', ...init, headers: { authorization: `Bearer ${server.adminToken()}`, ...(init.headers as Record<string, string> | undefined) } })
  const text = await res.text()
  let body: unknown = text
  try { body = JSON.parse(text) } catch {}
  return { status: res.status, headers: res.headers, body }
}

// ---------------------------------------------------------------- 401

t.test('a hand-signed HS256 admin JWT with the right secret is accepted (the control for the 401 cases)', async (t) => {
  const token = signJwt(HS256, claims(), server.config.jwtSecret)
  const res = await server.api('GET', '/api/v1/pairing-requests', { token })
  t.equal(res.status, 200, JSON.stringify(res.body))
  t.strictSame(Object.keys(res.body).sort(), ['items', 'nextCursor'])
})

t.test('no Authorization header is 401 on every pairing route, before any lookup', async (t) => {
  const { requestId } = await newRequest()
  for (const [method, path] of [
    ['GET', '/api/v1/pairing-requests'],
    ['GET', `/api/v1/pairing-requests/${requestId}`],
    ['GET', `/api/v1/pairing-requests/${randomUUID()}`],
    ['POST', `/api/v1/pairing-requests/${requestId}/approve`],
    ['POST', `/api/v1/pairing-requests/${requestId}/reject`]
  ] as const) {
    const res = await server.api(method, path, { token: null, ...(method === 'POST' && { body: {} }) })
    checkError(t, res, 401)
  }
  t.equal(await stateOf(requestId), 'pending', 'nothing was decided')
})

t.test('a garbage bearer token is 401', async (t) => {
  for (const token of ['garbage', 'a.b.c', 'x'.repeat(300), `${b64url(HS256)}.${b64url(claims())}`, `${b64url('not json')}.${b64url(claims())}.sig`]) {
    checkError(t, await server.api('GET', '/api/v1/pairing-requests', { token }), 401)
  }
})

t.test('an Authorization header that is not one bearer token is 401', async (t) => {
  const valid = server.adminToken()
  for (const authorization of ['Basic dXNlcjpwYXNz', 'Bearer', `Token ${valid}`, `Bearer ${valid} extra`, `Bearer  ${valid}`]) {
    const res = await server.api('GET', '/api/v1/pairing-requests', { token: null, headers: { authorization } })
    checkError(t, res, 401, undefined, undefined)
  }
})

t.test('a JWT signed with the wrong secret is 401', async (t) => {
  const res = await server.api('GET', '/api/v1/pairing-requests', { token: signJwt(HS256, claims(), 'not-the-secret') })
  checkError(t, res, 401)
  const approve = await server.api('POST', `/api/v1/pairing-requests/${randomUUID()}/approve`, { token: signJwt(HS256, claims(), 'not-the-secret'), body: {} })
  checkError(t, approve, 401)
})

t.test('an expired JWT is 401', async (t) => {
  const token = signJwt(HS256, claims({ iat: nowSeconds() - 7200, exp: nowSeconds() - 60 }), server.config.jwtSecret)
  checkError(t, await server.api('GET', '/api/v1/pairing-requests', { token }), 401)
})

t.test('a JWT not valid yet (nbf in the future) is 401', async (t) => {
  const token = signJwt(HS256, claims({ nbf: nowSeconds() + 3600 }), server.config.jwtSecret)
  checkError(t, await server.api('GET', '/api/v1/pairing-requests', { token }), 401)
})

t.test('an alg:none JWT is 401, with or without a signature part', async (t) => {
  const none = { alg: 'none', typ: 'JWT' }
  for (const token of [
    signJwt(none, claims(), null),
    `${b64url(none)}.${b64url(claims())}`,
    signJwt(none, claims(), server.config.jwtSecret),
    signJwt({ alg: 'None', typ: 'JWT' }, claims(), null)
  ]) {
    checkError(t, await server.api('GET', '/api/v1/pairing-requests', { token }), 401)
    checkError(t, await server.api('POST', `/api/v1/pairing-requests/${randomUUID()}/approve`, { token, body: {} }), 401)
  }
})

t.test('a JWT with another algorithm than HS256 is 401, even with the right secret', async (t) => {
  const hs512 = signJwt({ alg: 'HS512', typ: 'JWT' }, claims(), server.config.jwtSecret, 'sha512')
  checkError(t, await server.api('GET', '/api/v1/pairing-requests', { token: hs512 }), 401)
  const lying = signJwt({ alg: 'HS512', typ: 'JWT' }, claims(), server.config.jwtSecret, 'sha256')
  checkError(t, await server.api('GET', '/api/v1/pairing-requests', { token: lying }), 401)
})

t.test('a JWT without a usable role or sub claim is 401', async (t) => {
  const secret = server.config.jwtSecret
  const base = claims()
  const { role: _role, ...noRole } = base
  const { sub: _sub, ...noSub } = base
  for (const [label, payload] of [
    ['no role', noRole],
    ['role superuser', { ...base, role: 'superuser' }],
    ['role Admin (case matters)', { ...base, role: 'Admin' }],
    ['role as a list', { ...base, role: ['admin'] }],
    ['no sub', noSub],
    ['empty sub', { ...base, sub: '' }],
    ['numeric sub', { ...base, sub: 42 }]
  ] as const) {
    const token = signJwt(HS256, payload, secret)
    const res = await server.api('GET', '/api/v1/pairing-requests', { token })
    t.equal(res.status, 401, label)
    checkError(t, res, 401)
  }
})

t.test('a JWT whose payload is not a JSON object is 401', async (t) => {
  const secret = server.config.jwtSecret
  for (const payload of ['"admin"', '[1,2]', 'null', 'not json']) {
    const data = `${b64url(HS256)}.${Buffer.from(payload).toString('base64url')}`
    const token = `${data}.${createHmac('sha256', secret).update(data).digest('base64url')}`
    checkError(t, await server.api('GET', '/api/v1/pairing-requests', { token }), 401)
  }
})

// ---------------------------------------------------------------- 403 viewer

t.test('a viewer may read pairing requests but not approve or reject them (403)', async (t) => {
  const { requestId, device } = await newRequest()
  const viewer = server.adminToken('viewer', 'vera')

  const list = await server.api('GET', '/api/v1/pairing-requests', { token: viewer })
  t.equal(list.status, 200)
  t.ok(list.body.items.some((item: any) => item.requestId === requestId))
  const one = await server.api('GET', `/api/v1/pairing-requests/${requestId}`, { token: viewer })
  t.equal(one.status, 200)
  t.match(one.body, { requestId, deviceId: device.id, state: 'pending' })

  checkError(t, await server.api('POST', `/api/v1/pairing-requests/${requestId}/approve`, { token: viewer, body: {} }), 403, 'FORBIDDEN')
  checkError(t, await server.api('POST', `/api/v1/pairing-requests/${requestId}/reject`, { token: viewer, body: {} }), 403, 'FORBIDDEN')
  checkError(t, await server.api('POST', `/api/v1/pairing-requests/${randomUUID()}/approve`, { token: viewer, body: {} }), 403, 'FORBIDDEN', undefined)
  t.equal(await stateOf(requestId), 'pending', 'the viewer changed nothing')
  t.strictSame(await auditRows(requestId), [{ actor: device.id, action: 'pairing.requested', device_id: device.id }], 'and left no decision in the audit log')
})

// ---------------------------------------------------------------- 404

t.test('an unknown request id is 404 PAIRING_REQUEST_NOT_FOUND whatever its shape', async (t) => {
  for (const id of [randomUUID(), 'nope', '00000000-0000-0000-0000-000000000000', 'not-a-uuid-but-64-hex-' + 'a'.repeat(42)]) {
    const message = `unknown requestId: ${id}`
    checkError(t, await server.api('GET', `/api/v1/pairing-requests/${id}`), 404, 'PAIRING_REQUEST_NOT_FOUND', message)
    checkError(t, await server.api('POST', `/api/v1/pairing-requests/${id}/approve`, { body: {} }), 404, 'PAIRING_REQUEST_NOT_FOUND', message)
    checkError(t, await server.api('POST', `/api/v1/pairing-requests/${id}/reject`, { body: {} }), 404, 'PAIRING_REQUEST_NOT_FOUND', message)
  }
})

// Known bug, not in this suite's files to fix: Fastify's router refuses path
// parameters over 100 characters (maxParamLength) with its own 414 body
// (`"error":"Bad Request"`, bypassing the error handler), so ids of 101-128
// characters never reach the route. Fix: routerOptions.maxParamLength in app.ts.

t.test('an unknown id of the full 128 allowed characters is 404', async (t) => {
  const id = 'x'.repeat(128)
  checkError(t, await server.api('GET', `/api/v1/pairing-requests/${id}`), 404, 'PAIRING_REQUEST_NOT_FOUND', `unknown requestId: ${id}`)
  checkError(t, await server.api('POST', `/api/v1/pairing-requests/${id}/approve`, { body: {} }), 404, 'PAIRING_REQUEST_NOT_FOUND')
  checkError(t, await server.api('POST', `/api/v1/pairing-requests/${id}/reject`, { body: {} }), 404, 'PAIRING_REQUEST_NOT_FOUND')
})

t.test('an id longer than 128 characters is invalid input (400)', async (t) => {
  checkError(t, await server.api('GET', `/api/v1/pairing-requests/${'x'.repeat(129)}`), 400, undefined, /id/)
})

// ---------------------------------------------------------------- 409

t.test('deciding a request that is no longer pending is 409 PAIRING_REQUEST_NOT_PENDING', async (t) => {
  const approved = await newRequest()
  t.equal((await server.api('POST', `/api/v1/pairing-requests/${approved.requestId}/approve`, { body: {} })).status, 200)
  checkError(t, await server.api('POST', `/api/v1/pairing-requests/${approved.requestId}/reject`, { body: {} }), 409, 'PAIRING_REQUEST_NOT_PENDING', `pairing request ${approved.requestId} is approved`)
  checkError(t, await server.api('POST', `/api/v1/pairing-requests/${approved.requestId}/approve`, { body: {} }), 409, 'PAIRING_REQUEST_NOT_PENDING', `pairing request ${approved.requestId} is approved`)
  t.equal(await stateOf(approved.requestId), 'approved')

  const rejected = await newRequest()
  const rejectRes = await server.api('POST', `/api/v1/pairing-requests/${rejected.requestId}/reject`, { body: {} })
  t.equal(rejectRes.status, 200)
  t.strictSame(rejectRes.body, { requestId: rejected.requestId, deviceId: rejected.device.id })
  checkError(t, await server.api('POST', `/api/v1/pairing-requests/${rejected.requestId}/approve`, { body: {} }), 409, 'PAIRING_REQUEST_NOT_PENDING', `pairing request ${rejected.requestId} is rejected`)
  checkError(t, await server.api('POST', `/api/v1/pairing-requests/${rejected.requestId}/reject`, { body: {} }), 409, 'PAIRING_REQUEST_NOT_PENDING', `pairing request ${rejected.requestId} is rejected`)
  t.equal(await stateOf(rejected.requestId), 'rejected')

  const decisions = (await auditRows(approved.requestId)).concat(await auditRows(rejected.requestId)).filter((row) => row.action !== 'pairing.requested')
  t.strictSame(decisions.map((row) => row.action), ['pairing.approved', 'pairing.rejected'], 'one decision row each, none for the refused attempts')
})

t.test('a rejected device connecting again gets a new pending request', async (t) => {
  const { requestId, device } = await newRequest()
  t.equal((await server.api('POST', `/api/v1/pairing-requests/${requestId}/reject`, { body: {} })).status, 200)
  const { socket, res } = await device.connect(server.wsUrl, { token: server.config.gatewayToken, scopes: [READ] })
  await socket.closed
  t.equal(res.error.details.reason, 'not-paired')
  t.not(res.error.details.requestId, requestId)
  t.equal(await stateOf(res.error.details.requestId), 'pending')
})

// ---------------------------------------------------------------- bodies

t.test('a body that is not valid JSON is 400', async (t) => {
  const { requestId } = await newRequest()
  const url = `/api/v1/pairing-requests/${requestId}/approve`
  checkError(t, await server.api('POST', url, { rawBody: '{"scopes":', headers: { 'content-type': 'application/json' } }), 400)
  checkError(t, await server.api('POST', url, { rawBody: '{"__proto__":{"polluted":true}}', headers: { 'content-type': 'application/json' } }), 400)
  checkError(t, await server.api('POST', url, { rawBody: '"operator.read"', headers: { 'content-type': 'application/json' } }), 400)
  checkError(t, await server.api('POST', url, { rawBody: 'null', headers: { 'content-type': 'application/json' } }), 400)
  const rejectUrl = `/api/v1/pairing-requests/${requestId}/reject`
  checkError(t, await server.api('POST', rejectUrl, { body: { reason: 'because' } }), 400, undefined, /reason/)
  t.equal(await stateOf(requestId), 'pending', 'no bad body decided anything')
})

t.test('an empty approve body means {} with or without content-type: application/json', async (t) => {
  const withType = await newRequest()
  const a = await server.api('POST', `/api/v1/pairing-requests/${withType.requestId}/approve`, { rawBody: '', headers: { 'content-type': 'application/json' } })
  t.equal(a.status, 200, JSON.stringify(a.body))
  t.strictSame(a.body.device.roleScopes, { operator: [READ, WRITE] }, 'all requested scopes')

  const withoutType = await newRequest()
  const b = await server.api('POST', `/api/v1/pairing-requests/${withoutType.requestId}/approve`)
  t.equal(b.status, 200, JSON.stringify(b.body))
  t.equal(b.body.requestId, withoutType.requestId)

  const whitespace = await newRequest()
  const c = await server.api('POST', `/api/v1/pairing-requests/${whitespace.requestId}/approve`, { rawBody: ' \n', headers: { 'content-type': 'application/json' } })
  t.equal(c.status, 200, JSON.stringify(c.body))

  const charset = await newRequest()
  const d = await server.api('POST', `/api/v1/pairing-requests/${charset.requestId}/approve`, { rawBody: '', headers: { 'content-type': 'application/json; charset=utf-8' } })
  t.equal(d.status, 200, JSON.stringify(d.body))
})

t.test('an empty reject body means {} with or without content-type: application/json', async (t) => {
  const withType = await newRequest()
  const a = await server.api('POST', `/api/v1/pairing-requests/${withType.requestId}/reject`, { rawBody: '', headers: { 'content-type': 'application/json' } })
  t.equal(a.status, 200, JSON.stringify(a.body))
  t.strictSame(a.body, { requestId: withType.requestId, deviceId: withType.device.id })

  const withoutType = await newRequest()
  const b = await server.api('POST', `/api/v1/pairing-requests/${withoutType.requestId}/reject`)
  t.equal(b.status, 200, JSON.stringify(b.body))
  t.strictSame(b.body, { requestId: withoutType.requestId, deviceId: withoutType.device.id })
})

t.test('a body larger than 1 MiB is 413', async (t) => {
  const { requestId } = await newRequest()
  const url = `/api/v1/pairing-requests/${requestId}/approve`
  const big = JSON.stringify({ scopes: [READ], pad: 'x'.repeat(1024 * 1024) })
  checkError(t, await post(url, { body: big, headers: { 'content-type': 'application/json' } }), 413, 'FST_ERR_CTP_BODY_TOO_LARGE')
  t.equal(await stateOf(requestId), 'pending')
  const justUnder = JSON.stringify({ scopes: [READ] }).padEnd(1024 * 1024, ' ')
  const ok = await post(url, { body: justUnder, headers: { 'content-type': 'application/json' } })
  t.equal(ok.status, 200, 'exactly 1 MiB is accepted')
})

// ---------------------------------------------------------------- lists

t.test('the list pages newest first: limit=1 returns nextCursor and the next page', async (t) => {
  const mine = [await newRequest(), await newRequest(), await newRequest()].map((r) => r.requestId)
  const all = await server.api('GET', '/api/v1/pairing-requests?limit=500')
  t.equal(all.status, 200)
  t.equal(all.body.nextCursor, null, 'everything on one page: no cursor')
  const allIds: string[] = all.body.items.map((item: any) => item.requestId)
  t.strictSame(allIds.filter((id) => mine.includes(id)), [...mine].reverse(), 'newest first')
  const stamps: number[] = all.body.items.map((item: any) => item.ts)
  t.ok(stamps.every((ts, i) => i === 0 || ts <= stamps[i - 1]!), 'ordered by creation, newest first')

  const first = await server.api('GET', '/api/v1/pairing-requests?limit=1')
  t.equal(first.status, 200)
  t.equal(first.body.items.length, 1)
  t.type(first.body.nextCursor, 'string')
  t.equal(first.body.items[0].requestId, allIds[0])

  const walked: string[] = []
  let cursor: string | null = null
  do {
    const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`
    const page = await server.api('GET', `/api/v1/pairing-requests?limit=1${query}`)
    t.equal(page.status, 200)
    t.ok(page.body.items.length <= 1)
    walked.push(...page.body.items.map((item: any) => item.requestId))
    cursor = page.body.nextCursor
  } while (cursor !== null && walked.length <= allIds.length)
  t.strictSame(walked, allIds, 'following nextCursor walks the whole list once, in order')

  const two = await server.api('GET', '/api/v1/pairing-requests?limit=2')
  const next = await server.api('GET', `/api/v1/pairing-requests?limit=2&cursor=${encodeURIComponent(two.body.nextCursor)}`)
  t.strictSame([...two.body.items, ...next.body.items].map((item: any) => item.requestId), allIds.slice(0, 4))
})

t.test('bad list parameters are 400', async (t) => {
  checkError(t, await server.api('GET', '/api/v1/pairing-requests?limit=0'), 400, undefined, /limit/)
  checkError(t, await server.api('GET', '/api/v1/pairing-requests?limit=501'), 400, undefined, /limit/)
  checkError(t, await server.api('GET', '/api/v1/pairing-requests?limit=many'), 400, undefined, /limit/)
  checkError(t, await server.api('GET', '/api/v1/pairing-requests?state=bogus'), 400, undefined, /state/)
  checkError(t, await server.api('GET', '/api/v1/pairing-requests?cursor=not-a-cursor'), 400, 'INVALID_CURSOR')
  checkError(t, await server.api('GET', `/api/v1/pairing-requests?cursor=${Buffer.from('{"a":1}').toString('base64url')}`), 400, 'INVALID_CURSOR')
})

t.test('state filters: default pending, approved, rejected, superseded, all', async (t) => {
  const pending = await newRequest()
  const approved = await newRequest()
  const rejected = await newRequest()
  const superseded = await newRequest([READ])
  t.equal((await server.api('POST', `/api/v1/pairing-requests/${approved.requestId}/approve`, { body: {} })).status, 200)
  t.equal((await server.api('POST', `/api/v1/pairing-requests/${rejected.requestId}/reject`, { body: {} })).status, 200)
  const bigger = await superseded.device.connect(server.wsUrl, { token: server.config.gatewayToken, scopes: [READ, WRITE] })
  await bigger.socket.closed
  const successor: string = bigger.res.error.details.requestId
  t.not(successor, superseded.requestId)

  const ids = async (query: string): Promise<{ ids: string[], states: string[] }> => {
    const res = await server.api('GET', `/api/v1/pairing-requests${query}`)
    t.equal(res.status, 200, `${query}: ${JSON.stringify(res.body)}`)
    return { ids: res.body.items.map((item: any) => item.requestId), states: res.body.items.map((item: any) => item.state) }
  }
  const mine = [pending.requestId, approved.requestId, rejected.requestId, superseded.requestId, successor]
  const only = (list: string[]): string[] => list.filter((id) => mine.includes(id))

  const byDefault = await ids('?limit=500')
  t.strictSame(only(byDefault.ids).sort(), [pending.requestId, successor].sort(), 'default: pending only')
  t.ok(byDefault.states.every((state) => state === 'pending'))
  const pendingOnes = await ids('?state=pending&limit=500')
  t.strictSame(pendingOnes.ids, byDefault.ids)

  const approvedOnes = await ids('?state=approved&limit=500')
  t.strictSame(only(approvedOnes.ids), [approved.requestId])
  t.ok(approvedOnes.states.every((state) => state === 'approved'))

  const rejectedOnes = await ids('?state=rejected&limit=500')
  t.strictSame(only(rejectedOnes.ids), [rejected.requestId])
  t.ok(rejectedOnes.states.every((state) => state === 'rejected'))

  const supersededOnes = await ids('?state=superseded&limit=500')
  t.strictSame(only(supersededOnes.ids), [superseded.requestId])
  t.ok(supersededOnes.states.every((state) => state === 'superseded'))

  const everything = await ids('?state=all&limit=500')
  t.strictSame(only(everything.ids), [successor, superseded.requestId, rejected.requestId, approved.requestId, pending.requestId], 'all states, newest first')
  t.strictSame(new Set(everything.states).size > 1, true)

  const approvedItem = (await server.api('GET', '/api/v1/pairing-requests?state=approved&limit=500')).body.items.find((item: any) => item.requestId === approved.requestId)
  t.match(approvedItem, { state: 'approved', grantedScopes: [READ, WRITE] })
  t.type(approvedItem.resolvedAtMs, 'number')
})

// ---------------------------------------------------------------- race and audit

t.test('approve and reject racing on one request: exactly one wins, one decision in the audit log', async (t) => {
  for (let round = 0; round < 6; round++) {
    const { requestId } = await newRequest()
    const approverFirst = round % 2 === 0
    const calls = [
      server.api('POST', `/api/v1/pairing-requests/${requestId}/approve`, { body: {}, token: server.adminToken('admin', 'approver') }),
      server.api('POST', `/api/v1/pairing-requests/${requestId}/reject`, { body: {}, token: server.adminToken('admin', 'rejecter') })
    ]
    const [approveRes, rejectRes] = await Promise.all(approverFirst ? calls : [...calls].reverse()).then((r) => approverFirst ? r : [...r].reverse()) as [ApiResponse, ApiResponse]
    const statuses = [approveRes.status, rejectRes.status].sort()
    t.strictSame(statuses, [200, 409], `round ${round}: one 200 and one 409 (${approveRes.status}/${rejectRes.status})`)
    const loser = approveRes.status === 409 ? approveRes : rejectRes
    t.equal(loser.body.code, 'PAIRING_REQUEST_NOT_PENDING', `round ${round}: the loser is told it is no longer pending`)
    const winner = approveRes.status === 200 ? 'approved' : 'rejected'
    const decisions = (await auditRows(requestId)).filter((row) => row.action === 'pairing.approved' || row.action === 'pairing.rejected')
    t.equal(decisions.length, 1, `round ${round}: exactly one decision row`)
    t.match(decisions[0], { action: `pairing.${winner}`, actor: winner === 'approved' ? 'approver' : 'rejecter' })
    t.equal(await stateOf(requestId), winner, `round ${round}: the state is the winner's`)
  }
})

t.test('every approval and rejection is audited with the JWT sub as actor', async (t) => {
  const approvedReq = await newRequest()
  const aliceToken = signJwt(HS256, claims({ sub: 'alice@example.com' }), server.config.jwtSecret)
  const approved = await server.api('POST', `/api/v1/pairing-requests/${approvedReq.requestId}/approve`, { token: aliceToken, body: { scopes: [READ] } })
  t.equal(approved.status, 200)
  t.strictSame(await auditRows(approvedReq.requestId), [
    { actor: approvedReq.device.id, action: 'pairing.requested', device_id: approvedReq.device.id },
    { actor: 'alice@example.com', action: 'pairing.approved', device_id: approvedReq.device.id }
  ])

  const rejectedReq = await newRequest()
  const rejected = await server.api('POST', `/api/v1/pairing-requests/${rejectedReq.requestId}/reject`, { token: server.adminToken('admin', 'bob'), body: {} })
  t.equal(rejected.status, 200)
  t.strictSame(await auditRows(rejectedReq.requestId), [
    { actor: rejectedReq.device.id, action: 'pairing.requested', device_id: rejectedReq.device.id },
    { actor: 'bob', action: 'pairing.rejected', device_id: rejectedReq.device.id }
  ])

  const { rows } = await db.query<{ actor: string, request_id: string }>(
    `SELECT actor, request_id::text AS request_id FROM "${server.config.databaseSchema}".audit_log WHERE action IN ('pairing.approved', 'pairing.rejected')`
  )
  t.ok(rows.length > 2)
  t.ok(rows.every((row) => ['test-admin', 'approver', 'rejecter', 'alice@example.com', 'bob', 'hand-signed'].includes(row.actor)), 'every decision row names the JWT sub that made it')
})
