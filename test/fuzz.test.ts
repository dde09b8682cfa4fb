// Property-based fuzzing (fast-check) of the frame codec and the connect
// params against a live instance over real WebSockets, and of the parser and
// validators on their own.
//
// The instance is `node bin/scopegate.js serve` in a child process (real
// Postgres, a schema of its own), so a crash or an unhandled rejection (which
// ends a Node process) shows as an exit, and its memory is its own.
//
// Every generated frame must end in what PROTOCOL.md documents: an error frame
// with a documented code, or a close with a code and reason from the table in
// src/gateway/close.ts (or ws's 1009 / 1007 for an oversized frame / bad
// UTF-8). Frames that do not close the socket are sent many to a socket.
//
//   npm test                             # FUZZ_RUNS=10000 frames, fixed seed
//   FUZZ_RUNS=100000 FUZZ_SEED=7 npx tap test/fuzz.test.ts --disable-coverage -t 0
import { randomUUID } from 'node:crypto'
import fc from 'fast-check'
import t from 'tap'
import WebSocket from 'ws'
import { signaturePayloadV2, signaturePayloadV3, verifyDeviceSignature, type SignedFields } from '../src/auth/device-identity.ts'
import { Close, truncateReason } from '../src/gateway/close.ts'
import { invalidField, isConnectParams, isRequestFrame, toProtocolError } from '../src/gateway/frames.ts'
import { TestDevice, TestSocket, type CloseInfo, type Frame } from './helpers/device.ts'
import { HOSTILE_STRINGS } from './helpers/hostile.ts'
import { httpCall, startInstance, instanceSecrets, type Instance, type ProbeReport } from './helpers/instance.ts'
import { pairDevice, requestPairing } from './helpers/pairing.ts'
import { METHOD_SCOPES } from './helpers/protocol.ts'
import { dropSchema, TEST_DATABASE_URL, uniqueSchema } from './helpers/server.ts'

const SEED = Number(process.env.FUZZ_SEED ?? 0x5c09e8)
const TOTAL = Number(process.env.FUZZ_RUNS ?? 10_000)
// About a minute alone; far more beside the rest of npm test on 2 cores (tap's default for a file is 120 s here).
t.setTimeout(Math.max(360_000, TOTAL * 40))
const MAX_PAYLOAD = 64 * 1024
/** Growth allowed between the heap after a full GC before the storm and after it. */
const HEAP_BOUND = 24 * 1024 * 1024
/** Growth allowed of the instance's RSS over the whole run (V8 keeps pages it grew into). */
const RSS_BOUND = 160 * 1024 * 1024

// Shares of TOTAL: [A] requests on a probe connection (exact oracle), [B] requests
// with valid-looking params for every method on device connections (operator.admin,
// and operator.pairing only), [C] one frame on a fresh socket before the handshake,
// [D] one frame that must close, right after a handshake.
const BATCH_A = 150
const BATCH_B = 125
const BATCH_C = 30
const BATCH_D = 20
const RUNS_A = Math.max(1, Math.ceil(TOTAL * 0.55 / BATCH_A))
const RUNS_B = Math.max(1, Math.ceil(TOTAL * 0.25 / BATCH_B))
const RUNS_C = Math.max(1, Math.ceil(TOTAL * 0.14 / BATCH_C))
const RUNS_D = Math.max(1, Math.ceil(TOTAL * 0.06 / BATCH_D))

const METHODS = Object.keys(METHOD_SCOPES)
const SCOPES = ['operator.read', 'operator.write', 'operator.admin', 'operator.approvals', 'operator.pairing', 'operator.questions', 'operator.talk', 'operator.talk.secrets']
const ERROR_CODES = new Set(['INVALID_REQUEST', 'NOT_PAIRED', 'FORBIDDEN', 'UNAVAILABLE', 'RATE_LIMITED', 'INTERNAL'])
/** `details.code` values an INVALID_REQUEST / FORBIDDEN answer to a method may carry (PROTOCOL.md, API.md error codes). */
const METHOD_DETAIL_CODES = new Set([
  'UNKNOWN_METHOD', 'INVALID_PARAMS', 'MISSING_SCOPE', 'INVALID_SCOPE', 'INVALID_ROLE', 'CRON_JOB_NOT_FOUND',
  'PAIRING_REQUEST_NOT_FOUND', 'PAIRING_REQUEST_NOT_PENDING', 'SCOPES_NOT_REQUESTED', 'DEVICE_NOT_FOUND',
  'DEVICE_ROLE_NOT_FOUND', 'SCOPE_NOT_GRANTED', 'DEVICE_TOKEN_NOT_FOUND'
])

/** PROTOCOL.md's refusal table: close reason → details.code (the variable reasons by prefix). */
const REFUSALS: ReadonlyMap<string, string> = new Map([
  [Close.gatewayTokenMissing.reason, 'AUTH_TOKEN_MISSING'],
  [Close.gatewayTokenMismatch.reason, 'AUTH_TOKEN_MISMATCH'],
  [Close.deviceTokenMismatch.reason, 'AUTH_DEVICE_TOKEN_MISMATCH'],
  [Close.deviceTokenExpired.reason, 'AUTH_DEVICE_TOKEN_EXPIRED'],
  [Close.deviceIdentityMismatch.reason, 'DEVICE_AUTH_DEVICE_ID_MISMATCH'],
  [Close.deviceNonceMismatch.reason, 'DEVICE_AUTH_NONCE_MISMATCH'],
  [Close.deviceSignatureExpired.reason, 'DEVICE_AUTH_SIGNATURE_EXPIRED'],
  [Close.deviceSignatureInvalid.reason, 'DEVICE_AUTH_SIGNATURE_INVALID'],
  [Close.protocolMismatch.reason, 'PROTOCOL_MISMATCH'],
  [Close.invalidRole.reason, 'INVALID_ROLE']
])
const PAIRING_REASONS = ['not-paired', 'role-upgrade', 'scope-upgrade', 'metadata-upgrade']

// ---------------------------------------------------------------------------
// The oracle's view of a frame, from PROTOCOL.md (Transport, Frames) alone.

type Verdict =
  | { kind: 'close', code: number, reason?: string } // no answer, just this close
  | { kind: 'request', frame: Record<string, unknown> }

const codePoints = (s: string): number => [...s].length
const isIdString = (v: unknown): v is string => typeof v === 'string' && codePoints(v) >= 1 && codePoints(v) <= 128

function classify (data: string | Buffer, binary: boolean): Verdict {
  const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length
  if (size > MAX_PAYLOAD) return { kind: 'close', code: 1009 }
  if (binary) return { kind: 'close', code: 1003, reason: 'invalid frame' }
  let text: string
  // What goes over the wire: a lone surrogate in a JS string is sent as U+FFFD.
  if (typeof data === 'string') text = Buffer.from(data, 'utf8').toString('utf8')
  else {
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(data)
    } catch {
      return { kind: 'close', code: 1007 }
    }
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return { kind: 'close', code: 1003, reason: 'invalid frame' }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { kind: 'close', code: 1003, reason: 'invalid frame' }
  const frame = value as Record<string, unknown>
  if (frame.type !== 'req' || !isIdString(frame.id) || !isIdString(frame.method)) return { kind: 'close', code: 1003, reason: 'invalid frame' }
  return { kind: 'request', frame }
}

