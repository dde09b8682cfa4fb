import t from 'tap'
import { TestDevice } from './helpers/device.ts'
import { startServer } from './helpers/server.ts'

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
