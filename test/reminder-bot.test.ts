import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { startServer } from './helpers/server.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

interface Bot {
  /** Resolves with the first match of `pattern` in stdout, as it comes. */
  waitFor: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpExecArray>
  exited: Promise<{ code: number | null, stdout: string, stderr: string }>
}

/** Runs the example exactly as the README says: `npx tsx examples/reminder-bot.ts`. */
function runBot (t: { teardown: (fn: () => unknown) => void }, args: string[], env: Record<string, string>): Bot {
  const child = spawn('npx', ['tsx', 'examples/reminder-bot.ts', ...args], {
    cwd: ROOT,
    // Not measured: tsx compiles src/client differently from the test runner, and the two coverage maps would clash.
    env: { ...process.env, _TAPJS_PROCESSINFO_COVERAGE_: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  const watchers = new Set<() => void>()
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString()
    for (const check of [...watchers]) check()
  })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const exited = new Promise<{ code: number | null, stdout: string, stderr: string }>((resolve) => {
    child.once('exit', (code) => {
      for (const check of [...watchers]) check()
      resolve({ code, stdout, stderr })
    })
  })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const waitFor = async (pattern: RegExp, timeoutMs = 30_000): Promise<RegExpExecArray> => await new Promise((resolve, reject) => {
    const check = (): void => {
      const match = pattern.exec(stdout)
      if (match !== null) {
        done()
        resolve(match)
      } else if (child.exitCode !== null) {
        done()
        reject(new Error(`the bot exited ${child.exitCode} before printing ${pattern}:\n${stdout}\n${stderr}`))
      }
    }
    const timer = setTimeout(() => {
      done()
      reject(new Error(`no ${pattern} within ${timeoutMs} ms:\n${stdout}\n${stderr}`))
    }, timeoutMs)
    const done = (): void => {
      clearTimeout(timer)
      watchers.delete(check)
    }
    watchers.add(check)
    check()
  })
  return { waitFor, exited }
}

t.test('examples/reminder-bot.ts: refused, approved over REST, adds a reminder, prints it when it fires, exits 0', async (t) => {
  const server = await startServer(t, { logLevel: 'warn' })
  const dir = mkdtempSync(join(tmpdir(), 'scopegate-bot-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const identity = join(dir, 'bots', 'reminder.json')
  const env = { SCOPEGATE_WS_URL: server.wsUrl, REMINDER_BOT_IDENTITY: identity }

  const bot = runBot(t, ['--in', '2', '--poll-ms', '250', '--wait-ms', '60000'], { ...env, GATEWAY_TOKEN: server.config.gatewayToken })
  const [, reason, requestId] = await bot.waitFor(/pairing required \(([a-z-]+)\): request ([0-9a-f-]{36})/, 60_000)
  t.equal(reason, 'not-paired')
  await bot.waitFor(new RegExp(`approve it with: scopegate requests approve ${requestId}`))
  const pending = await server.api('GET', `/api/v1/pairing-requests/${requestId}`)
  t.match(pending.body, { state: 'pending', clientId: 'reminder-bot', scopes: ['operator.admin'] })
  // Let it ask again at least once while pending: the same request, printed once.
  await new Promise((resolve) => setTimeout(resolve, 600))
  t.equal((await server.api('GET', '/api/v1/pairing-requests')).body.items.length, 1, 'polling reuses the one pending request')

  t.equal((await server.api('POST', `/api/v1/pairing-requests/${requestId}/approve`)).status, 200)
  const { code, stdout, stderr } = await bot.exited
  t.equal(code, 0, `exit 0 (stderr: ${stderr})`)
  // (A poll racing the approval may be refused once more, with a new request: the gateway decides per connect.)
  t.equal(stdout.split(`request ${requestId}`).length - 1, 1, 'the request was shown once while it was pending')
  t.match(stdout, /connected: role operator, scopes \[operator\.admin\] via token/)
  const added = /reminder added: "stand up and stretch" at (\S+) \(job ([0-9a-f-]{36})\)/.exec(stdout)
  t.ok(added, 'the reminder was added')
  const jobId = added?.[2] ?? ''
  t.match(stdout, new RegExp(`reminder: stand up and stretch \\(job ${jobId}, run [0-9a-f-]{36}, fired `), 'and printed when it fired')
  const firedAt = /fired (\S+)\)/.exec(stdout)?.[1] ?? ''
  t.ok(Date.parse(firedAt) >= Date.parse(added?.[1] ?? ''), 'not before its time')
  t.equal((await server.api('GET', `/api/v1/cron/jobs/${jobId}`)).status, 404, 'the one-shot job is gone after its run')

  t.equal(statSync(identity).mode & 0o777, 0o600)
  const file = JSON.parse(readFileSync(identity, 'utf8')) as { deviceTokens: Record<string, string> }
  t.type(file.deviceTokens.operator, 'string', 'the device token is kept')

  // The next run needs no gateway token and no approval.
  const again = runBot(t, ['--in', '1', '--text', 'drink water'], { ...env, GATEWAY_TOKEN: '' })
  const second = await again.exited
  t.equal(second.code, 0, `second run exits 0 (stderr: ${second.stderr})`)
  t.notMatch(second.stdout, /pairing required/)
  t.match(second.stdout, /via device-token/)
  t.match(second.stdout, /reminder: drink water \(job /)
})

t.test('examples/reminder-bot.ts: a wrong gateway token is one line on stderr and exit 1', async (t) => {
  const server = await startServer(t, { logLevel: 'warn' })
  const dir = mkdtempSync(join(tmpdir(), 'scopegate-bot-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const bot = runBot(t, ['--url', server.wsUrl, '--token', 'not-the-token', '--identity', join(dir, 'id.json')], {})
  const { code, stderr } = await bot.exited
  t.equal(code, 1)
  t.equal(stderr, 'reminder-bot: unauthorized: gateway token mismatch [INVALID_REQUEST/AUTH_TOKEN_MISMATCH]\n')
})
