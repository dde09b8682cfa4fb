import { randomUUID } from 'node:crypto'
import type { Duplex } from 'node:stream'
import pg from 'pg'
import t from 'tap'
import WebSocket from 'ws'
import { TestDevice, TestSocket, type ConnectOptions, type Frame } from './helpers/device.ts'
import { pairDevice } from './helpers/pairing.ts'
import { METHOD_SCOPES } from './helpers/protocol.ts'
import { startServer } from './helpers/server.ts'

// The handshake of PROTOCOL.md, against one real server (plus one with a short
// connect timeout), with real WebSocket clients signing with real Ed25519 keys.

type Test = Pick<typeof t, 'same' | 'equal' | 'ok' | 'match' | 'teardown'>
type Params = Record<string, any>
interface Challenge { nonce: string, ts: number }

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

const [server, timeoutServer] = await Promise.all([startServer(t), startServer(t, { handshakeTimeoutMs: 300 })])
const gatewayToken = server.config.gatewayToken

async function openWithChallenge (url: string = server.wsUrl): Promise<{ socket: TestSocket, challenge: Challenge }> {
  const socket = await TestSocket.open(url)
  const frame = await socket.event('connect.challenge')
  return { socket, challenge: frame.payload as Challenge }
}

interface Attempt { socket: TestSocket, challenge: Challenge, res: Frame, id: string }

/** Opens a socket and sends the connect params that `build` makes from the challenge. */
async function connectWith (build: (challenge: Challenge) => unknown, url: string = server.wsUrl): Promise<Attempt> {
  const { socket, challenge } = await openWithChallenge(url)
  const id = `c-${randomUUID()}`
  const res = await socket.request('connect', build(challenge), id)
  return { socket, challenge, res, id }
}

async function deviceConnect (device: TestDevice, opts: ConnectOptions): Promise<Attempt> {
  return await connectWith((challenge) => device.connectParams(challenge, opts))
}

/** Connect params of a device-less connection (a probe, as existing CLIs send it). */
function probeParams (overrides: Params = {}): Params {
  return {
    minProtocol: 3,
    maxProtocol: 4,
    client: { id: 'cli', version: '2026.1.0', platform: 'linux', mode: 'probe' },
    role: 'operator',
    scopes: ['operator.admin'],
    auth: { token: gatewayToken },
    ...overrides
  }
}

/** The exact refusal of PROTOCOL.md's table: error frame, then close with the same reason. */
async function assertRefused (t: Test, attempt: Attempt, reason: string, detailsCode: string, closeCode = 1008): Promise<void> {
  t.same(attempt.res, {
    type: 'res',
    id: attempt.id,
    ok: false,
    error: { code: 'INVALID_REQUEST', message: reason, details: { code: detailsCode } }
  }, `error frame for ${reason}`)
  t.same(await attempt.socket.closedWithin(), { code: closeCode, reason }, `close ${closeCode} ${reason}`)
}

async function assertAdmitted (t: Test, attempt: Attempt): Promise<Frame> {
  t.equal(attempt.res.ok, true, `admitted: ${JSON.stringify(attempt.res.error ?? null)}`)
  t.equal(attempt.res.id, attempt.id)
  t.equal(attempt.res.payload?.type, 'hello-ok')
  t.equal(attempt.socket.isClosed, false, 'socket stays open')
  t.teardown(() => attempt.socket.close())
  return attempt.res.payload as Frame
}

async function assertPairingRequired (t: Test, attempt: Attempt, reason: string): Promise<void> {
  t.equal(attempt.res.ok, false)
  t.equal(attempt.res.error?.code, 'NOT_PAIRED', JSON.stringify(attempt.res.error ?? null))
  t.equal(attempt.res.error?.message, `pairing required (${reason})`)
  t.same(await attempt.socket.closedWithin(), { code: 1008, reason: `pairing required (${reason})` })
}

// Paired once for the whole file: alpha (read+write, linux/desktop), beta (read).
const alphaScopes = ['operator.read', 'operator.write']
const [{ device: alpha, deviceToken: alphaToken }, { device: beta, deviceToken: betaToken }] = await Promise.all([
  pairDevice(server, alphaScopes, { platform: 'linux', deviceFamily: 'desktop' }),
  pairDevice(server, ['operator.read'])
])
const alphaOpts: ConnectOptions = { scopes: alphaScopes, platform: 'linux', deviceFamily: 'desktop' }