/** Is this close (and at most one answer before it) a documented refusal of a connect? null when it is. */
function checkConnectRefusal (answer: Frame | undefined, close: CloseInfo): string | null {
  if (answer === undefined) return 'no answer to connect before the close'
  if (answer.type !== 'res' || answer.ok !== false) return `not an error frame: ${JSON.stringify(answer)}`
  const error = answer.error as { code?: unknown, message?: unknown, details?: Record<string, unknown> }
  if (error.code === 'NOT_PAIRED') {
    const reason = error.details?.reason
    if (typeof reason !== 'string' || !PAIRING_REASONS.includes(reason)) return `NOT_PAIRED with reason ${String(reason)}`
    const expected = Close.pairingRequired(reason).reason
    if (error.message !== expected || close.reason !== expected || close.code !== 1008 || error.details?.code !== 'PAIRING_REQUIRED') return `pairing refusal out of the table: ${JSON.stringify({ error, close })}`
    return null
  }
  if (error.code !== 'INVALID_REQUEST') return `connect answered ${String(error.code)} (close ${close.code} ${close.reason})`
  if (error.message !== close.reason) return `message ${JSON.stringify(error.message)} is not the close reason ${JSON.stringify(close.reason)}`
  const detailsCode = close.reason.startsWith('invalid connect params: ') ? 'INVALID_CONNECT_PARAMS' : REFUSALS.get(close.reason)
  if (detailsCode === undefined) return `close reason not in the table: ${JSON.stringify(close.reason)}`
  if (error.details?.code !== detailsCode) return `details.code ${String(error.details?.code)} for ${close.reason}`
  const code = detailsCode === 'PROTOCOL_MISMATCH' ? 1002 : 1008
  if (close.code !== code) return `close code ${close.code} for ${close.reason}`
  return null
}

// ---------------------------------------------------------------------------
// Arbitraries

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c))
const oddChar = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  { weight: 3, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: loneSurrogate },
  { weight: 1, arbitrary: fc.constantFrom('\u0000', '|', ',', '"', '\\', '\u2028', '\uFEFF', '\u202E', '\u0301', '😀') }
)
/** What Postgres can store: no U+0000, no lone surrogate (the connect schema refuses them in stored client fields). */
const storableChar = oddChar.filter((c) => c !== '\u0000' && !(c.length === 1 && /[\uD800-\uDFFF]/.test(c)))
const unstorableChar = fc.oneof(fc.constant('\u0000'), loneSurrogate)
const oddString = (maxLength = 40): fc.Arbitrary<string> => fc.oneof(
  { weight: 5, arbitrary: fc.string({ unit: oddChar, maxLength }) },
  { weight: 2, arbitrary: fc.constantFrom(...HOSTILE_STRINGS) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength }) }
)
const idString = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: oddChar, minLength: 1, maxLength: 128 }) },
  { weight: 1, arbitrary: fc.constantFrom('😀'.repeat(128), 'x'.repeat(128), 'é'.repeat(128), '\u0000', '__proto__') }
)
const anyJson = fc.jsonValue({ maxDepth: 4 })
/** A value of the given arbitrary, or sometimes anything at all. */
const maybeWeird = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<unknown> => fc.oneof({ weight: 5, arbitrary: arb as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: anyJson })

/** JSON text for nested arrays/objects of a depth fast-check chooses, closed or not (12,000 deep objects do not fit in a frame). */
const deepJson = (maxDepth: number): fc.Arbitrary<string> => fc.record({ depth: fc.integer({ min: 1, max: maxDepth }), objects: fc.boolean(), closed: fc.boolean() }).map(({ depth, objects, closed }) => {
  if (objects) return '{"a":'.repeat(depth) + '1' + (closed ? '}'.repeat(depth) : '')
  return '['.repeat(depth) + (closed ? ']'.repeat(depth) : '')
})

/** A method name: every documented one, near misses, prototype names, anything. */
const methodName = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...METHODS) },
  { weight: 1, arbitrary: fc.constantFrom('connect', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'Health', 'health ', ' health', 'cron', 'device.pair', 'cron.list\u0000', 'x'.repeat(128)) },
  { weight: 1, arbitrary: fc.constantFrom(...METHODS).chain((m) => fc.nat({ max: m.length - 1 }).map((i) => m.slice(0, i) + m.slice(i + 1) || 'x')) },
  { weight: 2, arbitrary: idString }
)

/** `{"a":{"a":…1}}`, `depth` objects deep. */
function nested (depth: number): unknown {
  let value: unknown = 1
  for (let i = 0; i < depth; i++) value = { a: value }
  return value
}

/** Serialises a JSON value, sometimes escaping every non-ASCII character and adding whitespace: the same value to a parser. */
function encode (value: unknown, style: number): string {
  const text = JSON.stringify(value) ?? 'null'
  if (style % 3 === 1) return text.replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'))
  // Pretty-printed only when small: indentation grows with the square of the depth.
  if (style % 3 === 2 && text.length < 1024) return JSON.stringify(value, null, style % 2 === 0 ? '\t' : 1) ?? 'null'
  return text
}

interface RequestCase {
  id: string
  method: string
  /** Raw JSON text of params, or undefined for no params field. */
  paramsText: string | undefined
  /** The params value as parsed. */
  params: unknown
  text: string
}

/** A text frame holding a request: a string id and method, params of any kind, extra fields, decoy duplicate keys. */
function requestFrame (params: fc.Arbitrary<unknown>, method: fc.Arbitrary<string> = methodName, deep = true): fc.Arbitrary<RequestCase> {
  return fc.record({
    id: idString,
    method,
    params: fc.oneof(
      { weight: 1, arbitrary: fc.constant<{ raw?: string, value?: unknown }>({}) },
      { weight: 8, arbitrary: params.map((value) => ({ value })) },
      // Deep params that still fit in a frame (5,000 levels).
      { weight: deep ? 1 : 0, arbitrary: deepJson(5000).filter((raw) => raw.startsWith('[') ? raw.endsWith(']') : raw.endsWith('}')).map((raw) => ({ raw })) }
    ),
    extras: fc.dictionary(fc.string({ maxLength: 8 }).filter((k) => !['type', 'id', 'method', 'params'].includes(k)), anyJson, { maxKeys: 3 }),
    decoy: fc.boolean(),
    style: fc.nat({ max: 5 })
  }).map(({ id, method, params, extras, decoy, style }) => {
    const parts: string[] = []
    // A decoy first value for a key: JSON.parse keeps the last one.
    if (decoy) parts.push(`"method":${encode(12, 0)}`, `"id":null`)
    parts.push(`"type":"req"`, `"id":${encode(id, style)}`, `"method":${encode(method, style)}`)
    let paramsText: string | undefined
    let value: unknown
    if ('raw' in params && params.raw !== undefined) {
      paramsText = params.raw
      value = JSON.parse(params.raw)
    } else if ('value' in params) {
      paramsText = encode(params.value, style)
      value = JSON.parse(paramsText)
    }
    if (paramsText !== undefined) parts.push(`"params":${paramsText}`)
    for (const [key, extra] of Object.entries(extras)) parts.push(`${JSON.stringify(key)}:${encode(extra, style)}`)
    return { id, method, paramsText, params: value, text: `{${parts.join(',')}}` }
  })
}

// Pools of real ids, filled as the test runs, so that generated params sometimes name things that exist.
const pools = { requests: [] as string[], devices: [] as string[], jobs: [] as string[] }
const fromPool = (pool: string[]): fc.Arbitrary<string> => fc.nat().map((i) => pool.length === 0 ? randomUUID() : pool[i % pool.length] as string)

