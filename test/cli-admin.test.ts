// The admin commands as a user runs them: `node bin/scopegate.js …` in a
// subprocess against a live server started here. The shim loads dist/, which
// `npm test` builds first (the pretest script). Each subprocess costs about a
// second, so every test runs several commands against one server, in parallel
// where they do not depend on each other.
import { execFile, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createServer as createHttpServer } from 'node:http'
import t from 'tap'
import type { Command } from 'commander'
import { signAdminToken } from '../src/auth/admin-jwt.ts'
import { buildProgram } from '../src/cli/index.ts'
import { cleanEnv, cliFor, fails, human, json, ROOT, runCli, SHIM, STACK_LINE, type RunResult } from './helpers/cli.ts'
import { pairDevice, requestPairing } from './helpers/pairing.ts'
import { startServer, type TestServer } from './helpers/server.ts'
import { freePort } from './helpers/ports.ts'



// About 75 node processes on a 2-core machine shared with another test file.
t.setTimeout(300_000)

async function run (args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  return await runCli(args, env, 60_000)
}






/** A device that connected once and was refused: returns its pending request id. */
async function pendingRequest (server: TestServer, scopes: string[]): Promise<string> {
  return (await requestPairing(server, scopes)).requestId
}


t.test('requests: list, show, approve, reject; tables and JSON; prefixes', async (t) => {
  const server = await startServer(t)
  const cli = cliFor(server)
  const [first, second, third] = [await pendingRequest(server, ['operator.read', 'operator.write']),
    await pendingRequest(server, ['operator.read']), await pendingRequest(server, ['operator.read'])] as [string, string, string]

  const [table, listed, shown, shownJson] = await Promise.all([
    cli(['requests', 'list']),
    cli(['requests', 'list', '--json']),
    cli(['requests', 'show', first.slice(0, 8)]),
    cli(['requests', 'show', first.slice(0, 13), '--json'])
  ])
  const text = human(t, table, 'requests list')
  t.match(text, /REQUEST .*STATE .*DEVICE .*SCOPES/, 'a header row')
  for (const id of [first, second, third]) {
    t.match(text, id.slice(0, 8), 'ids shortened to 8 characters')
    t.notMatch(text, id, 'not shown in full')
  }
  t.match(text, 'operator.read, operator.write')
  const items = json(t, listed, 'requests list --json')
  t.same(items.map((r: any) => r.requestId).sort(), [first, second, third].sort(), 'every pending request, as an array')
  t.ok(items.every((r: any) => r.state === 'pending'))
  t.match(human(t, shown, 'requests show <8-char prefix>'), new RegExp(`request +│ ${first}`))
  t.same(json(t, shownJson, 'requests show --json'), (await server.api('GET', `/api/v1/pairing-requests/${first}`)).body, 'the REST document')

  const [approved, rejected, approvedJson] = await Promise.all([
    cli(['requests', 'approve', first.slice(0, 8), '--scopes', 'operator.read']),
    cli(['requests', 'reject', second.slice(0, 10)]),
    cli(['requests', 'approve', third, '--json'])
  ])
  t.match(human(t, approved, 'requests approve --scopes'), new RegExp(`^approved request ${first.slice(0, 8)}: device [0-9a-f]{8} may connect as operator with operator.read\\n$`))
  t.match(human(t, rejected, 'requests reject'), new RegExp(`^rejected request ${second.slice(0, 8)} of device [0-9a-f]{8}\\n$`))
  const approval = json(t, approvedJson, 'requests approve --json')
  t.equal(approval.requestId, third)
  t.same(approval.device.roleScopes, { operator: ['operator.read'] })

  const firstDevice = (await server.api('GET', `/api/v1/pairing-requests/${first}`)).body
  t.equal(firstDevice.state, 'approved')
  t.same(firstDevice.grantedScopes, ['operator.read'], 'approved for fewer scopes than asked')

  const [rejectJson, all, short, none, unknown, badScope] = await Promise.all([
    cli(['requests', 'reject', second, '--json']),
    cli(['requests', 'list', '--all', '--json']),
    cli(['requests', 'show', first.slice(0, 7)]),
    cli(['requests', 'approve', 'ffffffff']),
    cli(['requests', 'show', '00000000-0000-4000-8000-000000000000', '--json']),
    cli(['requests', 'approve', third, '--scopes', 'operator.read,operator.root'])
  ])
  fails(t, rejectJson, 1, new RegExp(`^scopegate: refused: pairing request ${second} is rejected: see \`scopegate requests show ${second.slice(0, 8)}\`\\n$`), 'rejecting twice (409)')
  t.same(json(t, all, 'requests list --all --json').map((r: any) => r.state).sort(), ['approved', 'approved', 'rejected'])
  fails(t, short, 2, /too short for a pairing request id: give at least 8 characters/, 'a 7-character prefix')
  fails(t, none, 1, /^scopegate: no pairing request id starts with ffffffff: see `scopegate requests list --all`\n$/, 'a prefix that matches nothing')
  fails(t, unknown, 1, /^scopegate: not found: unknown requestId: 00000000-0000-4000-8000-000000000000: see `scopegate requests list --all`\n$/, 'an unknown full id (404)')
  fails(t, badScope, 2, /unknown scope operator\.root: expected any of operator\.read, /, 'an unknown scope is a usage error')

  const emptyTable = await cli(['requests', 'list'])
  t.equal(emptyTable.code, 0)
  t.equal(emptyTable.stdout, '', 'no pending requests: no table')
  t.match(emptyTable.stderr, /no pending pairing requests/)
})