t.test('challenge', async (t) => {
  t.test('the first frame is event connect.challenge with a uuid nonce and a numeric ts close to now', async (t) => {
    const ws = new WebSocket(server.wsUrl)
    const first = await new Promise<string>((resolve, reject) => {
      ws.once('message', (data) => resolve(data.toString()))
      ws.once('error', reject)
    })
    ws.close()
    const match = /^\{"type":"event","event":"connect\.challenge","payload":\{"nonce":"([^"]+)","ts":(\d+)\}\}$/.exec(first)
    t.ok(match, `raw challenge frame: ${first}`)
    t.match(match?.[1], UUID)
    t.ok(Math.abs(Number(match?.[2]) - Date.now()) < 5000, 'ts is within 5 s of now')
  })

  t.test('every socket gets a nonce of its own', async (t) => {
    const sockets = await Promise.all([openWithChallenge(), openWithChallenge(), openWithChallenge()])
    const nonces = new Set(sockets.map((s) => s.challenge.nonce))
    t.equal(nonces.size, 3)
    for (const { socket, challenge } of sockets) {
      t.type(challenge.ts, 'number')
      await socket.close()
    }
  })
})

t.test('first frame not connect', async (t) => {
  t.test('a health request before connect gets CONNECT_REQUIRED and close 1008 connect required', async (t) => {
    const { socket } = await openWithChallenge()
    const res = await socket.request('health', undefined, 'early')
    t.match(res, { type: 'res', id: 'early', ok: false, error: { code: 'INVALID_REQUEST', details: { code: 'CONNECT_REQUIRED' } } })
    t.type(res.error.message, 'string')
    t.same(await socket.closedWithin(), { code: 1008, reason: 'connect required' })
  })

  t.test('an unknown method before connect is refused the same way', async (t) => {
    const { socket } = await openWithChallenge()
    const res = await socket.request('foo', {}, 'early')
    t.match(res, { ok: false, error: { code: 'INVALID_REQUEST', details: { code: 'CONNECT_REQUIRED' } } })
    t.same(await socket.closedWithin(), { code: 1008, reason: 'connect required' })
  })
})

t.test('connect timeout', async (t) => {
  t.test('a socket that sends nothing is closed 1008 connect timeout', async (t) => {
    const started = Date.now()
    const { socket } = await openWithChallenge(timeoutServer.wsUrl)
    t.same(await socket.closedWithin(3000), { code: 1008, reason: 'connect timeout' })
    const elapsed = Date.now() - started
    t.ok(elapsed >= 250 && elapsed < 2500, `closed after ${elapsed} ms`)
    t.same(socket.frames.map((f) => f.event), ['connect.challenge'], 'nothing but the challenge was sent')
  })

  t.test('a connect sent in time is not closed when the timeout passes', async (t) => {
    const attempt = await connectWith(() => probeParams({ auth: { token: timeoutServer.config.gatewayToken } }), timeoutServer.wsUrl)
    await assertAdmitted(t, attempt)
    await new Promise((resolve) => setTimeout(resolve, 500))
    t.equal(attempt.socket.isClosed, false)
    t.match(await attempt.socket.request('health'), { ok: true, payload: { ok: true } })
    await attempt.socket.close()
  })
})

t.test('unauthorized: gateway token missing', async (t) => {
  const device = new TestDevice()
  const reason = 'unauthorized: gateway token missing'
  t.test('a device connect without auth', async (t) => {
    await assertRefused(t, await deviceConnect(device, { scopes: ['operator.read'] }), reason, 'AUTH_TOKEN_MISSING')
  })
  t.test('a device connect with auth holding empty token and deviceToken', async (t) => {
    await assertRefused(t, await deviceConnect(device, { token: '', deviceToken: '', scopes: ['operator.read'] }), reason, 'AUTH_TOKEN_MISSING')
  })
  t.test('a probe with no auth field at all', async (t) => {
    const params = probeParams()
    delete params.auth
    await assertRefused(t, await connectWith(() => params), reason, 'AUTH_TOKEN_MISSING')
  })
  t.test('a probe with auth {}', async (t) => {
    await assertRefused(t, await connectWith(() => probeParams({ auth: {} })), reason, 'AUTH_TOKEN_MISSING')
  })
  t.test('a probe with auth {token: "", deviceToken: ""}', async (t) => {
    await assertRefused(t, await connectWith(() => probeParams({ auth: { token: '', deviceToken: '' } })), reason, 'AUTH_TOKEN_MISSING')
  })
})

