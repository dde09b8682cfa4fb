// `scopegate policies …` as a user runs them: subprocesses (test/helpers/cli.ts)
// against a live server, in both output modes. Independent commands run in parallel.
import t from 'tap'
import { cliFor, fails, human, json } from './helpers/cli.ts'
import { startServer } from './helpers/server.ts'

t.setTimeout(240_000)

t.test('policies: add, list, show, update, evaluate, remove; tables and JSON; errors that say what to do', async (t) => {
  const server = await startServer(t)
  const cli = cliFor(server)

  const [empty, privileged, badAction, noName] = await Promise.all([
    cli(['policies', 'list']),
    cli(['policies', 'add', '--name', 'all nodes', '--action', 'approve', '--roles', 'node']),
    cli(['policies', 'add', '--name', 'x', '--action', 'maybe']),
    cli(['policies', 'add', '--action', 'reject'])
  ])
  t.equal(empty.code, 0)
  t.equal(empty.stdout, '')
  t.match(empty.stderr, /no approval policies: every pairing request waits for an admin/)
  fails(t, privileged, 1, /invalid input: body\/allowPrivileged must be true: this rule could grant operator\.admin and operator\.pairing.*: pass --allow-privileged if the rule may really grant them, or limit it with --scopes or --scopes-within/, 'privileged without the flag')
  t.equal(badAction.code, 2, 'an unknown action is a usage error')
  t.match(badAction.stderr, /Allowed choices are approve, reject/)
  t.equal(noName.code, 2, 'a missing --name is a usage error')

  const added = json(t, await cli(['policies', 'add', '--name', 'bots read', '--action', 'approve', '--client-ids', 'bot', '--scopes-within', 'operator.read', '--json']), 'add --json')
  t.match(added, { id: String, name: 'bots read', action: 'approve', priority: 100, enabled: true, match: { clientIds: ['bot'], scopesWithin: ['operator.read'] }, createdBy: 'test-admin' })
  const id: string = added.id
  const prefix = id.slice(0, 8)

  const [addedHuman, listed, listedJson, shown] = await Promise.all([
    cli(['policies', 'add', '--name', 'other nodes', '--action', 'reject', '--roles', 'node', '--priority', '200']),
    cli(['policies', 'list']),
    cli(['policies', 'list', '--json']),
    cli(['policies', 'show', prefix])
  ])
  t.match(human(t, addedHuman, 'add'), /^added policy [0-9a-f-]{36} \(other nodes\): reject when role node; try it with `scopegate policies evaluate/)
  const table = human(t, listed, 'list')
  t.match(table, /POLICY[\s│]+PRIORITY[\s│]+ENABLED[\s│]+NAME[\s│]+MATCH[\s│]+ACTION/)
  t.match(table, new RegExp(`${prefix}[\\s│]+100[\\s│]+yes[\\s│]+bots read[\\s│]+client bot, scopes within operator.read[\\s│]+approve`))
  t.same(json(t, listedJson, 'list --json').map((p: { id: string }) => p.id)[0], id, 'evaluation order: priority 100 before 200')
  const details = human(t, shown, 'show')
  t.match(details, id)
  t.match(details, /grants[\s│]+every asked scope/)
  t.match(details, /created[\s│]+\S+ by test-admin/)

  const updated = json(t, await cli(['policies', 'update', prefix, '--disable', '--platforms', ' Linux', '--scopes', 'operator.read', '--priority', '5', '--json']), 'update --json')
  t.match(updated, { id, enabled: false, priority: 5, scopes: ['operator.read'], match: { clientIds: ['bot'], scopesWithin: ['operator.read'], platforms: ['linux'] } })

  const [cleared, nothing, clash, rejectWithScopes] = await Promise.all([
    cli(['policies', 'update', prefix, '--clear', 'platforms,scopesWithin', '--enable', '--all-scopes', '--scopes-within', 'operator.read,operator.write']),
    cli(['policies', 'update', prefix]),
    cli(['policies', 'update', prefix, '--clear', 'roles', '--roles', 'node']),
    cli(['policies', 'update', prefix, '--action', 'reject'])
  ])
  t.equal(cleared.code, 2, '--clear scopesWithin with --scopes-within contradicts itself')
  fails(t, nothing, 2, /nothing to change: pass at least one option/, 'update without options')
  fails(t, clash, 2, /--clear roles contradicts the option that sets it/, 'clear and set one field')
  fails(t, rejectWithScopes, 1, /invalid input: body\/scopes applies to approve rules only.*: a reject rule takes no --scopes: add --all-scopes/, 'reject with scopes')

  t.match(human(t, await cli(['policies', 'update', prefix, '--clear', 'platforms', '--enable', '--all-scopes']), 'update'),
    new RegExp(`^updated policy ${prefix} \\(bots read\\): approve when client bot, scopes within operator.read, priority 5\\n$`))

  const viewer = server.adminToken('viewer', 'val')
  const [wouldApprove, wouldNot, viewerJson, viewerAdd, wouldReject] = await Promise.all([
    cli(['policies', 'evaluate', '--scopes', 'operator.read', '--client-id', 'bot']),
    cli(['policies', 'evaluate', '--scopes', 'operator.read,operator.admin', '--client-id', 'bot']),
    cli(['policies', 'evaluate', '--client-id', 'bot', '--scopes', 'operator.read', '--json'], viewer),
    cli(['policies', 'add', '--name', 'y', '--action', 'reject'], viewer),
    cli(['policies', 'evaluate', '--role', 'node', '--platform', 'win32'])
  ])
  t.match(human(t, wouldApprove, 'evaluate'), new RegExp(`^policy ${prefix} \\(bots read\\) would approve it with operator.read\\n$`))
  t.match(human(t, wouldNot, 'evaluate, no match'), /^no policy matches: the request would wait for an admin \(`scopegate requests approve <id>`\)\n$/)
  t.same(json(t, viewerJson, 'evaluate --json as a viewer'), { policyId: id, policyName: 'bots read', action: 'approve', scopes: ['operator.read'], leftOutScopes: [] })
  fails(t, viewerAdd, 1, /refused: role viewer may only read.*scopegate admin-token --role admin/, 'add as a viewer')
  t.match(human(t, wouldReject, 'evaluate, reject'), /would reject it: the connect is refused and nothing is left pending/)

  t.match(human(t, await cli(['policies', 'remove', prefix]), 'remove'), new RegExp(`^removed policy ${prefix}\\n$`))
  const [gone, gonePrefix, tooShort] = await Promise.all([
    cli(['policies', 'show', id]),
    cli(['policies', 'remove', prefix]),
    cli(['policies', 'show', 'abc'])
  ])
  fails(t, gone, 1, new RegExp(`not found: unknown policy id: ${id}: see \`scopegate policies list\``), 'show a removed policy')
  fails(t, gonePrefix, 1, /no policy id starts with/, 'a prefix that matches nothing')
  fails(t, tooShort, 2, /too short for a policy id/, 'a prefix under 8 characters')
})
