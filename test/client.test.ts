import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import pg from 'pg'
import t from 'tap'
import {
  backoffDelay, GatewayClient, GatewayError, isRetryableClose, METHOD_NAMES, PairingRequiredError,
  type CloseInfo, type CronEvent, type GatewayClientOptions, type IdentityFile, type ReconnectingInfo, type Scope
} from '../src/client/index.ts'
import { GATEWAY_EVENTS } from '../src/gateway/plugin.ts'
import { dropSchema, startServer, TEST_DATABASE_URL, testConfig, uniqueSchema, type TestServer } from './helpers/server.ts'
import { freePort } from './helpers/ports.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

interface Test { teardown: (fn: () => unknown) => void }

/** A fresh identity path in a directory that does not exist yet. */
function identityPath (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'scopegate-client-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return join(dir, 'nested', 'bot', 'identity.json')
}

function newClient (t: Test, server: TestServer, options: Partial<GatewayClientOptions> & { identityPath: string }): GatewayClient {
  const client = new GatewayClient({ url: server.wsUrl, gatewayToken: server.config.gatewayToken, ...options })
  t.teardown(async () => { await client.close() })
  return client
}

async function refusal (client: GatewayClient): Promise<PairingRequiredError> {
  try {
    // retry: a busy test machine may make the gateway fail closed (UNAVAILABLE) for a moment.
    await client.connect({ retry: true })
  } catch (err) {
    if (err instanceof PairingRequiredError) return err
    throw err
  }
  throw new Error('expected a pairing refusal, got hello-ok')
}

async function approve (server: TestServer, requestId: string | undefined, scopes?: string[]): Promise<void> {
  const res = await server.api('POST', `/api/v1/pairing-requests/${requestId}/approve`, scopes === undefined ? {} : { body: { scopes } })
  if (res.status !== 200) throw new Error(`approve: ${res.status} ${JSON.stringify(res.body)}`)
}

/** A client whose device was refused, approved over REST, then admitted. */
async function pairedClient (t: Test, server: TestServer, scopes: Scope[], options: Partial<GatewayClientOptions> = {}): Promise<GatewayClient> {
  const client = newClient(t, server, { identityPath: identityPath(t), scopes, ...options })
  await approve(server, (await refusal(client)).requestId)
  await client.connect({ retry: true })
  return client
}

function readIdentity (path: string): IdentityFile {
  return JSON.parse(readFileSync(path, 'utf8')) as IdentityFile
}

async function rejection (promise: Promise<unknown>): Promise<GatewayError> {
  try {
    await promise
  } catch (err) {
    if (err instanceof GatewayError) return err
    throw err
  }
  throw new Error('expected a GatewayError')
}

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

t.test('identity file: created 0600 in a new directory, reused with the same deviceId, checked when loaded', async (t) => {
  const path = identityPath(t)
  const first = new GatewayClient({ url: 'ws://127.0.0.1:1/', identityPath: path })
  t.equal(statSync(path).mode & 0o777, 0o600, 'the file is mode 0600')
  t.equal(statSync(join(path, '..')).mode & 0o777, 0o700, 'its new directory is 0700')
  const file = readIdentity(path)
  t.equal(file.deviceId, first.deviceId)
  t.equal(file.deviceId, createHash('sha256').update(Buffer.from(file.publicKey, 'base64url')).digest('hex'), 'deviceId = sha256(raw public key)')
  t.equal(Buffer.from(file.publicKey, 'base64url').length, 32, 'the raw 32-byte key')
  t.match(file.privateKeyPem, /^-----BEGIN PRIVATE KEY-----/)
  t.same(file.deviceTokens, {})

  const again = new GatewayClient({ url: 'ws://127.0.0.1:1/', identityPath: path })
  t.equal(again.deviceId, first.deviceId, 'the same identity on the next start')
  t.equal(again.identity.sign('x'), first.identity.sign('x'), 'the same key (Ed25519 signatures are deterministic)')

  chmodSync(path, 0o644)
  void new GatewayClient({ url: 'ws://127.0.0.1:1/', identityPath: path })
  t.equal(statSync(path).mode & 0o777, 0o600, 'a file readable by others is taken back to 0600')

  writeFileSync(path, JSON.stringify({ ...file, deviceId: 'f'.repeat(64) }))
  t.throws(() => new GatewayClient({ url: 'ws://127.0.0.1:1/', identityPath: path }), /deviceId is not sha256\(publicKey\)/)
  const other = new GatewayClient({ url: 'ws://127.0.0.1:1/', identityPath: identityPath(t) })
  writeFileSync(path, JSON.stringify({ ...file, publicKey: other.identity.publicKey, deviceId: other.deviceId }))
  t.throws(() => new GatewayClient({ url: 'ws://127.0.0.1:1/', identityPath: path }), /publicKey does not belong to privateKeyPem/)
  writeFileSync(path, 'not json')
  t.throws(() => new GatewayClient({ url: 'ws://127.0.0.1:1/', identityPath: path }), /is not JSON/)
})