t.test('unauthorized: gateway token mismatch', async (t) => {
  const reason = 'unauthorized: gateway token mismatch'
  t.test('a device connect with a wrong gateway token', async (t) => {
    await assertRefused(t, await deviceConnect(new TestDevice(), { token: 'wrong-token-wrong-token', scopes: ['operator.read'] }), reason, 'AUTH_TOKEN_MISMATCH')
  })
  t.test('a paired device with a wrong gateway token', async (t) => {
    await assertRefused(t, await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken + 'x' }), reason, 'AUTH_TOKEN_MISMATCH')
  })
  t.test('a probe with a wrong gateway token', async (t) => {
    await assertRefused(t, await connectWith(() => probeParams({ auth: { token: 'x' } })), reason, 'AUTH_TOKEN_MISMATCH')
  })
  t.test('a refused unpaired device leaves no pairing request behind (credentials before pairing)', async (t) => {
    const device = new TestDevice()
    await assertRefused(t, await deviceConnect(device, { token: 'nope', scopes: ['operator.read'] }), reason, 'AUTH_TOKEN_MISMATCH')
    const list = await server.api('GET', '/api/v1/pairing-requests')
    t.equal(list.status, 200)
    t.notOk(JSON.stringify(list.body).includes(device.id), 'no request recorded for the device')
  })
})

t.test('unauthorized: device token mismatch', async (t) => {
  const reason = 'unauthorized: device token mismatch'
  t.test('a paired device with a wrong device token', async (t) => {
    await assertRefused(t, await deviceConnect(alpha, { ...alphaOpts, deviceToken: 'not-the-token' }), reason, 'AUTH_DEVICE_TOKEN_MISMATCH')
  })
  t.test('a device token with no device', async (t) => {
    await assertRefused(t, await connectWith(() => probeParams({ auth: { deviceToken: alphaToken } })), reason, 'AUTH_DEVICE_TOKEN_MISMATCH')
  })
  t.test('the device token of another device', async (t) => {
    await assertRefused(t, await deviceConnect(beta, { scopes: ['operator.read'], deviceToken: alphaToken }), reason, 'AUTH_DEVICE_TOKEN_MISMATCH')
  })
  t.test('a device token for a role the device holds no token for', async (t) => {
    await assertRefused(t, await deviceConnect(alpha, { ...alphaOpts, role: 'node', deviceToken: alphaToken }), reason, 'AUTH_DEVICE_TOKEN_MISMATCH')
  })
  t.test('an unpaired device with a device token (checked before the pairing check)', async (t) => {
    await assertRefused(t, await deviceConnect(new TestDevice(), { scopes: ['operator.read'], deviceToken: alphaToken }), reason, 'AUTH_DEVICE_TOKEN_MISMATCH')
  })
  t.test('a wrong device token next to a valid gateway token (the device token is checked when sent)', async (t) => {
    await assertRefused(t, await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, deviceToken: 'wrong' }), reason, 'AUTH_DEVICE_TOKEN_MISMATCH')
  })
  t.test('the right device token is admitted without the gateway token', async (t) => {
    const hello = await assertAdmitted(t, await deviceConnect(alpha, { ...alphaOpts, deviceToken: alphaToken }))
    t.equal(hello.auth.method, 'device-token')
  })
})

t.test('device token expired', async (t) => {
  const { device, deviceToken } = await pairDevice(server, ['operator.read'])
  const client = new pg.Client({ connectionString: server.config.databaseUrl })
  await client.connect()
  try {
    await client.query(`UPDATE "${server.config.databaseSchema}".device_tokens SET expires_at = now() - interval '1 second' WHERE device_id = $1`, [device.id])
  } finally {
    await client.end()
  }
  t.test('an expired device token closes 1008 device token expired', async (t) => {
    await assertRefused(t, await deviceConnect(device, { scopes: ['operator.read'], deviceToken }), 'device token expired', 'AUTH_DEVICE_TOKEN_EXPIRED')
  })
  t.test('a wrong token for a device whose token expired is a mismatch (mismatch before expired)', async (t) => {
    await assertRefused(t, await deviceConnect(device, { scopes: ['operator.read'], deviceToken: 'wrong' }), 'unauthorized: device token mismatch', 'AUTH_DEVICE_TOKEN_MISMATCH')
  })
  t.test('the gateway token then mints a new device token', async (t) => {
    const hello = await assertAdmitted(t, await deviceConnect(device, { scopes: ['operator.read'], token: gatewayToken }))
    t.type(hello.auth.deviceToken, 'string')
    t.not(hello.auth.deviceToken, deviceToken)
  })
})

t.test('device identity mismatch', async (t) => {
  const reason = 'device identity mismatch'
  t.test('device.id of another device', async (t) => {
    const attempt = await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, tamper: (p) => { p.device.id = beta.id } })
    await assertRefused(t, attempt, reason, 'DEVICE_AUTH_DEVICE_ID_MISMATCH')
  })
  t.test('publicKey of another device with this device id', async (t) => {
    const attempt = await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, tamper: (p) => { p.device.publicKey = beta.publicKey } })
    await assertRefused(t, attempt, reason, 'DEVICE_AUTH_DEVICE_ID_MISMATCH')
  })
})

