import { readFileSync } from 'node:fs'
import { Command, CommanderError, Option } from 'commander'
import type { AdminRole } from '../auth/admin-jwt.ts'
import { CliError } from './api.ts'
import { parseDuration } from './commands/common.ts'
import { registerAdminCommands } from './commands/index.ts'

// Each command loads only what it needs: the server (Fastify, Prisma, PGlite)
// only for `serve`, the configuration (env-schema, TypeBox) and the JWT code
// only for the commands that read them. The admin commands talk to the REST
// API and load neither, so they start in a fraction of the time.

// Restated so that the JWT code loads only to sign a token; the compiler
// checks the list against AdminRole both ways.
const ADMIN_ROLES = ['admin', 'viewer'] as const satisfies readonly AdminRole[]
const EVERY_ADMIN_ROLE_LISTED: [Exclude<AdminRole, (typeof ADMIN_ROLES)[number]>] extends [never] ? true : never = true
void EVERY_ADMIN_ROLE_LISTED
const VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

export { parseDuration } from './commands/common.ts'

export function buildProgram (): Command {
  const program = new Command('scopegate')
    .description('Decides which devices may talk to a gateway and what they may do once connected')
    .version(VERSION)
    .showHelpAfterError()
    // Usage errors exit 2 (API.md), not commander's default 1: main() decides.
    // Set before the subcommands are added so that they inherit it.
    .exitOverride()

  program.command('serve')
    .description('run the gateway (configuration from the environment; see README)')
    .action(async () => {
      const { loadConfig } = await import('../config.ts')
      loadConfig(process.env) // a bad configuration fails before the server code loads
      const { serve } = await import('../server.ts')
      await serve()
    })

  program.command('admin-token')
    .description('print an admin JWT for the REST API (needs only JWT_SECRET, or DATA_DIR in embedded mode)')
    .option('--sub <name>', 'who the token speaks for (written into audit rows)', 'admin')
    .addOption(new Option('--role <role>', 'admin may change things; viewer may only read').choices(ADMIN_ROLES).default('admin'))
    .option('--ttl <duration>', 'lifetime, e.g. 30m, 1h, 7d', parseDuration, 3_600_000)
    .action(async (opts: { sub: string, role: AdminRole, ttl: number }) => {
      const [{ loadConfig }, { signAdminToken }] = await Promise.all([import('../config.ts'), import('../auth/admin-jwt.ts')])
      const config = loadConfig(process.env, ['JWT_SECRET'])
      process.stdout.write(signAdminToken(config.jwtSecret, { sub: opts.sub, role: opts.role }, opts.ttl) + '\n')
      process.stderr.write(`admin token for ${opts.sub} (${opts.role}), valid ${Math.round(opts.ttl / 60_000)} min: use it as "Authorization: Bearer <token>"\n`)
    })

  program.command('gateway-token')
    .description('print the shared gateway token that devices present before they are paired')
    .action(async () => {
      const { loadConfig } = await import('../config.ts')
      const config = loadConfig(process.env, ['GATEWAY_TOKEN'])
      process.stdout.write(config.gatewayToken + '\n')
    })

  registerAdminCommands(program)
  return program
}

export async function main (argv: string[] = process.argv): Promise<void> {
  try {
    await buildProgram().parseAsync(argv)
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed the message (or the help / version asked for).
      process.exitCode = err.exitCode === 0 ? 0 : 2
      return
    }
    if (err instanceof CliError) {
      // Admin commands: one line that says what went wrong and what to do next.
      process.stderr.write(`scopegate: ${err.message}\n`)
      process.exitCode = err.exitCode
      return
    }
    if (err instanceof Error && err.name === 'ConfigError') {
      process.stderr.write(`scopegate: ${err.message}\n`)
      process.exitCode = 2
      return
    }
    if (isExpectedFailure(err)) {
      // Expected failures (port taken, database unreachable or busy): the message says it all.
      process.stderr.write(`scopegate: ${(err as Error).message}\n`)
      process.exitCode = 1
      return
    }
    throw err
  }
}

/**
 * The database is busy (PGlite's lock) or its migrations cannot be applied, or
 * an operating-system error such as ECONNREFUSED or EADDRINUSE. Known by name
 * so that the token commands need not load the database code.
 */
function isExpectedFailure (err: unknown): boolean {
  if (!(err instanceof Error)) return false
  if (err.name === 'DatabaseInUseError' || err.name === 'MigrationError') return true
  const code = (err as NodeJS.ErrnoException).code
  return typeof code === 'string' && /^E[A-Z]+$/.test(code)
}
