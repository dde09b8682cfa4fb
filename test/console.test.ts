// The admin web console at /console: how it is served (CSP, SPA fallback),
// and end to end in Debian's headless Chromium driven by playwright-core.
// Screenshots of every page go to .artifacts/console/ (gitignored).
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import type { AxeResults } from 'axe-core'
import Fastify from 'fastify'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import t from 'tap'
import consolePlugin, { CONSOLE_CSP, CONSOLE_ROOT } from '../src/console/plugin.ts'
import { TestDevice } from './helpers/device.ts'
import { pairDevice, requestPairing } from './helpers/pairing.ts'
import { startServer } from './helpers/server.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
// The flags that work on these machines (no sandbox as root, no GPU, and no background traffic to a closed network).
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
const ARTIFACTS = fileURLToPath(new URL('../.artifacts/console/', import.meta.url))
const TOKEN_KEY = 'scopegate.adminToken'
// axe-core, the accessibility rules engine, run inside each page (WCAG 2.x A and AA rules).
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')

// Tokens expire within 2 days here, so the devices page has one to highlight with its default 7-day window.
const server = await startServer(t, { deviceTokenTtlMs: 2 * 86_400_000 })

t.test('serves the built console at /console with a strict CSP and no inline script or style', async (t) => {
  t.ok(existsSync(`${CONSOLE_ROOT}/index.html`), 'npm run build put the console in dist/console/web')
  const res = await fetch(`${server.httpUrl}/console`)
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^text\/html/)
  t.equal(res.headers.get('content-security-policy'), CONSOLE_CSP)
  t.match(CONSOLE_CSP, /default-src 'self'/)
  t.notMatch(CONSOLE_CSP, /unsafe-inline|unsafe-eval/, 'no unsafe-inline or unsafe-eval')
  t.equal(res.headers.get('x-content-type-options'), 'nosniff')
  t.equal(res.headers.get('x-frame-options'), 'DENY')
  t.equal(res.headers.get('cache-control'), 'no-cache', 'index.html is revalidated')
  const html = await res.text()
  const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)]
  t.ok(scripts.length > 0)
  for (const [, attrs = '', body = ''] of scripts) {
    t.match(attrs, /\bsrc="\/console\/assets\/[^"]+\.js"/, 'every script is a file of the console')
    t.equal(body.trim(), '', 'and has no inline body')
  }
  t.notMatch(html, /<style\b|\sstyle=|\son[a-z]+=/i, 'no inline style and no inline event handler')

  const asset = /src="(\/console\/assets\/[^"]+\.js)"/.exec(html)?.[1] ?? ''
  const js = await fetch(server.httpUrl + asset)
  t.equal(js.status, 200)
  t.match(js.headers.get('content-type'), /javascript/)
  t.equal(js.headers.get('content-security-policy'), CONSOLE_CSP)
  t.match(js.headers.get('cache-control'), /immutable/, 'hashed assets are cached for good')
})

t.test('answers the console\'s own routes with index.html and a missing file with 404', async (t) => {
  for (const path of ['/console/', '/console/devices', '/console/cron', '/console/audit?action=token.rotated', '/console/no/such/page']) {
    const res = await fetch(server.httpUrl + path)
    t.equal(res.status, 200, `${path} is the app`)
    t.match(await res.text(), /<div id="app">/)
    t.equal(res.headers.get('content-security-policy'), CONSOLE_CSP)
  }
  for (const path of ['/console/assets/missing.js', '/console/favicon.ico']) {
    const res = await fetch(server.httpUrl + path)
    t.equal(res.status, 404, `${path} is 404, not the page`)
  }
})

t.test('without a build, /console says so with a 503 instead of failing the server', async (t) => {
  const app = Fastify()
  await app.register(consolePlugin, { root: '/nonexistent/console-build' })
  t.teardown(async () => { await app.close() })
  for (const url of ['/console', '/console/devices']) {
    const res = await app.inject({ url })
    t.equal(res.statusCode, 503)
    t.match(res.body, /npm run build/)
    t.equal(res.headers['content-security-policy'], CONSOLE_CSP)
  }
})

t.test('the API and the gateway keep their own headers (no console CSP)', async (t) => {
  const api = await server.api('GET', '/api/v1/devices')
  t.equal(api.status, 200)
  t.equal(api.headers.get('content-security-policy'), null)
  const health = await fetch(`${server.httpUrl}/healthz`)
  t.equal(health.headers.get('content-security-policy'), null)
})