t.test('device nonce mismatch', async (t) => {
  t.test('a signature over a nonce of the client\'s own', async (t) => {
    const attempt = await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, nonce: randomUUID() })
    await assertRefused(t, attempt, 'device nonce mismatch', 'DEVICE_AUTH_NONCE_MISMATCH')
  })
  t.test('the nonce of another socket\'s challenge', async (t) => {
    const other = await openWithChallenge()
    const attempt = await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, nonce: other.challenge.nonce })
    await assertRefused(t, attempt, 'device nonce mismatch', 'DEVICE_AUTH_NONCE_MISMATCH')
    await other.socket.close()
  })
})

t.test('device signature expired', async (t) => {
  const reason = 'device signature expired'
  t.test('signedAt 121 s in the past', async (t) => {
    await assertRefused(t, await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, signedAt: Date.now() - 121_000 }), reason, 'DEVICE_AUTH_SIGNATURE_EXPIRED')
  })
  t.test('signedAt 121 s in the future', async (t) => {
    await assertRefused(t, await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, signedAt: Date.now() + 121_000 }), reason, 'DEVICE_AUTH_SIGNATURE_EXPIRED')
  })
  t.test('signedAt 119 s in the past is accepted', async (t) => {
    await assertAdmitted(t, await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, signedAt: Date.now() - 119_000 }))
  })
  t.test('signedAt 119 s in the future is accepted', async (t) => {
    await assertAdmitted(t, await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, signedAt: Date.now() + 119_000 }))
  })
})

t.test('device signature invalid', async (t) => {
  const reason = 'device signature invalid'
  t.test('scopes tampered with after signing', async (t) => {
    const attempt = await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, tamper: (p) => { p.scopes = ['operator.read'] } })
    await assertRefused(t, attempt, reason, 'DEVICE_AUTH_SIGNATURE_INVALID')
  })
  t.test('a signature made for another nonce', async (t) => {
    const attempt = await connectWith((challenge) => {
      const params = alpha.connectParams(challenge, { ...alphaOpts, token: gatewayToken, nonce: randomUUID() })
      params.device.nonce = challenge.nonce
      return params
    })
    await assertRefused(t, attempt, reason, 'DEVICE_AUTH_SIGNATURE_INVALID')
  })
  t.test('a signature by another key', async (t) => {
    const attempt = await connectWith((challenge) => {
      const params = alpha.connectParams(challenge, { ...alphaOpts, token: gatewayToken })
      params.device.signature = beta.connectParams(challenge, { ...alphaOpts, token: gatewayToken }).device.signature
      return params
    })
    await assertRefused(t, attempt, reason, 'DEVICE_AUTH_SIGNATURE_INVALID')
  })
  t.test('a signature over a different token than the one sent', async (t) => {
    const attempt = await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, tamper: (p) => { p.auth = { deviceToken: alphaToken } } })
    await assertRefused(t, attempt, reason, 'DEVICE_AUTH_SIGNATURE_INVALID')
  })
  t.test('a signature over the role node sent with role operator', async (t) => {
    const attempt = await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, role: 'node', tamper: (p) => { p.role = 'operator' } })
    await assertRefused(t, attempt, reason, 'DEVICE_AUTH_SIGNATURE_INVALID')
  })
  t.test('a signature of the right length that is all zeroes', async (t) => {
    const attempt = await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, tamper: (p) => { p.device.signature = 'A'.repeat(86) } })
    await assertRefused(t, attempt, reason, 'DEVICE_AUTH_SIGNATURE_INVALID')
  })
})

t.test('protocol mismatch', async (t) => {
  const reason = 'protocol mismatch'
  const ranges: Array<[number, number]> = [[3, 3], [5, 6], [5, 3], [0, 0], [1, 3]]
  for (const [minProtocol, maxProtocol] of ranges) {
    t.test(`minProtocol ${minProtocol}, maxProtocol ${maxProtocol} closes 1002`, async (t) => {
      await assertRefused(t, await connectWith(() => probeParams({ minProtocol, maxProtocol })), reason, 'PROTOCOL_MISMATCH', 1002)
    })
  }
  t.test('a device connect with min=max=3 closes 1002', async (t) => {
    await assertRefused(t, await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, minProtocol: 3, maxProtocol: 3 }), reason, 'PROTOCOL_MISMATCH', 1002)
  })
  for (const [minProtocol, maxProtocol] of [[4, 4], [3, 4], [4, 5], [1, 10]]) {
    t.test(`minProtocol ${minProtocol}, maxProtocol ${maxProtocol} is admitted with protocol 4`, async (t) => {
      const hello = await assertAdmitted(t, await connectWith(() => probeParams({ minProtocol, maxProtocol })))
      t.equal(hello.protocol, 4)
    })
  }
})