t.test('refusals: PairingRequiredError not-paired (one request on repeat asks), then the device token is kept and used; scope-upgrade', async (t) => {
  const server = await startServer(t, { logLevel: 'warn' })
  const path = identityPath(t)
  const client = newClient(t, server, { identityPath: path, scopes: ['operator.read'] })

  const refused = await refusal(client)
  t.ok(refused instanceof GatewayError, 'a PairingRequiredError is a GatewayError')
  t.equal(refused.code, 'NOT_PAIRED')
  t.equal(refused.message, 'pairing required (not-paired)')
  t.equal(refused.detailsCode, 'PAIRING_REQUIRED')
  t.equal(refused.reason, 'not-paired')
  t.equal(refused.deviceId, client.deviceId)
  t.equal(refused.requestedRole, 'operator')
  t.same(refused.requestedScopes, ['operator.read'])
  t.same(refused.approvedScopes, [])
  t.match(refused.remediationHint, `scopegate requests approve ${refused.requestId}`)
  t.equal(refused.retryable, false)
  t.equal(refused.closeCode, 1008)
  t.equal(refused.closeReason, 'pairing required (not-paired)')
  t.equal(client.state, 'idle', 'a refused connect leaves the client idle: it may connect again')
  const pending = await server.api('GET', '/api/v1/pairing-requests')
  t.same(pending.body.items.map((r: { requestId: string }) => r.requestId), [refused.requestId], 'requestId names the pending request')

  t.equal((await refusal(client)).requestId, refused.requestId, 'asking again reuses the same request')

  await approve(server, refused.requestId)
  const hello = await client.connect({ retry: true })
  t.equal(client.state, 'open')
  t.equal(hello.type, 'hello-ok')
  t.equal(hello.auth.method, 'token')
  t.same(hello.auth.scopes, ['operator.read'])
  t.type(hello.auth.deviceToken, 'string')
  t.equal(readIdentity(path).deviceTokens.operator, hello.auth.deviceToken, 'the device token is kept in the identity file')
  t.equal(statSync(path).mode & 0o777, 0o600, 'still 0600 after the write')
  t.equal(await client.connect(), hello, 'connect() when connected answers the same hello-ok')
  await client.close()
  t.equal(client.state, 'closed')
  t.equal((await rejection(client.connect())).code, 'CLOSED', 'a closed client stays closed')

  // The next start: no gateway token needed any more.
  const next = newClient(t, server, { identityPath: path, scopes: ['operator.read'], gatewayToken: undefined })
  t.equal(next.deviceId, client.deviceId)
  const again = await next.connect({ retry: true })
  t.equal(again.auth.method, 'device-token', 'the kept device token is used on the next connect')
  t.equal(again.auth.deviceToken, undefined)
  t.same((await next.call('health')).ok, true)
  await next.close()

  const upgrade = newClient(t, server, { identityPath: path, scopes: ['operator.admin'] })
  const scopeUpgrade = await refusal(upgrade)
  t.equal(scopeUpgrade.reason, 'scope-upgrade')
  t.equal(scopeUpgrade.message, 'pairing required (scope-upgrade)')
  t.not(scopeUpgrade.requestId, refused.requestId, 'a new request')
  t.same(scopeUpgrade.requestedScopes, ['operator.admin'])
  t.same(scopeUpgrade.approvedScopes, ['operator.read'])
  t.match(scopeUpgrade.remediationHint, /cannot approve its own upgrade/)
  t.equal(scopeUpgrade.closeReason, 'pairing required (scope-upgrade)')
  await approve(server, scopeUpgrade.requestId)
  const upgraded = await upgrade.connect({ retry: true })
  t.same(upgraded.auth.scopes, ['operator.admin'])
  t.equal(upgraded.auth.method, 'device-token')

  const stranger = newClient(t, server, { identityPath: identityPath(t), gatewayToken: 'wrong' })
  const wrong = await rejection(stranger.connect())
  t.notOk(wrong instanceof PairingRequiredError)
  t.match(wrong, { code: 'INVALID_REQUEST', message: 'unauthorized: gateway token mismatch', closeCode: 1008, retryable: false })
  t.equal(wrong.detailsCode, 'AUTH_TOKEN_MISMATCH')

  const nowhere = new GatewayClient({ url: 'ws://127.0.0.1:1/', identityPath: identityPath(t) })
  t.match(await rejection(nowhere.connect()), { code: 'CONNECTION_FAILED', retryable: true })
  t.equal((await rejection(nowhere.call('health'))).code, 'NOT_CONNECTED')
})

