import { randomUUID } from 'node:crypto'
import t from 'tap'
import { Close, truncateReason } from '../src/gateway/close.ts'
import { TestDevice, TestSocket, type CloseInfo, type Frame } from './helpers/device.ts'
import { startServer, type TestServer } from './helpers/server.ts'

// The frame codec of PROTOCOL.md (Transport, Frames) against real servers:
// one with the default limits, one with maxPayloadBytes 4096.

type Test = Pick<typeof t, 'same' | 'equal' | 'ok' | 'match' | 'teardown'>
type Params = Record<string, any>

const [server, small] = await Promise.all([startServer(t), startServer(t, { maxPayloadBytes: 4096 })])

const INVALID_FRAME: CloseInfo = { code: 1003, reason: 'invalid frame' }

function probeParams (s: TestServer = server, overrides: Params = {}): Params {
  return {
    minProtocol: 3,
    maxProtocol: 4,
    client: { id: 'cli', version: '2026.1.0', platform: 'linux', mode: 'probe' },
    role: 'operator',
    scopes: [],
    auth: { token: s.config.gatewayToken },
    ...overrides
  }
}

async function openWithChallenge (s: TestServer = server): Promise<TestSocket> {
  const socket = await TestSocket.open(s.wsUrl)
  await socket.event('connect.challenge')
  return socket
}

/** A device-less connection past the handshake, closed with the test. */
async function probe (t: Test, s: TestServer = server): Promise<{ socket: TestSocket, hello: Frame }> {
  const socket = await openWithChallenge(s)
  const res = await socket.request('connect', probeParams(s))
  if (res.ok !== true) throw new Error(`probe refused: ${JSON.stringify(res)}`)
  t.teardown(() => socket.close())
  return { socket, hello: res.payload as Frame }
}

function sendBinary (socket: TestSocket, data: Buffer): void {
  socket.ws.send(data, { binary: true })
}

/** Frames the server sent after the challenge (or after `skip` frames). */
function framesAfter (socket: TestSocket, skip: number): Frame[] {
  return socket.frames.slice(skip)
}

t.test('frames before the handshake', async (t) => {
  t.test('a binary frame closes 1003 invalid frame', async (t) => {
    const socket = await openWithChallenge()
    const connect = JSON.stringify({ type: 'req', id: 'c', method: 'connect', params: probeParams() })
    sendBinary(socket, Buffer.from(connect))
    t.same(await socket.closedWithin(), INVALID_FRAME)
    t.same(framesAfter(socket, 1), [], 'no response to a binary frame')
  })

  const invalid: Array<[string, string]> = [
    ['non-JSON text', 'hello'],
    ['an empty text frame', ''],
    ['JSON with single quotes', "{'type':'req','id':'1','method':'connect'}"],
    ['a JSON array', JSON.stringify([{ type: 'req', id: '1', method: 'connect' }])],
    ['a JSON string', '"req"'],
    ['a JSON number', '4'],
    ['JSON null', 'null'],
    ['an object without type', JSON.stringify({ id: '1', method: 'connect', params: {} })],
    ['an object whose type is a number', JSON.stringify({ type: 1, id: '1', method: 'connect' })],
    ['an object whose type is an array', JSON.stringify({ type: ['req'], id: '1', method: 'connect' })],
    ['an event frame', JSON.stringify({ type: 'event', event: 'hello', payload: {} })],
    ['a response frame', JSON.stringify({ type: 'res', id: '1', ok: true, payload: {} })],
    ['a req without id', JSON.stringify({ type: 'req', method: 'connect', params: probeParams() })],
    ['a req with a numeric id', JSON.stringify({ type: 'req', id: 1, method: 'connect', params: probeParams() })],
    ['a req without method', JSON.stringify({ type: 'req', id: '1', params: probeParams() })]
  ]
  for (const [name, text] of invalid) {
    t.test(`${name} closes 1003 invalid frame`, async (t) => {
      const socket = await openWithChallenge()
      socket.send(text)
      t.same(await socket.closedWithin(), INVALID_FRAME)
      t.same(framesAfter(socket, 1), [])
    })
  }
})