const requestId = fc.oneof({ weight: 4, arbitrary: fromPool(pools.requests) }, { weight: 2, arbitrary: fc.uuid() }, { weight: 2, arbitrary: oddString(130) })
const deviceId = fc.oneof({ weight: 4, arbitrary: fromPool(pools.devices) }, { weight: 1, arbitrary: fc.stringMatching(/^[0-9a-f]{64}$/) }, { weight: 2, arbitrary: oddString(130) })
const jobId = fc.oneof({ weight: 4, arbitrary: fromPool(pools.jobs) }, { weight: 2, arbitrary: fc.uuid() }, { weight: 2, arbitrary: oddString(130) })
const role = fc.oneof({ weight: 4, arbitrary: fc.constantFrom('operator', 'node') }, { weight: 1, arbitrary: oddString(70) })
const scopeList = fc.array(fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...SCOPES) }, { weight: 1, arbitrary: oddString(70) }), { maxLength: 34 })
const isoTime = fc.integer({ min: Date.UTC(1990, 0, 1), max: Date.UTC(2100, 0, 1) }).map((ms) => new Date(ms).toISOString())
const schedule = fc.oneof(
  fc.record({ kind: fc.constant('at'), at: fc.oneof(isoTime, oddString()) }),
  fc.record({ kind: fc.constant('every'), everyMs: fc.oneof(fc.integer({ min: 60_000, max: 2 ** 40 }), fc.integer({ min: -5, max: 999 }), fc.double()) }),
  fc.record({ kind: fc.constant('cron'), expr: fc.oneof(fc.constantFrom('0 9 * * *', '*/5 * * * *', '0 0 1 1 * 2099', '61 * * * *', 'a b c d e', '* * *'), oddString(300)), tz: fc.option(fc.oneof(fc.constantFrom('UTC', 'Europe/Berlin', 'Mars/Olympus'), oddString()), { nil: undefined }) }, { requiredKeys: ['kind', 'expr'] }),
  anyJson
)
const payload = fc.oneof(
  fc.record({ kind: fc.constant('systemEvent'), text: oddString(200) }),
  fc.record({ kind: fc.constant('agentTurn'), message: oddString(200) }),
  anyJson
)
const cronFields = {
  name: maybeWeird(oddString(300)),
  description: maybeWeird(oddString()),
  enabled: maybeWeird(fc.boolean()),
  schedule: maybeWeird(schedule),
  payload: maybeWeird(payload),
  deleteAfterRun: maybeWeird(fc.boolean()),
  sessionTarget: maybeWeird(fc.constantFrom('main', 'isolated')),
  // Unknown fields are stored as given: sometimes nested deeper than can be stored.
  delivery: fc.oneof({ weight: 3, arbitrary: anyJson }, { weight: 2, arbitrary: fc.integer({ min: 1, max: 4000 }).map(nested) })
}
const record = <T extends Record<string, fc.Arbitrary<unknown>>>(fields: T, required: Array<keyof T>): fc.Arbitrary<unknown> =>
  maybeWeird(fc.record(fields, { requiredKeys: required as never[] }))

/** Valid-looking params for each method (every field sometimes anything at all). */
const METHOD_PARAMS: Record<string, fc.Arbitrary<unknown>> = {
  health: anyJson,
  status: anyJson,
  'cron.list': record({ includeDisabled: maybeWeird(fc.boolean()), limit: maybeWeird(fc.integer({ min: -2, max: 1002 })), offset: maybeWeird(fc.integer({ min: -2, max: 5000 })) }, []),
  'cron.status': anyJson,
  'cron.get': record({ id: jobId }, ['id']),
  'cron.runs': record({ id: jobId, limit: maybeWeird(fc.integer({ min: -1, max: 600 })) }, ['id']),
  'cron.add': fc.oneof(
    record(cronFields, ['name', 'schedule', 'payload']),
    // A valid job whose fields the gateway does not interpret (stored as given) are odd: hostile keys and strings, deep nesting.
    fc.record({
      name: fc.constantFrom('n', 'job', '"; DROP TABLE cron_jobs; --'),
      schedule: fc.constant({ kind: 'every', everyMs: 3_600_000 }),
      payload: fc.record({ kind: fc.constant('systemEvent'), text: oddString(100) }),
      delivery: cronFields.delivery,
      agentId: oddString(),
      [HOSTILE_STRINGS[0] as string]: anyJson
    })
  ),
  'cron.update': record({ id: jobId, patch: record(cronFields, []) }, ['id', 'patch']),
  'cron.remove': record({ id: jobId }, ['id']),
  'cron.run': record({ id: jobId, mode: maybeWeird(fc.constantFrom('force', 'due', 'now')) }, ['id']),
  'device.pair.list': anyJson,
  'device.pair.approve': record({ requestId, scopes: scopeList }, ['requestId']),
  'device.pair.reject': record({ requestId }, ['requestId']),
  'device.pair.remove': record({ deviceId }, ['deviceId']),
  'device.token.rotate': record({ deviceId, role, scopes: scopeList }, ['deviceId', 'role']),
  'device.token.revoke': record({ deviceId, role }, ['deviceId', 'role'])
}

const anyParams = fc.oneof(
  { weight: 3, arbitrary: anyJson },
  { weight: 1, arbitrary: fc.constantFrom(null, 'a string', 42, true, [], ['x'], {}) },
  { weight: 1, arbitrary: fc.object({ maxDepth: 3, withNullPrototype: false }) }
)

/** A request for a method with params that fit it (often) or anything (sometimes). */
const methodRequest = fc.constantFrom(...METHODS).chain((method) =>
  requestFrame(fc.oneof({ weight: 4, arbitrary: METHOD_PARAMS[method] as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: anyParams }), fc.constant(method)))

// ---------------------------------------------------------------------------
// Connect params

interface ConnectSpec {
  /** The params (possibly broken) and what the oracle knows about them. */
  params: unknown
  /** Exact close reason expected, when the generator knows it. */
  expect?: string
  /** A field was set to a generated value after signing (the params may or may not fit the schema). */
  mutated: boolean
}

/** Paths of connect params and a value of the wrong JSON type for each (PROTOCOL.md's connect params). */
const FIELD_TYPES: Array<[Array<string | number>, 'integer' | 'string' | 'array' | 'object']> = [
  [['minProtocol'], 'integer'], [['maxProtocol'], 'integer'], [['client'], 'object'], [['client', 'id'], 'string'],
  [['client', 'version'], 'string'], [['client', 'platform'], 'string'], [['client', 'deviceFamily'], 'string'],
  [['client', 'mode'], 'string'], [['client', 'instanceId'], 'string'], [['client', 'displayName'], 'string'],
  [['caps'], 'array'], [['caps', 0], 'string'], [['role'], 'string'], [['scopes'], 'array'], [['scopes', 0], 'string'],
  [['auth'], 'object'], [['auth', 'token'], 'string'], [['auth', 'deviceToken'], 'string'], [['device'], 'object'],
  [['device', 'id'], 'string'], [['device', 'publicKey'], 'string'], [['device', 'signature'], 'string'],
  [['device', 'signedAt'], 'integer'], [['device', 'nonce'], 'string']
]

function wrongValue (kind: 'integer' | 'string' | 'array' | 'object'): fc.Arbitrary<unknown> {
  const notString = fc.oneof(fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 2 }), fc.dictionary(fc.string(), fc.string(), { maxKeys: 2 }))
  switch (kind) {
    case 'integer': return fc.oneof(fc.double().filter((n) => !Number.isInteger(n) && Number.isFinite(n)), fc.string(), fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 2 }), fc.constant({}))
    case 'string': return notString
    case 'array': return fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.dictionary(fc.string(), fc.string(), { maxKeys: 2 }))
    case 'object': return fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 2 }))
  }
}

function fieldName (path: Array<string | number>): string {
  return path.reduce<string>((out, key) => typeof key === 'number' ? `${out}[${key}]` : (out === '' ? key : `${out}.${key}`), '')
}

function setPath (target: Record<string, unknown>, path: Array<string | number>, value: unknown): void {
  let node = target as Record<string | number, unknown>
  for (const key of path.slice(0, -1)) {
    const next = node[key]
    if (typeof next !== 'object' || next === null) node[key] = typeof path[path.indexOf(key) + 1] === 'number' ? [] : {}
    node = node[key] as Record<string | number, unknown>
  }
  node[path[path.length - 1] as string | number] = value
}