t.test('devices, grants and tokens; remove asks or needs --yes', async (t) => {
  const server = await startServer(t)
  const cli = cliFor(server)
  const a = await pairDevice(server, ['operator.read', 'operator.write'])
  const b = await pairDevice(server, ['operator.read'])
  const [ida, idb] = [a.device.id, b.device.id]
  const pa = ida.slice(0, 8)

  const [table, listed, shown, shownJson] = await Promise.all([
    cli(['devices', 'list']),
    cli(['devices', 'list', '--json']),
    cli(['devices', 'show', pa]),
    cli(['devices', 'show', idb.slice(0, 20), '--json'])
  ])
  const text = human(t, table, 'devices list')
  t.match(text, /DEVICE .*PLATFORM .*SCOPES .*TOKENS/)
  t.match(text, pa)
  t.match(text, idb.slice(0, 8))
  t.notMatch(text, ida, 'ids shortened')
  t.match(text, 'operator: operator.read, operator.write')
  t.same(json(t, listed, 'devices list --json').map((d: any) => d.deviceId).sort(), [ida, idb].sort())
  const showText = human(t, shown, 'devices show')
  t.match(showText, ida, 'show has the full id')
  t.match(showText, /TOKEN ROLE .*STATE/)
  t.match(showText, /operator .*│ operator.read, operator.write .*│ active/)
  // lastSeenAtMs is written in batches every 2 s: one may land between the CLI's answer and this request.
  const withoutLastSeen = ({ lastSeenAtMs: _lastSeen, ...rest }: Record<string, unknown>): Record<string, unknown> => rest
  t.same(withoutLastSeen(json(t, shownJson, 'devices show --json')), withoutLastSeen((await server.api('GET', `/api/v1/devices/${idb}`)).body), 'devices show --json is the REST answer')

  // Grants: add, set, revoke; a's in tables, b's in JSON, side by side.
  const pb = idb.slice(0, 8)
  const scopesOf = (res: RunResult, label: string): string[] => json(t, res, label).roleScopes.operator
  const [added, addedJson] = await Promise.all([
    cli(['grants', 'add', pa, 'operator.admin', 'operator.pairing']),
    cli(['grants', 'add', pb, 'operator.talk', 'operator.write', '--json'])
  ])
  t.equal(human(t, added, 'grants add'), `device ${pa} operator: operator.admin, operator.pairing, operator.read, operator.write\n`)
  t.same(scopesOf(addedJson, 'grants add --json'), ['operator.read', 'operator.talk', 'operator.write'])
  const [set, setJson] = await Promise.all([
    cli(['grants', 'set', pa, 'operator.read', 'operator.write']),
    cli(['grants', 'set', pb, 'operator.read', 'operator.talk', '--json'])
  ])
  t.equal(human(t, set, 'grants set'), `device ${pa} operator: operator.read, operator.write\n`)
  t.same(scopesOf(setJson, 'grants set --json'), ['operator.read', 'operator.talk'], 'set exactly')
  const [revoked, revokedJson] = await Promise.all([
    cli(['grants', 'revoke', pa, 'operator.write']),
    cli(['grants', 'revoke', idb, 'operator.talk', '--json'])
  ])
  t.equal(human(t, revoked, 'grants revoke'), `device ${pa} operator: operator.read\n`)
  t.same(scopesOf(revokedJson, 'grants revoke --json'), ['operator.read'])
  t.same((await server.api('GET', `/api/v1/devices/${ida}`)).body.roleScopes, { operator: ['operator.read'] }, 'the server has the result')

  // Tokens: rotate prints only the token on stdout, and the device connects with it.
  const [rotated, rotatedJson, notHeld, badRole, noToken] = await Promise.all([
    cli(['tokens', 'rotate', pa]),
    cli(['tokens', 'rotate', pb, '--json']),
    cli(['grants', 'revoke', pa, 'operator.write']),
    cli(['grants', 'add', pa, 'operator.read', 'bogus', '--role', 'root']),
    cli(['tokens', 'revoke', pa, '--role', 'node'])
  ])
  fails(t, notHeld, 1, new RegExp(`not found: device ${ida} holds no scope operator.write for role operator: see \`scopegate devices show ${pa}\``), 'revoking a scope not held')
  fails(t, badRole, 2, /argument 'root' is invalid\. Allowed choices are operator, node/, 'an unknown role')
  fails(t, noToken, 1, /has no token for role node: see `scopegate devices show/, 'a role without a token')

  t.equal(rotated.code, 0, rotated.stderr)
  t.match(rotated.stdout, /^[A-Za-z0-9_-]{20,}\n$/, 'stdout is the token alone')
  t.match(rotated.stderr, new RegExp(`new operator token for device ${pa} \\(operator.read, expires .*\\); it is shown only now`))
  const fresh = json(t, rotatedJson, 'tokens rotate --json')
  t.match(fresh, { deviceId: idb, role: 'operator', token: String, scopes: ['operator.read'] })
  const conn = await a.device.connect(server.wsUrl, { deviceToken: rotated.stdout.trim(), scopes: ['operator.read'] })
  t.equal(conn.res.ok, true, 'the rotated token is accepted')
  await conn.socket.close()

  const [revokedToken, revokedTokenJson] = await Promise.all([cli(['tokens', 'revoke', pa]), cli(['tokens', 'revoke', idb, '--json'])])
  t.equal(human(t, revokedToken, 'tokens revoke'), `revoked the operator token of device ${pa}\n`)
  t.match(json(t, revokedTokenJson, 'tokens revoke --json'), { deviceId: idb, role: 'operator', revokedAtMs: Number })
  const stale = await b.device.connect(server.wsUrl, { deviceToken: fresh.token, scopes: ['operator.read'] })
  t.equal(stale.res.ok, false, 'the revoked token is refused')
  await stale.socket.closed

  // Token lifetime per device: a duration, never, default.
  const [ttl, ttlNever, ttlBad] = await Promise.all([cli(['tokens', 'ttl', pa, '12h']), cli(['tokens', 'ttl', idb, 'never', '--json']), cli(['tokens', 'ttl', pa, 'soon'])])
  t.equal(human(t, ttl, 'tokens ttl'), `tokens of device ${pa} now live for 12h from their next mint; to apply it now: scopegate tokens rotate ${pa}\n`)
  t.equal(json(t, ttlNever, 'tokens ttl never --json').tokenTtlMs, 0)
  fails(t, ttlBad, 2, /expected a positive duration such as 30m, 1h or 7d/, 'a lifetime that is not one')
  t.match(human(t, await cli(['devices', 'show', pa]), 'devices show'), /token lifetime\W+12h/)
  t.equal((await server.api('GET', `/api/v1/devices/${ida}`)).body.tokenTtlMs, 12 * 3_600_000, 'the server has it')
  t.notOk('tokenTtlMs' in json(t, await cli(['tokens', 'ttl', pa, 'default', '--json']), 'tokens ttl default --json'), 'default: no override')

  // Remove: never without confirmation when nobody can answer.
  const [refused, removed] = await Promise.all([cli(['devices', 'remove', pa]), cli(['devices', 'remove', idb.slice(0, 12), '--yes', '--json'])])
  fails(t, refused, 2, /^scopegate: not removing without confirmation: pass --yes to remove a device when not on a terminal\n$/, 'remove without --yes, not on a terminal')
  t.same(json(t, removed, 'devices remove --yes --json'), { deviceId: idb })
  t.equal((await server.api('GET', `/api/v1/devices/${ida}`)).status, 200, 'the refused removal removed nothing')

  // On a terminal it asks; only y removes.
  if (existsSync('/usr/bin/script')) {
    const onTerminal = async (answer: string): Promise<RunResult> => await new Promise((resolve) => {
      const command = [process.execPath, SHIM, 'devices', 'remove', pa, '--url', server.httpUrl, '--token', server.adminToken()].join(' ')
      const child = execFile('/usr/bin/script', ['-qec', command, '/dev/null'], { env: cleanEnv(), timeout: 60_000, cwd: ROOT }, (err, stdout, stderr) => {
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr })
      })
      child.stdin?.end(answer)
    })
    const declined = await onTerminal('n\n')
    t.equal(declined.code, 1, 'declining exits 1')
    t.match(declined.stdout, new RegExp(`remove device ${pa} \\(linux\\)\\? Its connections close and it must pair again\\. \\[y/N\\]`), 'it asks')
    t.match(declined.stdout, /nothing removed/)
    t.equal((await server.api('GET', `/api/v1/devices/${ida}`)).status, 200, 'still paired')
    const accepted = await onTerminal('y\n')
    t.equal(accepted.code, 0, accepted.stdout)
    t.match(accepted.stdout, `removed device ${pa}`)
  } else {
    t.equal(human(t, await cli(['devices', 'remove', pa, '--yes']), 'devices remove --yes'), `removed device ${pa}\n`)
  }
  t.equal((await server.api('GET', `/api/v1/devices/${ida}`)).status, 404, 'removed')

  const [gone, emptyList] = await Promise.all([cli(['devices', 'show', pa]), cli(['devices', 'list'])])
  fails(t, gone, 1, new RegExp(`^scopegate: no paired device id starts with ${pa}: see \`scopegate devices list\`\\n$`), 'a removed device')
  t.equal(emptyList.stdout, '')
  t.match(emptyList.stderr, /no paired devices/)
})

