// Approval policies (API.md "Approval policies and token expiry"): REST, the
// dry run, and decisions made inside the handshake, observed by a connected
// operator.pairing device, the audit log and the pairing requests.
import t, { type Test } from 'tap'
import { TestDevice, type Frame, type TestSocket } from './helpers/device.ts'
import { pairDevice, requestPairing } from './helpers/pairing.ts'
import { startInstances, startServer, type Teardown, type TestServer } from './helpers/server.ts'

const READ = 'operator.read'
const WRITE = 'operator.write'
const ADMIN = 'operator.admin'
const PAIRING = 'operator.pairing'

type Policy = Record<string, any>

async function addPolicy (server: TestServer, body: Record<string, unknown>): Promise<Policy> {
  const res = await server.api('POST', '/api/v1/policies', { body })
  if (res.status !== 200) throw new Error(`policy not created: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body
}

async function evaluate (server: TestServer, ask: Record<string, unknown>): Promise<Record<string, any>> {
  const res = await server.api('POST', '/api/v1/policies/evaluate', { body: { role: 'operator', scopes: [READ], reason: 'not-paired', ...ask } })
  if (res.status !== 200) throw new Error(`evaluate failed: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body
}

async function auditFor (server: TestServer, deviceId: string): Promise<Array<Record<string, any>>> {
  return (await server.api('GET', `/api/v1/audit?deviceId=${deviceId}`)).body.items
}

async function pairEvent (socket: TestSocket, event: string, deviceId: string): Promise<Frame> {
  return await socket.next((f) => f.type === 'event' && f.event === event && f.payload?.deviceId === deviceId)
}

function eventsAbout (socket: TestSocket, event: string, deviceId: string): Frame[] {
  return socket.frames.filter((f) => f.type === 'event' && f.event === event && f.payload?.deviceId === deviceId)
}

/** A server with an operator.pairing + operator.read device connected throughout (paired before any rule exists). */
async function serverWithObserver (t: Teardown): Promise<{ server: TestServer, observer: TestSocket }> {
  const server = await startServer(t)
  const { socket } = await pairDevice(server, [PAIRING, READ], { teardown: t })
  return { server, observer: socket }
}

// ------------------------------------------------------------------ REST

t.test('policies over REST: create with defaults, list in evaluation order, get, patch, delete, audit rows', async (t) => {
  const server = await startServer(t)
  const created = await server.api('POST', '/api/v1/policies', {
    body: { name: 'bots read', action: 'approve', scopes: [READ], match: { clientIds: ['bot'], platforms: [' Linux '] } },
    token: server.adminToken('admin', 'alice')
  })
  t.equal(created.status, 200, JSON.stringify(created.body))
  t.match(created.body, {
    id: String,
    name: 'bots read',
    priority: 100,
    enabled: true,
    match: { clientIds: ['bot'], platforms: ['linux'] },
    action: 'approve',
    scopes: [READ],
    allowPrivileged: false,
    createdBy: 'alice',
    createdAtMs: Number
  })
  const first = created.body

  const urgent = await addPolicy(server, { name: 'nodes out', action: 'reject', priority: 10, match: { roles: ['node'] } })
  const later = await addPolicy(server, { name: 'same priority, younger', action: 'reject', match: { roles: ['node'] } })
  t.notOk('scopes' in urgent, 'no scopes on a rule that does not narrow')

  const listed = await server.api('GET', '/api/v1/policies')
  t.equal(listed.status, 200)
  t.same(listed.body.items.map((p: Policy) => p.id), [urgent.id, first.id, later.id], 'by priority, then age')
  t.equal(listed.body.nextCursor, null)
  const page1 = await server.api('GET', '/api/v1/policies?limit=2')
  t.same(page1.body.items.map((p: Policy) => p.id), [urgent.id, first.id])
  const page2 = await server.api('GET', `/api/v1/policies?limit=2&cursor=${page1.body.nextCursor as string}`)
  t.same(page2.body.items.map((p: Policy) => p.id), [later.id])
  t.equal(page2.body.nextCursor, null)
  t.equal((await server.api('GET', '/api/v1/policies?cursor=bogus')).status, 400)

  t.same((await server.api('GET', `/api/v1/policies/${first.id as string}`)).body, first)

  const patched = await server.api('PATCH', `/api/v1/policies/${first.id as string}`, { body: { name: 'bots read v2', enabled: false, match: { clientIds: ['bot', 'bot2'] }, priority: 5 } })
  t.equal(patched.status, 200, JSON.stringify(patched.body))
  t.match(patched.body, { id: first.id, name: 'bots read v2', enabled: false, priority: 5, match: { clientIds: ['bot', 'bot2'] }, scopes: [READ], createdBy: 'alice', createdAtMs: first.createdAtMs })
  t.notOk('platforms' in patched.body.match, 'match is replaced as a whole')
  t.same((await server.api('GET', '/api/v1/policies')).body.items.map((p: Policy) => p.id), [first.id, urgent.id, later.id], 'reordered by the new priority')

  const toReject = await server.api('PATCH', `/api/v1/policies/${first.id as string}`, { body: { action: 'reject' } })
  t.match(toReject.body, { statusCode: 400, code: 'INVALID_POLICY', message: /body\/scopes/ }, 'a reject rule cannot keep scopes')
  const cleared = await server.api('PATCH', `/api/v1/policies/${first.id as string}`, { body: { action: 'reject', scopes: null } })
  t.equal(cleared.status, 200)
  t.notOk('scopes' in cleared.body, 'scopes: null stops narrowing')

  const deleted = await server.api('DELETE', `/api/v1/policies/${later.id as string}`)
  t.same(deleted.body, { id: later.id })
  t.equal((await server.api('GET', `/api/v1/policies/${later.id as string}`)).status, 404)

  const audit = (await server.api('GET', '/api/v1/audit?limit=100')).body.items.filter((e: { action: string }) => e.action.startsWith('policy.'))
  t.same(audit.map((e: { action: string }) => e.action).reverse(), ['policy.created', 'policy.created', 'policy.created', 'policy.updated', 'policy.updated', 'policy.deleted'])
  const createdRow = audit.at(-1)
  t.match(createdRow, { actor: 'alice', action: 'policy.created', details: { policyId: first.id, policy: { name: 'bots read', action: 'approve', scopes: [READ] } } })
  const updatedRow = audit.find((e: { action: string }) => e.action === 'policy.updated')
  t.match(updatedRow, { actor: 'test-admin', details: { policyId: first.id, changed: ['action', 'scopes'], before: { action: 'approve' }, after: { action: 'reject' } } })
  t.match(audit[0], { actor: 'test-admin', action: 'policy.deleted', details: { policyId: later.id } })
})

t.test('unknown ids are 404 POLICY_NOT_FOUND, whatever their shape', async (t) => {
  const server = await startServer(t)
  for (const id of ['00000000-0000-4000-8000-000000000000', 'not-a-uuid']) {
    for (const [method, body] of [['GET', undefined], ['PATCH', { name: 'x' }], ['DELETE', undefined]] as const) {
      const res = await server.api(method, `/api/v1/policies/${id}`, body === undefined ? {} : { body })
      t.match(res, { status: 404, body: { statusCode: 404, code: 'POLICY_NOT_FOUND', error: 'Not Found', message: `unknown policy id: ${id}` } }, `${method} ${id}`)
    }
  }
})

t.test('bad input is 400 and the message names the field', async (t) => {
  const server = await startServer(t)
  const cases: Array<[unknown, RegExp]> = [
    [{ action: 'reject' }, /body must have required property 'name'/],
    [{ name: 'x' }, /body must have required property 'action'/],
    [{ name: 'x', action: 'allow' }, /body\/action/],
    [{ name: '', action: 'reject' }, /body\/name/],
    [{ name: 'x', action: 'reject', priority: 1.5 }, /body\/priority/],
    [{ name: 'x', action: 'reject', match: { role: ['node'] } }, /body\/match\/role is not allowed/],
    [{ name: 'x', action: 'reject', match: { roles: ['admin'] } }, /body\/match\/roles\/0/],
    [{ name: 'x', action: 'reject', match: { roles: [] } }, /body\/match\/roles/],
    [{ name: 'x', action: 'reject', match: { reasons: ['whatever'] } }, /body\/match\/reasons\/0/],
    [{ name: 'x', action: 'reject', match: { scopesWithin: ['operator.everything'] } }, /body\/match\/scopesWithin\/0/],
    [{ name: 'x', action: 'reject', match: { clientIds: 'bot' } }, /body\/match\/clientIds must be array/],
    [{ name: 'x', action: 'approve', scopes: ['operator.nope'] }, /body\/scopes\/0/],
    [{ name: 'x', action: 'reject', scopes: [READ] }, /body\/scopes applies to approve rules only/],
    [{ name: 'x', action: 'reject', extra: true }, /body\/extra is not allowed/]
  ]
  for (const [body, message] of cases) {
    const res = await server.api('POST', '/api/v1/policies', { body })
    t.equal(res.status, 400, JSON.stringify(body))
    t.match(res.body.message, message, JSON.stringify(body))
  }
  const policy = await addPolicy(server, { name: 'x', action: 'reject' })
  const empty = await server.api('PATCH', `/api/v1/policies/${policy.id as string}`, { body: {} })
  t.equal(empty.status, 400, 'a PATCH must change something')
  t.match(empty.body.message, /body must NOT have fewer than 1 properties/)
  const badEval = await server.api('POST', '/api/v1/policies/evaluate', { body: { role: 'operator', scopes: [READ] } })
  t.match(badEval, { status: 400, body: { message: /body must have required property 'reason'/ } })
  const badRole = await server.api('POST', '/api/v1/policies/evaluate', { body: { role: 'root', scopes: [], reason: 'not-paired' } })
  t.match(badRole, { status: 400, body: { message: /body\/role/ } })
})

t.test('a rule that could grant operator.admin or operator.pairing needs allowPrivileged: true (else 400)', async (t) => {
  const server = await startServer(t)
  const refused: Array<[string, Record<string, unknown>]> = [
    ['neither scopes nor scopesWithin limits it', { action: 'approve' }],
    ['scopes names operator.admin', { action: 'approve', scopes: [READ, ADMIN] }],
    ['scopesWithin names operator.pairing', { action: 'approve', match: { scopesWithin: [READ, PAIRING] } }],
    ['scopesWithin limits but scopes names operator.admin', { action: 'approve', scopes: [ADMIN], match: { scopesWithin: [READ] } }],
    ['explicitly false', { action: 'approve', allowPrivileged: false }]
  ]
  for (const [label, body] of refused) {
    const res = await server.api('POST', '/api/v1/policies', { body: { name: label, ...body } })
    t.equal(res.status, 400, label)
    t.equal(res.body.code, 'POLICY_NEEDS_ALLOW_PRIVILEGED', label)
    t.match(res.body.message, /^body\/allowPrivileged must be true: this rule could grant operator\.(admin|pairing)/, label)
  }
  const allowed: Array<[string, Record<string, unknown>]> = [
    ['scopes without a privileged one', { action: 'approve', scopes: [READ, WRITE] }],
    ['scopesWithin without a privileged one', { action: 'approve', match: { scopesWithin: [READ] } }],
    ['scopes: [] grants no scope at all', { action: 'approve', scopes: [] }],
    ['a reject rule grants nothing', { action: 'reject' }],
    ['said explicitly', { action: 'approve', allowPrivileged: true }],
    ['said explicitly, naming them', { action: 'approve', scopes: [ADMIN, PAIRING], allowPrivileged: true }]
  ]
  for (const [label, body] of allowed) {
    t.equal((await server.api('POST', '/api/v1/policies', { body: { name: label, ...body } })).status, 200, label)
  }
  // The guard holds for the policy a PATCH leaves, too.
  const narrow = await addPolicy(server, { name: 'narrow', action: 'approve', scopes: [READ] })
  const widened = await server.api('PATCH', `/api/v1/policies/${narrow.id as string}`, { body: { scopes: null } })
  t.match(widened, { status: 400, body: { code: 'POLICY_NEEDS_ALLOW_PRIVILEGED' } }, 'dropping the narrowing')
  const privileged = await addPolicy(server, { name: 'privileged', action: 'approve', allowPrivileged: true })
  const unflagged = await server.api('PATCH', `/api/v1/policies/${privileged.id as string}`, { body: { allowPrivileged: false } })
  t.match(unflagged, { status: 400, body: { code: 'POLICY_NEEDS_ALLOW_PRIVILEGED' } }, 'dropping the flag')
  t.equal((await server.api('PATCH', `/api/v1/policies/${privileged.id as string}`, { body: { allowPrivileged: false, scopes: [READ] } })).status, 200, 'both at once')
})

t.test('only an admin JWT may write policies; viewers may list, get and evaluate', async (t) => {
  const server = await startServer(t)
  const policy = await addPolicy(server, { name: 'x', action: 'reject' })
  const viewer = server.adminToken('viewer', 'val')
  const writes: Array<[string, string, unknown]> = [
    ['POST', '/api/v1/policies', { name: 'y', action: 'reject' }],
    ['PATCH', `/api/v1/policies/${policy.id as string}`, { name: 'z' }],
    ['DELETE', `/api/v1/policies/${policy.id as string}`, undefined]
  ]
  for (const [method, path, body] of writes) {
    const res = await server.api(method, path, { token: viewer, ...(body !== undefined && { body }) })
    t.match(res, { status: 403, body: { code: 'FORBIDDEN' } }, `viewer ${method}`)
  }
  t.equal((await server.api('GET', '/api/v1/policies', { token: viewer })).status, 200)
  t.equal((await server.api('GET', `/api/v1/policies/${policy.id as string}`, { token: viewer })).status, 200)
  const evaluated = await server.api('POST', '/api/v1/policies/evaluate', { token: viewer, body: { role: 'operator', scopes: [], reason: 'not-paired' } })
  t.same(evaluated, { ...evaluated, status: 200 })
  t.same(evaluated.body, { policyId: policy.id, policyName: 'x', action: 'reject' })
  t.equal((await server.api('POST', '/api/v1/policies/evaluate', { token: null, body: {} })).status, 401, 'no token')
  t.equal((await server.api('GET', `/api/v1/policies/${policy.id as string}`)).body.name, 'x', 'nothing changed')

  const openapi = (await server.api('GET', '/api/v1/openapi.json')).body
  for (const path of ['/api/v1/policies', '/api/v1/policies/{id}', '/api/v1/policies/evaluate']) t.ok(openapi.paths[path], `OpenAPI documents ${path}`)
  t.ok(openapi.paths['/api/v1/policies/{id}'].patch.requestBody, 'with its request body')
})

// ------------------------------------------------------------------ dry run

t.test('evaluate: each match field matching and not matching', async (t) => {
  const server = await startServer(t)
  const deviceId = 'ab'.repeat(32)
  const fields: Array<[string, unknown[], Record<string, unknown>, Record<string, unknown>]> = [
    ['roles', ['node'], { role: 'node', scopes: [] }, { role: 'operator' }],
    ['clientIds', ['bot'], { clientId: 'bot' }, { clientId: 'cli' }],
    ['clientModes', ['backend'], { clientMode: 'backend' }, { clientMode: 'cli' }],
    ['platforms', ['Linux'], { platform: ' LINUX ' }, { platform: 'darwin' }],
    ['reasons', ['scope-upgrade'], { reason: 'scope-upgrade' }, { reason: 'not-paired' }],
    ['deviceIds', [deviceId], { deviceId }, { deviceId: 'cd'.repeat(32) }],
    ['scopesWithin', [READ, WRITE], { scopes: [WRITE, READ] }, { scopes: [READ, ADMIN] }]
  ]
  for (const [field, list, matching, notMatching] of fields) {
    const policy = await addPolicy(server, { name: field, action: 'reject', match: { [field]: list } })
    t.same(await evaluate(server, matching), { policyId: policy.id, policyName: field, action: 'reject' }, `${field} matches`)
    t.same(await evaluate(server, notMatching), { policyId: null, action: 'none' }, `${field} does not match`)
    if (field !== 'roles' && field !== 'reasons' && field !== 'scopesWithin') {
      t.same(await evaluate(server, {}), { policyId: null, action: 'none' }, `${field}: an ask without the value does not match`)
    }
    t.equal((await server.api('DELETE', `/api/v1/policies/${policy.id as string}`)).status, 200)
  }
  const within = await addPolicy(server, { name: 'within', action: 'reject', match: { scopesWithin: [READ] } })
  t.equal((await evaluate(server, { scopes: [] })).policyId, within.id, 'no scopes asked are within any list')
  await server.api('DELETE', `/api/v1/policies/${within.id as string}`)

  const every = await addPolicy(server, { name: 'every field', action: 'reject', match: { roles: ['operator'], clientIds: ['bot'], platforms: ['linux'], reasons: ['not-paired'] } })
  t.equal((await evaluate(server, { clientId: 'bot', platform: 'linux' })).policyId, every.id, 'all fields hold')
  t.equal((await evaluate(server, { clientId: 'bot', platform: 'win32' })).policyId, null, 'one field fails: no match')
  t.same(await evaluate(server, {}), { policyId: null, action: 'none' }, 'default: no rule, no decision')
})

t.test('evaluate: ordering by priority then age, disabled rules skipped, narrowing', async (t) => {
  const server = await startServer(t)
  const older = await addPolicy(server, { name: 'older', action: 'approve', scopes: [READ] })
  const younger = await addPolicy(server, { name: 'younger', action: 'reject' })
  t.equal((await evaluate(server, {})).policyId, older.id, 'same priority: the older rule first')
  await server.api('PATCH', `/api/v1/policies/${younger.id as string}`, { body: { priority: 99 } })
  t.equal((await evaluate(server, {})).policyId, younger.id, 'a lower priority goes first')
  await server.api('PATCH', `/api/v1/policies/${younger.id as string}`, { body: { enabled: false } })
  t.equal((await evaluate(server, {})).policyId, older.id, 'a disabled rule is skipped')

  t.same(await evaluate(server, { scopes: [READ, WRITE] }), { policyId: older.id, policyName: 'older', action: 'approve', scopes: [READ], leftOutScopes: [WRITE] }, 'narrowed to the rule\'s scopes')
  t.same(await evaluate(server, { scopes: [WRITE] }), { policyId: older.id, policyName: 'older', action: 'approve', scopes: [], leftOutScopes: [WRITE] })
  await server.api('PATCH', `/api/v1/policies/${older.id as string}`, { body: { enabled: false } })
  const all = await addPolicy(server, { name: 'everything', action: 'approve', allowPrivileged: true })
  t.same(await evaluate(server, { scopes: [ADMIN, READ] }), { policyId: all.id, policyName: 'everything', action: 'approve', scopes: [ADMIN, READ], leftOutScopes: [] }, 'without scopes: every asked scope')
})

// ------------------------------------------------------------------ the handshake

t.test('approve inside the handshake: the same connect gets hello-ok with its device token; audit actor policy:<id>; device.pair.resolved and no device.pair.requested', async (t) => {
  const { server, observer } = await serverWithObserver(t)
  const policy = await addPolicy(server, { name: 'known bot reads', action: 'approve', match: { clientIds: ['reminder-bot'], scopesWithin: [READ] } })
  const bot = new TestDevice()
  const conn = await bot.connect(server.wsUrl, { token: server.config.gatewayToken, clientId: 'reminder-bot', scopes: [READ] })
  t.equal(conn.res.ok, true, JSON.stringify(conn.res.error))
  t.same(conn.res.payload.auth.scopes, [READ])
  const deviceToken = conn.res.payload.auth.deviceToken
  t.type(deviceToken, 'string', 'its new device token')
  await conn.socket.close()

  const resolved = await pairEvent(observer, 'device.pair.resolved', bot.id)
  t.match(resolved.payload, { deviceId: bot.id, decision: 'approved', requestId: String, ts: Number })
  const requestId: string = resolved.payload.requestId
  await observer.request('health')
  t.same(eventsAbout(observer, 'device.pair.requested', bot.id), [], 'no device.pair.requested')

  const request = await server.api('GET', `/api/v1/pairing-requests/${requestId}`)
  t.match(request.body, { requestId, deviceId: bot.id, state: 'approved', reason: 'not-paired', clientId: 'reminder-bot', scopes: [READ], grantedScopes: [READ] })
  const pending = await server.api('GET', '/api/v1/pairing-requests')
  t.notOk(pending.body.items.some((r: { deviceId: string }) => r.deviceId === bot.id), 'nothing pending for it')

  const audit = await auditFor(server, bot.id)
  t.same(audit.map((e) => e.action), ['pairing.approved'], 'one audit row, the decision')
  t.match(audit[0], { actor: `policy:${policy.id as string}`, requestId, details: { policyId: policy.id, policyName: 'known bot reads', reason: 'not-paired', grantedScopes: [READ] } })

  const again = await bot.connect(server.wsUrl, { deviceToken, clientId: 'reminder-bot', scopes: [READ] })
  t.equal(again.res.ok, true, 'the device token works')
  await again.socket.close()

  // The rule judges the ask: operator.admin is not within it, so this waits for an admin as usual.
  const upgrade = await bot.connect(server.wsUrl, { deviceToken, clientId: 'reminder-bot', scopes: [READ, ADMIN] })
  t.match(upgrade.res.error, { code: 'NOT_PAIRED', message: 'pairing required (scope-upgrade)', details: { reason: 'scope-upgrade', approvedScopes: [READ], requestedScopes: [READ, ADMIN] } })
  t.notOk('policyId' in upgrade.res.error.details)
  await pairEvent(observer, 'device.pair.requested', bot.id)
})

t.test('reinstall: a known bot asking operator.read again is approved again by the rule', async (t) => {
  const { server, observer } = await serverWithObserver(t)
  const bot = new TestDevice()
  await pairDevice(server, [READ], { device: bot, clientId: 'bot' })
  await server.api('DELETE', `/api/v1/devices/${bot.id}`)
  const policy = await addPolicy(server, { name: 'reinstalled bots', action: 'approve', match: { clientIds: ['bot'], reasons: ['not-paired'] }, scopes: [READ] })
  const conn = await bot.connect(server.wsUrl, { token: server.config.gatewayToken, clientId: 'bot', scopes: [READ] })
  t.equal(conn.res.ok, true, JSON.stringify(conn.res.error))
  await conn.socket.close()
  t.equal((await pairEvent(observer, 'device.pair.resolved', bot.id)).payload.decision, 'approved')
  t.equal((await auditFor(server, bot.id))[0]?.actor, `policy:${policy.id as string}`)
})

t.test('narrowing inside the handshake: the rule grants its scopes, the rest wait as a scope-upgrade request', async (t) => {
  const { server, observer } = await serverWithObserver(t)
  const policy = await addPolicy(server, { name: 'read only', action: 'approve', scopes: [READ], match: { clientIds: ['narrow'] } })
  const device = new TestDevice()
  const refused = await device.connect(server.wsUrl, { token: server.config.gatewayToken, clientId: 'narrow', scopes: [READ, WRITE] })
  t.match(refused.res.error, {
    code: 'NOT_PAIRED',
    message: 'pairing required (scope-upgrade)',
    details: { code: 'PAIRING_REQUIRED', reason: 'scope-upgrade', deviceId: device.id, requestedRole: 'operator', requestedScopes: [READ, WRITE], approvedScopes: [READ] }
  })
  t.same(await refused.socket.closed, { code: 1008, reason: 'pairing required (scope-upgrade)' })
  const { requestId, remediationHint } = refused.res.error.details
  t.match(remediationHint, `approval policy "read only" (${policy.id as string}) approved operator.read`)
  t.match(remediationHint, `scopegate requests approve ${requestId as string}`)
  t.match(remediationHint, '/console')

  const approved = await pairEvent(observer, 'device.pair.resolved', device.id)
  t.equal(approved.payload.decision, 'approved')
  const requested = await pairEvent(observer, 'device.pair.requested', device.id)
  t.equal(requested.payload.requestId, requestId)
  t.match(requested.payload, { state: 'pending', reason: 'scope-upgrade', scopes: [READ, WRITE], approvedScopes: [READ] })
  const decided = await server.api('GET', `/api/v1/pairing-requests/${approved.payload.requestId as string}`)
  t.match(decided.body, { state: 'approved', grantedScopes: [READ] })

  // A repeat of the same ask is the same pending request; the rule has nothing new to grant.
  const repeat = await device.connect(server.wsUrl, { token: server.config.gatewayToken, clientId: 'narrow', scopes: [READ, WRITE] })
  t.equal(repeat.res.error?.details?.requestId, requestId)
  await repeat.socket.closed
  const audit = await auditFor(server, device.id)
  t.same(audit.map((e) => e.action), ['pairing.requested', 'pairing.approved'], 'one approval, one request')
  t.match(audit[1], { actor: `policy:${policy.id as string}`, details: { grantedScopes: [READ], requestedScopes: [READ, WRITE] } })

  const readOnly = await device.connect(server.wsUrl, { token: server.config.gatewayToken, clientId: 'narrow', scopes: [READ] })
  t.equal(readOnly.res.ok, true, 'what the rule granted is usable')
  t.type(readOnly.res.payload.auth.deviceToken, 'string')
  await readOnly.socket.close()
})

t.test('reject inside the handshake: the usual refusal with details.policyId, nothing pending, audit and event', async (t) => {
  const { server, observer } = await serverWithObserver(t)
  // Known platforms first; every other node is rejected.
  const known = await addPolicy(server, { name: 'nodes on linux', priority: 10, action: 'approve', scopes: [], match: { roles: ['node'], platforms: ['linux'] } })
  const others = await addPolicy(server, { name: 'other nodes', priority: 20, action: 'reject', match: { roles: ['node'] } })

  const stranger = new TestDevice()
  const refused = await stranger.connect(server.wsUrl, { token: server.config.gatewayToken, role: 'node', platform: 'Windows', scopes: [] })
  t.match(refused.res.error, {
    code: 'NOT_PAIRED',
    message: 'pairing required (not-paired)',
    details: { code: 'PAIRING_REQUIRED', reason: 'not-paired', requestId: String, deviceId: stranger.id, requestedRole: 'node', requestedScopes: [], approvedScopes: [], policyId: others.id }
  })
  t.same(await refused.socket.closed, { code: 1008, reason: 'pairing required (not-paired)' })
  const { requestId, remediationHint } = refused.res.error.details
  t.match(remediationHint, `approval policy "other nodes" (${others.id as string}) rejected`)
  t.match(remediationHint, `scopegate policies show ${others.id as string}`)
  t.notMatch(remediationHint, 'requests approve', 'no approve command')

  const resolved = await pairEvent(observer, 'device.pair.resolved', stranger.id)
  t.same(resolved.payload, { requestId, deviceId: stranger.id, decision: 'rejected', ts: resolved.payload.ts })
  await observer.request('health')
  t.same(eventsAbout(observer, 'device.pair.requested', stranger.id), [], 'no device.pair.requested')
  t.match((await server.api('GET', `/api/v1/pairing-requests/${requestId as string}`)).body, { state: 'rejected', role: 'node', platform: 'windows' })
  const pending = await server.api('GET', '/api/v1/pairing-requests')
  t.notOk(pending.body.items.some((r: { deviceId: string }) => r.deviceId === stranger.id), 'no request left pending')
  const audit = await auditFor(server, stranger.id)
  t.same(audit.map((e) => e.action), ['pairing.rejected'])
  t.match(audit[0], { actor: `policy:${others.id as string}`, requestId, details: { policyId: others.id, policyName: 'other nodes', reason: 'not-paired', role: 'node' } })
  t.equal((await server.api('GET', `/api/v1/devices/${stranger.id}`)).status, 404, 'not paired')

  const linuxNode = new TestDevice()
  const admitted = await linuxNode.connect(server.wsUrl, { token: server.config.gatewayToken, role: 'node', platform: 'linux', scopes: [] })
  t.equal(admitted.res.ok, true, JSON.stringify(admitted.res.error))
  t.equal(admitted.res.payload.auth.role, 'node')
  await admitted.socket.close()
  t.equal((await auditFor(server, linuxNode.id))[0]?.actor, `policy:${known.id as string}`)

  // The same stranger asking as an operator is not the rules' business: it waits for an admin.
  const operator = await requestPairing(server, [READ], { device: stranger })
  t.notOk('policyId' in operator.res.error.details)
})

t.test('remediation hints name the approve command and the console page for each reason, and a disabled rule that would match', async (t) => {
  const server = await startServer(t)
  const hintOf = (res: Frame): string => res.error.details.remediationHint
  const expectApprove = (t: Test, res: Frame, start: string): void => {
    const hint = hintOf(res)
    t.match(hint, start)
    t.match(hint, `ask an admin to run: scopegate requests approve ${res.error.details.requestId as string}`)
    t.match(hint, 'Pending requests at /console')
  }

  const device = new TestDevice()
  const notPaired = await requestPairing(server, [READ], { device })
  expectApprove(t, notPaired.res, 'this device is not paired yet')
  await server.api('POST', `/api/v1/pairing-requests/${notPaired.requestId}/approve`, { body: {} })

  const scope = await requestPairing(server, [READ, WRITE], { device })
  expectApprove(t, scope.res, 'this device asked for scopes beyond its approval and cannot approve its own upgrade')
  await server.api('POST', `/api/v1/pairing-requests/${scope.requestId}/reject`, { body: {} })

  const role = await requestPairing(server, [], { device, role: 'node' })
  expectApprove(t, role.res, 'this device is paired, but not for role node')
  await server.api('POST', `/api/v1/pairing-requests/${role.requestId}/reject`, { body: {} })

  const metadata = await requestPairing(server, [READ], { device, platform: 'darwin' })
  expectApprove(t, metadata.res, 'this device\'s platform or deviceFamily changed since it was approved')

  const disabled = await addPolicy(server, { name: 'mac moves', action: 'approve', enabled: false, scopes: [READ], match: { reasons: ['metadata-upgrade'] } })
  const again = await requestPairing(server, [READ], { device, platform: 'darwin' })
  t.equal(again.requestId, metadata.requestId, 'still the same request')
  expectApprove(t, again.res, 'this device\'s platform or deviceFamily changed')
  t.match(hintOf(again.res), `the disabled approval policy "mac moves" (${disabled.id as string}) would approve it: scopegate policies update ${disabled.id as string} --enable`)

  await server.api('PATCH', `/api/v1/policies/${disabled.id as string}`, { body: { enabled: true } })
  const moved = await device.connect(server.wsUrl, { token: server.config.gatewayToken, platform: 'darwin', scopes: [READ] })
  t.equal(moved.res.ok, true, 'enabled, the rule approves the move')
  await moved.socket.close()
  t.equal((await server.api('GET', `/api/v1/devices/${device.id}`)).body.platform, 'darwin')
})

t.test('two instances deciding the same device approve it once', async (t) => {
  const [a, b] = await startInstances(t, 2, 'policymulti') as [TestServer, TestServer]
  await addPolicy(a, { name: 'bots', action: 'approve', scopes: [READ], match: { clientIds: ['bot'] } })
  for (let round = 0; round < 3; round++) {
    const device = new TestDevice()
    const [onA, onB] = await Promise.all([a, b].map(async (server) => await device.connect(server.wsUrl, { token: a.config.gatewayToken, clientId: 'bot', scopes: [READ] })))
    if (onA === undefined || onB === undefined) throw new Error('two connects expected')
    t.equal(onA.res.ok, true, `round ${round}: admitted on A`)
    t.equal(onB.res.ok, true, `round ${round}: admitted on B`)
    const tokens = [onA.res.payload.auth.deviceToken, onB.res.payload.auth.deviceToken].filter((token) => token !== undefined)
    t.equal(tokens.length, 1, `round ${round}: one device token minted`)
    const audit = await auditFor(a, device.id)
    t.same(audit.map((e) => e.action), ['pairing.approved'], `round ${round}: approved once`)
    const requests = (await a.api('GET', '/api/v1/pairing-requests?state=all')).body.items.filter((r: { deviceId: string }) => r.deviceId === device.id)
    t.equal(requests.length, 1, `round ${round}: one decided request`)
    await onA.socket.close()
    await onB.socket.close()
  }
})