t.test('invalid role', async (t) => {
  for (const role of ['admin', '', 'Operator', 'operator ']) {
    t.test(`role ${JSON.stringify(role)} closes 1008 invalid role`, async (t) => {
      await assertRefused(t, await connectWith(() => probeParams({ role })), 'invalid role', 'INVALID_ROLE')
    })
  }
  t.test('a signed device connect with role admin', async (t) => {
    await assertRefused(t, await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, role: 'admin' }), 'invalid role', 'INVALID_ROLE')
  })
})

t.test('invalid connect params: <field>', async (t) => {
  const cases: Array<[string, (p: Params) => void, string]> = [
    ['missing client', (p) => { delete p.client }, 'client'],
    ['client.id missing', (p) => { delete p.client.id }, 'client.id'],
    ['client.id empty', (p) => { p.client.id = '' }, 'client.id'],
    ['client.mode missing', (p) => { delete p.client.mode }, 'client.mode'],
    ['client not an object', (p) => { p.client = 'cli' }, 'client'],
    ['scopes not an array', (p) => { p.scopes = 'operator.read' }, 'scopes'],
    ['scopes missing', (p) => { delete p.scopes }, 'scopes'],
    ['an unknown scope string', (p) => { p.scopes = ['operator.everything'] }, 'scopes[0]'],
    ['an unknown scope after a known one', (p) => { p.scopes = ['operator.read', 'admin'] }, 'scopes[1]'],
    ['a scope that is not a string', (p) => { p.scopes = [7] }, 'scopes[0]'],
    ['role missing', (p) => { delete p.role }, 'role'],
    ['minProtocol missing', (p) => { delete p.minProtocol }, 'minProtocol'],
    ['minProtocol a string', (p) => { p.minProtocol = '4' }, 'minProtocol'],
    ['maxProtocol not an integer', (p) => { p.maxProtocol = 4.5 }, 'maxProtocol'],
    ['auth.token not a string', (p) => { p.auth.token = 42 }, 'auth.token'],
    ['caps not an array', (p) => { p.caps = 'x' }, 'caps']
  ]
  for (const [name, change, field] of cases) {
    t.test(`${name} -> invalid connect params: ${field}`, async (t) => {
      const attempt = await connectWith(() => {
        const params = probeParams()
        change(params)
        return params
      })
      await assertRefused(t, attempt, `invalid connect params: ${field}`, 'INVALID_CONNECT_PARAMS')
    })
  }

  const deviceCases: Array<[string, (p: Params) => void, string]> = [
    ['a publicKey with padding', (p) => { p.device.publicKey = p.device.publicKey + '=' }, 'device.publicKey'],
    ['a publicKey in standard base64', (p) => { p.device.publicKey = '+' + p.device.publicKey.slice(1) }, 'device.publicKey'],
    ['a publicKey that is too short', (p) => { p.device.publicKey = p.device.publicKey.slice(1) }, 'device.publicKey'],
    ['a publicKey in hex', (p) => { p.device.publicKey = Buffer.from(p.device.publicKey, 'base64url').toString('hex') }, 'device.publicKey'],
    ['a device id in upper case', (p) => { p.device.id = p.device.id.toUpperCase() }, 'device.id'],
    ['a signature that is not base64url', (p) => { p.device.signature = '!'.repeat(86) }, 'device.signature'],
    ['signedAt as a string', (p) => { p.device.signedAt = String(p.device.signedAt) }, 'device.signedAt'],
    ['nonce missing', (p) => { delete p.device.nonce }, 'device.nonce']
  ]
  for (const [name, change, field] of deviceCases) {
    t.test(`${name} -> invalid connect params: ${field}`, async (t) => {
      const attempt = await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, tamper: change })
      await assertRefused(t, attempt, `invalid connect params: ${field}`, 'INVALID_CONNECT_PARAMS')
    })
  }

  t.test('connect without params -> invalid connect params: params', async (t) => {
    await assertRefused(t, await connectWith(() => undefined), 'invalid connect params: params', 'INVALID_CONNECT_PARAMS')
  })
  t.test('connect with params {} -> invalid connect params: minProtocol', async (t) => {
    await assertRefused(t, await connectWith(() => ({})), 'invalid connect params: minProtocol', 'INVALID_CONNECT_PARAMS')
  })
  t.test('connect with params that is an array -> invalid connect params: params', async (t) => {
    await assertRefused(t, await connectWith(() => [4, 4]), 'invalid connect params: params', 'INVALID_CONNECT_PARAMS')
  })
  t.test('connect with params that is a string -> invalid connect params: params', async (t) => {
    await assertRefused(t, await connectWith(() => 'connect me'), 'invalid connect params: params', 'INVALID_CONNECT_PARAMS')
  })
})

