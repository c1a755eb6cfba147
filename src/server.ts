// Entrypoint: config from the environment -> app -> listen; graceful shutdown on SIGTERM/SIGINT, reload on SIGHUP.
import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { ConfigError, loadConfig } from './config.js'
import { DeviceFileError } from './store/device-file.js'

/** Extra time after SHUTDOWN_TIMEOUT_MS before close-with-grace gives up and exits 1. */
const LAST_RESORT_MS = 2000

async function main (): Promise<void> {
  // SIGHUP means "reload the store". Until the store is up there is nothing to reload, but the
  // signal must not kill the process (its default action) while a large file is still loading.
  const running: { app?: FastifyInstance } = {}
  process.on('SIGHUP', () => { running.app?.store.reload?.() })
  const config = loadConfig(process.env)
  const app = await buildApp(config)
  running.app = app
  // SIGHUP means "reload the store" here, not "stop": keep it away from close-with-grace.
  closeWithGrace({ delay: config.shutdownTimeoutMs + LAST_RESORT_MS, logger: app.log, skip: ['SIGHUP'] }, async ({ signal, err }) => {
    /* c8 ignore next 2 -- reached only through an uncaught exception, i.e. a bug; no request can cause one */
    if (err !== undefined) app.log.error({ err }, 'shutting down after an uncaught error')
    else app.log.info({ signal }, 'shutting down: no new connections, finishing in-flight requests')
    // In-flight requests get SHUTDOWN_TIMEOUT_MS; then their connections are cut so the exit stays bounded.
    const cut = setTimeout(() => {
      app.log.warn({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown timeout: closing the remaining connections')
      app.server.closeAllConnections()
    }, config.shutdownTimeoutMs)
    await app.close()
    clearTimeout(cut)
    app.log.info('stopped')
  })
  await app.listen({ port: config.port, host: config.host })
  app.log.warn({ authMode: config.authMode }, 'AUTH_MODE=none: anyone who can reach this port can get credentials; keep the service on a private network')
}

main().catch((err: unknown) => {
  // A bad configuration or device file: one message naming every problem, no stack trace, exit 1.
  const code = (err as NodeJS.ErrnoException).code
  if (err instanceof ConfigError || err instanceof DeviceFileError) {
    process.stderr.write(`enos-mqtt-signer: ${err.message}\n`)
  } else if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
    process.stderr.write(`enos-mqtt-signer: cannot listen (${code}); check HOST and PORT\n`)
  } else {
    process.stderr.write(`enos-mqtt-signer: failed to start: ${String((err as Error).stack)}\n`)
  }
  process.exit(1)
})
