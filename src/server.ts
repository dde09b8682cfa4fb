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
  // SIGTERM/SIGINT: stop accepting, tell every socket (shutdown, 1012), finish
  // in-flight RPCs and scheduler runs, close the database, exit 0; exit 1 if
  // that takes longer than SHUTDOWN_GRACE_MS.
  closeWithGrace({ delay: config.shutdownGraceMs }, async ({ signal, err }) => {
    if (err !== undefined) app.log.error({ err }, 'shutting down after an error')
    else app.log.info({ signal, graceMs: config.shutdownGraceMs }, 'shutting down')
    await app.close()
    app.log.info('shut down cleanly')
  })
}
