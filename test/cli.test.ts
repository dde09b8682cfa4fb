// The CLI as a user runs it: `node bin/scopegate.js …` in a subprocess. The
// shim loads dist/, which `npm test` builds first (the pretest script).
import { spawn, type ChildProcess } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { loadConfig } from '../src/config.ts'
import { cleanEnv, ROOT, runCli, SHIM, type RunResult } from './helpers/cli.ts'
import { TestDevice } from './helpers/device.ts'
import { startServer, TEST_DATABASE_URL } from './helpers/server.ts'
import { freePort } from './helpers/ports.ts'

const JWT_SECRET = 'cli-test-secret-'.padEnd(48, 'x')
const GATEWAY_TOKEN = 'cli-test-gateway-token'
const UNREACHABLE_DB = 'postgres://nobody@127.0.0.1:1/none'

const cli = runCli

function tempDir (t: { teardown: (fn: () => unknown) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'scopegate-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function decodeJwt (token: string): { header: any, claims: any, signature: string, signed: string } {
  const parts = token.split('.')
  if (parts.length !== 3) throw new Error(`not a JWT: ${token}`)
  const [header = '', claims = '', signature = ''] = parts
  const json = (part: string): any => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'))
  return { header: json(header), claims: json(claims), signature, signed: `${header}.${claims}` }
}

const STACK_LINE = /^\s+at .+:\d+:\d+\)?$/m

// About 30 node processes, each loading the CLI: more than the default 30 s
// when two test files share the two cores.
t.setTimeout(300_000)

t.test('admin-token prints only an HS256 JWT with the default claims', async (t) => {
  const dataDir = join(tempDir(t), 'unused')
  // DATABASE_URL points nowhere and there is no gateway token: neither is needed.
  const before = Math.floor(Date.now() / 1000)
  const res = await cli(['admin-token'], { JWT_SECRET, DATABASE_URL: UNREACHABLE_DB, DATA_DIR: dataDir })
  t.equal(res.code, 0, res.stderr)
  t.match(res.stdout, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n$/, 'stdout is the token and a newline, nothing else')
  t.match(res.stderr, /admin token for admin \(admin\)/, 'the hint goes to stderr')
  t.notMatch(res.stderr, res.stdout.trim(), 'stderr does not repeat the token')
  t.notOk(existsSync(dataDir), 'nothing is written to DATA_DIR when JWT_SECRET is given')

  const { header, claims, signature, signed } = decodeJwt(res.stdout.trim())
  t.match(header, { alg: 'HS256' })
  t.same(Object.keys(claims).sort(), ['exp', 'iat', 'role', 'sub'])
  t.equal(claims.sub, 'admin')
  t.equal(claims.role, 'admin')
  t.ok(Number.isInteger(claims.iat) && claims.iat >= before - 1 && claims.iat <= Math.floor(Date.now() / 1000) + 1, 'iat is now')
  t.equal(claims.exp, claims.iat + 3600, 'valid one hour by default')
  t.equal(signature, createHmac('sha256', JWT_SECRET).update(signed).digest('base64url'), 'signed with JWT_SECRET')
})

t.test('admin-token --sub --role --ttl are reflected in the claims', async (t) => {
  const res = await cli(['admin-token', '--sub', 'alice', '--role', 'viewer', '--ttl', '30m'], { JWT_SECRET })
  t.equal(res.code, 0, res.stderr)
  const { claims } = decodeJwt(res.stdout.trim())
  t.match(claims, { sub: 'alice', role: 'viewer' })
  t.equal(claims.exp - claims.iat, 1800)
  t.match(res.stderr, /alice \(viewer\), valid 30 min/)

  const ttls = [['90s', 90], ['2h', 7200], ['1d', 86_400], ['5000', 5]] as const
  const results = await Promise.all(ttls.map(async ([ttl]) => await cli(['admin-token', '--ttl', ttl], { JWT_SECRET })))
  ttls.forEach(([ttl, seconds], i) => {
    const other = results[i] as RunResult
    t.equal(other.code, 0, other.stderr)
    const decoded = decodeJwt(other.stdout.trim()).claims
    t.equal(decoded.exp - decoded.iat, seconds, `--ttl ${ttl}`)
  })
})

t.test('usage errors exit 2 with a message on stderr and nothing on stdout', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['admin-token', '--role', 'root'], /argument 'root' is invalid\. Allowed choices are admin, viewer/],
    [['admin-token', '--ttl', 'soon'], /--ttl <duration>.*expected a positive duration/],
    [['admin-token', '--ttl', '0'], /expected a positive duration/],
    [['admin-token', '--sub'], /argument missing/],
    [['admin-token', '--frobnicate'], /unknown option '--frobnicate'/],
    [['frobnicate'], /unknown command 'frobnicate'/],
    [[], /Usage: scopegate/]
  ]
  const results = await Promise.all(cases.map(async ([args]) => await cli(args, { JWT_SECRET })))
  for (const [i, [args, message]] of cases.entries()) {
    const res = results[i] as RunResult
    t.equal(res.code, 2, `scopegate ${args.join(' ')} exits 2`)
    t.match(res.stderr, message)
    t.equal(res.stdout, '', 'nothing on stdout')
    t.notMatch(res.stderr, STACK_LINE, 'no stack trace')
  }

  const [help, version] = await Promise.all([cli(['--help']), cli(['--version'])])
  t.equal(help.code, 0)
  t.match(help.stdout, /admin-token/)
  t.equal(version.code, 0)
  t.equal(version.stdout.trim(), JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version)
})