t.test('check order', async (t) => {
  const bad = (p: Params): void => { p.device.signature = alpha.sign('something else entirely') }
  t.test('bad protocol range and bad role -> protocol mismatch', async (t) => {
    await assertRefused(t, await connectWith(() => probeParams({ minProtocol: 3, maxProtocol: 3, role: 'root' })), 'protocol mismatch', 'PROTOCOL_MISMATCH', 1002)
  })
  t.test('bad protocol range and invalid params -> protocol mismatch', async (t) => {
    const params = probeParams({ minProtocol: 5, maxProtocol: 6, scopes: 'all' })
    delete params.client
    await assertRefused(t, await connectWith(() => params), 'protocol mismatch', 'PROTOCOL_MISMATCH', 1002)
  })
  t.test('invalid params and bad role -> invalid connect params', async (t) => {
    await assertRefused(t, await connectWith(() => probeParams({ role: 'root', scopes: ['nope'] })), 'invalid connect params: scopes[0]', 'INVALID_CONNECT_PARAMS')
  })
  t.test('bad role and bad signature -> invalid role', async (t) => {
    await assertRefused(t, await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, role: 'root', tamper: bad }), 'invalid role', 'INVALID_ROLE')
  })
  t.test('identity mismatch and bad nonce -> identity mismatch', async (t) => {
    const attempt = await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, nonce: randomUUID(), tamper: (p) => { p.device.id = beta.id } })
    await assertRefused(t, attempt, 'device identity mismatch', 'DEVICE_AUTH_DEVICE_ID_MISMATCH')
  })
  t.test('bad nonce and bad signature -> nonce mismatch', async (t) => {
    const attempt = await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, nonce: randomUUID(), tamper: bad })
    await assertRefused(t, attempt, 'device nonce mismatch', 'DEVICE_AUTH_NONCE_MISMATCH')
  })
  t.test('bad nonce and expired signedAt -> nonce mismatch', async (t) => {
    const attempt = await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, nonce: randomUUID(), signedAt: Date.now() - 600_000 })
    await assertRefused(t, attempt, 'device nonce mismatch', 'DEVICE_AUTH_NONCE_MISMATCH')
  })
  t.test('expired signedAt and bad signature -> signature expired', async (t) => {
    const attempt = await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, signedAt: Date.now() - 600_000, tamper: bad })
    await assertRefused(t, attempt, 'device signature expired', 'DEVICE_AUTH_SIGNATURE_EXPIRED')
  })
  t.test('missing token and bad signature -> signature invalid', async (t) => {
    await assertRefused(t, await deviceConnect(alpha, { ...alphaOpts, tamper: bad }), 'device signature invalid', 'DEVICE_AUTH_SIGNATURE_INVALID')
  })
  t.test('wrong gateway token and bad signature -> signature invalid', async (t) => {
    await assertRefused(t, await deviceConnect(alpha, { ...alphaOpts, token: 'wrong', tamper: bad }), 'device signature invalid', 'DEVICE_AUTH_SIGNATURE_INVALID')
  })
  t.test('wrong device token and bad signature -> signature invalid', async (t) => {
    await assertRefused(t, await deviceConnect(alpha, { ...alphaOpts, deviceToken: 'wrong', tamper: bad }), 'device signature invalid', 'DEVICE_AUTH_SIGNATURE_INVALID')
  })
  t.test('missing token on an unpaired device -> token missing, not pairing required', async (t) => {
    await assertRefused(t, await deviceConnect(new TestDevice(), { scopes: ['operator.read'] }), 'unauthorized: gateway token missing', 'AUTH_TOKEN_MISSING')
  })
  t.test('a valid device token for a scope upgrade -> pairing required (credentials pass, then pairing)', async (t) => {
    await assertPairingRequired(t, await deviceConnect(beta, { scopes: ['operator.admin'], deviceToken: betaToken }), 'scope-upgrade')
  })
})

