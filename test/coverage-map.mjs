// Every test file is measured against our own sources, never the generated Prisma client.
import { readdirSync } from 'node:fs'
import { join } from 'node:path'

function sources (dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    // The console's browser code (src/console/web) never loads in Node; its end-to-end test drives it in Chromium.
    if (entry.isDirectory()) return entry.name === 'generated' || path === join('src', 'console', 'web') ? [] : sources(path)
    return entry.name.endsWith('.ts') ? [path] : []
  })
}

const files = sources('src')
export default () => files
