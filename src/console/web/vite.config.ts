import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'

// `npm run build` runs this after tsc: src/console/web -> dist/console/web,
// which src/console/plugin.ts serves at /console.
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/console/',
  publicDir: 'public',
  logLevel: 'warn',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: fileURLToPath(new URL('../../../dist/console/web/', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    // The CSP allows only this origin's files: no data: URLs, no inline polyfill.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: true,
    reportCompressedSize: false
  }
})