t.test('signature strings', async (t) => {
  const id = alpha.id
  t.test('a v2 signature is accepted', async (t) => {
    await assertAdmitted(t, await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, signatureVersion: 'v2' }))
  })
  t.test('a v3 signature is accepted', async (t) => {
    await assertAdmitted(t, await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken, signatureVersion: 'v3' }))
  })
  t.test('a v2 signature over a device token is accepted', async (t) => {
    await assertAdmitted(t, await deviceConnect(alpha, { ...alphaOpts, deviceToken: alphaToken, signatureVersion: 'v2' }))
  })

  /** Params signed over exactly `text(challenge)`, written out here as PROTOCOL.md states it. */
  const signedExactly = (client: Params, text: (c: Challenge) => string) => (challenge: Challenge): Params => ({
    minProtocol: 4,
    maxProtocol: 4,
    client,
    role: 'operator',
    scopes: alphaScopes,
    auth: { token: gatewayToken },
    device: { id, publicKey: alpha.publicKey, signature: alpha.sign(text(challenge)), signedAt: challenge.ts, nonce: challenge.nonce }
  })
  const client = { id: 'test', version: '1.0.0', platform: '  LiNuX ', deviceFamily: '\tDeskTop  ', mode: 'backend' }

  t.test('v3 signs platform and deviceFamily trimmed and lower-cased', async (t) => {
    const attempt = await connectWith(signedExactly(client, (c) =>
      `v3|${id}|test|backend|operator|operator.read,operator.write|${c.ts}|${gatewayToken}|${c.nonce}|linux|desktop`))
    const hello = await assertAdmitted(t, attempt)
    t.same(hello.auth.scopes, alphaScopes, 'normalized metadata equals the approved metadata: no metadata-upgrade')
  })
  t.test('v3 over the raw, untrimmed platform and deviceFamily is invalid', async (t) => {
    const attempt = await connectWith(signedExactly(client, (c) =>
      `v3|${id}|test|backend|operator|operator.read,operator.write|${c.ts}|${gatewayToken}|${c.nonce}|  LiNuX |\tDeskTop  `))
    await assertRefused(t, attempt, 'device signature invalid', 'DEVICE_AUTH_SIGNATURE_INVALID')
  })
  t.test('v2 written out by hand is accepted', async (t) => {
    const attempt = await connectWith(signedExactly(client, (c) =>
      `v2|${id}|test|backend|operator|operator.read,operator.write|${c.ts}|${gatewayToken}|${c.nonce}`))
    await assertAdmitted(t, attempt)
  })
  t.test('v3 without deviceFamily signs an empty last field', async (t) => {
    const beta3 = { id: 'test', version: '1.0.0', platform: 'Linux', mode: 'backend' }
    const attempt = await connectWith((c) => ({
      minProtocol: 4,
      maxProtocol: 4,
      client: beta3,
      role: 'operator',
      scopes: ['operator.read'],
      auth: { deviceToken: betaToken },
      device: {
        id: beta.id,
        publicKey: beta.publicKey,
        signature: beta.sign(`v3|${beta.id}|test|backend|operator|operator.read|${c.ts}|${betaToken}|${c.nonce}|linux|`),
        signedAt: c.ts,
        nonce: c.nonce
      }
    }))
    await assertAdmitted(t, attempt)
  })
  t.test('a v1 prefix is not accepted', async (t) => {
    const attempt = await connectWith(signedExactly(client, (c) =>
      `v1|${id}|test|backend|operator|operator.read,operator.write|${c.ts}|${gatewayToken}|${c.nonce}`))
    await assertRefused(t, attempt, 'device signature invalid', 'DEVICE_AUTH_SIGNATURE_INVALID')
  })
})

t.test('admitted device connections', async (t) => {
  t.test('are granted exactly the scopes asked, in order, duplicates dropped', async (t) => {
    const scopes = ['operator.write', 'operator.read', 'operator.write']
    const hello = await assertAdmitted(t, await deviceConnect(alpha, { ...alphaOpts, scopes, token: gatewayToken }))
    t.same(hello.auth.scopes, ['operator.write', 'operator.read'])
    t.equal(hello.auth.role, 'operator')
    t.equal(hello.auth.method, 'token')
    t.notOk('deviceToken' in hello.auth, 'the device token is not issued again')
  })
  t.test('hello-ok carries the protocol, server, features and policy', async (t) => {
    const attempt = await deviceConnect(alpha, { ...alphaOpts, token: gatewayToken })
    const hello = await assertAdmitted(t, attempt)
    t.match(hello, {
      type: 'hello-ok',
      protocol: 4,
      server: { version: String, connId: String },
      features: { methods: Array, events: Array },
      snapshot: Object,
      auth: { method: 'token', role: 'operator', scopes: alphaScopes },
      policy: { maxPayload: server.config.maxPayloadBytes, maxBufferedBytes: server.config.maxBufferedBytes, tickIntervalMs: server.config.tickIntervalMs }
    })
    t.ok(hello.features.methods.includes('health'))
    t.ok(hello.features.events.includes('connect.challenge'))
  })
})