t.test('cron: add, list, show, run, runs, remove; usage errors; ambiguous prefixes', async (t) => {
  const server = await startServer(t)
  const cli = cliFor(server)

  const [every, cron, at] = await Promise.all([
    cli(['cron', 'add', '--name', 'ping', '--every', '1h', '--system-event', 'hello there']),
    cli(['cron', 'add', '--name', 'standup', '--cron', '0 9 * * 1-5', '--tz', 'Europe/Berlin', '--message', 'stand-up', '--json']),
    cli(['cron', 'add', '--name', 'once', '--at', '2030-01-01T00:00:00Z', '--system-event', 'x', '--json'])
  ])
  const added = human(t, every, 'cron add')
  const pingId = /^added cron job ([0-9a-f-]{36}) \(ping\): every 1h, next run \d{4}-/.exec(added)?.[1] ?? ''
  t.ok(pingId !== '', added)
  const standup = json(t, cron, 'cron add --json')
  t.match(standup, { name: 'standup', schedule: { kind: 'cron', expr: '0 9 * * 1-5', tz: 'Europe/Berlin' }, payload: { kind: 'agentTurn', message: 'stand-up' } })
  const once = json(t, at, 'cron add --at --json')
  t.match(once, { schedule: { kind: 'at', at: '2030-01-01T00:00:00Z' }, deleteAfterRun: true })

  const [table, listed, shown, shownJson] = await Promise.all([
    cli(['cron', 'list']), cli(['cron', 'list', '--json']), cli(['cron', 'show', pingId.slice(0, 8)]), cli(['cron', 'show', standup.id, '--json'])
  ])
  const text = human(t, table, 'cron list')
  t.match(text, /JOB .*NAME .*SCHEDULE .*PAYLOAD .*NEXT RUN/)
  t.match(text, new RegExp(`${pingId.slice(0, 8)} .*ping .*every 1h .*system event: hello there`))
  t.match(text, 'cron 0 9 * * 1-5 (Europe/Berlin)')
  t.same(json(t, listed, 'cron list --json').map((job: any) => job.name).sort(), ['once', 'ping', 'standup'], 'every job, as an array')
  t.match(human(t, shown, 'cron show'), new RegExp(`job +│ ${pingId}`))
  t.same(json(t, shownJson, 'cron show --json'), (await server.api('GET', `/api/v1/cron/jobs/${standup.id}`)).body)

  // A forced run has finished when the call returns.
  const [ran, ranJson, notDue] = await Promise.all([
    cli(['cron', 'run', pingId.slice(0, 8)]), cli(['cron', 'run', standup.id, '--json']), cli(['cron', 'run', once.id, '--due', '--json'])
  ])
  t.match(human(t, ran, 'cron run'), new RegExp(`^ran cron job ${pingId.slice(0, 8)}: run [0-9a-f-]{36}`))
  t.match(json(t, ranJson, 'cron run --json'), { ok: true, ran: true, runId: String })
  t.same(json(t, notDue, 'cron run --due --json'), { ok: true, ran: false }, 'not due: nothing ran')

  const usage: Array<[string[], RegExp]> = [
    [['cron', 'add', '--name', 'x', '--every', '1h', '--cron', '* * * * *', '--message', 'm'], /option '--every <ms>' cannot be used with option '--cron <expr>'/],
    [['cron', 'add', '--name', 'x', '--message', 'm'], /a schedule is required: pass one of --at ISO, --every MS or --cron EXPR/],
    [['cron', 'add', '--name', 'x', '--every', '1h'], /a payload is required: pass --system-event TEXT or --message TEXT/],
    [['cron', 'add', '--name', 'x', '--every', '1h', '--tz', 'UTC', '--message', 'm'], /--tz applies to --cron schedules only/],
    [['cron', 'add', '--name', 'x', '--every', '10', '--message', 'm'], /expected an interval of at least 1000 ms/],
    [['cron', 'add', '--name', 'x', '--at', 'tomorrow', '--message', 'm'], /expected an ISO 8601 date-time/],
    [['cron', 'add', '--every', '1h', '--message', 'm'], /required option '--name <name>' not specified/]
  ]
  const [runs, runsJsonResult, badExpr, ...usageResults] = await Promise.all([
    cli(['cron', 'runs', pingId.slice(0, 8)]),
    cli(['cron', 'runs', pingId, '--limit', '5', '--json']),
    cli(['cron', 'add', '--name', 'x', '--cron', 'never', '--message', 'm']),
    ...usage.map(async ([args]) => await cli(args))
  ])
  t.match(human(t, runs, 'cron runs'), new RegExp(`RUN .*STATUS .*DUE .*STARTED[\\s\\S]*${ran.stdout.split(' run ')[1]?.slice(0, 8) ?? '?'} .* ok `))
  const runsJson = json(t, runsJsonResult, 'cron runs --json')
  t.equal(runsJson.length, 1)
  t.match(runsJson[0], { jobId: pingId, status: 'ok' })
  usage.forEach(([args, message], i) => { fails(t, usageResults[i] as RunResult, 2, message, args.join(' ')) })
  fails(t, badExpr, 1,
    /^scopegate: invalid input: invalid params: schedule\.expr must be a cron expression of 5 or 6 fields\n$/, 'the server refuses a bad expression (400)')

  // Two jobs whose ids differ only in their last character.
  const twins = ['abcdef12-0000-4000-8000-000000000001', 'abcdef12-0000-4000-8000-000000000002']
  await server.app.db.sql.query(
    `INSERT INTO cron_jobs (id, name, enabled, schedule, payload, delete_after_run, created_at, updated_at)
     SELECT id, 'twin', false, '{"kind":"every","everyMs":60000}'::jsonb, '{"kind":"systemEvent","text":"t"}'::jsonb, false, now(), now()
     FROM unnest($1::uuid[]) AS u(id)`, [twins])
  const ambiguous = await cli(['cron', 'remove', 'abcdef12-0000'])
  const [removedHuman, removedJson, removedAgain] = await Promise.all([
    cli(['cron', 'remove', 'abcdef12-0000-4000-8000-000000000001']),
    cli(['cron', 'remove', once.id.slice(0, 8), '--json']),
    cli(['cron', 'remove', '00000000-0000-4000-8000-000000000000'])
  ])
  fails(t, ambiguous, 1, /^scopegate: abcdef12-0000 is ambiguous: it starts 2 cron job ids \(abcdef12-0000-4000-8000-000000000001, abcdef12-0000-4000-8000-000000000002\); give more characters\n$/, 'an ambiguous prefix')
  t.equal(human(t, removedHuman, 'cron remove'), 'removed cron job abcdef12\n')
  t.same(json(t, removedJson, 'cron remove --json'), { ok: true, removed: true, id: once.id })
  fails(t, removedAgain, 1, /not found: cron job not found: 00000000-0000-4000-8000-000000000000: see `scopegate cron list`/, 'an unknown job')
  const [leftResult, runsOfTwin] = await Promise.all([cli(['cron', 'list', '--json']), cli(['cron', 'runs', 'abcdef12-0000-4000-8000-00000000000'])])
  const left = json(t, leftResult, 'cron list after removals').map((job: any) => job.id).sort()
  t.same(left, [pingId, standup.id, twins[1]].sort())
  t.equal(runsOfTwin.code, 0, 'the prefix is unique once its twin is gone')
  t.match(runsOfTwin.stderr, /has not run yet/)
})