t.test('typed calls for every method, GatewayError for refusals; METHOD_NAMES and the event map match hello-ok', async (t) => {
  const server = await startServer(t, { logLevel: 'warn' })
  const admin = await pairedClient(t, server, ['operator.admin', 'operator.pairing'])
  const hello = admin.hello
  t.same([...(hello?.features.methods ?? [])].sort(), [...METHOD_NAMES].sort(), 'the client knows exactly the methods the gateway offers')
  t.same([...(hello?.features.events ?? [])].sort(), [...GATEWAY_EVENTS].sort())

  const health = await admin.call('health')
  t.equal(health.ok, true)
  t.type(health.ts, 'number')
  const status = await admin.call('status', {})
  t.equal(status.gateway.connections, 1)
  t.type(status.scheduler.enabled, 'boolean')

  const job = await admin.call('cron.add', {
    name: 'later',
    schedule: { kind: 'at', at: new Date(Date.now() + 3_600_000).toISOString() },
    payload: { kind: 'systemEvent', text: 'hello' },
    deleteAfterRun: false,
    sessionTarget: 'main'
  })
  t.equal(job.ownerDeviceId, admin.deviceId)
  t.equal(job.sessionTarget, 'main', 'fields the gateway does not interpret come back unchanged')
  t.type(job.state.nextRunAtMs, 'number')
  const list = await admin.call('cron.list')
  t.match(list, { total: 1, offset: 0, limit: 200, hasMore: false, nextOffset: null })
  t.equal(list.jobs[0]?.id, job.id)
  t.same(await admin.call('cron.status'), { enabled: true, jobs: 1, nextWakeAtMs: job.state.nextRunAtMs })
  t.equal((await admin.call('cron.get', { id: job.id })).name, 'later')
  t.equal((await admin.call('cron.update', { id: job.id, patch: { name: 'renamed' } })).name, 'renamed')
  const run = await admin.call('cron.run', { id: job.id })
  t.equal(run.ran, true)
  const runs = await admin.call('cron.runs', { id: job.id, limit: 5 })
  t.equal(runs.entries[0]?.runId, run.runId)
  t.same(await admin.call('cron.remove', { id: job.id }), { ok: true, removed: true })
  const gone = await rejection(admin.call('cron.get', { id: job.id }))
  t.match(gone, { code: 'INVALID_REQUEST', message: `cron job not found: ${job.id}`, retryable: false })
  t.same(gone.details, { code: 'CRON_JOB_NOT_FOUND', id: job.id })

  // Pairing and tokens over WS, from a client holding operator.pairing.
  const newcomer = newClient(t, server, { identityPath: identityPath(t), scopes: ['operator.read'] })
  const asked = await refusal(newcomer)
  const pairList = await admin.call('device.pair.list')
  t.same(pairList.pending.map((r) => r.requestId), [asked.requestId])
  t.same(pairList.paired.map((d) => d.deviceId), [admin.deviceId])
  const approved = await admin.call('device.pair.approve', { requestId: asked.requestId ?? '', scopes: ['operator.read'] })
  t.equal(approved.device.deviceId, newcomer.deviceId)
  t.same(approved.device.scopes, ['operator.read'])
  await newcomer.connect({ retry: true })
  const rotated = await admin.call('device.token.rotate', { deviceId: newcomer.deviceId, role: 'operator' })
  t.type(rotated.token, 'string')
  t.same(rotated.scopes, ['operator.read'])
  const revoked = await admin.call('device.token.revoke', { deviceId: newcomer.deviceId, role: 'operator' })
  t.type(revoked.revokedAtMs, 'number')
  t.same(await admin.call('device.pair.remove', { deviceId: newcomer.deviceId }), { deviceId: newcomer.deviceId })
  const rejectable = await refusal(newClient(t, server, { identityPath: identityPath(t), scopes: ['operator.read'] }))
  t.same(await admin.call('device.pair.reject', { requestId: rejectable.requestId ?? '' }), { requestId: rejectable.requestId, deviceId: rejectable.deviceId })
  const notPending = await rejection(admin.call('device.pair.reject', { requestId: rejectable.requestId ?? '' }))
  t.equal(notPending.detailsCode, 'PAIRING_REQUEST_NOT_PENDING')

  // A missing scope is an error answer; the connection stays.
  const reader = await pairedClient(t, server, ['operator.read'])
  const forbidden = await rejection(reader.call('cron.add', { name: 'x', schedule: { kind: 'every', everyMs: 60_000 }, payload: { kind: 'agentTurn', message: 'm' } }))
  t.match(forbidden, { code: 'FORBIDDEN', message: 'missing scope: operator.admin' })
  t.same(forbidden.details, { code: 'MISSING_SCOPE', missingScope: 'operator.admin', requiredScopes: ['operator.admin'] })
  t.equal(reader.state, 'open')
  t.equal((await reader.call('cron.status')).jobs, 0, 'the socket stays open after FORBIDDEN')

  // The untyped escape hatch, and what the gateway answers to what the types would not let through.
  const unknown = await rejection(admin.request('no.such.method'))
  t.match(unknown, { code: 'INVALID_REQUEST', message: 'unknown method: no.such.method' })
  const badParams = await rejection(admin.request('cron.get', { id: 42 }))
  t.match(badParams, { code: 'INVALID_REQUEST', message: 'invalid params: id' })

  const aborter = new AbortController()
  aborter.abort()
  t.equal((await rejection(admin.call('health', {}, { signal: aborter.signal }))).code, 'ABORTED')

  // Compile-time checks (npm run typecheck): wrong names and params do not type-check.
  const typeChecks = async (): Promise<void> => {
    // @ts-expect-error not a method of PROTOCOL.md
    await admin.call('cron.nope', {})
    // @ts-expect-error cron.get needs an id
    await admin.call('cron.get', {})
    // @ts-expect-error cron.get needs params
    await admin.call('cron.get')
    // @ts-expect-error a schedule kind that does not exist
    await admin.call('cron.add', { name: 'n', schedule: { kind: 'sometimes' }, payload: { kind: 'systemEvent', text: 't' } })
    // @ts-expect-error health takes no params
    await admin.call('health', { verbose: true })
    const page = await admin.call('cron.list', { limit: 10 })
    // @ts-expect-error a page has no `items`
    void page.items
    // @ts-expect-error the cron.fire payload has no `text`: it is in payload.payload
    admin.on('cron.fire', (fire) => fire.text)
  }
  void typeChecks
})

