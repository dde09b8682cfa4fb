// The CLI as a user runs it: `node bin/scopegate.js …` in a subprocess. The
// shim loads dist/, which `npm test` builds first (the pretest script).
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { ENV_VARIABLES } from '../../src/config.ts'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const SHIM = join(ROOT, 'bin', 'scopegate.js')

if (!existsSync(join(ROOT, 'dist', 'cli', 'index.js'))) {
  throw new Error('dist/ is missing: run `npm run build` first (npm test does it in pretest)')
}

/** The environment of a user's shell, without any scopegate variable from ours. */
export function cleanEnv (extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const name of ENV_VARIABLES) delete env[name]
  delete env.SCOPEGATE_URL
  delete env.SCOPEGATE_TOKEN
  return { ...env, ...extra }
}

export interface RunResult { code: number, stdout: string, stderr: string }

export async function runCli (args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<RunResult> {
  return await new Promise((resolve) => {
    execFile(process.execPath, [SHIM, ...args], { env: cleanEnv(env), timeout: timeoutMs, cwd: ROOT }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1
      resolve({ code, stdout, stderr })
    })
  })
}

/** A stack trace line: the CLI never prints one for an expected failure. */
export const STACK_LINE = /^\s+at .+:\d+:\d+\)?$/m

type Asserts = Pick<Test, 'equal' | 'not' | 'match' | 'notMatch' | 'throws' | 'fail'>

/** Runs the CLI against `server` with --url and an admin --token (or the given one). */
export function cliFor (server: { httpUrl: string, adminToken: () => string }): (args: string[], token?: string) => Promise<RunResult> {
  return async (args, token = server.adminToken()) => await runCli([...args, '--url', server.httpUrl, '--token', token], {}, 60_000)
}

/** Exit 0, stderr empty, stdout exactly one JSON document: returns it. */
export function json (t: Asserts, res: RunResult, label: string): any {
  t.equal(res.code, 0, `${label}: exit 0 (${res.stderr.trim()})`)
  t.equal(res.stderr, '', `${label}: nothing on stderr`)
  try {
    return JSON.parse(res.stdout)
  } catch (err) {
    t.fail(`${label}: stdout is one JSON document: ${(err as Error).message}: ${res.stdout}`)
    return undefined
  }
}

/** Exit 0 and a table or line on stdout, not JSON. */
export function human (t: Asserts, res: RunResult, label: string): string {
  t.equal(res.code, 0, `${label}: exit 0 (${res.stderr.trim()})`)
  t.not(res.stdout, '', `${label}: prints something`)
  t.throws(() => JSON.parse(res.stdout), `${label}: not JSON by default`)
  return res.stdout
}

/** Exit `code` with a message on stderr matching `message`, nothing on stdout, no stack. */
export function fails (t: Asserts, res: RunResult, code: 1 | 2, message: RegExp, label: string): void {
  t.equal(res.code, code, `${label}: exit ${code}`)
  t.match(res.stderr, message, `${label}: says why`)
  t.equal(res.stdout, '', `${label}: nothing on stdout`)
  t.notMatch(res.stderr, STACK_LINE, `${label}: no stack trace`)
}
