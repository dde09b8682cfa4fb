// The CLI as a user runs it: `node bin/scopegate.js …` in a subprocess. The
// shim loads dist/, which `npm test` builds first (the pretest script).
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
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
