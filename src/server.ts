// Entrypoint: config from the environment -> app -> listen; graceful shutdown on SIGTERM/SIGINT, reload on SIGHUP.
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { ConfigError, loadConfig } from './config.js'
import { DeviceFileError } from './store/device-file.js'

async function main (): Promise<void> {
  const config = loadConfig(process.env)
  const app = await buildApp(config)
  closeWithGrace({ delay: config.shutdownTimeoutMs, logger: app.log }, async ({ signal, err }) => {
    if (err !== undefined) app.log.error({ err }, 'shutting down after an error')
    else app.log.info({ signal }, 'shutting down')
    await app.close()
  })
  // reload() reports its own failures (log line, /readyz) and never rejects.
  process.on('SIGHUP', () => { app.store.reload?.().catch(() => {}) })
  await app.listen({ port: config.port, host: config.host })
}

main().catch((err: unknown) => {
  // A bad configuration or device file: one message naming every problem, no stack, exit 1.
  const code = (err as NodeJS.ErrnoException).code
  if (err instanceof ConfigError || err instanceof DeviceFileError) {
    process.stderr.write(`enos-mqtt-signer: ${err.message}\n`)
  } else if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
    process.stderr.write(`enos-mqtt-signer: cannot listen (${code}): ${(err as Error).message}; check HOST and PORT\n`)
  } else {
    process.stderr.write(`enos-mqtt-signer: failed to start: ${String((err as Error)?.stack ?? err)}\n`)
  }
  process.exit(1)
})
