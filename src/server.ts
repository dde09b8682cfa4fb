import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.ts'
import { loadConfig } from './config.ts'

/** Reads config, listens, and shuts down gracefully on signals. */
export async function serve (env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const config = loadConfig(env)
  const app = await buildApp(config)
  try {
    await app.listen({ port: config.port, host: config.host })
  } catch (err) {
    // Release the database (and PGlite's lock) so that the process can exit.
    await app.close()
    throw err
  }
  closeWithGrace({ delay: 10_000 }, async ({ signal, err }) => {
    if (err !== undefined) app.log.error({ err }, 'shutting down after an error')
    else app.log.info({ signal }, 'shutting down')
    await app.close()
  })
}
