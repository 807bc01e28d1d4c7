# Build stage: better-sqlite3 compiles from source, so it needs a toolchain.
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src src
COPY jobs jobs
COPY db db
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    GRANTKEEPER_DATA_DIR=/data
WORKDIR /app
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY package.json ./
COPY bin bin
COPY db/sqlite/migrations db/sqlite/migrations
COPY db/postgres/migrations db/postgres/migrations
# `grantkeeper …` on PATH, so `docker compose run --rm grantkeeper grantkeeper client add …` works.
RUN ln -s /app/bin/grantkeeper.js /usr/local/bin/grantkeeper \
 && mkdir -p /data && chown node:node /data && chmod 700 /data
USER node
VOLUME /data
# SIGTERM from `docker stop` lets running refreshes commit before exit (raise stop_grace_period to match).
EXPOSE 7420
# Node only (no curl in the image): /readyz on the configured API port, so a paused queue, a lost
# Redis or an unreadable db turns the container unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["grantkeeper", "healthcheck"]
CMD ["grantkeeper", "run"]