t.test('frames after the handshake', async (t) => {
  t.test('a binary frame closes 1003 invalid frame', async (t) => {
    const { socket } = await probe(t)
    sendBinary(socket, Buffer.from(JSON.stringify({ type: 'req', id: 'h', method: 'health' })))
    t.same(await socket.closedWithin(), INVALID_FRAME)
  })

  const invalid: Array<[string, unknown]> = [
    ['a frame with type event', { type: 'event', event: 'tick', payload: { ts: 1 } }],
    ['a frame with type res', { type: 'res', id: 'x', ok: true, payload: {} }],
    ['a frame with an unknown type', { type: 'request', id: 'x', method: 'health' }],
    ['a req without id', { type: 'req', method: 'health' }],
    ['a req with a numeric id', { type: 'req', id: 7, method: 'health' }],
    ['a req with a null id', { type: 'req', id: null, method: 'health' }],
    ['a req without method', { type: 'req', id: 'x' }],
    ['a req with a numeric method', { type: 'req', id: 'x', method: 1 }],
    ['non-JSON text', 'not json at all'],
    ['a JSON array', '[]'],
    ['an object without type', '{"id":"x","method":"health"}']
  ]
  for (const [name, frame] of invalid) {
    t.test(`${name} closes 1003 invalid frame`, async (t) => {
      const { socket } = await probe(t)
      const before = socket.frames.length
      socket.send(frame)
      t.same(await socket.closedWithin(), INVALID_FRAME)
      t.same(framesAfter(socket, before), [], 'no response before the close')
    })
  }

  t.test('a request whose params is not an object gets INVALID_REQUEST and the socket stays open', async (t) => {
    const { socket } = await probe(t)
    for (const params of ['a string', 42, true, [], ['x']]) {
      const res = await socket.request('health', params)
      t.equal(res.ok, false, JSON.stringify(params))
      t.equal(res.error.code, 'INVALID_REQUEST')
      t.match(res.error.message, /params/, 'the message names params')
    }
    t.equal(socket.isClosed, false)
    t.match(await socket.request('health'), { ok: true, payload: { ok: true } })
  })

  t.test('params absent or {} is treated as {}', async (t) => {
    const { socket } = await probe(t)
    t.match(await socket.request('health'), { ok: true, payload: { ok: true, ts: Number } })
    t.match(await socket.request('health', {}), { ok: true, payload: { ok: true, ts: Number } })
  })

  t.test('responses are exactly {type,id,ok,payload} and echo the request id', async (t) => {
    const { socket } = await probe(t)
    const raw: string[] = []
    socket.ws.on('message', (data) => raw.push(data.toString()))
    const id = 'ü-' + 'x'.repeat(100)
    await socket.request('health', undefined, id)
    t.match(raw[0], new RegExp(`^\\{"type":"res","id":"${id}","ok":true,"payload":\\{"ok":true,"ts":\\d+\\}\\}$`))
  })

  t.test('an unknown method is an error response {type,id,ok:false,error} and the socket stays open', async (t) => {
    const { socket } = await probe(t)
    const raw: string[] = []
    socket.ws.on('message', (data) => raw.push(data.toString()))
    await socket.request('foo', {}, 'u')
    t.ok(raw[0]?.startsWith('{"type":"res","id":"u","ok":false,"error":{"code":"INVALID_REQUEST","message":"unknown method: foo"'), raw[0] ?? 'no frame')
    t.equal(socket.isClosed, false)
  })

  t.test('requests pipelined right behind connect are answered after hello-ok', async (t) => {
    const socket = await openWithChallenge()
    t.teardown(() => socket.close())
    socket.send({ type: 'req', id: 'c', method: 'connect', params: probeParams() })
    socket.send({ type: 'req', id: 'p1', method: 'health' })
    socket.send({ type: 'req', id: 'p2', method: 'health', params: {} })
    const p2 = await socket.next((f) => f.id === 'p2')
    t.match(p2, { ok: true, payload: { ok: true } })
    t.same(socket.frames.filter((f) => f.type === 'res').map((f) => f.id), ['c', 'p1', 'p2'])
    t.equal(socket.frames.find((f) => f.id === 'c')?.payload?.type, 'hello-ok')
  })
})