type ParamsBuilder = (challenge: { nonce: string, ts: number }, gatewayToken: string) => ConnectSpec

/** A connect built from the challenge: a signed device with odd but well-typed fields, then maybe broken. */
const connectBuilder: fc.Arbitrary<ParamsBuilder> = fc.record({
  probe: fc.boolean(),
  clientId: fc.oneof(fc.constantFrom('cli', 'gateway-client', 'openclaw-tui', 'test'), fc.string({ unit: storableChar, minLength: 1, maxLength: 128 })),
  mode: fc.oneof(fc.constantFrom('cli', 'backend', 'probe'), fc.string({ unit: storableChar, minLength: 1, maxLength: 64 })),
  platform: fc.oneof(fc.constantFrom('linux', ' Linux ', 'macos', ''), fc.string({ unit: storableChar, maxLength: 256 })),
  deviceFamily: fc.option(fc.string({ unit: storableChar, maxLength: 256 }), { nil: undefined }),
  displayName: fc.option(fc.string({ unit: storableChar, maxLength: 256 }), { nil: undefined }),
  role: fc.oneof({ weight: 5, arbitrary: fc.constantFrom('operator', 'node') }, { weight: 1, arbitrary: fc.string({ unit: oddChar, maxLength: 64 }) }),
  scopes: fc.subarray(SCOPES),
  token: fc.constantFrom('gateway', 'wrong', 'none', 'deviceToken'),
  signature: fc.constantFrom('v3', 'v2', 'other-nonce', 'stale', 'future', 'garbage'),
  protocol: fc.oneof({ weight: 6, arbitrary: fc.constant<[number, number]>([4, 4]) }, { weight: 1, arbitrary: fc.tuple(fc.integer({ min: -3, max: 9 }), fc.integer({ min: -3, max: 9 })) }),
  extra: fc.dictionary(fc.string({ maxLength: 10 }).filter((k) => !['minProtocol', 'maxProtocol', 'client', 'caps', 'role', 'scopes', 'auth', 'device'].includes(k)), anyJson, { maxKeys: 2 }),
  mutation: fc.oneof(
    { weight: 3, arbitrary: fc.constant(null) },
    { weight: 2, arbitrary: fc.constantFrom(...FIELD_TYPES).chain(([path, kind]) => wrongValue(kind).map((value) => ({ path, value, kind }))) },
    { weight: 1, arbitrary: fc.constantFrom(...FIELD_TYPES).chain(([path]) => anyJson.map((value) => ({ path, value, kind: 'any' as const }))) },
    // A character Postgres cannot store, in a client field a pairing request stores.
    { weight: 1, arbitrary: fc.record({ path: fc.constantFrom<Array<string | number>>(['client', 'id'], ['client', 'mode'], ['client', 'platform'], ['client', 'deviceFamily'], ['client', 'displayName']), before: fc.string({ unit: storableChar, maxLength: 20 }), bad: unstorableChar, after: fc.string({ unit: storableChar, maxLength: 20 }) }).map(({ path, before, bad, after }) => ({ path, value: before + bad + after, kind: 'unstorable' as const })) }
  )
}).map((spec) => (challenge: { nonce: string, ts: number }, gatewayToken: string): ConnectSpec => {
  const device = new TestDevice()
  const token = spec.token === 'gateway' ? gatewayToken : spec.token === 'wrong' ? 'not-the-gateway-token' : undefined
  const signedAt = spec.signature === 'stale' ? challenge.ts - 200_000 : spec.signature === 'future' ? challenge.ts + 200_000 : challenge.ts
  const params = device.connectParams(challenge, {
    role: spec.role,
    scopes: spec.scopes,
    clientId: spec.clientId,
    mode: spec.mode,
    platform: spec.platform,
    ...(spec.deviceFamily !== undefined && { deviceFamily: spec.deviceFamily }),
    ...(token !== undefined && { token }),
    ...(spec.token === 'deviceToken' && { deviceToken: 'dt-' + randomUUID() }),
    signatureVersion: spec.signature === 'v2' ? 'v2' : 'v3',
    signedAt,
    ...(spec.signature === 'other-nonce' && { nonce: randomUUID() }),
    minProtocol: spec.protocol[0],
    maxProtocol: spec.protocol[1],
    noDevice: spec.probe
  })
  if (spec.signature === 'other-nonce' && params.device !== undefined) params.device.nonce = challenge.nonce
  if (spec.signature === 'garbage' && params.device !== undefined) params.device.signature = 'A'.repeat(86)
  if (spec.displayName !== undefined) params.client.displayName = spec.displayName
  Object.assign(params, spec.extra)
  let expect: string | undefined
  let mutated = false
  if (spec.mutation !== null) {
    const { path, value, kind } = spec.mutation
    const needsDevice = path[0] === 'device' && path.length > 1
    const needsArray = (path[0] === 'caps' || path[0] === 'scopes') && path.length > 1
    if (needsArray && !Array.isArray(params[path[0] as string])) params[path[0] as string] = []
    if (!(needsDevice && params.device === undefined)) {
      setPath(params, path, value)
      mutated = true
      // A wrong JSON type fails the schema at that field, unless the protocol range already excludes 4.
      const [min, max] = spec.protocol
      const rangeOk = min <= 4 && 4 <= max
      const protocolField = path[0] === 'minProtocol' || path[0] === 'maxProtocol'
      if (kind !== 'any' && (rangeOk || protocolField)) expect = `invalid connect params: ${fieldName(path)}`
    }
  }
  return { params, mutated, ...(expect !== undefined && { expect }) }
})

// ---------------------------------------------------------------------------
// One frame on a fresh socket, before the handshake (C), or right after one (D).

interface RawFrame { data: string | Buffer, binary: boolean, label: string }

/** Frames that are not requests, or are broken on the wire. */
const brokenFrame: fc.Arbitrary<RawFrame> = fc.oneof(
  { weight: 2, arbitrary: fc.string({ unit: oddChar, maxLength: 200 }).map((s) => ({ data: s, binary: false, label: 'text' })) },
  { weight: 2, arbitrary: anyJson.map((v) => ({ data: JSON.stringify(v), binary: false, label: 'json value' })) },
  { weight: 2, arbitrary: fc.record({ type: maybeWeird(fc.constantFrom('req', 'res', 'event', 'REQ', '')), id: maybeWeird(idString), method: maybeWeird(methodName), params: anyJson }, { requiredKeys: [] }).map((v) => ({ data: JSON.stringify(v), binary: false, label: 'frame-like object' })) },
  { weight: 1, arbitrary: deepJson(15_000).map((raw) => ({ data: raw, binary: false, label: 'deep nesting' })) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((bytes) => ({ data: Buffer.from(bytes), binary: true, label: 'binary' })) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 100 }).map((bytes) => ({ data: Buffer.concat([Buffer.from('{"type":"req","id":"'), Buffer.from(bytes), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]), binary: false, label: 'invalid utf-8 text' })) },
  { weight: 1, arbitrary: fc.integer({ min: MAX_PAYLOAD + 1, max: MAX_PAYLOAD * 3 }).map((size) => ({ data: `{"type":"req","id":"big","method":"health","params":{"pad":"${'x'.repeat(size)}"}}`, binary: false, label: 'oversized' })) },
  { weight: 1, arbitrary: fc.integer({ min: MAX_PAYLOAD + 1, max: MAX_PAYLOAD * 2 }).map((size) => ({ data: Buffer.alloc(size, 7), binary: true, label: 'oversized binary' })) }
)

type PreCase =
  | { kind: 'raw', frame: RawFrame }
  | { kind: 'truncated', build: ParamsBuilder, cut: number }
  | { kind: 'flipped', build: ParamsBuilder, at: number, char: string }
  | { kind: 'connect', build: ParamsBuilder }
  | { kind: 'params', params: unknown }
  | { kind: 'request', request: RequestCase }

