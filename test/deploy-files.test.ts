// No Docker engine here: the deployment files are parsed and checked against
// what the code actually reads, and the image's health probe is run for real.
import { execFile } from 'node:child_process'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { promisify } from 'node:util'
import { DockerfileParser, type Instruction } from 'dockerfile-ast'
import { validate } from 'dockerfile-utils'
import t from 'tap'
import { parse } from 'yaml'
import { ENV_VARIABLES, loadConfig } from '../src/config.ts'
import { startServer } from './helpers/server.ts'

const run = promisify(execFile)
const ROOT = new URL('../', import.meta.url)
const read = (file: string): string => readFileSync(new URL(file, ROOT), 'utf8')

const compose = parse(read('docker-compose.yml'), { merge: true }) as {
  name?: string
  services: Record<string, any>
  volumes?: Record<string, unknown>
}
const GATEWAYS = ['scopegate-1', 'scopegate-2']
const dockerfileText = read('Dockerfile')
const dockerfile = DockerfileParser.parse(dockerfileText)

/** Compose's variable interpolation: ${V}, ${V:-default}, ${V-default}, ${V:?err}, ${V?err}, $$. */
function interpolate (value: string, env: Record<string, string | undefined>): string {
  return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}/g, (whole, name: string | undefined, op: string | undefined, arg: string | undefined) => {
    if (name === undefined) return '$'
    const set = env[name]
    const missing = op?.startsWith(':') === true ? set === undefined || set === '' : set === undefined
    if (op?.endsWith('?') === true && missing) throw new Error(`required variable ${name} is missing a value: ${arg ?? ''}`)
    if (op?.endsWith('-') === true && missing) return arg ?? ''
    return set ?? ''
  })
}

function environmentOf (service: any): Record<string, string> {
  const env = service.environment ?? {}
  if (Array.isArray(env)) {
    return Object.fromEntries(env.map((entry: string) => {
      const at = entry.indexOf('=')
      return at === -1 ? [entry, ''] : [entry.slice(0, at), entry.slice(at + 1)]
    }))
  }
  return Object.fromEntries(Object.entries(env).map(([key, value]) => [key, String(value)]))
}

function variablesUsed (text: string): Set<string> {
  return new Set([...text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g)].map((match) => match[1] as string))
}

function stages (): Instruction[][] {
  const result: Instruction[][] = []
  for (const instruction of dockerfile.getInstructions()) {
    if (instruction.getKeyword() === 'FROM') result.push([])
    result.at(-1)?.push(instruction)
  }
  return result
}

function healthcheckCommand (): string[] {
  const healthcheck = dockerfile.getInstructions().find((i) => i.getKeyword() === 'HEALTHCHECK')
  if (healthcheck === undefined) throw new Error('no HEALTHCHECK')
  const args = healthcheck.getArgumentsContent() ?? ''
  const json = args.replace(/^CMD\s+/, '')
  return JSON.parse(json) as string[]
}

