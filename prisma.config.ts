import { defineConfig } from 'prisma/config'

// DATABASE_URL may be unset (PGlite mode, `npm ci`): generate needs no connection.
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? '' }
})