const preCase: fc.Arbitrary<PreCase> = fc.oneof(
  { weight: 3, arbitrary: brokenFrame.map((frame) => ({ kind: 'raw' as const, frame })) },
  { weight: 2, arbitrary: fc.record({ build: connectBuilder, cut: fc.double({ min: 0, max: 1, noNaN: true }) }).map(({ build, cut }) => ({ kind: 'truncated' as const, build, cut })) },
  { weight: 1, arbitrary: fc.record({ build: connectBuilder, at: fc.double({ min: 0, max: 1, noNaN: true }), char: oddChar }).map(({ build, at, char }) => ({ kind: 'flipped' as const, build, at, char })) },
  { weight: 5, arbitrary: connectBuilder.map((build) => ({ kind: 'connect' as const, build })) },
  { weight: 1, arbitrary: anyParams.map((params) => ({ kind: 'params' as const, params })) },
  { weight: 1, arbitrary: requestFrame(anyParams).map((request) => ({ kind: 'request' as const, request })) }
)

function sendRaw (ws: WebSocket, frame: RawFrame): void {
  ws.send(frame.data, { binary: frame.binary })
}

interface Outcome { answers: Frame[], close: CloseInfo }

/** Waits for the close (or `ms`), returning the frames after the first `skip`. */
async function outcome (socket: TestSocket, skip: number, ms = 5000): Promise<Outcome> {
  const close = await socket.closedWithin(ms)
  return { answers: socket.frames.slice(skip).filter((f) => !(f.type === 'event' && f.event === 'tick')), close }
}

/** The documented ending of a frame whose verdict is a close. */
function checkClosed (verdict: Extract<Verdict, { kind: 'close' }>, result: Outcome): string | null {
  if (result.answers.length > 0) return `answered before closing: ${JSON.stringify(result.answers).slice(0, 300)}`
  if (result.close.code !== verdict.code) return `close ${result.close.code} ${JSON.stringify(result.close.reason)}, expected ${verdict.code}`
  if (verdict.reason !== undefined && result.close.reason !== verdict.reason) return `close reason ${JSON.stringify(result.close.reason)}, expected ${JSON.stringify(verdict.reason)}`
  return null
}

async function runPreCase (instance: Instance, c: PreCase): Promise<string | null> {
  const socket = await TestSocket.open(instance.wsUrl)
  try {
    const challengeFrame = await socket.event('connect.challenge')
    const challenge = challengeFrame.payload as { nonce: string, ts: number }
    let frame: RawFrame
    let expect: string | undefined
    switch (c.kind) {
      case 'raw':
        frame = c.frame
        break
      case 'truncated': {
        const text = JSON.stringify({ type: 'req', id: 'c', method: 'connect', params: c.build(challenge, instance.config.gatewayToken).params })
        frame = { data: text.slice(0, Math.max(1, Math.floor(c.cut * (text.length - 1)))), binary: false, label: 'truncated connect' }
        break
      }
      case 'flipped': {
        const text = JSON.stringify({ type: 'req', id: 'c', method: 'connect', params: c.build(challenge, instance.config.gatewayToken).params })
        const at = Math.floor(c.at * text.length)
        frame = { data: text.slice(0, at) + c.char + text.slice(at + 1), binary: false, label: 'flipped connect' }
        break
      }
      case 'connect': {
        const spec = c.build(challenge, instance.config.gatewayToken)
        expect = spec.expect
        frame = { data: JSON.stringify({ type: 'req', id: 'c', method: 'connect', params: spec.params }), binary: false, label: 'connect' }
        break
      }
      case 'params':
        frame = { data: JSON.stringify({ type: 'req', id: 'c', method: 'connect', params: c.params }), binary: false, label: 'connect with any params' }
        break
      case 'request':
        frame = { data: c.request.text, binary: false, label: 'request' }
    }
    sendRaw(socket.ws, frame)
    const verdict = classify(frame.data, frame.binary)
    if (verdict.kind === 'close') return label(frame, checkClosed(verdict, await outcome(socket, 1)))
    const request = verdict.frame
    if (request.method !== 'connect') {
      const result = await outcome(socket, 1)
      const want = { code: 'INVALID_REQUEST', message: 'connect required', details: { code: 'CONNECT_REQUIRED' } }
      const answer = result.answers[0]
      const ok = result.answers.length === 1 && answer !== undefined && answer.id === request.id && JSON.stringify(answer.error) === JSON.stringify(want) &&
        result.close.code === 1008 && result.close.reason === 'connect required'
      return ok ? null : label(frame, `not refused as connect required: ${JSON.stringify(result).slice(0, 400)}`)
    }
    // A connect: hello-ok, or a documented refusal and close.
    const answer = await socket.next((f) => f.type === 'res', 5000).catch(() => undefined)
    if (answer?.ok === true) {
      if (expect !== undefined) return label(frame, `admitted, expected ${expect}`)
      if (answer.payload?.type !== 'hello-ok' || answer.id !== request.id) return label(frame, `odd success ${JSON.stringify(answer).slice(0, 300)}`)
      return socket.isClosed ? label(frame, 'closed after hello-ok') : null
    }
    const result = await outcome(socket, 1)
    if (result.answers.length !== 1) return label(frame, `${result.answers.length} answers: ${JSON.stringify(result.answers).slice(0, 300)}`)
    const problem = checkConnectRefusal(answer, result.close)
    if (problem !== null) return label(frame, problem)
    if (answer?.id !== request.id) return label(frame, 'answer id differs')
    if (expect !== undefined && result.close.reason !== expect) return label(frame, `closed ${JSON.stringify(result.close.reason)}, expected ${JSON.stringify(expect)}`)
    return null
  } finally {
    if (!socket.isClosed) socket.ws.terminate()
  }
}

function label (frame: RawFrame, problem: string | null): string | null {
  if (problem === null) return null
  const shown = typeof frame.data === 'string' ? frame.data : `<${frame.data.length} bytes ${frame.data.subarray(0, 40).toString('hex')}>`
  return `${frame.label}: ${problem}; frame ${shown.slice(0, 300)}${shown.length > 300 ? `… (${shown.length} chars)` : ''}`
}

/** A probe (no device, gateway token): admitted with no scopes. */
async function probeConnect (instance: Instance): Promise<TestSocket> {
  const socket = await TestSocket.open(instance.wsUrl)
  await socket.event('connect.challenge')
  const res = await socket.request('connect', {
    minProtocol: 3,
    maxProtocol: 4,
    client: { id: 'cli', version: '1', platform: 'linux', mode: 'probe' },
    role: 'operator',
    scopes: [],
    auth: { token: instance.config.gatewayToken }
  })
  if (res.ok !== true) throw new Error(`probe refused: ${JSON.stringify(res)}`)
  return socket
}

async function runPostCloseCase (instance: Instance, frame: RawFrame): Promise<string | null> {
  const socket = await probeConnect(instance)
  try {
    const skip = socket.frames.length
    const verdict = classify(frame.data, frame.binary)
    sendRaw(socket.ws, frame)
    if (verdict.kind === 'close') return label(frame, checkClosed(verdict, await outcome(socket, skip)))
    // The generator made a valid request: it must be answered and the socket stay open.
    const answer = await socket.next((f) => f.type === 'res' && f.id === verdict.frame.id, 5000).catch((err: Error) => err)
    if (answer instanceof Error) return label(frame, answer.message.slice(0, 300))
    return socket.isClosed ? label(frame, 'closed after a valid request') : null
  } finally {
    if (!socket.isClosed) socket.ws.terminate()
  }
}

// ---------------------------------------------------------------------------
// Batches of requests on one admitted connection (A, B).