t.test('docker-compose.yml: postgres plus two gateways that wait for it', async (t) => {
  t.same(Object.keys(compose.services).sort(), ['postgres', ...GATEWAYS].sort())

  const postgres = compose.services.postgres
  t.match(postgres.image, /^postgres:15(\b|$)/)
  t.match(JSON.stringify(postgres.healthcheck.test), /pg_isready/, 'postgres is healthy only when pg_isready says so')
  const volume = (postgres.volumes as string[]).find((v) => v.endsWith(':/var/lib/postgresql/data'))
  t.ok(volume, 'the data directory is on a volume')
  const volumeName = volume?.split(':')[0] ?? ''
  t.ok(compose.volumes !== undefined && volumeName in compose.volumes, `${volumeName} is a named volume declared at the top level`)

  const hostPorts = new Map<string, string[]>()
  for (const name of GATEWAYS) {
    const service = compose.services[name]
    t.equal(service.build?.context ?? service.build, '.', `${name} is built from the repo's Dockerfile`)
    t.same(service.depends_on, { postgres: { condition: 'service_healthy' } }, `${name} starts once postgres is healthy`)
    const env = environmentOf(service)
    t.equal(env.HOST, '0.0.0.0', `${name} listens on every interface inside its container`)
    const unknown = Object.keys(env).filter((key) => !ENV_VARIABLES.includes(key))
    t.same(unknown, [], `${name} sets only variables src/config.ts reads`)
    t.match(env.DATABASE_URL, /^postgres(ql)?:\/\/[^@]+@postgres:5432\//, 'DATABASE_URL points at the postgres service')
    t.match(env.GATEWAY_TOKEN, /^\$\{GATEWAY_TOKEN:\?[^}]+\}$/, 'GATEWAY_TOKEN must come from the environment')
    t.match(env.JWT_SECRET, /^\$\{JWT_SECRET:\?[^}]+\}$/, 'JWT_SECRET must come from the environment')
    hostPorts.set(name, (service.ports as string[]).map(String))
  }
  t.same(hostPorts.get('scopegate-1'), ['18789:18789'])
  t.same(hostPorts.get('scopegate-2'), ['18790:18789'])

  // What the container would see, given the variables: a configuration loadConfig accepts.
  const given = { GATEWAY_TOKEN: 'g'.repeat(24), JWT_SECRET: 's'.repeat(40) }
  for (const name of GATEWAYS) {
    const env = Object.fromEntries(Object.entries(environmentOf(compose.services[name])).map(([key, value]) => [key, interpolate(value, given)]))
    const config = loadConfig({ ...env, DATA_DIR: '/nonexistent/unused' })
    t.equal(config.host, '0.0.0.0')
    t.equal(config.port, 18789, 'the port the Dockerfile exposes and the mapping targets')
    t.equal(config.databaseUrl, 'postgres://scopegate:scopegate@postgres:5432/scopegate')
    t.equal(config.gatewayToken, given.GATEWAY_TOKEN)
    t.equal(config.jwtSecret, given.JWT_SECRET)
    t.throws(() => interpolate(environmentOf(compose.services[name]).GATEWAY_TOKEN ?? '', { JWT_SECRET: given.JWT_SECRET }), /set GATEWAY_TOKEN/,
      'compose refuses to start without GATEWAY_TOKEN')
    t.throws(() => interpolate(environmentOf(compose.services[name]).JWT_SECRET ?? '', { GATEWAY_TOKEN: given.GATEWAY_TOKEN, JWT_SECRET: '' }), /set JWT_SECRET/,
      'an empty JWT_SECRET is refused too')
  }
  // The postgres service's credentials agree with the URL the gateways use.
  const pgEnv = environmentOf(postgres)
  const url = new URL(interpolate(environmentOf(compose.services['scopegate-1']).DATABASE_URL ?? '', {}))
  t.equal(url.username, pgEnv.POSTGRES_USER)
  t.equal(url.password, interpolate(pgEnv.POSTGRES_PASSWORD ?? '', {}))
  t.equal(url.pathname, `/${pgEnv.POSTGRES_DB}`)
})

t.test('.env.example lists every variable the compose file uses, without secrets', async (t) => {
  const text = read('.env.example')
  const listed = new Map<string, string>()
  for (const line of text.split('\n')) {
    const match = /^#?\s*([A-Z][A-Z0-9_]*)=(.*)$/.exec(line.trim())
    if (match !== null) listed.set(match[1] as string, match[2] as string)
  }
  for (const name of variablesUsed(read('docker-compose.yml'))) t.ok(listed.has(name), `.env.example lists ${name}`)
  const composeOnly = new Set(['POSTGRES_PASSWORD'])
  for (const name of listed.keys()) t.ok(ENV_VARIABLES.includes(name) || composeOnly.has(name), `${name} is a variable something reads`)
  for (const name of ENV_VARIABLES) t.ok(listed.has(name), `.env.example documents ${name}`)
  t.equal(listed.get('GATEWAY_TOKEN'), '', 'no gateway token in the example')
  t.equal(listed.get('JWT_SECRET'), '', 'no JWT secret in the example')
})

