// Every test file is measured against our own sources, never the generated Prisma client.
import { readdirSync } from 'node:fs'
import { join } from 'node:path'

function sources (dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return entry.name === 'generated' ? [] : sources(path)
    return entry.name.endsWith('.ts') ? [path] : []
  })
}

const files = sources('src')
export default () => files