/** Sends every request pipelined, then waits for all the answers; the socket must stay open. */
async function sendBatch (socket: TestSocket, batch: RequestCase[]): Promise<{ answers: Map<string, Frame>, problem: string | null }> {
  const start = socket.frames.length
  for (const request of batch) socket.ws.send(request.text)
  const want = new Set(batch.map((r) => r.id))
  const answers = new Map<string, Frame>()
  const deadline = Date.now() + 20_000
  while (answers.size < want.size && Date.now() < deadline && !socket.isClosed) {
    for (const frame of socket.frames.slice(start)) {
      if (frame.type === 'res' && typeof frame.id === 'string' && want.has(frame.id)) answers.set(frame.id, frame)
    }
    if (answers.size < want.size) await new Promise((resolve) => setTimeout(resolve, 5))
  }
  for (const frame of socket.frames.slice(start)) {
    if (frame.type === 'res' && typeof frame.id === 'string' && want.has(frame.id)) answers.set(frame.id, frame)
  }
  const extra = socket.frames.slice(start).filter((f) => f.type === 'res' && !want.has(f.id as string))
  if (socket.isClosed) return { answers, problem: `socket closed: ${JSON.stringify(await socket.closed)}` }
  if (answers.size < want.size) return { answers, problem: `${want.size - answers.size} of ${want.size} requests unanswered within 20 s` }
  if (extra.length > 0) return { answers, problem: `answers with ids nobody sent: ${JSON.stringify(extra).slice(0, 300)}` }
  return { answers, problem: null }
}

function explain (request: RequestCase, answer: Frame | undefined, problem: string): string {
  return `${problem}; sent ${request.text.slice(0, 300)}${request.text.length > 300 ? '…' : ''}; got ${JSON.stringify(answer)?.slice(0, 300)}`
}

/** The exact answer a probe (no scopes) gets: PROTOCOL.md's method table, scope before params. */
function checkProbeAnswer (request: RequestCase, answer: Frame): string | null {
  if (answer.type !== 'res' || answer.id !== request.id) return 'not a response to this id'
  const scope = Object.hasOwn(METHOD_SCOPES, request.method) ? METHOD_SCOPES[request.method] : undefined
  const error = answer.error as { code?: unknown, message?: unknown, details?: Record<string, unknown> } | undefined
  if (scope === undefined) {
    return answer.ok === false && error?.code === 'INVALID_REQUEST' && error.message === `unknown method: ${request.method}` ? null : 'expected unknown method'
  }
  if (scope !== null) {
    const want = { code: 'FORBIDDEN', message: `missing scope: ${scope}`, details: { code: 'MISSING_SCOPE', missingScope: scope, requiredScopes: [scope] } }
    return answer.ok === false && JSON.stringify(error) === JSON.stringify(want) ? null : `expected FORBIDDEN missing scope: ${scope}`
  }
  // health: params absent, null or an object are fine; anything else names params.
  const params = request.params
  const fine = params === undefined || params === null || (typeof params === 'object' && !Array.isArray(params))
  if (fine) {
    const payload = answer.payload as { ok?: unknown, ts?: unknown } | undefined
    return answer.ok === true && payload?.ok === true && typeof payload.ts === 'number' && Object.keys(payload).length === 2 ? null : 'expected health ok'
  }
  return answer.ok === false && error?.code === 'INVALID_REQUEST' && typeof error.message === 'string' && error.message.includes('params') ? null : 'expected INVALID_REQUEST naming params'
}

/** What a device connection may get back: ok, or a documented error that is never INTERNAL / UNAVAILABLE. */
function checkDeviceAnswer (request: RequestCase, answer: Frame, held: readonly string[]): string | null {
  if (answer.type !== 'res' || answer.id !== request.id) return 'not a response to this id'
  const scope = Object.hasOwn(METHOD_SCOPES, request.method) ? METHOD_SCOPES[request.method] : undefined
  const covered = (s: string): boolean => held.some((h) => h === s || h === 'operator.admin' || (h === 'operator.write' && s === 'operator.read'))
  const error = answer.error as { code?: unknown, message?: unknown, details?: Record<string, unknown> } | undefined
  if (scope === undefined) return answer.ok === false && error?.message === `unknown method: ${request.method}` ? null : 'expected unknown method'
  if (scope !== null && !covered(scope)) {
    return answer.ok === false && error?.code === 'FORBIDDEN' && error.message === `missing scope: ${scope}` ? null : `expected FORBIDDEN missing scope: ${scope}`
  }
  if (answer.ok === true) {
    if (typeof answer.payload !== 'object' || answer.payload === null) return 'ok without a payload object'
    if (request.method === 'cron.list') {
      const page = answer.payload as Record<string, unknown>
      for (const key of ['jobs', 'total', 'offset', 'limit', 'hasMore', 'nextOffset', 'snapshotRevision']) if (!(key in page)) return `cron.list page without ${key}`
    }
    if (request.method === 'cron.add') pools.jobs.push((answer.payload as { id: string }).id)
    return null
  }
  if (typeof error?.code !== 'string' || !ERROR_CODES.has(error.code)) return `undocumented error code ${String(error?.code)}`
  if (error.code === 'INTERNAL' || error.code === 'UNAVAILABLE') return `${error.code} for a request`
  if (typeof error.message !== 'string' || error.message === '') return 'error without a message'
  if (error.code === 'RATE_LIMITED') return null
  const detailsCode = error.details?.code
  if (typeof detailsCode !== 'string' || !METHOD_DETAIL_CODES.has(detailsCode)) return `undocumented details.code ${String(detailsCode)}`
  if (error.code === 'FORBIDDEN') {
    // Only a grant beyond the connection's own reach: the scope it names is one the connection lacks.
    const missing = error.details?.missingScope
    if (detailsCode !== 'MISSING_SCOPE' || typeof missing !== 'string' || covered(missing)) return `FORBIDDEN for a scope the connection holds: ${String(missing)}`
  }
  return null
}

// ---------------------------------------------------------------------------

const secrets = instanceSecrets(TEST_DATABASE_URL, uniqueSchema('fuzz'))
const instance = await startInstance({ name: 'fuzz', secrets, env: { MAX_PAYLOAD_BYTES: String(MAX_PAYLOAD) } })
t.teardown(async () => {
  await instance.stop()
  await dropSchema(secrets.databaseSchema)
})

let framesSent = 0
// A hung property fails instead of hanging the run: the limit grows with FUZZ_RUNS (about 30 ms a frame).
const fcParams = (numRuns: number) => ({ seed: SEED, numRuns, endOnFailure: true, interruptAfterTimeLimit: Math.max(120_000, TOTAL * 30), markInterruptAsFailure: true })

/**
 * fast-check's own report prints the whole counterexample (batches of frames
 * up to 190 KB, nesting deep enough to overflow its printer): report the
 * property's own message instead, which names the frame, with what replays it.
 */
function failure<T> (details: fc.RunDetails<T>): string {
  if (!details.failed) return 'passed'
  const replay = `replay: FUZZ_SEED=${details.seed} (counterexample path ${details.counterexamplePath ?? '?'})`
  const error = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance)
  const instanceState = instance.exit() === null ? '' : `; the instance exited ${JSON.stringify(instance.exit())}: ${instance.output().slice(-3000)}`
  return `${details.interrupted ? 'interrupted' : `failed after ${details.numRuns} runs, shrunk ${details.numShrinks} times`}; ${replay}: ${error.slice(0, 3000)}${instanceState}`
}

function assertAlive (t: Pick<typeof import('tap').default, 'equal'>, when: string): void {
  t.equal(instance.exit(), null, `the instance is still running ${when}`)
}