t.test('admin-token without a secret it can use names JWT_SECRET', async (t) => {
  const [res, short] = await Promise.all([
    cli(['admin-token'], { DATABASE_URL: UNREACHABLE_DB, GATEWAY_TOKEN }),
    cli(['admin-token'], { JWT_SECRET: 'short' })
  ])
  t.equal(res.code, 2)
  t.equal(res.stdout, '')
  t.match(res.stderr, /^scopegate: invalid configuration: JWT_SECRET is required when DATABASE_URL is set/)
  t.notMatch(res.stderr, STACK_LINE)

  t.equal(short.code, 2)
  t.match(short.stderr, /JWT_SECRET must NOT have fewer than 32 characters/)
  t.notMatch(short.stderr, /short\b(?! ?than)/, 'the bad secret is not echoed')
})

t.test('a printed admin token is accepted by a server with the same secret', async (t) => {
  const [server, ...printed] = await Promise.all([
    startServer(t, { jwtSecret: JWT_SECRET }),
    cli(['admin-token', '--sub', 'ops'], { JWT_SECRET }),
    cli(['admin-token', '--role', 'viewer'], { JWT_SECRET }),
    cli(['admin-token'], { JWT_SECRET: JWT_SECRET.replace(/x$/, 'y') })
  ])
  const [admin, viewer, otherSecret] = printed.map((res) => res.stdout.trim())
  const expiring = (await cli(['admin-token', '--ttl', '1s'], { JWT_SECRET })).stdout.trim()

  const listed = await server.api('GET', '/api/v1/pairing-requests', { token: admin })
  t.equal(listed.status, 200, JSON.stringify(listed.body))
  t.same(listed.body, { items: [], nextCursor: null })

  t.equal((await server.api('GET', '/api/v1/pairing-requests', { token: viewer })).status, 200, 'a viewer may read')
  const write = await server.api('POST', '/api/v1/pairing-requests/00000000-0000-4000-8000-000000000000/reject', { token: viewer })
  t.equal(write.status, 403, 'a viewer may not change anything')
  t.equal((await server.api('GET', '/api/v1/pairing-requests', { token: otherSecret })).status, 401, 'another secret is refused')

  await new Promise((resolve) => setTimeout(resolve, 2100))
  t.equal((await server.api('GET', '/api/v1/pairing-requests', { token: expiring })).status, 401, 'an expired token is refused')
})

t.test('gateway-token prints GATEWAY_TOKEN, or the token generated in DATA_DIR', async (t) => {
  const fromEnv = await cli(['gateway-token'], { GATEWAY_TOKEN, DATABASE_URL: UNREACHABLE_DB, JWT_SECRET })
  t.equal(fromEnv.code, 0, fromEnv.stderr)
  t.equal(fromEnv.stdout, `${GATEWAY_TOKEN}\n`)

  const dataDir = join(tempDir(t), 'data')
  const generated = await cli(['gateway-token'], { DATA_DIR: dataDir })
  t.equal(generated.code, 0, generated.stderr)
  const token = generated.stdout.trim()
  t.ok(token.length >= 32)
  t.equal(readFileSync(join(dataDir, 'gateway-token'), 'utf8').trim(), token, 'stored in DATA_DIR')
  t.equal((await cli(['gateway-token'], { DATA_DIR: dataDir })).stdout.trim(), token, 'the same token next time')
  t.equal(loadConfig({ DATA_DIR: dataDir }).gatewayToken, token, 'the token the server loads')

  const missing = await cli(['gateway-token'], { DATABASE_URL: UNREACHABLE_DB, JWT_SECRET })
  t.equal(missing.code, 2)
  t.match(missing.stderr, /GATEWAY_TOKEN is required when DATABASE_URL is set/)
})

