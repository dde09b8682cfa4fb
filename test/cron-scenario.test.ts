import t from 'tap'
import { TestDevice } from './helpers/device.ts'
import { pairDevice } from './helpers/pairing.ts'
import { startServer } from './helpers/server.ts'

t.test('a read-only bot is told why it cannot add a reminder, is upgraded, adds it, and receives the fire once', async (t) => {
  const server = await startServer(t)
  const bot = new TestDevice()
  const token = server.config.gatewayToken

  // Paired for operator.read only.
  const first = await bot.connect(server.wsUrl, { token, scopes: ['operator.read'] })
  await first.socket.closed
  t.equal((await server.api('POST', `/api/v1/pairing-requests/${first.res.error.details.requestId}/approve`)).status, 200)
  const reader = await bot.connect(server.wsUrl, { token, scopes: ['operator.read'] })
  t.equal(reader.res.ok, true)
  const deviceToken: string = reader.res.payload.auth.deviceToken

  const reminder = {
    name: 'stretch',
    enabled: true,
    schedule: { kind: 'at', at: new Date(Date.now() + 1000).toISOString() },
    sessionTarget: 'main',
    wakeMode: 'now',
    payload: { kind: 'systemEvent', text: 'time to stretch' }
  }
  const forbidden = await reader.socket.request('cron.add', reminder)
  t.same(forbidden.error, {
    code: 'FORBIDDEN',
    message: 'missing scope: operator.admin',
    details: { code: 'MISSING_SCOPE', missingScope: 'operator.admin', requiredScopes: ['operator.admin'] }
  })
  const stillOpen = await reader.socket.request('cron.status', {})
  t.equal(stillOpen.ok, true, 'the socket stays open after FORBIDDEN')
  t.match(stillOpen.payload, { enabled: true, jobs: 0, nextWakeAtMs: null })
  await reader.socket.close()

  const upgrade = await bot.connect(server.wsUrl, { deviceToken, scopes: ['operator.admin'] })
  t.equal(upgrade.res.error.code, 'NOT_PAIRED')
  t.equal(upgrade.res.error.message, 'pairing required (scope-upgrade)')
  t.match(upgrade.res.error.details, { code: 'PAIRING_REQUIRED', reason: 'scope-upgrade', requestedScopes: ['operator.admin'], approvedScopes: ['operator.read'] })
  t.same(await upgrade.socket.closed, { code: 1008, reason: 'pairing required (scope-upgrade)' })

  const approved = await server.api('POST', `/api/v1/pairing-requests/${upgrade.res.error.details.requestId}/approve`)
  t.equal(approved.status, 200)
  t.same(approved.body.device.scopes, ['operator.admin', 'operator.read'])

  const admin = await bot.connect(server.wsUrl, { deviceToken, scopes: ['operator.admin'] })
  t.equal(admin.res.ok, true, JSON.stringify(admin.res))
  t.same(admin.res.payload.auth.scopes, ['operator.admin'])
  const added = await admin.socket.request('cron.add', reminder)
  t.equal(added.ok, true, JSON.stringify(added))
  const job = added.payload
  t.match(job, { name: 'stretch', enabled: true, deleteAfterRun: true, ownerDeviceId: bot.id, sessionTarget: 'main', wakeMode: 'now', payload: { kind: 'systemEvent', text: 'time to stretch' } })
  t.type(job.state.nextRunAtMs, 'number')

  const fire = await admin.socket.event('cron.fire', 5000)
  t.match(fire.payload, { jobId: job.id, payload: { kind: 'systemEvent', text: 'time to stretch' } })
  t.type(fire.payload.runId, 'string')
  t.type(fire.payload.firedAtMs, 'number')

  const runs = await admin.socket.request('cron.runs', { id: job.id })
  t.equal(runs.error?.details?.code, 'CRON_JOB_NOT_FOUND', 'an at job is deleted after its run by default')
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(admin.socket.frames.filter((f) => f.event === 'cron.fire').length, 1, 'fired exactly once')
  await admin.socket.close()
})

t.test('a fire for an offline owner is kept and delivered right after its next hello-ok', async (t) => {
  const server = await startServer(t)
  const admin = await pairDevice(server, ['operator.admin'], { keepOpen: true })
  const bot = admin.device
  const added = await admin.socket.request('cron.add', {
    name: 'later', schedule: { kind: 'at', at: new Date(Date.now() + 600).toISOString() }, payload: { kind: 'agentTurn', message: 'hello later' }
  })
  t.equal(added.ok, true)
  await admin.socket.close()
  await new Promise((resolve) => setTimeout(resolve, 1500))
  const back = await bot.connect(server.wsUrl, { deviceToken: admin.deviceToken, scopes: ['operator.read'] })
  t.equal(back.res.ok, true)
  const fire = await back.socket.event('cron.fire')
  t.match(fire.payload, { jobId: added.payload.id, payload: { kind: 'agentTurn', message: 'hello later' } })
  await back.socket.close()
  const again = await bot.connect(server.wsUrl, { deviceToken: admin.deviceToken, scopes: ['operator.read'] })
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(again.socket.frames.filter((f) => f.event === 'cron.fire').length, 0, 'delivered once, not on every connect')
  await again.socket.close()
})
