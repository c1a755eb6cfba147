# enos-mqtt-signer: two stages on a pinned Node LTS; the runtime stage has production deps only and runs as non-root.
FROM node:26.10.0-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

FROM node:26.10.0-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080
WORKDIR /app
COPY package.json package-lock.json ./
# npm's cache and logs and Node's compile cache (npm turns it on) are build leftovers: none of them in the image.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && rm -rf /root/.npm /tmp/node-compile-cache
COPY --from=build /app/dist ./dist
COPY openapi ./openapi
# The example store is the default STORE_FILE, so the image starts without configuration (with a warning).
COPY examples ./examples
USER node
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node directly, not npm: npm does not pass SIGTERM on, and the service shuts down gracefully itself.
CMD ["node", "dist/server.js"]
