# syntax=docker/dockerfile:1

# --- build: install, generate the Prisma client, compile, then drop dev dependencies ---
FROM node:20.20-bookworm-slim AS build
WORKDIR /app
# The image's npm 10 would run dependencies' install scripts (@prisma/engines
# downloads native engines in its postinstall); npm 11, which the project is
# tested with, skips them. --ignore-scripts plus the root package's own
# `prepare` (prisma generate + tsc) is exactly what `npm ci` does there.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json prisma.config.ts ./
COPY prisma ./prisma
COPY src ./src
COPY bin ./bin
# prepare's build also bundles the web console (src/console/web, Vite) into
# dist/console/web, which the runtime stage gets with dist.
# --omit=optional as well: prisma, typescript and react are installed as
# optional peers of @prisma/client ("devOptional" in the lockfile), and
# --omit=dev alone keeps them (~250 MB the runtime never loads).
RUN npm run prepare \
 && npm prune --omit=dev --omit=optional \
 && npm cache clean --force

# --- runtime: only what `node bin/scopegate.js serve` loads ---
FROM node:20.20-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=18789 \
    DATA_DIR=/data
WORKDIR /app
# The generated Prisma client is compiled into dist/generated; migrations are
# read at start from prisma/migrations (relative to dist/).
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
COPY --from=build /app/prisma ./prisma
# Embedded PGlite mode (no DATABASE_URL) keeps its database and generated
# secrets in DATA_DIR; the code itself stays owned by root, read-only for node.
RUN mkdir -p /data && chown node:node /data && chmod 700 /data
VOLUME ["/data"]
USER node
EXPOSE 18789
# No curl in the slim image: node's fetch probes the liveness route.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 18789) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "bin/scopegate.js", "serve"]
