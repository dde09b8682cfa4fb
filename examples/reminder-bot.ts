// A channel bot built on the scopegate client SDK (src/client). It connects
// with its own Ed25519 identity; the first time, an admin must approve it, so
// it prints its pairing request and the command that approves it, and waits.
// Once approved it adds a one-shot reminder a few seconds ahead, prints the
// reminder when the gateway fires it (`cron.fire`), and exits 0.
//
//   npx tsx examples/reminder-bot.ts [--url ws://127.0.0.1:18789/] [--token GATEWAY_TOKEN]
//       [--identity .scopegate/reminder-bot.json] [--text "stand up and stretch"] [--in 5]
//
// Environment: SCOPEGATE_WS_URL, GATEWAY_TOKEN, REMINDER_BOT_IDENTITY. The
// identity file (mode 0600) keeps the key and, after the first admitted
// connect, the device token, used from then on instead of the gateway token.
import { parseArgs } from 'node:util'
import { GatewayClient, GatewayError, PairingRequiredError, type CronFireEvent, type HelloOk } from '../src/client/index.ts'

const { values: args } = parseArgs({
  options: {
    url: { type: 'string', default: process.env.SCOPEGATE_WS_URL ?? 'ws://127.0.0.1:18789/' },
    token: { type: 'string', default: process.env.GATEWAY_TOKEN },
    identity: { type: 'string', default: process.env.REMINDER_BOT_IDENTITY ?? '.scopegate/reminder-bot.json' },
    text: { type: 'string', default: 'stand up and stretch' },
    /** Seconds from now. */
    in: { type: 'string', default: '5' },
    /** How often to ask again while the pairing request waits for an admin (ms). */
    'poll-ms': { type: 'string', default: '2000' },
    /** How long to wait for the approval, then the reminder (ms). */
    'wait-ms': { type: 'string', default: '300000' }
  }
})

const inSeconds = Number(args.in)
const pollMs = Number(args['poll-ms'])
const waitMs = Number(args['wait-ms'])
if (!(inSeconds >= 0) || !(pollMs > 0) || !(waitMs > 0)) {
  console.error('reminder-bot: --in, --poll-ms and --wait-ms must be positive numbers')
  process.exit(2)
}

/** The REST base of the gateway behind a ws:// URL (for the approve command we print). */
function restBase (wsUrl: string): string {
  const url = new URL(wsUrl)
  url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:'
  return url.origin
}

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

/** Connects; while refused NOT_PAIRED, shows the request once and asks again (the same request is reused). */
async function connectOnceApproved (client: GatewayClient): Promise<HelloOk> {
  const deadline = Date.now() + waitMs
  let shown: string | undefined
  for (;;) {
    try {
      // retry: a gateway that is down or restarting is waited for (with backoff), not an error.
      return await client.connect({ retry: true })
    } catch (err) {
      if (!(err instanceof PairingRequiredError)) throw err
      if (err.requestId !== shown) {
        shown = err.requestId
        console.log(`pairing required (${err.reason}): request ${err.requestId ?? '(none: refused by policy)'}`)
        if (err.requestId !== undefined) {
          console.log(`approve it with: scopegate requests approve ${err.requestId}`)
          console.log(`  or: curl -X POST -H "authorization: Bearer $ADMIN" ${restBase(args.url)}/api/v1/pairing-requests/${err.requestId}/approve`)
        }
        console.log('waiting for approval...')
      }
      if (Date.now() + pollMs > deadline) throw new Error(`not approved within ${waitMs} ms; ${err.remediationHint ?? err.message}`)
      await sleep(pollMs)
    }
  }
}

async function main (): Promise<void> {
  const client = new GatewayClient({
    url: args.url,
    identityPath: args.identity,
    ...(args.token !== undefined && args.token !== '' && { gatewayToken: args.token }),
    role: 'operator',
    // cron.add needs operator.admin; the fires of a job go to the device that added it.
    scopes: ['operator.admin'],
    client: { id: 'reminder-bot', mode: 'backend', displayName: 'reminder bot' }
  })
  process.once('SIGINT', () => { void client.close().then(() => process.exit(130)) })
  client.on('reconnecting', ({ attempt, delayMs, code, reason }) => console.log(`gateway not available (${code} ${reason}); trying again (${attempt}) in ${delayMs} ms`))
  client.on('reconnected', () => console.log('reconnected'))

  console.log(`device ${client.deviceId} (identity ${client.identity.path})`)
  const hello = await connectOnceApproved(client)
  console.log(`connected: role ${hello.auth.role}, scopes [${hello.auth.scopes.join(', ')}] via ${hello.auth.method}`)

  // Listen before adding: a fire is kept for an offline owner and may come at any time.
  const fires: CronFireEvent[] = []
  let wake = (): void => {}
  client.on('cron.fire', (fire) => {
    fires.push(fire)
    wake()
  })

  const at = new Date(Date.now() + inSeconds * 1000).toISOString()
  const job = await client.call('cron.add', {
    name: 'reminder',
    schedule: { kind: 'at', at },
    payload: { kind: 'systemEvent', text: args.text },
    sessionTarget: 'main',
    wakeMode: 'now'
  })
  console.log(`reminder added: "${args.text}" at ${at} (job ${job.id})`)

  const deadline = Date.now() + inSeconds * 1000 + waitMs
  let fire: CronFireEvent | undefined
  while ((fire = fires.find((f) => f.jobId === job.id)) === undefined) {
    if (Date.now() > deadline) throw new Error(`the reminder did not fire within ${waitMs} ms of ${at}`)
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 1000)
      wake = () => { clearTimeout(timer); resolve() }
    })
  }
  const text = fire.payload.kind === 'systemEvent' ? fire.payload.text : fire.payload.message
  console.log(`reminder: ${text} (job ${fire.jobId}, run ${fire.runId}, fired ${new Date(fire.firedAtMs).toISOString()})`)
  await client.close()
}

main().then(() => { process.exitCode = 0 }, (err: unknown) => {
  const detail = err instanceof GatewayError && err.detailsCode !== undefined ? ` [${err.code}/${err.detailsCode}]` : ''
  console.error(`reminder-bot: ${(err as Error).message}${detail}`)
  process.exitCode = 1
})