t.test('events: cron.fire reaches the owner, cron and tick the readers, pairing events the pairing clients', async (t) => {
  const server = await startServer(t, { logLevel: 'warn', tickIntervalMs: 300 })
  const bot = await pairedClient(t, server, ['operator.admin'])
  const pairer = await pairedClient(t, server, ['operator.pairing'])

  const cronEvents: CronEvent[] = []
  const seen: string[] = []
  bot.on('cron', (event) => { cronEvents.push(event) })
  bot.on('event', (name) => { seen.push(name) })
  const tick = await bot.next('tick', { timeoutMs: 3000 })
  t.type(tick.ts, 'number')

  const job = await bot.call('cron.add', {
    name: 'soon', schedule: { kind: 'at', at: new Date(Date.now() + 500).toISOString() }, payload: { kind: 'systemEvent', text: 'ring' }
  })
  const fire = await bot.next('cron.fire', { filter: (f) => f.jobId === job.id, timeoutMs: 10_000 })
  t.same(fire.payload, { kind: 'systemEvent', text: 'ring' })
  t.type(fire.runId, 'string')
  t.type(fire.firedAtMs, 'number')
  t.ok(seen.includes('cron.fire'), "'event' hears every event frame")
  await sleep(200)
  t.ok(cronEvents.some((e) => e.action === 'added' && e.jobId === job.id && e.job?.name === 'soon'), 'cron added')
  t.ok(cronEvents.some((e) => e.action === 'finished' && e.run?.status === 'ok'), 'cron finished')

  const requested = pairer.next('device.pair.requested', { timeoutMs: 5000 })
  const resolved = pairer.next('device.pair.resolved', { timeoutMs: 10_000 })
  const newcomer = newClient(t, server, { identityPath: identityPath(t), scopes: ['operator.read'] })
  const asked = await refusal(newcomer)
  const request = await requested
  t.equal(request.requestId, asked.requestId)
  t.equal(request.deviceId, newcomer.deviceId)
  t.same(request.scopes, ['operator.read'])
  await approve(server, asked.requestId)
  t.match(await resolved, { requestId: asked.requestId, deviceId: newcomer.deviceId, decision: 'approved' })

  const timeout = await rejection(bot.next('device.pair.requested', { timeoutMs: 100 }))
  t.equal(timeout.code, 'TIMEOUT', 'a client without operator.pairing hears no pairing events')
})