t.test('audit: filters, both modes, --follow until interrupted', async (t) => {
  const server = await startServer(t)
  const cli = cliFor(server)
  const a = await pairDevice(server, ['operator.read', 'operator.write'])
  const b = await pairDevice(server, ['operator.read'])
  await server.api('PUT', `/api/v1/devices/${a.device.id}/roles/operator/scopes`, { body: { scopes: ['operator.read'] } })

  const [table, all, filtered, byAction, last] = await Promise.all([
    cli(['audit']),
    cli(['audit', '--json']),
    cli(['audit', '--device', a.device.id.slice(0, 8), '--json']),
    cli(['audit', '--action', 'scopes.set', '--json']),
    cli(['audit', '--limit', '1', '--json'])
  ])
  const text = human(t, table, 'audit')
  t.match(text, /TIME .*ACTOR .*ACTION .*DEVICE .*REQUEST .*DETAILS/)
  t.match(text, new RegExp(`test-admin .*scopes\\.set .*${a.device.id.slice(0, 8)} .*role=operator`))
  const entries = json(t, all, 'audit --json')
  t.same(entries.map((e: any) => e.action), ['pairing.requested', 'pairing.approved', 'pairing.requested', 'pairing.approved', 'scopes.set'], 'oldest first, like tail')
  t.ok(json(t, filtered, 'audit --device').every((e: any) => e.deviceId === a.device.id), 'only the device asked for')
  t.equal(json(t, filtered, 'audit --device').length, 3)
  t.same(json(t, byAction, 'audit --action').map((e: any) => e.action), ['scopes.set'])
  t.same(json(t, last, 'audit --limit 1').map((e: any) => e.action), ['scopes.set'], 'the newest entry')

  const [unknownDevice, badLimit] = await Promise.all([cli(['audit', '--device', 'ffffffffff']), cli(['audit', '--limit', 'lots'])])
  fails(t, unknownDevice, 1, /no paired device id starts with ffffffffff: see `scopegate devices list`; for a removed device, pass its full 64-character id/, 'an unknown device prefix')
  fails(t, badLimit, 2, /--limit <n>.*expected a whole number from 1 to 500/, 'a bad --limit')

  // --follow: the newest entries, then new ones as they happen, until SIGINT.
  const follow = async (extra: string[]): Promise<{ output: () => string, stop: () => Promise<number | null>, errors: () => string }> => {
    const child = spawn(process.execPath, [SHIM, 'audit', '--follow', '--limit', '2', ...extra], {
      env: cleanEnv({ SCOPEGATE_URL: server.httpUrl, SCOPEGATE_TOKEN: server.adminToken() }), cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe']
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
    return {
      output: () => stdout,
      errors: () => stderr,
      stop: async () => {
        child.kill('SIGINT')
        return await exited
      }
    }
  }
  const waitFor = async (read: () => string, pattern: RegExp, what: string): Promise<void> => {
    const deadline = Date.now() + 30_000
    while (!pattern.test(read())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${read()}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  const [tableFollow, jsonFollow] = await Promise.all([follow([]), follow(['--json'])])
  await Promise.all([
    waitFor(tableFollow.errors, /following the audit log/, 'the table follower'),
    waitFor(jsonFollow.errors, /following the audit log/, 'the JSON follower')
  ])
  await server.api('DELETE', `/api/v1/devices/${b.device.id}/roles/operator/scopes/operator.read`)
  await server.api('POST', '/api/v1/cron/jobs', { body: { name: 'followed', schedule: { kind: 'every', everyMs: 60_000 }, payload: { kind: 'systemEvent', text: 'x' } } })
  await Promise.all([
    waitFor(tableFollow.output, /cron\.added .*name=followed/, 'the new entries in the table'),
    waitFor(jsonFollow.output, /"action":"cron\.added"/, 'the new entries as JSON lines')
  ])
  const [tableCode, jsonCode] = await Promise.all([tableFollow.stop(), jsonFollow.stop()])
  t.equal(tableCode, 0, 'SIGINT ends --follow with exit 0')
  t.equal(jsonCode, 0)

  const lines = tableFollow.output().trimEnd().split('\n')
  t.match(lines[0], /^TIME +ACTOR +ACTION/, 'a header first')
  // Long details wrap onto lines of their own; each entry's first line starts with its time.
  const firstLines = lines.slice(1).filter((line) => /^\d{4}-\d\d-\d\dT/.test(line))
  t.same(firstLines.map((line) => /^\S+ +\S+ +(\S+)/.exec(line)?.[1]), ['pairing.approved', 'scopes.set', 'scope.revoked', 'cron.added'],
    'the 2 newest entries, then each new one once, oldest first')
  const docs = jsonFollow.output().trimEnd().split('\n').map((line) => JSON.parse(line))
  t.same(docs.map((doc: any) => doc.action), ['pairing.approved', 'scopes.set', 'scope.revoked', 'cron.added'], 'one JSON object per line')
  t.equal(docs[2].deviceId, b.device.id)
})

t.test('errors say what to do next: 401, 403, unreachable, no token; env variables stand in for the flags', async (t) => {
  const server = await startServer(t)
  const port = await freePort()
  const unreachable = `http://127.0.0.1:${port}`
  const [badToken, viewer, down, noToken, badUrl, fromEnv, envToken] = await Promise.all([
    run(['devices', 'list', '--url', server.httpUrl, '--token', signAdminToken('another-secret-'.padEnd(40, 'x'), { sub: 'x', role: 'admin' }, 60_000)]),
    run(['cron', 'add', '--name', 'x', '--every', '1h', '--message', 'm', '--url', server.httpUrl, '--token', server.adminToken('viewer')]),
    run(['devices', 'list', '--url', unreachable, '--token', 'whatever']),
    run(['devices', 'list', '--url', server.httpUrl]),
    run(['devices', 'list', '--url', 'ftp://example', '--token', 'x']),
    run(['cron', 'list', '--json'], { SCOPEGATE_URL: server.httpUrl, SCOPEGATE_TOKEN: server.adminToken() }),
    run(['cron', 'list', '--json', '--url', server.httpUrl], { SCOPEGATE_TOKEN: 'env-token-is-bad' })
  ])
  const tokenHint = /create one with `scopegate admin-token` and pass it with --token or SCOPEGATE_TOKEN\n$/
  fails(t, badToken, 1, /^scopegate: the admin token was refused \(.*\): create one/, '401 for a token signed with another secret')
  t.match(badToken.stderr, tokenHint)
  fails(t, viewer, 1, /^scopegate: refused: role viewer may only read: POST is not allowed; this needs an admin token: create one with `scopegate admin-token --role admin`\n$/, '403 for a viewer')
  fails(t, down, 1, new RegExp(`^scopegate: cannot reach the gateway at ${unreachable} \\(ECONNREFUSED\\): start it with \`scopegate serve\`, or point --url / SCOPEGATE_URL at the one that runs\\n$`), 'unreachable')
  fails(t, noToken, 2, /^scopegate: no admin token: create one with `scopegate admin-token` and pass it with --token or SCOPEGATE_TOKEN\n$/, 'no token at all')
  fails(t, badUrl, 2, /option '--url <url>' argument 'ftp:\/\/example' is invalid\. expected an http\(s\) URL/, 'a URL that is not http')
  t.same(json(t, fromEnv, 'SCOPEGATE_URL and SCOPEGATE_TOKEN'), [])
  fails(t, envToken, 1, /the admin token was refused/, 'SCOPEGATE_TOKEN is used when --token is not given')

  const [defaultUrl, bare] = await Promise.all([
    run(['audit', '--help']),
    run(['grants'])
  ])
  t.equal(defaultUrl.code, 0)
  t.match(defaultUrl.stdout, /--url <url> +the gateway's base URL \(default:\s+"http:\/\/127\.0\.0\.1:18789",\s+env:\s+SCOPEGATE_URL\)/)
  t.match(defaultUrl.stdout, /--follow/)
  t.equal(bare.code, 2, 'a group without its subcommand is a usage error')
  t.match(bare.stderr, /Usage: scopegate grants/)
})

t.test('answers that are not what the CLI expects: server errors, rate limits, other services', async (t) => {
  const stub = createHttpServer((request, response) => {
    const send = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      response.writeHead(status, { 'content-type': 'application/json', ...headers })
      response.end(JSON.stringify(body))
    }
    const path = request.url?.split('?')[0]
    if (path === '/api/v1/devices') send(200, { items: [{ deviceId: 42 }], nextCursor: null })
    else if (path === '/api/v1/pairing-requests') send(503, { statusCode: 503, code: 'UNAVAILABLE', error: 'Service Unavailable', message: 'database unavailable, try again later' })
    else if (path === '/api/v1/cron/jobs') send(500, { statusCode: 500, code: 'INTERNAL', error: 'Internal Server Error', message: 'internal server error' })
    else if (path === '/api/v1/audit') send(429, { statusCode: 429, code: 'RATE_LIMITED', error: 'Too Many Requests', message: 'rate limited' }, { 'retry-after': '7' })
    else {
      response.writeHead(404, { 'content-type': 'text/html' })
      response.end('<h1>nothing here</h1>')
    }
  })
  await new Promise<void>((resolve) => stub.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { stub.close() })
  const address = stub.address()
  const url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
  const [malformed, unavailable, failed, limited, other] = await Promise.all([
    run(['devices', 'list', '--json', '--url', url, '--token', 'x']),
    run(['requests', 'list', '--url', url, '--token', 'x']),
    run(['cron', 'list', '--url', url, '--token', 'x']),
    run(['audit', '--url', url, '--token', 'x']),
    run(['devices', 'show', 'a'.repeat(64), '--url', url, '--token', 'x'])
  ])
  fails(t, malformed, 1, new RegExp(`^scopegate: unexpected answer from ${url} to GET /api/v1/devices \\(status 200\\): is --url / SCOPEGATE_URL a scopegate gateway of this version\\?\\n$`), 'a body that fails the schema')
  fails(t, unavailable, 1, new RegExp(`^scopegate: the gateway at ${url} is not ready \\(database unavailable, try again later\\): try again shortly; ${url}/readyz shows which check fails\\n$`), '503')
  fails(t, failed, 1, new RegExp(`^scopegate: the gateway at ${url} failed \\(500 internal server error\\): see its log\\n$`), '500')
  fails(t, limited, 1, /^scopegate: rate limited by the gateway: try again in 7 s\n$/, '429')
  fails(t, other, 1, /has no such route .*is --url \/ SCOPEGATE_URL a scopegate gateway/, 'a 404 that is not the API\'s')
})

t.test('every command has --help with the connection options', async (t) => {
  const leaves: Command[] = []
  const walk = (command: Command): void => {
    if (command.commands.length === 0) leaves.push(command)
    for (const sub of command.commands) walk(sub)
  }
  const program = buildProgram()
  walk(program)
  const admin = leaves.filter((command) => !['serve', 'admin-token', 'gateway-token'].includes(command.name()))
  const names = admin.map((command) => `${command.parent?.name() === 'scopegate' ? '' : `${command.parent?.name() ?? ''} `}${command.name()}`)
  t.same(names.sort(), [
    'audit', 'cron add', 'cron list', 'cron remove', 'cron run', 'cron runs', 'cron show',
    'devices list', 'devices remove', 'devices show', 'grants add', 'grants revoke', 'grants set',
    'policies add', 'policies evaluate', 'policies list', 'policies remove', 'policies show', 'policies update',
    'requests approve', 'requests list', 'requests reject', 'requests show', 'tokens revoke', 'tokens rotate', 'tokens ttl'
  ])
  for (const command of admin) {
    const help = command.helpInformation()
    t.match(help, /Usage: /, `${command.name()}: usage`)
    t.ok(command.description().length > 0, `${command.name()}: a description`)
    for (const option of ['--url <url>', '--token <jwt>', '--json', '--help']) t.match(help, option, `${command.name()} ${option}`)
  }
})