// Everything the fuzzed instance holds before the storm, after a full GC.
const before: ProbeReport = await (async () => {
  // Warm up: the paths the storm takes, once, so that lazy initialisation is not counted as growth.
  const warm = await probeConnect(instance)
  await warm.request('health')
  await warm.close()
  await requestPairing(instance, ['operator.read'])
  return await instance.probe()
})()
const poolBefore = (await instance.metrics()).get('scopegate_db_pool_connections{state="total"}') ?? 0

t.test(`[A] ${RUNS_A * BATCH_A} requests on probe connections, ${BATCH_A} per socket: each gets the exact answer of the method table`, async (t) => {
  const property = fc.asyncProperty(fc.uniqueArray(requestFrame(anyParams), { minLength: BATCH_A, maxLength: BATCH_A, selector: (r) => r.id }), async (batch) => {
    const socket = await probeConnect(instance)
    try {
      framesSent += batch.length
      const { answers, problem } = await sendBatch(socket, batch)
      if (problem !== null) throw new Error(problem)
      for (const request of batch) {
        const answer = answers.get(request.id) as Frame
        const wrong = checkProbeAnswer(request, answer)
        if (wrong !== null) throw new Error(explain(request, answer, wrong))
      }
    } finally {
      await socket.close()
    }
  })
  const details = await fc.check(property, fcParams(RUNS_A))
  t.notOk(details.failed, failure(details))
  assertAlive(t, 'after [A]')
})

t.test(`[B] ${RUNS_B * BATCH_B} requests with valid-looking params for every method on device connections (operator.admin; operator.pairing only)`, async (t) => {
  const admin = await pairDevice(instance, ['operator.admin'])
  const pairer = await pairDevice(instance, ['operator.pairing'])
  // Devices and requests that exist, for the generated params to name.
  for (let i = 0; i < 4; i++) pools.devices.push((await pairDevice(instance, ['operator.read'])).device.id)
  let run = 0
  const property = fc.asyncProperty(fc.uniqueArray(methodRequest, { minLength: BATCH_B, maxLength: BATCH_B, selector: (r) => r.id }), async (batch) => {
    // A fresh pending request every run (some get approved, rejected or superseded by the batch).
    const pending = await requestPairing(instance, SCOPES.slice(0, 1 + (run % SCOPES.length)))
    pools.requests.push(pending.requestId)
    pools.devices.push(pending.device.id)
    const who = run++ % 2 === 0 ? { paired: admin, scopes: ['operator.admin'] } : { paired: pairer, scopes: ['operator.pairing'] }
    const conn = await who.paired.device.connect(instance.wsUrl, { deviceToken: who.paired.deviceToken, scopes: who.scopes })
    if (conn.res.ok !== true) throw new Error(`device connect refused: ${JSON.stringify(conn.res)}`)
    try {
      framesSent += batch.length
      const { answers, problem } = await sendBatch(conn.socket, batch)
      if (problem !== null) throw new Error(problem)
      for (const request of batch) {
        const answer = answers.get(request.id) as Frame
        const wrong = checkDeviceAnswer(request, answer, who.scopes)
        if (wrong !== null) throw new Error(explain(request, answer, wrong))
      }
    } finally {
      await conn.socket.close()
    }
  })
  const details = await fc.check(property, fcParams(RUNS_B))
  t.notOk(details.failed, failure(details))
  assertAlive(t, 'after [B]')

  t.test('zero unauthorized grants: every scope a device holds was granted by an audited decision within its actor\'s reach', async (t) => {
    const audit = await allAudit(instance)
    const granted = new Map<string, Set<string>>()
    const grant = (deviceId: string | undefined, scopes: unknown): void => {
      if (deviceId === undefined || !Array.isArray(scopes)) return
      const set = granted.get(deviceId) ?? new Set<string>()
      for (const scope of scopes) set.add(String(scope))
      granted.set(deviceId, set)
    }
    for (const row of audit) {
      if (row.action === 'pairing.approved') grant(row.deviceId, row.details.grantedScopes)
      if (row.action === 'scopes.added' || row.action === 'scopes.set') grant(row.deviceId, row.details.after)
    }
    const byPairer = audit.filter((row) => row.action === 'pairing.approved' && row.actor === pairer.device.id)
    t.same(byPairer.filter((row) => (row.details.grantedScopes as string[]).some((s) => s !== 'operator.pairing')), [],
      `the ${byPairer.length} approvals by the operator.pairing-only device granted nothing but operator.pairing`)
    const actors = new Set(audit.filter((row) => ['pairing.approved', 'scopes.set', 'scopes.added', 'token.rotated'].includes(row.action)).map((row) => row.actor))
    t.same([...actors].filter((a) => a !== 'suite-admin' && a !== admin.device.id && a !== pairer.device.id), [], 'grants come only from the admin JWT, the admin device and the pairing device')
    const devices = await listAll(instance, '/api/v1/devices') as unknown as Array<{ deviceId: string, roleScopes: Record<string, string[]> }>
    const unexplained = devices.flatMap((d) => Object.values(d.roleScopes).flat().filter((scope) => granted.get(d.deviceId)?.has(scope) !== true).map((scope) => `${d.deviceId} ${scope}`))
    t.same(unexplained, [], `each scope of the ${devices.length} paired devices comes from an audited grant`)
  })
})

t.test(`[C] ${RUNS_C * BATCH_C} single frames before the handshake, one socket each: documented refusal, close or hello-ok`, async (t) => {
  const property = fc.asyncProperty(fc.array(preCase, { minLength: BATCH_C, maxLength: BATCH_C }), async (batch) => {
    framesSent += batch.length
    const problems = (await Promise.all(batch.map(async (c) => await runPreCase(instance, c)))).filter((p) => p !== null)
    if (problems.length > 0) throw new Error(problems.slice(0, 3).join('\n'))
  })
  const details = await fc.check(property, fcParams(RUNS_C))
  t.notOk(details.failed, failure(details))
  assertAlive(t, 'after [C]')
})

t.test(`[D] ${RUNS_D * BATCH_D} single frames right after a handshake that must close: 1003 invalid frame (1009 oversized, 1007 bad UTF-8), never an answer`, async (t) => {
  const property = fc.asyncProperty(fc.array(brokenFrame, { minLength: BATCH_D, maxLength: BATCH_D }), async (batch) => {
    framesSent += batch.length
    const problems = (await Promise.all(batch.map(async (frame) => await runPostCloseCase(instance, frame)))).filter((p) => p !== null)
    if (problems.length > 0) throw new Error(problems.slice(0, 3).join('\n'))
  })
  const details = await fc.check(property, fcParams(RUNS_D))
  t.notOk(details.failed, failure(details))
  assertAlive(t, 'after [D]')
})