t.test('reconnect: after a 1012 restart on the same port and schema the client reconnects with backoff; a terminal refusal then stops it', async (t) => {
  const schema = uniqueSchema('client')
  // Teardowns run last-in first-out: this one, registered first, runs after every server closed.
  t.teardown(async () => { await dropSchema(schema) })
  const first = await startServer(t, { logLevel: 'warn', databaseSchema: schema }, true)
  const port = Number(new URL(first.wsUrl).port)
  const path = identityPath(t)
  const client = await pairedClient(t, first, ['operator.admin'], { identityPath: path, reconnect: { initialDelayMs: 50, maxDelayMs: 400 } })
  const deviceToken = readIdentity(path).deviceTokens.operator
  t.type(deviceToken, 'string')

  const closes: CloseInfo[] = []
  const attempts: ReconnectingInfo[] = []
  const shutdowns: string[] = []
  client.on('close', (info) => { closes.push(info) })
  client.on('reconnecting', (info) => { attempts.push(info) })
  client.on('shutdown', (payload) => { shutdowns.push(payload.reason) })
  const reconnected = new Promise<{ attempts: number, method: string }>((resolve) => {
    client.once('reconnected', (hello, info) => resolve({ attempts: info.attempts, method: hello.auth.method }))
  })

  await first.close()
  await sleep(50)
  t.same(shutdowns, ['service restart'], 'the shutdown event came first')
  t.same(closes, [{ code: 1012, reason: 'service restart', willReconnect: true }])
  t.equal(client.state, 'reconnecting')

  // While the gateway is away: calls wait (within their timeout), attempts back off.
  const waiting = client.call('cron.status')
  const tooShort = await rejection(client.call('health', {}, { timeoutMs: 150 }))
  t.equal(tooShort.code, 'TIMEOUT')
  await sleep(600)
  t.ok(attempts.length >= 2, `retried (${attempts.length} attempts so far)`)
  t.equal(attempts[1]?.error?.code, 'CONNECTION_FAILED', 'a refused TCP connect is retried')
  t.ok(attempts.every((a) => a.delayMs <= 400), 'delays capped at maxDelayMs')

  const second = await startServer(t, { ...first.config, port, logLevel: 'warn', dataDir: mkdtempSync(join(tmpdir(), 'scopegate-test-')) }, true)
  const back = await reconnected
  t.ok(back.attempts >= 2, `reconnected after ${back.attempts} attempts`)
  t.equal(back.method, 'device-token', 'with the kept device token')
  t.equal(client.state, 'open')
  t.same(await waiting, { enabled: true, jobs: 0, nextWakeAtMs: null }, 'the call made while away was answered after the reconnect')
  t.equal((await client.call('health')).ok, true)

  // Restart again, this time with the device removed meanwhile: the device token is refused, the
  // gateway token then gets a pairing refusal, which is final.
  const stopped = new Promise<CloseInfo>((resolve) => {
    client.on('close', (info) => { if (!info.willReconnect) resolve(info) })
  })
  await second.close()
  const db = new pg.Client({ connectionString: TEST_DATABASE_URL })
  await db.connect()
  await db.query(`DELETE FROM "${schema}".devices WHERE id = $1`, [client.deviceId])
  await db.end()
  await startServer(t, { ...first.config, port, logLevel: 'warn', dataDir: mkdtempSync(join(tmpdir(), 'scopegate-test-')) }, true)
  const final = await stopped
  t.equal(final.code, 1008)
  t.equal(final.reason, 'pairing required (not-paired)')
  t.ok(final.error instanceof PairingRequiredError, 'the close carries the refusal')
  t.equal((final.error as PairingRequiredError).reason, 'not-paired')
  t.type((final.error as PairingRequiredError).requestId, 'string')
  t.equal(client.state, 'closed')
  t.equal(readIdentity(path).deviceTokens.operator, undefined, 'the refused device token was dropped')
})