t.test('Dockerfile: lint-clean, two stages, non-root, production, health-checked, serves', async (t) => {
  t.same(validate(dockerfileText).map((d) => `${d.range.start.line + 1}: ${d.message}`), [], 'dockerfile-utils finds nothing')

  const froms = dockerfile.getFROMs()
  t.equal(froms.length, 2, 'a build stage and a runtime stage')
  for (const from of froms) t.equal(from.getImage(), 'node:20.20-bookworm-slim')
  t.equal(froms[0]?.getBuildStage(), 'build')

  const [build = [], runtime = []] = stages()
  const runs = build.filter((i) => i.getKeyword() === 'RUN').map((i) => i.getArgumentsContent() ?? '').join(' ')
  t.match(runs, /npm ci\b/, 'the build stage installs from the lockfile')
  t.match(runs, /npm run prepare\b/, 'and runs prepare (prisma generate + tsc)')
  t.match(runs, /npm prune --omit=dev\b/, 'and drops dev dependencies')
  t.ok(runs.indexOf('npm run prepare') < runs.indexOf('npm prune'), 'building before pruning: prisma is a devDependency')

  const copies = runtime.filter((i) => i.getKeyword() === 'COPY')
  const copied = copies.map((i) => {
    const [src = ''] = (i.getArgumentsContent() ?? '').split(/\s+/)
    return src.replace(/^\/app\//, '')
  })
  t.same(copied.sort(), ['bin', 'dist', 'node_modules', 'package.json', 'prisma'], 'the runtime stage has only what serve loads')
  for (const copy of copies) t.match(copy.getArgumentsContent(), /^\/app\//, 'copied from the build stage')

  const envs = new Map<string, string>()
  for (const i of runtime.filter((i) => i.getKeyword() === 'ENV')) {
    for (const property of (i as unknown as { getProperties: () => Array<{ getName: () => string, getValue: () => string | null }> }).getProperties()) {
      envs.set(property.getName(), property.getValue() ?? '')
    }
  }
  t.equal(envs.get('NODE_ENV'), 'production')
  t.equal(envs.get('HOST'), '0.0.0.0')
  t.equal(envs.get('DATA_DIR'), '/data')
  for (const name of envs.keys()) t.ok(name === 'NODE_ENV' || ENV_VARIABLES.includes(name), `ENV ${name} is a variable the code reads`)

  const last = (keyword: string): string | undefined => runtime.filter((i) => i.getKeyword() === keyword).at(-1)?.getArgumentsContent() ?? undefined
  const user = last('USER')
  t.ok(user !== undefined && !/^(root|0)(:|$)/.test(user), `runs as a non-root user (${user})`)
  t.equal(user, 'node')
  t.match(last('VOLUME'), /\/data/)
  t.equal(last('EXPOSE'), '18789')
  t.same(JSON.parse(last('CMD') ?? 'null'), ['node', 'bin/scopegate.js', 'serve'])
  const probe = healthcheckCommand()
  t.equal(probe[0], 'node', 'the health probe needs nothing but node (no curl in slim images)')
  t.match(probe.join(' '), /\/healthz/)

  // The files the image starts from are in the repo, and the shim is executable.
  const shim = new URL('bin/scopegate.js', ROOT)
  t.ok(existsSync(shim))
  t.equal(statSync(shim).mode & 0o111, 0o111, 'bin/scopegate.js is executable')
  t.ok(existsSync(new URL('prisma/migrations', ROOT)), 'migrations are read from prisma/migrations at start')
})

t.test('.dockerignore keeps local state out and lets the build inputs in', async (t) => {
  const ignored = read('.dockerignore').split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#'))
  for (const entry of ['node_modules', 'dist', '.env', '.git', 'src/generated']) t.ok(ignored.includes(entry), `${entry} is ignored`)
  const [build = []] = stages()
  const inputs = build.filter((i) => i.getKeyword() === 'COPY').flatMap((i) => (i.getArgumentsContent() ?? '').split(/\s+/).slice(0, -1))
  t.ok(inputs.length > 0)
  for (const input of inputs) {
    t.notOk(ignored.includes(input), `${input} (copied by the build stage) is not ignored`)
    t.ok(existsSync(new URL(input, ROOT)), `${input} exists`)
  }
})

t.test('the image HEALTHCHECK probe passes against a running gateway and fails without one', async (t) => {
  const [command = '', ...args] = healthcheckCommand()
  const server = await startServer(t)
  const port = new URL(server.httpUrl).port
  const ok = await run(command === 'node' ? process.execPath : command, args, { env: { ...process.env, PORT: port }, timeout: 10_000 })
  t.equal(ok.stderr, '')

  await server.close()
  await t.rejects(run(process.execPath, args, { env: { ...process.env, PORT: port }, timeout: 10_000 }), { code: 1 }, 'exit 1 when nothing answers')
})
