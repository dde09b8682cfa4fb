import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import type { FastifyInstance, FastifyReply } from 'fastify'

/**
 * The console's Content-Security-Policy: its own files only, no inline
 * script or style, no framing, API calls to this origin only.
 */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'"
].join('; ')

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin'
}

/** `vite build` writes here (src/console/web -> dist/console/web); the same path from src/ and from dist/. */
export const CONSOLE_ROOT = fileURLToPath(new URL('../../dist/console/web/', import.meta.url))

export interface ConsolePluginOptions {
  /** The built console (default CONSOLE_ROOT). */
  root?: string
}

/**
 * The admin web console at /console: the files `npm run build` put in
 * dist/console/web, and index.html for every other /console path (the
 * single-page app's own routes). Every response under /console carries the
 * CSP above; the API it calls stays under /api/v1, unchanged.
 */
async function consolePlugin (app: FastifyInstance, opts: ConsolePluginOptions): Promise<void> {
  const root = opts.root ?? CONSOLE_ROOT
  // Encapsulated: these headers go on the console's responses only, not on /api/v1 or the gateway.
  app.addHook('onSend', async (_request, reply, payload) => {
    reply.headers(SECURITY_HEADERS)
    return payload
  })

  if (!existsSync(join(root, 'index.html'))) {
    app.log.warn({ root }, 'the web console is not built (npm run build); /console answers 503')
    const notBuilt = async (_request: unknown, reply: FastifyReply): Promise<FastifyReply> =>
      await reply.status(503).type('text/plain; charset=utf-8').send('The console is not built: run npm run build.\n')
    app.get('/console', { schema: { hide: true } }, notBuilt)
    app.get('/console/*', { schema: { hide: true } }, notBuilt)
    return
  }

  await app.register(fastifyStatic, {
    root,
    prefix: '/console/',
    // One route per built file, found at start; everything else falls to the SPA route below.
    wildcard: false,
    index: false,
    cacheControl: false,
    setHeaders: (reply, path) => {
      // Vite puts a content hash in every asset's name; index.html must be revalidated to pick up a new build.
      reply.header('cache-control', path.includes('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache')
    }
  })

  const spa = async (_request: unknown, reply: FastifyReply): Promise<FastifyReply> => await reply.sendFile('index.html')
  app.get('/console', { schema: { hide: true } }, spa)
  app.get('/console/*', { schema: { hide: true } }, async (request, reply) => {
    const path = request.url.split('?')[0] ?? ''
    // A missing asset is a 404, not the page: a browser would otherwise try to run HTML as a script.
    if (path.startsWith('/console/assets/') || /\.[a-z0-9]+$/i.test(path)) return reply.callNotFound()
    return await spa(request, reply)
  })
}

export default consolePlugin