t.test('no retry after a 1008: device removed, device token revoked', async (t) => {
  const server = await startServer(t, { logLevel: 'info' })
  const path = identityPath(t)
  const client = await pairedClient(t, server, ['operator.read'], { identityPath: path, reconnect: { initialDelayMs: 20, maxDelayMs: 50 } })
  const attempts: ReconnectingInfo[] = []
  client.on('reconnecting', (info) => { attempts.push(info) })
  const closed = new Promise<CloseInfo>((resolve) => client.once('close', resolve))
  const connectLines = (): number => server.logs().split('\n').filter((line) => /"msg":"connect (ok|refused)"/.test(line)).length
  const before = connectLines()

  t.equal((await server.api('DELETE', `/api/v1/devices/${client.deviceId}`)).status, 200)
  t.same(await closed, { code: 1008, reason: 'device removed', willReconnect: false })
  t.equal(client.state, 'closed')
  await sleep(500)
  t.same(attempts, [], 'no reconnect attempt')
  t.equal(connectLines(), before, 'the gateway saw no new connect')
  t.match(await rejection(client.call('health')), { code: 'CLOSED' })

  // A revoked device token closes the connections that logged in with it: 1008 for good, and the
  // token is dropped from the identity file.
  const paired = await pairedClient(t, server, ['operator.read'])
  const otherPath = paired.identity.path
  await paired.close()
  t.type(readIdentity(otherPath).deviceTokens.operator, 'string')
  const other = newClient(t, server, { identityPath: otherPath, scopes: ['operator.read'], reconnect: { initialDelayMs: 20 } })
  t.equal((await other.connect({ retry: true })).auth.method, 'device-token')
  const revokedClose = new Promise<CloseInfo>((resolve) => other.once('close', resolve))
  const pendingCall = other.next('cron.fire', { timeoutMs: 10_000 })
  t.equal((await server.api('DELETE', `/api/v1/devices/${other.deviceId}/tokens/operator`)).status, 200)
  t.same(await revokedClose, { code: 1008, reason: 'device token revoked', willReconnect: false })
  t.equal((await rejection(pendingCall)).code, 'CLOSED', 'waiting for an event ends with the client')
  t.equal(readIdentity(otherPath).deviceTokens.operator, undefined)
  const restarted = newClient(t, server, { identityPath: otherPath, scopes: ['operator.read'] })
  const hello = await restarted.connect({ retry: true })
  t.equal(hello.auth.method, 'token', 'the next start logs in with the gateway token')
  t.type(hello.auth.deviceToken, 'string', 'and gets a new device token')
  t.equal(readIdentity(otherPath).deviceTokens.operator, hello.auth.deviceToken)
})