t.test('frame size limit (maxPayloadBytes 4096)', async (t) => {
  const frameOfSize = (size: number, id = 'big'): string => {
    const head = `{"type":"req","id":"${id}","method":"health","params":{"pad":"`
    const tail = '"}}'
    return head + 'x'.repeat(size - head.length - tail.length) + tail
  }

  t.test('hello-ok announces policy.maxPayload 4096', async (t) => {
    const { hello } = await probe(t, small)
    t.equal(hello.policy.maxPayload, 4096)
  })

  t.test('a frame of exactly 4096 bytes is accepted', async (t) => {
    const { socket } = await probe(t, small)
    const frame = frameOfSize(4096)
    t.equal(Buffer.byteLength(frame), 4096)
    socket.send(frame)
    t.match(await socket.next((f) => f.id === 'big'), { ok: true, payload: { ok: true } })
    t.equal(socket.isClosed, false)
  })

  t.test('a 4097-byte frame after the handshake closes 1009', async (t) => {
    const { socket } = await probe(t, small)
    socket.send(frameOfSize(4097))
    t.equal((await socket.closedWithin()).code, 1009)
  })

  t.test('a 64 KiB frame before the handshake closes 1009', async (t) => {
    const socket = await openWithChallenge(small)
    const params = probeParams(small, { caps: ['x'.repeat(65536)] })
    socket.send({ type: 'req', id: 'c', method: 'connect', params })
    t.equal((await socket.closedWithin()).code, 1009)
    t.same(framesAfter(socket, 1), [])
  })

  t.test('an oversized binary frame closes 1009', async (t) => {
    const socket = await openWithChallenge(small)
    sendBinary(socket, Buffer.alloc(8192))
    t.equal((await socket.closedWithin()).code, 1009)
  })

  t.test('the small server keeps serving after oversized frames', async (t) => {
    const { socket } = await probe(t, small)
    t.match(await socket.request('health'), { ok: true })
  })
})

// ---------------------------------------------------------------------------
// Generated malformed frames. Every one must end in a documented way.

type Expect =
  | { kind: 'invalid-frame' }
  | { kind: 'refused', reason: string, detailsCode: string, closeCode: number }
  | { kind: 'admitted' }

interface Case { name: string, data: string | Buffer, expect: Expect }