t.test('after the storm the instance is healthy, leaks nothing and logged no error', async (t) => {
  t.ok(framesSent >= TOTAL, `${framesSent} generated frames sent (FUZZ_RUNS=${TOTAL}, FUZZ_SEED=${SEED})`)
  assertAlive(t, 'at the end')
  const healthz = await httpCall(`${instance.httpUrl}/healthz`)
  t.equal(healthz.status, 200, '/healthz answers 200')
  t.equal((await httpCall(`${instance.httpUrl}/readyz`)).status, 200, '/readyz answers 200')
  const fresh = await probeConnect(instance)
  t.match(await fresh.request('health'), { ok: true, payload: { ok: true } }, 'a fresh connect still works')
  await fresh.close()
  const refused = await new TestDevice().connect(instance.wsUrl, { token: instance.config.gatewayToken, scopes: ['operator.read'] })
  t.equal(refused.res.error?.code, 'NOT_PAIRED', 'a device connect still reaches the database')
  await refused.socket.closed

  // Sockets the storm left behind close within a moment (the client side terminated them all).
  let metrics = await instance.metrics()
  for (let i = 0; i < 50 && [...metrics].some(([k, v]) => k.startsWith('scopegate_connections{') && v > 0); i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    metrics = await instance.metrics()
  }
  t.same([...metrics].filter(([k, v]) => k.startsWith('scopegate_connections{') && v > 0), [], 'no connection is left open on the instance')
  t.same([...metrics].filter(([k, v]) => /outcome="(INTERNAL|UNAVAILABLE)"/.test(k) && v > 0), [], 'no RPC or handshake ended INTERNAL or UNAVAILABLE')
  t.same([...metrics].filter(([k, v]) => k.startsWith('scopegate_closes_total{code="1011"') && v > 0), [], 'no close 1011 internal error')

  const after = await instance.probe()
  const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`
  t.ok(after.heapUsed - before.heapUsed <= HEAP_BOUND, `heap after a full GC: ${mib(before.heapUsed)} before, ${mib(after.heapUsed)} after (bound +${mib(HEAP_BOUND)})`)
  t.ok(after.rss - before.rss <= RSS_BOUND, `RSS: ${mib(before.rss)} before, ${mib(after.rss)} after (bound +${mib(RSS_BOUND)})`)
  // The database pool grows to its size under load and keeps idle clients: every other TCP socket would be a leak.
  const pool = metrics.get('scopegate_db_pool_connections{state="total"}') ?? 0
  const sockets = (r: ProbeReport): number => r.resources.TCPSocketWrap ?? 0
  t.ok(sockets(after) - pool <= sockets(before) - poolBefore, `TCP sockets held: ${sockets(before)} before (${poolBefore} pool clients), ${sockets(after)} after (${pool} pool clients)`)
  // Timers belong to features (keepalive, health checks, pairing expiry, the scheduler's jobs), not to connections:
  // a timer leaked per connection would show as hundreds after thousands of sockets.
  const timers = (r: ProbeReport): number => r.resources.Timeout ?? 0
  t.ok(timers(after) <= timers(before) + 16, `timers: ${timers(before)} before, ${timers(after)} after (bound +16)`)
  t.same(instance.errorLines().map((line) => line.slice(0, 600)), [], 'the instance logged nothing at level error or fatal')
})

// ---------------------------------------------------------------------------
// The parser and validators on their own (no socket).

t.test('pure properties of the frame codec and the connect params', async (t) => {
  const report = <T,>(name: string, details: fc.RunDetails<T>): void => { t.notOk(details.failed, `${name}: ${failure(details)}`) }
  const runs = (n: number): { seed: number, numRuns: number } => ({ seed: SEED, numRuns: Math.max(10, Math.round(n * TOTAL / 10_000)) })

  report('isRequestFrame accepts exactly objects with type "req" and a string id and method of 1 to 128 characters', fc.check(fc.property(
    fc.oneof(
      anyJson,
      fc.record({ type: maybeWeird(fc.constantFrom('req', 'res')), id: maybeWeird(idString), method: maybeWeird(methodName), params: anyJson }, { requiredKeys: [] }),
      requestFrame(anyParams, methodName, false).map((r) => JSON.parse(r.text) as unknown)
    ),
    (value) => isRequestFrame(value) === (classify(JSON.stringify(value) ?? 'null', false).kind === 'request')
  ), runs(1500)))

  const built = connectBuilder.map((build) => build({ nonce: randomUUID(), ts: Date.now() }, 'gateway-token-0123456789'))
  report('a single wrong-typed connect field fails the schema, and invalidField names that field', fc.check(fc.property(
    built.filter((spec) => spec.expect !== undefined),
    (spec) => !isConnectParams(spec.params) && `invalid connect params: ${invalidField(isConnectParams.errors)}` === spec.expect
  ), runs(1000)))

  report('connect params with well-typed fields of allowed lengths pass the schema, whatever characters they hold', fc.check(fc.property(
    built.filter((spec) => !spec.mutated),
    (spec) => isConnectParams(spec.params)
  ), runs(1000)))

  report('truncateReason: a prefix of whole characters, at most 123 bytes, and the next character would not fit', fc.check(fc.property(
    fc.string({ unit: oddChar, maxLength: 200 }),
    (input) => {
      const out = truncateReason(input)
      const bytes = Buffer.byteLength(out)
      if (!input.startsWith(out) || bytes > 123) return false
      if (out === input) return true
      const next = String.fromCodePoint(input.codePointAt(out.length) as number)
      return bytes + Buffer.byteLength(next) > 123
    }
  ), runs(2000)))

  report('toProtocolError maps anything thrown to a documented code and never throws itself', fc.check(fc.property(
    fc.oneof(fc.anything(), fc.record({ code: fc.string(), statusCode: fc.integer({ min: 100, max: 599 }), message: fc.string(), details: fc.option(fc.dictionary(fc.string(), fc.jsonValue())) })),
    (thrown) => {
      const shape = toProtocolError(thrown)
      return ERROR_CODES.has(shape.code) && typeof shape.message === 'string' && (shape.code !== 'INTERNAL' || shape.message === 'internal error')
    }
  ), runs(2000)))

  const signer = new TestDevice()
  const signedFields = fc.record({
    clientId: fc.string({ unit: oddChar, maxLength: 20 }),
    clientMode: fc.string({ unit: oddChar, maxLength: 10 }),
    role: fc.constantFrom('operator', 'node'),
    scopes: fc.subarray(SCOPES),
    signedAt: fc.nat(),
    token: fc.string({ maxLength: 30 }),
    nonce: fc.uuid(),
    platform: fc.string({ maxLength: 10 }),
    deviceFamily: fc.string({ maxLength: 10 })
  })
  const SIGNED = ['clientId', 'clientMode', 'role', 'scopes', 'signedAt', 'token', 'nonce', 'platform', 'deviceFamily', 'deviceId'] as const
  report('a v3 or v2 signature verifies, and changing any field it signs breaks it', fc.check(fc.property(
    signedFields, fc.boolean(), fc.constantFrom(...SIGNED),
    (f, v3, changed) => {
      const signed: SignedFields = { deviceId: signer.id, ...f }
      const signature = signer.sign(v3 ? signaturePayloadV3(signed) : signaturePayloadV2(signed))
      if (!verifyDeviceSignature(signer.publicKey, signature, signed)) return false
      const other: SignedFields = { ...signed }
      switch (changed) {
        case 'scopes': other.scopes = signed.scopes.length > 0 ? signed.scopes.slice(1) : ['operator.read']; break
        case 'signedAt': other.signedAt = signed.signedAt + 1; break
        case 'role': other.role = signed.role === 'operator' ? 'node' : 'operator'; break
        case 'deviceId': other.deviceId = '0'.repeat(64); break
        default: other[changed] = signed[changed] + 'x'
      }
      // v2 does not sign platform and deviceFamily: only those may change under a v2 signature.
      const unsignedByV2 = !v3 && (changed === 'platform' || changed === 'deviceFamily')
      return verifyDeviceSignature(signer.publicKey, signature, other) === unsignedByV2
    }
  ), runs(300)))
})

interface AuditRow { actor: string, action: string, deviceId?: string, requestId?: string, details: Record<string, unknown> }

async function listAll (server: Instance, path: string): Promise<Array<Record<string, unknown>>> {
  const items: Array<Record<string, unknown>> = []
  let cursor: string | null = null
  do {
    const res = await server.api('GET', `${path}${path.includes('?') ? '&' : '?'}limit=500${cursor !== null ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
    if (res.status !== 200) throw new Error(`${path}: ${res.status} ${JSON.stringify(res.body)}`)
    const page = res.body as { items: Array<Record<string, unknown>>, nextCursor: string | null }
    items.push(...page.items)
    cursor = page.nextCursor
  } while (cursor !== null)
  return items
}

async function allAudit (server: Instance): Promise<AuditRow[]> {
  return await listAll(server, '/api/v1/audit') as unknown as AuditRow[]
}