t.test('a kept device token that the gateway refuses falls back to the gateway token once', async (t) => {
  const server = await startServer(t, { logLevel: 'warn' })
  const path = identityPath(t)
  const client = await pairedClient(t, server, ['operator.read'], { identityPath: path })
  await client.close()
  const file = readIdentity(path)
  writeFileSync(path, JSON.stringify({ ...file, deviceTokens: { operator: randomBytes(32).toString('base64url') } }), { mode: 0o600 })
  const next = newClient(t, server, { identityPath: path, scopes: ['operator.read'] })
  const hello = await next.connect({ retry: true })
  t.equal(hello.auth.method, 'token')
  t.equal(readIdentity(path).deviceTokens.operator, undefined, 'the refused token was dropped (the live one stays valid on the server)')
  const noFallback = newClient(t, server, { identityPath: path, scopes: ['operator.read'], gatewayToken: undefined })
  t.equal((await rejection(noFallback.connect())).detailsCode, 'AUTH_TOKEN_MISSING', 'without any token the gateway says so')
})

t.test('connect({ retry: true }) waits for a gateway that is not up yet, until a final answer; close() ends the wait', async (t) => {
  const schema = uniqueSchema('clientretry')
  t.teardown(async () => { await dropSchema(schema) })
  const port = await freePort()
  const config = testConfig({ port, databaseSchema: schema, logLevel: 'warn' })
  const client = new GatewayClient({ url: `ws://127.0.0.1:${port}/`, identityPath: identityPath(t), gatewayToken: config.gatewayToken, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } })
  t.teardown(async () => { await client.close() })
  const attempts: ReconnectingInfo[] = []
  client.on('reconnecting', (info) => { attempts.push(info) })
  const connecting = client.connect({ retry: true })
  t.equal(client.state, 'connecting')
  await sleep(400)
  await startServer(t, config, true)
  const refused = await rejection(connecting)
  t.ok(refused instanceof PairingRequiredError, 'retried until the gateway answered, and its answer (not paired) is final')
  t.ok(attempts.length >= 2, `${attempts.length} retries`)
  t.equal(attempts[0]?.error?.code, 'CONNECTION_FAILED')
  t.equal(client.state, 'idle')

  const nowhere = new GatewayClient({ url: 'ws://127.0.0.1:1/', identityPath: identityPath(t), reconnect: { initialDelayMs: 20 } })
  const waiting = nowhere.connect({ retry: true })
  await sleep(100)
  await nowhere.close()
  t.equal((await rejection(waiting)).code, 'CLOSED')
})

t.test('backoff: exponential, jittered, capped, never below a retry hint; retryable closes', async (t) => {
  const options = { initialDelayMs: 100, maxDelayMs: 1000, factor: 2, jitter: 0.5 }
  t.same([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, options, 0, () => 0)), [100, 200, 400, 800, 1000, 1000], 'no jitter drawn')
  t.same([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, options, 0, () => 1)), [50, 100, 200, 400, 500, 500], 'at most half taken off')
  t.equal(backoffDelay(1, options, 5000, () => 0), 5000, 'retryAfterMs wins')
  for (const code of [1006, 1012, 1013]) t.ok(isRetryableClose(code), `${code} is retried`)
  for (const code of [1000, 1002, 1003, 1008, 1009]) t.notOk(isRetryableClose(code), `${code} is final`)
})

t.test('the package exports scopegate/client (built) without loading the server', async (t) => {
  const script = "const m = await import('scopegate/client'); const root = await import('scopegate'); " +
    "console.log(JSON.stringify({ client: typeof m.GatewayClient, error: typeof m.PairingRequiredError, root: typeof root.buildApp }))"
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT })
  t.same(JSON.parse(stdout), { client: 'function', error: 'function', root: 'function' })
  // What the built client loads at run time: ws, node built-ins and its own files (the server's types are erased).
  const loaded = new Set<string>()
  for (const file of ['index', 'client', 'errors', 'events', 'identity', 'methods']) {
    const text = readFileSync(join(ROOT, `dist/client/${file}.js`), 'utf8')
    for (const match of text.matchAll(/(?:from|import)\s*['"]([^'"]+)['"]/g)) loaded.add(match[1] ?? '')
  }
  t.same([...loaded].sort(), ['./client.js', './errors.js', './identity.js', './methods.js', 'node:crypto', 'node:fs', 'node:path', 'ws'])
})