t.test('serve with a bad configuration exits non-zero, naming the variable, without a stack', async (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ PORT: 'abc' }, /PORT must be integer/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL must be equal to one of the allowed values/],
    [{ DATABASE_URL: 'mysql://root@localhost/x' }, /DATABASE_URL must match/],
    [{ DATABASE_URL: TEST_DATABASE_URL, JWT_SECRET }, /GATEWAY_TOKEN is required when DATABASE_URL is set/]
  ]
  const results = await Promise.all(cases.map(async ([env]) => await cli(['serve'], { DATA_DIR: join(tempDir(t), 'data'), ...env })))
  for (const [i, [env, message]] of cases.entries()) {
    const res = results[i] as RunResult
    t.not(res.code, 0, `${JSON.stringify(env)}: exit ${res.code}`)
    t.match(res.stderr, /^scopegate: invalid configuration: /)
    t.match(res.stderr, message)
    t.notMatch(res.stderr, STACK_LINE, 'no stack trace')
    t.equal(res.stdout, '', 'no log line: the server never started')
  }

  const unreachable = await cli(['serve'], { DATABASE_URL: UNREACHABLE_DB, GATEWAY_TOKEN, JWT_SECRET, PORT: '0' })
  t.equal(unreachable.code, 1, 'a database that cannot be reached is a failure, not a usage error')
  t.match(unreachable.stderr, /^scopegate: connect ECONNREFUSED 127\.0\.0\.1:1/)
  t.notMatch(unreachable.stderr, STACK_LINE)
})


interface Served { child: ChildProcess, output: () => string, exited: Promise<number | null> }

function startServe (env: Record<string, string>): Served {
  const child = spawn(process.execPath, [SHIM, 'serve'], { env: cleanEnv(env), cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return { child, output: () => output, exited }
}

async function waitHealthy (port: number, served: Served, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (served.child.exitCode !== null) throw new Error(`serve exited ${served.child.exitCode}: ${served.output()}`)
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`)
      if (res.ok) return
    } catch {}
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  throw new Error(`serve not healthy within ${timeoutMs} ms: ${served.output()}`)
}

t.test('embedded mode: one serve per DATA_DIR; the CLI tokens work against it', async (t) => {
  const dataDir = join(tempDir(t), 'data')
  // The tokens the CLI prints before the server ever ran are the ones it uses.
  const [gatewayToken, adminToken] = (await Promise.all([cli(['gateway-token'], { DATA_DIR: dataDir }), cli(['admin-token'], { DATA_DIR: dataDir })]))
    .map((res) => res.stdout.trim())

  const [portA, portB] = [await freePort(), await freePort()]
  const first = startServe({ DATA_DIR: dataDir, PORT: String(portA), LOG_LEVEL: 'warn' })
  t.teardown(async () => {
    if (first.child.exitCode === null) first.child.kill('SIGKILL')
    await first.exited
  })
  await waitHealthy(portA, first)
  t.ok(existsSync(join(dataDir, 'pglite', 'pglite.lock')), 'the running server holds the lock file')

  const second = await cli(['serve'], { DATA_DIR: dataDir, PORT: String(portB) })
  t.equal(second.code, 1, 'a second serve on the same DATA_DIR exits 1')
  t.match(second.stderr, new RegExp(`^scopegate: the embedded database in .*pglite is in use by process ${first.child.pid}; ` +
    'PGlite serves one process only: stop it, use another DATA_DIR, or set DATABASE_URL to run several instances'))
  t.notMatch(second.stderr, STACK_LINE)
  await t.rejects(fetch(`http://127.0.0.1:${portB}/healthz`), 'the second never listened')

  // The first one is unharmed, and accepts the tokens the CLI printed.
  const device = new TestDevice()
  const refused = await device.connect(`ws://127.0.0.1:${portA}/`, { token: gatewayToken, scopes: ['operator.read'] })
  t.equal(refused.res.error?.message, 'pairing required (not-paired)', 'the gateway token from DATA_DIR is the server\'s')
  await refused.socket.closed
  const wrong = await device.connect(`ws://127.0.0.1:${portA}/`, { token: 'not-the-gateway-token', scopes: ['operator.read'] })
  t.not(wrong.res.error?.message, 'pairing required (not-paired)', 'a wrong gateway token is refused before pairing')
  await wrong.socket.closed
  const requests = await fetch(`http://127.0.0.1:${portA}/api/v1/pairing-requests`, { headers: { authorization: `Bearer ${adminToken}` } })
  t.equal(requests.status, 200, 'the admin token from DATA_DIR is accepted')
  const body = await requests.json() as { items: Array<{ deviceId: string }> }
  t.same(body.items.map((item) => item.deviceId), [device.id])

  // SIGTERM: a graceful exit that releases the lock.
  first.child.kill('SIGTERM')
  t.equal(await first.exited, 0, 'serve exits 0 on SIGTERM')
  t.notOk(existsSync(join(dataDir, 'pglite', 'pglite.lock')), 'and removes its lock file')
})

t.test('serve on a port already taken exits 1 with one line and releases the embedded database', async (t) => {
  const dataDir = join(tempDir(t), 'data')
  const blocker = createServer()
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { blocker.close() })
  const address = blocker.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0

  const res = await cli(['serve'], { DATA_DIR: dataDir, PORT: String(port), LOG_LEVEL: 'warn' }, 60_000)
  t.equal(res.code, 1, res.stderr)
  t.match(res.stderr, new RegExp(`^scopegate: listen EADDRINUSE: address already in use 127\\.0\\.0\\.1:${port}\\n$`))
  t.notMatch(res.stderr, STACK_LINE)
  t.notOk(existsSync(join(dataDir, 'pglite', 'pglite.lock')), 'the database was closed and its lock released')
})