/** A deterministic PRNG (mulberry32), so every run sends the same variants. */
function prng (seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const invalidFrame: Expect = { kind: 'invalid-frame' }
const badParams = (field: string): Expect => ({ kind: 'refused', reason: `invalid connect params: ${field}`, detailsCode: 'INVALID_CONNECT_PARAMS', closeCode: 1008 })
const protocolMismatch: Expect = { kind: 'refused', reason: 'protocol mismatch', detailsCode: 'PROTOCOL_MISMATCH', closeCode: 1002 }
const invalidRole: Expect = { kind: 'refused', reason: 'invalid role', detailsCode: 'INVALID_ROLE', closeCode: 1008 }

const device = new TestDevice()

/** Connect params with every field present, valid in shape. */
function fullParams (): Params {
  const params = device.connectParams({ nonce: randomUUID(), ts: Date.now() }, {
    token: server.config.gatewayToken,
    scopes: ['operator.read'],
    deviceFamily: 'desktop'
  })
  params.client.instanceId = 'i-1'
  params.client.displayName = 'fuzz box'
  params.caps = ['tool-events']
  params.auth.deviceToken = 'dt'
  return params
}

function connectFrame (params: unknown, id = 'c-fuzz'): string {
  return JSON.stringify({ type: 'req', id, method: 'connect', ...(params !== undefined && { params }) })
}

function setPath (target: Params, path: Array<string | number>, value: unknown, remove = false): void {
  let node: any = target
  for (const key of path.slice(0, -1)) node = node[key]
  const last = path[path.length - 1] as string | number
  if (remove) delete node[last]
  else node[last] = value
}

function fieldName (path: Array<string | number>): string {
  return path.reduce<string>((out, key) => typeof key === 'number' ? `${out}[${key}]` : (out === '' ? key : `${out}.${key}`), '')
}

function generateCases (): Case[] {
  const cases: Case[] = []
  const rand = prng(0x5c09e)

  // Truncated JSON: prefixes of a valid connect frame are never valid JSON.
  const whole = connectFrame(fullParams())
  for (let length = 1; length < whole.length; length += Math.max(1, Math.floor(whole.length / 90))) {
    cases.push({ name: `truncated connect at ${length}`, data: whole.slice(0, length), expect: invalidFrame })
  }
  // Random byte flips in the structural characters of a connect frame.
  for (let i = 0; i < 20; i++) {
    const chars = [...whole]
    const structural = chars.flatMap((c, index) => '{}[]:,"'.includes(c) ? [index] : [])
    const at = structural[Math.floor(rand() * structural.length)] as number
    chars[at] = ' '
    const text = chars.join('')
    let parses = true
    try { JSON.parse(text) } catch { parses = false }
    if (!parses) cases.push({ name: `connect frame with a structural character blanked at ${at}`, data: text, expect: invalidFrame })
  }

  // Values that are not an object with a string type.
  const notFrames = ['', ' ', 'null', 'true', 'false', '0', '-1', '1e999', '"connect"', '[]', '[{"type":"req","id":"1","method":"connect"}]',
    '{}', '{"type":null}', '{"type":1}', '{"type":true}', '{"type":{}}', '{"type":["req"]}', 'NaN', 'undefined', '{"type":"req",}',
    '\uFEFF' + connectFrame(probeParams()), 'req connect', '{"type":"req"', '{{}}', '\u0000']
  for (const text of notFrames) cases.push({ name: `not a frame: ${JSON.stringify(text.slice(0, 40))}`, data: text, expect: invalidFrame })

  // Objects with a string type that are not requests, or requests without a usable id/method.
  const notRequests: unknown[] = [
    { type: 'event', event: 'connect', payload: {} },
    { type: 'res', id: 'c', ok: true },
    { type: 'REQ', id: 'c', method: 'connect', params: probeParams() },
    { type: '', id: 'c', method: 'connect' },
    { type: 'req', method: 'connect', params: probeParams() },
    { type: 'req', id: '', method: 'connect', params: probeParams() },
    { type: 'req', id: 'x'.repeat(129), method: 'connect', params: probeParams() },
    { type: 'req', id: ['c'], method: 'connect', params: probeParams() },
    { type: 'req', id: { c: 1 }, method: 'connect', params: probeParams() },
    { type: 'req', id: 'c', params: probeParams() },
    { type: 'req', id: 'c', method: '', params: probeParams() },
    { type: 'req', id: 'c', method: null, params: probeParams() },
    { type: 'req', id: 'c', method: ['connect'], params: probeParams() }
  ]
  for (const frame of notRequests) cases.push({ name: `not a request: ${JSON.stringify(frame).slice(0, 60)}`, data: JSON.stringify(frame), expect: invalidFrame })

  // Deep nesting, as the frame, as params and inside fields.
  for (const depth of [2, 64, 1000, 10_000]) {
    const arrays = '['.repeat(depth) + ']'.repeat(depth)
    const objects = '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)
    cases.push({ name: `nested arrays depth ${depth} as the frame`, data: arrays, expect: invalidFrame })
    cases.push({ name: `nested objects depth ${depth} as the frame`, data: objects, expect: invalidFrame })
    cases.push({ name: `unclosed arrays depth ${depth}`, data: '['.repeat(depth), expect: invalidFrame })
    cases.push({ name: `nested arrays depth ${depth} as connect params`, data: `{"type":"req","id":"c","method":"connect","params":${arrays}}`, expect: badParams('params') })
    cases.push({ name: `nested objects depth ${depth} as connect params`, data: `{"type":"req","id":"c","method":"connect","params":${objects}}`, expect: badParams('minProtocol') })
    cases.push({ name: `nested arrays depth ${depth} as the id`, data: `{"type":"req","id":${arrays},"method":"connect"}`, expect: invalidFrame })
    const base = JSON.stringify(probeParams())
    cases.push({ name: `nested arrays depth ${depth} as minProtocol`, data: `{"type":"req","id":"c","method":"connect","params":${base.replace('"minProtocol":3', `"minProtocol":${arrays}`)}}`, expect: badParams('minProtocol') })
    cases.push({ name: `nested arrays depth ${depth} as caps[0]`, data: `{"type":"req","id":"c","method":"connect","params":${base.slice(0, -1)},"caps":[${arrays}]}}`, expect: badParams('caps[0]') })
    cases.push({ name: `nested objects depth ${depth} as client`, data: `{"type":"req","id":"c","method":"connect","params":${base.replace(/"client":\{[^}]*\}/, `"client":${objects}`)}}`, expect: badParams('client.id') })
    cases.push({ name: `nested arrays depth ${depth} in an unknown field are ignored`, data: `{"type":"req","id":"c","method":"connect","params":${base.slice(0, -1)},"extra":${arrays}}}`, expect: { kind: 'admitted' } })
  }
  // Far past any recursion limit (a few variants only: each is ~0.5 MB).
  const deep = 100_000
  const deepArrays = '['.repeat(deep) + ']'.repeat(deep)
  const deepObjects = '{"a":'.repeat(deep) + '1' + '}'.repeat(deep)
  cases.push({ name: `nested arrays depth ${deep} as the frame`, data: deepArrays, expect: invalidFrame })
  cases.push({ name: `nested objects depth ${deep} as connect params`, data: `{"type":"req","id":"c","method":"connect","params":${deepObjects}}`, expect: badParams('minProtocol') })
  cases.push({ name: `nested arrays depth ${deep} in an unknown field are ignored`, data: `{"type":"req","id":"c","method":"connect","params":${JSON.stringify(probeParams()).slice(0, -1)},"extra":${deepArrays}}}`, expect: { kind: 'admitted' } })

  // Connect params without params, or params of the wrong type.
  cases.push({ name: 'connect without params', data: connectFrame(undefined), expect: badParams('params') })
  for (const params of [null, 'connect', 4, true, [], [probeParams()]]) {
    cases.push({ name: `connect with params ${JSON.stringify(params).slice(0, 40)}`, data: connectFrame(params), expect: badParams('params') })
  }

  // Wrong types for every connect field.
  const integer = [null, true, false, '4', 4.5, [], {}, [4], '']
  const string = [null, true, 0, 1.5, [], {}, ['x']]
  const array = [null, 'x', 0, {}, true]
  const object = [null, 'x', 0, [], true, ['a']]
  const fields: Array<[Array<string | number>, unknown[], boolean]> = [
    [['minProtocol'], integer, true],
    [['maxProtocol'], integer, true],
    [['client'], object, true],
    [['client', 'id'], string, true],
    [['client', 'version'], string, true],
    [['client', 'platform'], string, true],
    [['client', 'deviceFamily'], string, false],
    [['client', 'mode'], string, true],
    [['client', 'instanceId'], string, false],
    [['client', 'displayName'], string, false],
    [['caps'], array, false],
    [['caps', 0], string, false],
    [['role'], string, true],
    [['scopes'], array, true],
    [['scopes', 0], [null, 0, 'operator', 'OPERATOR.READ', 'operator.read ', '', 'operator.*', {}, []], false],
    [['auth'], object, false],
    [['auth', 'token'], string, false],
    [['auth', 'deviceToken'], string, false],
    [['device'], object, false],
    [['device', 'id'], string, true],
    [['device', 'publicKey'], string, true],
    [['device', 'signature'], string, true],
    [['device', 'signedAt'], integer, true],
    [['device', 'nonce'], string, true]
  ]
  for (const [path, values, required] of fields) {
    const field = fieldName(path)
    for (const value of values) {
      const params = fullParams()
      setPath(params, path, value)
      cases.push({ name: `${field} = ${JSON.stringify(value)}`, data: connectFrame(params), expect: badParams(field) })
    }
    if (required) {
      const params = fullParams()
      setPath(params, path, undefined, true)
      cases.push({ name: `${field} missing`, data: connectFrame(params), expect: badParams(field) })
    }
  }

  // Lengths and shapes.
  const hex = (n: number): string => 'a'.repeat(n)
  const shapes: Array<[Array<string | number>, unknown]> = [
    [['client', 'id'], ''], [['client', 'id'], 'x'.repeat(129)], [['client', 'version'], 'x'.repeat(257)],
    [['client', 'platform'], 'x'.repeat(257)], [['client', 'mode'], ''], [['client', 'mode'], 'x'.repeat(65)],
    [['client', 'displayName'], 'x'.repeat(257)], [['role'], 'x'.repeat(65)], [['auth', 'token'], 'x'.repeat(1025)],
    [['device', 'id'], hex(63)], [['device', 'id'], hex(65)], [['device', 'id'], 'g'.repeat(64)], [['device', 'id'], 'A'.repeat(64)],
    [['device', 'publicKey'], 'A'.repeat(42)], [['device', 'publicKey'], 'A'.repeat(44)], [['device', 'publicKey'], 'A'.repeat(42) + '='],
    [['device', 'publicKey'], 'A'.repeat(42) + '/'], [['device', 'signature'], 'A'.repeat(85)], [['device', 'signature'], 'A'.repeat(87)],
    [['device', 'signature'], 'A'.repeat(84) + '=='], [['device', 'signedAt'], -1], [['device', 'nonce'], ''], [['device', 'nonce'], 'n'.repeat(129)],
    [['caps'], Array.from({ length: 65 }, () => 'c')], [['scopes'], Array.from({ length: 33 }, () => 'operator.read')]
  ]
  for (const [path, value] of shapes) {
    const params = fullParams()
    setPath(params, path, value)
    const shown = typeof value === 'string' && value.length > 20 ? `${value.length} chars` : Array.isArray(value) ? `${value.length} items` : JSON.stringify(value)
    cases.push({ name: `${fieldName(path)} = ${shown}`, data: connectFrame(params), expect: badParams(fieldName(path)) })
  }

  // Integer protocol bounds that exclude 4, with otherwise broken params: protocol first.
  for (const [min, max] of [[5, 5], [100, 200], [0, 3], [-1, -1], [4, 3], [2 ** 40, 2 ** 41]]) {
    const params = fullParams()
    params.minProtocol = min
    params.maxProtocol = max
    params.client = 'broken'
    cases.push({ name: `protocol [${min}, ${max}] with broken client`, data: connectFrame(params), expect: protocolMismatch })
  }
  // Unknown roles of a valid shape, with a broken signature: role first.
  for (const role of ['admin', 'root', 'OPERATOR', ' node', 'operator\u0000', 'opérateur', '']) {
    const params = fullParams()
    params.role = role
    params.device.signature = 'A'.repeat(86)
    cases.push({ name: `role ${JSON.stringify(role)}`, data: connectFrame(params), expect: invalidRole })
  }
  return cases
}

interface Outcome { frames: Frame[], close: CloseInfo | null }

async function run (c: Case): Promise<Outcome> {
  const socket = await openWithChallenge()
  const challenges = socket.frames.length
  if (typeof c.data === 'string') socket.send(c.data)
  else sendBinary(socket, c.data)
  if (c.expect.kind === 'admitted') {
    const frame = await socket.next((f) => f.type === 'res', 5000).catch(() => null)
    await socket.close()
    return { frames: frame === null ? [] : [frame], close: null }
  }
  const close = await socket.closedWithin()
  return { frames: socket.frames.slice(challenges), close }
}

function check (c: Case, outcome: Outcome): string | null {
  const got = JSON.stringify(outcome)
  switch (c.expect.kind) {
    case 'invalid-frame':
      return outcome.frames.length === 0 && outcome.close?.code === 1003 && outcome.close.reason === 'invalid frame' ? null : got
    case 'admitted':
      return outcome.frames[0]?.ok === true && outcome.frames[0]?.payload?.type === 'hello-ok' ? null : got
    case 'refused': {
      const { reason, detailsCode, closeCode } = c.expect
      const [frame, ...rest] = outcome.frames
      const ok = rest.length === 0 && frame !== undefined && frame.type === 'res' && frame.ok === false &&
        JSON.stringify(frame.error) === JSON.stringify({ code: 'INVALID_REQUEST', message: reason, details: { code: detailsCode } }) &&
        outcome.close?.code === closeCode && outcome.close.reason === reason
      return ok ? null : got
    }
  }
}

t.test('generated malformed frames each end in a documented close or error, and the server keeps serving', async (t) => {
  const { socket: survivor } = await probe(t)
  const cases = generateCases()
  t.ok(cases.length >= 300, `${cases.length} variants`)
  const failures: Array<{ name: string, expect: Expect, got: string }> = []
  const BATCH = 24
  for (let i = 0; i < cases.length; i += BATCH) {
    const batch = cases.slice(i, i + BATCH)
    const outcomes = await Promise.all(batch.map(run))
    batch.forEach((c, index) => {
      const got = check(c, outcomes[index] as Outcome)
      if (got !== null) failures.push({ name: c.name, expect: c.expect, got: got.slice(0, 400) })
    })
  }
  t.same(failures, [], 'every variant ended as documented')

  t.equal(survivor.isClosed, false, 'a connection opened before the storm is still open')
  t.match(await survivor.request('health'), { ok: true, payload: { ok: true } })
  const fresh = await probe(t)
  t.match(await fresh.socket.request('health'), { ok: true, payload: { ok: true } })
  const unpaired = await new TestDevice().connect(server.wsUrl, { token: server.config.gatewayToken, scopes: ['operator.read'] })
  t.equal(unpaired.res.error?.code, 'NOT_PAIRED', 'a device connect still reaches the database')
  await unpaired.socket.closed
  const healthz = await fetch(server.httpUrl + '/healthz')
  t.equal(healthz.status, 200)
  t.same(await healthz.json(), { ok: true })
  const errors = server.logs().split('\n').filter((line) => /"level":(50|60)/.test(line))
  t.same(errors, [], 'nothing was logged as an error')
})

t.test('after the handshake, generated bad requests get an error each and the socket stays open', async (t) => {
  const { socket } = await probe(t)
  const rand = prng(42)
  const paramValues: unknown[] = ['s', 0, -1.5, true, false, [], [1, 2], ['health'], 'x'.repeat(1000)]
  const methods = ['foo', 'Health', 'health ', ' health', 'connect', 'cron', 'device.pair', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'x'.repeat(128)]
  let sent = 0
  for (let i = 0; i < 120; i++) {
    const useHealth = rand() < 0.5
    const method = useHealth ? 'health' : methods[Math.floor(rand() * methods.length)] as string
    const params = useHealth ? paramValues[Math.floor(rand() * paramValues.length)] : { any: rand() }
    const res = await socket.request(method, params, `q${i}`)
    sent++
    t.equal(res.ok, false, `${method} ${JSON.stringify(params).slice(0, 30)}`)
    t.equal(res.error?.code, 'INVALID_REQUEST')
    if (!useHealth) t.equal(res.error?.message, `unknown method: ${method}`)
  }
  t.equal(sent, 120)
  t.equal(socket.isClosed, false)
  t.match(await socket.request('health'), { ok: true })
})

t.test('truncateReason cuts close reasons to 123 bytes of UTF-8 on a character boundary', async (t) => {
  const bytes = (s: string): number => Buffer.byteLength(s)
  t.test('short reasons are unchanged', async (t) => {
    for (const reason of ['', 'invalid frame', 'a'.repeat(123), 'a'.repeat(120) + '€', 'é'.repeat(61) + 'a']) {
      t.equal(truncateReason(reason), reason)
    }
  })
  t.test('ASCII is cut at 123 bytes', async (t) => {
    t.equal(truncateReason('a'.repeat(124)), 'a'.repeat(123))
    t.equal(truncateReason('b'.repeat(1000)), 'b'.repeat(123))
  })
  t.test('a 2-byte character that would cross the limit is dropped whole', async (t) => {
    t.equal(truncateReason('é'.repeat(62)), 'é'.repeat(61))
    t.equal(bytes(truncateReason('é'.repeat(62))), 122)
    t.equal(truncateReason('a'.repeat(122) + 'é'), 'a'.repeat(122))
  })
  t.test('3-byte characters fill exactly 123 bytes', async (t) => {
    t.equal(truncateReason('€'.repeat(42)), '€'.repeat(41))
    t.equal(bytes(truncateReason('€'.repeat(42))), 123)
    t.equal(truncateReason('a'.repeat(121) + '€'), 'a'.repeat(121))
  })
  t.test('4-byte characters (surrogate pairs) are never split', async (t) => {
    const out = truncateReason('😀'.repeat(31))
    t.equal(out, '😀'.repeat(30))
    t.equal(bytes(out), 120)
    t.equal(truncateReason('aa' + '😀'.repeat(31)), 'aa' + '😀'.repeat(30))
    t.equal(truncateReason('a'.repeat(120) + '😀'), 'a'.repeat(120))
    t.notMatch(out, /[\uD800-\uDBFF](?![\uDC00-\uDFFF])/, 'no lone high surrogate')
  })
  t.test('generated mixed strings: a prefix, at most 123 bytes, and the next character would not fit', async (t) => {
    const alphabet = ['a', 'Z', ' ', 'é', 'ß', '€', '中', '😀', '👍🏽', '\u0301', 'ﬀ']
    const rand = prng(7)
    const bad: string[] = []
    for (let i = 0; i < 300; i++) {
      let input = ''
      const length = 1 + Math.floor(rand() * 90)
      for (let j = 0; j < length; j++) input += alphabet[Math.floor(rand() * alphabet.length)]
      const out = truncateReason(input)
      const next = out === input ? '' : String.fromCodePoint(input.codePointAt(out.length) as number)
      const fine = input.startsWith(out) && bytes(out) <= 123 && Buffer.from(out, 'utf8').toString('utf8') === out &&
        (out === input || bytes(out) + bytes(next) > 123)
      if (!fine) bad.push(input)
    }
    t.same(bad, [], 'each output is a prefix of whole characters, at most 123 bytes, and the next character would not fit')
  })
  t.test('every reason in the close table fits', async (t) => {
    for (const spec of Object.values(Close)) {
      if (typeof spec === 'function') continue
      t.ok(bytes(spec.reason) <= 123, spec.reason)
      t.equal(truncateReason(spec.reason), spec.reason)
    }
    t.equal(truncateReason(Close.pairingRequired('metadata-upgrade').reason), 'pairing required (metadata-upgrade)')
  })
})