t.test('probe connections', async (t) => {
  t.test('a device-less connect with the gateway token asking for operator.admin is admitted with no scopes', async (t) => {
    const attempt = await connectWith(() => probeParams())
    const hello = await assertAdmitted(t, attempt)
    t.equal(hello.protocol, 4)
    t.same(hello.auth.scopes, [])
    t.equal(hello.auth.method, 'token')
    t.equal(hello.auth.role, 'operator')
    t.notOk('deviceToken' in hello.auth, 'no device token without a device')

    t.test('may call health without params', async (t) => {
      const res = await attempt.socket.request('health', undefined, 'h1')
      t.same(Object.keys(res).sort(), ['id', 'ok', 'payload', 'type'])
      t.match(res, { type: 'res', id: 'h1', ok: true, payload: { ok: true, ts: Number } })
      t.ok(Math.abs(res.payload.ts - Date.now()) < 5000)
    })
    t.test('may call health with params {}', async (t) => {
      t.match(await attempt.socket.request('health', {}, 'h2'), { type: 'res', id: 'h2', ok: true, payload: { ok: true, ts: Number } })
    })
    t.test('an unknown method is INVALID_REQUEST unknown method: foo and the socket stays open', async (t) => {
      const res = await attempt.socket.request('foo', {}, 'u1')
      t.match(res, { type: 'res', id: 'u1', ok: false, error: { code: 'INVALID_REQUEST', message: 'unknown method: foo' } })
      t.equal(attempt.socket.isClosed, false)
      t.match(await attempt.socket.request('health'), { ok: true })
    })
    t.test('a second connect on an open connection is not a new handshake', async (t) => {
      const res = await attempt.socket.request('connect', probeParams(), 'again')
      t.equal(res.ok, false)
      t.equal(attempt.socket.isClosed, false)
    })
    t.test('every scoped method it advertises is FORBIDDEN missing scope', async (t) => {
      const methods = (hello.features.methods as string[]).filter((m) => typeof METHOD_SCOPES[m] === 'string')
      if (methods.length === 0) t.comment('no scoped method is served yet; only health')
      for (const method of methods) {
        const scope = METHOD_SCOPES[method] as string
        const res = await attempt.socket.request(method, {})
        t.same(res.error, {
          code: 'FORBIDDEN',
          message: `missing scope: ${scope}`,
          details: { code: 'MISSING_SCOPE', missingScope: scope, requiredScopes: [scope] }
        }, method)
      }
      t.equal(attempt.socket.isClosed, false, 'a missing scope does not close the socket')
    })
  })

  t.test('a probe with role node is admitted with no scopes', async (t) => {
    const hello = await assertAdmitted(t, await connectWith(() => probeParams({ role: 'node', scopes: [] })))
    t.same(hello.auth.scopes, [])
    t.equal(hello.auth.role, 'node')
  })

  t.test('a probe never creates a pairing request', async (t) => {
    const before = await server.api('GET', '/api/v1/pairing-requests')
    await assertAdmitted(t, await connectWith(() => probeParams({ scopes: ['operator.pairing', 'operator.admin'] })))
    const after = await server.api('GET', '/api/v1/pairing-requests')
    t.same(after.body, before.body)
  })
})

t.test('the 101 response and the challenge leave the server in one write', async (t) => {
  // Counts the writes handed to the upgraded socket's handle (Writable's _write/_writev) until the
  // client has the challenge: one when the two are corked together, two when the 101 goes on its own.
  const writes: number[] = []
  const onUpgrade = (_request: unknown, socket: Duplex): void => {
    const stream = socket as Duplex & { _write: Duplex['_write'], _writev?: Duplex['_writev'] }
    const { _write: write, _writev: writev } = stream
    let count = 0
    writes.push(0)
    const index = writes.length - 1
    stream._write = function (this: Duplex, ...args: Parameters<Duplex['_write']>) { writes[index] = ++count; write.apply(this, args) }
    if (writev !== undefined) stream._writev = function (this: Duplex, ...args: Parameters<NonNullable<Duplex['_writev']>>) { writes[index] = ++count; writev.apply(this, args) }
  }
  server.app.server.prependListener('upgrade', onUpgrade)
  t.teardown(() => { server.app.server.off('upgrade', onUpgrade) })
  const { socket } = await openWithChallenge()
  socket.ws.close()
  t.same(writes, [1])
})
