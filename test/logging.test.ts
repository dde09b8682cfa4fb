import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { TestDevice } from './helpers/device.ts'
import { dropSchema, startServer, TEST_DATABASE_URL, uniqueSchema } from './helpers/server.ts'

const BIN = fileURLToPath(new URL('../bin/scopegate.js', import.meta.url))

t.test('logs: one line per connection outcome and admin change, request ids, and no secret anywhere', async (t) => {
  const server = await startServer(t, { logLevel: 'trace' })
  const token = server.config.gatewayToken
  const device = new TestDevice()
  const refused = await device.connect(server.wsUrl, { token, scopes: ['operator.read'] })
  await refused.socket.closed
  const requestId: string = refused.res.error.details.requestId
  const adminJwt = server.adminToken('admin', 'alice')
  t.equal((await server.api('POST', `/api/v1/pairing-requests/${requestId}/approve`, { token: adminJwt })).status, 200)
  const admitted = await device.connect(server.wsUrl, { token, scopes: ['operator.read'] })
  const deviceToken: string = admitted.res.payload.auth.deviceToken
  const signature: string = device.connectParams(admitted.challenge, { token, scopes: ['operator.read'] }).device.signature
  await admitted.socket.close()
  const rotated = await server.api('POST', `/api/v1/devices/${device.id}/tokens/operator/rotate`, { token: adminJwt })
  t.equal(rotated.status, 200)
  await server.api('GET', '/api/v1/devices', { token: 'not-a-jwt' })
  server.app.log.info({ req: { headers: { authorization: `Bearer ${adminJwt}` } }, auth: { token }, device: { signature } }, 'redaction probe')

  await new Promise((resolve) => setTimeout(resolve, 200))
  const logs = server.logs()
  const lines = logs.trim().split('\n').map((line) => JSON.parse(line) as Record<string, any>)
  for (const [name, secret] of Object.entries({ gatewayToken: token, jwtSecret: server.config.jwtSecret, adminJwt, deviceToken, rotatedToken: rotated.body.token, signature })) {
    t.notOk(logs.includes(secret), `the ${name} never appears in the log`)
  }
  t.ok(logs.includes('[redacted]'), 'sensitive fields are censored, not dropped silently')

  const outcomes = lines.filter((line) => line.msg === 'connect refused' || line.msg === 'connect ok')
  t.same(outcomes.map((line) => line.msg), ['connect refused', 'connect ok'], 'one line per connection outcome')
  t.equal(outcomes[0]?.outcome, 'not-paired')
  const actions = lines.filter((line) => line.msg === 'admin action')
  t.same(actions.map((line) => [line.actor, line.method, line.route, line.statusCode]), [
    ['alice', 'POST', '/api/v1/pairing-requests/:id/approve', 200],
    ['alice', 'POST', '/api/v1/devices/:id/tokens/:role/rotate', 200]
  ])
  t.ok(actions.every((line) => typeof line.reqId === 'string'), 'admin lines carry the request id')
  t.ok(lines.some((line) => line.res?.statusCode === 401), 'a refused token is logged as a 401 without the token')
})

t.test('stdout logging is buffered but prompt: a line arrives within a second, and the last line is written on exit', async (t) => {
  const schema = uniqueSchema('logflush')
  t.teardown(async () => await dropSchema(schema))
  const gatewayToken = randomBytes(24).toString('base64url')
  const child = spawn(process.execPath, [BIN, 'serve'], {
    env: { ...process.env, PORT: '0', LOG_LEVEL: 'info', DATABASE_URL: TEST_DATABASE_URL, DATABASE_SCHEMA: schema, GATEWAY_TOKEN: gatewayToken, JWT_SECRET: randomBytes(32).toString('base64url') },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => { child.kill('SIGKILL') })
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { out += chunk.toString() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  const waitForOutput = async (pattern: RegExp, ms: number): Promise<RegExpExecArray | null> => {
    const deadline = Date.now() + ms
    for (;;) {
      const match = pattern.exec(out)
      if (match !== null || Date.now() > deadline) return match
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  const listening = await waitForOutput(/Server listening at http:\/\/127\.0\.0\.1:(\d+)/, 30_000)
  t.ok(listening, `the server says where it listens: ${out}`)
  if (listening === null) return

  const device = new TestDevice()
  const { socket } = await device.connect(`ws://127.0.0.1:${listening[1]}/`, { token: 'wrong', scopes: [] })
  await socket.closed
  const refusedAt = Date.now()
  const line = await waitForOutput(/"msg":"connect refused"/, 5000)
  t.ok(line, 'the refusal is logged while the server runs')
  t.ok(Date.now() - refusedAt < 1000, `and reaches stdout within a second (took ${Date.now() - refusedAt} ms)`)

  child.kill('SIGTERM')
  t.equal(await exited, 0, 'exits 0 on SIGTERM')
  t.match(out.trim().split('\n').at(-1) ?? '', /"msg":"shut down cleanly"/, 'the line logged just before exit was written')
})