t.test('end to end in headless Chromium', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`no Chromium at ${CHROMIUM}: install Debian's (apt-get install -y chromium; .ci/run does this) or set CHROMIUM_PATH`)
    return
  }
  mkdirSync(ARTIFACTS, { recursive: true })
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS })
  t.teardown(async () => { await browser.close() })
  const problems: string[] = []
  const a11y: string[] = []
  const shot = async (page: Page, name: string): Promise<void> => {
    await page.screenshot({ path: `${ARTIFACTS}${name}.png`, fullPage: true })
    a11y.push(...await accessibility(page, name))
  }

  const desktop = await openConsole(browser, { width: 1280, height: 860 }, problems)
  const page = desktop.page
  const token = server.adminToken('admin', 'alice')

  await t.test('signs in with an admin token kept in sessionStorage, never in the URL', async (t) => {
    await page.goto(`${server.httpUrl}/console/`)
    const input = page.getByLabel('Admin token')
    await input.waitFor()
    await shot(page, '01-sign-in')
    await input.fill('not a token')
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByRole('alert').filter({ hasText: 'not a JWT' }).waitFor()

    await input.fill(token)
    await input.press('Enter')
    await page.getByRole('heading', { name: 'Pairing requests', level: 1 }).waitFor()
    await page.getByTestId('stream-status').filter({ hasText: 'Live' }).waitFor()
    t.notMatch(page.url(), /ey[A-Za-z0-9_-]{10,}/, 'no token in the URL')
    t.equal(await page.evaluate((key) => sessionStorage.getItem(key), TOKEN_KEY), token, 'the token is in sessionStorage')
    t.equal(await page.evaluate(() => localStorage.length), 0, 'nothing in localStorage')
    t.same(await desktop.context.cookies(), [], 'no cookie')
    await page.evaluate(() => { document.documentElement.dataset.loadedOnce = 'yes' })
  })

  const device = new TestDevice()
  let requestId = ''
  await t.test('a refused device\'s request appears in the open console without a reload', async (t) => {
    const refused = await requestPairing(server, ['operator.read', 'operator.write', 'operator.pairing'], { device, platform: 'Linux', deviceFamily: 'laptop' })
    t.equal(refused.res.error.code, 'NOT_PAIRED', 'the device is refused')
    requestId = refused.requestId
    const card = page.locator(`[data-request-id="${requestId}"]`)
    await card.waitFor({ timeout: 5000 })
    t.equal(await page.evaluate(() => document.documentElement.dataset.loadedOnce), 'yes', 'the page was not reloaded')
    t.equal(await card.getByTestId('reason').textContent(), 'not-paired')
    t.match(await card.textContent(), /operator\.write/)
    t.equal(await page.locator('.nav .count').textContent(), '1', 'the nav counts it')
    await shot(page, '02-requests')
  })

  await t.test('the admin approves with narrowed scopes; the device connects with exactly those', async (t) => {
    const card = page.locator(`[data-request-id="${requestId}"]`)
    await card.getByLabel('operator.pairing', { exact: true }).uncheck()
    const approve = card.getByRole('button', { name: 'Approve 2 of 3 scopes' })
    await approve.click()
    await card.waitFor({ state: 'detached' })
    await page.getByRole('status').filter({ hasText: 'Approved device' }).waitFor()
    await page.getByTestId('no-requests').waitFor()

    const paired = await server.api('GET', `/api/v1/devices/${device.id}`)
    t.same(paired.body.roleScopes, { operator: ['operator.read', 'operator.write'] }, 'approved for the two ticked scopes only')
    const request = await server.api('GET', `/api/v1/pairing-requests/${requestId}`)
    t.match(request.body, { state: 'approved', grantedScopes: ['operator.read', 'operator.write'] })
    const audit = await server.api('GET', `/api/v1/audit?deviceId=${device.id}&action=pairing.approved`)
    t.equal(audit.body.items[0]?.actor, 'alice', 'the audit row names the admin')
  })

  const conn = await device.connect(server.wsUrl, { token: server.config.gatewayToken, scopes: ['operator.read', 'operator.write'], platform: 'Linux', deviceFamily: 'laptop' })
  t.equal(conn.res.ok, true, 'the device is admitted')
  t.same(conn.res.payload.auth.scopes, ['operator.read', 'operator.write'], 'with exactly the approved scopes')
  t.teardown(async () => { await conn.socket.close() })

  await t.test('the devices page shows roles, scopes, last seen and tokens, highlighting tokens that expire soon', async (t) => {
    await page.getByRole('link', { name: 'Devices' }).click()
    await page.getByRole('heading', { name: 'Devices', level: 1 }).waitFor()
    const card = page.locator(`[data-device-id="${device.id}"]`)
    await card.waitFor()
    t.equal(await page.evaluate(() => document.documentElement.dataset.loadedOnce), 'yes', 'moved without a reload')
    t.ok(await card.locator('[data-scope="operator.write"]').isVisible())
    await card.getByTestId('expiring-soon').waitFor()
    t.match(await page.getByTestId('expiring-summary').textContent(), /1 device has a token expiring within 7 days/)
    await page.getByLabel('Highlight tokens expiring within').selectOption({ label: '1 day' })
    await page.getByTestId('expiring-summary').filter({ hasText: 'No device has a token expiring within 1 day' }).waitFor()
    t.equal(await card.getByTestId('expiring-soon').count(), 0, 'not within a day')
    await page.getByLabel('Highlight tokens expiring within').selectOption({ label: '7 days' })
    await card.getByTestId('expiring-soon').waitFor()
    await shot(page, '03-devices')
  })

  await t.test('revoking a scope, after a confirmation, closes the device\'s socket with scope revoked (<scope>)', async (t) => {
    const card = page.locator(`[data-device-id="${device.id}"]`)
    await card.getByRole('button', { name: 'Revoke operator.write from role operator' }).click()
    const dialog = page.getByRole('dialog', { name: 'Revoke operator.write?' })
    await dialog.waitFor()
    t.equal(await page.evaluate(() => document.activeElement?.textContent), 'Cancel', 'the safe choice has the focus')
    await shot(page, '04-devices-confirm')
    await page.keyboard.press('Escape')
    await dialog.waitFor({ state: 'detached' })
    t.notOk(conn.socket.isClosed, 'Escape cancels: nothing revoked')

    await card.getByRole('button', { name: 'Revoke operator.write from role operator' }).click()
    await dialog.getByRole('button', { name: 'Revoke scope' }).click()
    t.same(await conn.socket.closedWithin(5000), { code: 1008, reason: 'scope revoked (operator.write)' })
    await card.locator('[data-scope="operator.write"]').waitFor({ state: 'detached' })
    t.ok(await card.locator('[data-scope="operator.read"]').isVisible(), 'operator.read stays')
  })

  let rotated = ''
  await t.test('rotating a token shows the new token once, and it works', async (t) => {
    const card = page.locator(`[data-device-id="${device.id}"]`)
    await card.getByRole('button', { name: 'Rotate the operator token' }).click()
    await page.getByRole('dialog', { name: 'Rotate the operator token?' }).getByRole('button', { name: 'Rotate token' }).click()
    const secret = page.getByTestId('rotated-token')
    await secret.waitFor()
    rotated = await secret.inputValue()
    t.ok(rotated.length > 20, 'the token is shown')
    await shot(page, '05-devices-rotated')
    await page.getByRole('button', { name: 'Done, I saved it' }).click()
    await secret.waitFor({ state: 'detached' })
    t.equal(await page.getByText(rotated).count(), 0, 'and gone once closed')
    const again = await device.connect(server.wsUrl, { deviceToken: rotated, scopes: ['operator.read'], platform: 'Linux', deviceFamily: 'laptop' })
    t.equal(again.res.ok, true, 'the device connects with the rotated token')
    await again.socket.close()
  })

  await t.test('the cron page shows jobs, their next run and last runs', async (t) => {
    const job = await server.api('POST', '/api/v1/cron/jobs', { body: { name: 'nightly report', description: 'Summarises the day for the operators', schedule: { kind: 'cron', expr: '0 2 * * *', tz: 'Europe/Paris' }, payload: { kind: 'systemEvent', text: 'report' } } })
    t.equal(job.status, 200)
    await server.api('POST', '/api/v1/cron/jobs', { body: { name: 'heartbeat', schedule: { kind: 'every', everyMs: 3_600_000 }, payload: { kind: 'agentTurn', message: 'ping' } } })
    t.equal((await server.api('POST', `/api/v1/cron/jobs/${job.body.id}/run`, { body: {} })).status, 200)
    await page.getByRole('link', { name: 'Cron' }).click()
    const card = page.locator(`[data-job-id="${job.body.id}"]`)
    await card.waitFor()
    t.match(await card.textContent(), /cron 0 2 \* \* \* \(Europe\/Paris\)/)
    await card.getByText('Last runs').click()
    await card.locator('tbody tr').first().waitFor()
    await card.locator('.badge-ok', { hasText: 'ok' }).first().waitFor()
    await shot(page, '06-cron')
  })

  await t.test('the audit page filters by device and action', async (t) => {
    await page.getByRole('link', { name: 'Audit' }).click()
    await page.getByTestId('audit-table').waitFor()
    await page.getByLabel('Device id', { exact: true }).fill(device.id)
    await page.getByLabel('Action', { exact: true }).selectOption('scope.revoked')
    await page.getByRole('button', { name: 'Apply filters' }).click()
    await page.waitForURL(/action=scope\.revoked/)
    await page.locator('tbody tr[data-action="scope.revoked"]').first().waitFor()
    const actions = await page.locator('tbody tr').evaluateAll((rows) => rows.map((row) => row.getAttribute('data-action')))
    t.same(actions, ['scope.revoked'], 'only the matching entry')
    t.notMatch(page.url(), /ey[A-Za-z0-9_-]{10,}/, 'filters in the URL, the token not')
    await page.getByRole('button', { name: 'Clear' }).click()
    await page.waitForURL(/\/console\/audit$/)
    await page.locator('tbody tr[data-action="pairing.approved"]').first().waitFor()
    await shot(page, '07-audit')
  })

  await t.test('removing a device, after a confirmation, closes its sockets with device removed', async (t) => {
    const live = await device.connect(server.wsUrl, { deviceToken: rotated, scopes: ['operator.read'], platform: 'Linux', deviceFamily: 'laptop' })
    t.equal(live.res.ok, true)
    await page.getByRole('link', { name: 'Devices' }).click()
    const card = page.locator(`[data-device-id="${device.id}"]`)
    await card.getByRole('button', { name: 'Remove device…' }).click()
    await page.getByRole('dialog', { name: 'Remove this device?' }).getByRole('button', { name: 'Remove device' }).click()
    t.same(await live.socket.closedWithin(5000), { code: 1008, reason: 'device removed' })
    await card.waitFor({ state: 'detached' })
  })

  await t.test('at phone width (375 px) every page fits without sideways scrolling', async (t) => {
    // A paired device that asks for more: a scope-upgrade request, requested and approved scopes side by side.
    const upgrader = await pairDevice(server, ['operator.read'], { platform: 'ios', deviceFamily: 'iPhone' })
    await requestPairing(server, ['operator.read', 'operator.admin'], { device: upgrader.device, platform: 'ios', deviceFamily: 'iPhone' })
    const phone = await openConsole(browser, { width: 375, height: 812 }, problems, 2)
    await phone.page.goto(`${server.httpUrl}/console/`)
    await phone.page.getByLabel('Admin token').fill(token)
    await phone.page.getByRole('button', { name: 'Sign in' }).click()
    await phone.page.locator('[data-request-id]').first().waitFor()
    const pages: Array<[string, string]> = [['Requests', '08-phone-requests'], ['Devices', '09-phone-devices'], ['Cron', '10-phone-cron'], ['Audit', '11-phone-audit']]
    for (const [link, name] of pages) {
      await phone.page.getByRole('link', { name: link, exact: false }).first().click()
      await phone.page.locator('main h1').waitFor()
      await phone.page.locator('main .card, main table, main .empty').first().waitFor()
      const width = await phone.page.evaluate(() => document.documentElement.scrollWidth)
      t.ok(width <= 375, `${link}: no sideways scrolling (${width} px)`)
      await shot(phone.page, name)
    }
  })

  await t.test('a viewer sees the pending requests but no approve button', async (t) => {
    const viewer = await openConsole(browser, { width: 1024, height: 700 }, problems)
    await viewer.page.goto(`${server.httpUrl}/console/`)
    await viewer.page.getByLabel('Admin token').fill(server.adminToken('viewer', 'victor'))
    await viewer.page.getByRole('button', { name: 'Sign in' }).click()
    await viewer.page.locator('[data-request-id]').first().waitFor()
    t.equal(await viewer.page.getByRole('button', { name: /^Approve/ }).count(), 0)
    t.match(await viewer.page.locator('.who').textContent(), /viewer, read only/)
  })

  t.same(problems, [], 'no page error and no CSP violation in any page')
  t.same(a11y, [], 'axe-core finds no WCAG 2 A/AA violation on any page shot')
  t.ok(readdirSync(ARTIFACTS).filter((f) => f.endsWith('.png')).length >= 11, `screenshots in ${ARTIFACTS}`)
  t.ok(readFileSync(`${ARTIFACTS}02-requests.png`).length > 1000)
})

/** A fresh context (its own sessionStorage) and page, recording page errors and CSP violations. */
async function openConsole (browser: Browser, viewport: { width: number, height: number }, problems: string[], deviceScaleFactor = 1): Promise<{ context: BrowserContext, page: Page }> {
  const context = await browser.newContext({ viewport, deviceScaleFactor, hasTouch: deviceScaleFactor > 1 })
  const page = await context.newPage()
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content.Security.Policy|Refused to/i.test(message.text())) problems.push(`CSP: ${message.text()}`)
  })
  return { context, page }
}

/** The WCAG 2 A/AA violations axe-core finds in the page as it is now, one line each. */
async function accessibility (page: Page, label: string): Promise<string[]> {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern (a <script> tag would be refused).
  if (!await page.evaluate(() => 'axe' in window)) await page.evaluate(AXE_SOURCE)
  const violations = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run: (context: Document, options: object) => Promise<AxeResults> } }).axe
    const result = await axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] } })
    return result.violations.map((v) => `${v.id} (${v.impact ?? 'n/a'}): ${v.help}; ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`)
  })
  return violations.map((line) => `${label}: ${line}`)
}
