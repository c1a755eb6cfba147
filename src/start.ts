// Starts the service: config from the environment -> app -> listen; graceful shutdown on SIGTERM/SIGINT.
import { lookup } from 'node:dns/promises'
import { readFileSync } from 'node:fs'
import { isIP, type Server } from 'node:net'
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { checkPortFree, closeListeners, listenMore } from './listeners.js'
import { ConfigError, loadConfig } from './config.js'
import { TokenFileError } from './auth/tokens.js'
import { isAppError } from './errors.js'
import { DeviceFileError } from './store/device-file.js'
import { SchemaError } from './store/migrations.js'
import { SharedDeviceKeyError } from './store/shared-device-keys.js'
import { TlsFileError } from './tls.js'

/** Extra time after SHUTDOWN_TIMEOUT_MS before close-with-grace gives up and exits 1. */
const LAST_RESORT_MS = 2000

/** A HOST that is a name must resolve now: otherwise listen() fails later with a stack trace. */
export async function checkHost (host: string): Promise<void> {
  if (isIP(host) !== 0) return
  try {
    await lookup(host)
  } catch (err) {
    throw new ConfigError(`Invalid configuration:\n  HOST: does not resolve to an address (${String((err as NodeJS.ErrnoException).code)})`)
  }
}

/**
 * Why LISTEN_BACKLOG will not be what it says: the kernel caps a listen backlog at
 * net.core.somaxconn. Undefined when it fits, or when the limit cannot be read (not Linux).
 */
export function backlogWarning (backlog: number, somaxconnFile = '/proc/sys/net/core/somaxconn'): string | undefined {
  let limit: number
  try {
    limit = Number(readFileSync(somaxconnFile, 'utf8').trim())
  } catch {
    return undefined
  }
  if (!Number.isInteger(limit) || limit >= backlog) return undefined
  return `LISTEN_BACKLOG=${backlog} but the kernel caps it at net.core.somaxconn=${limit}: raise it (sysctl net.core.somaxconn=${backlog}, or the pod's sysctls) or a burst of new connections overflows the queue and waits seconds for SYN retries`
}

/**
 * Runs the service until a signal stops it. `onReload` receives the function SIGHUP should call
 * once the store is up (server.ts took the signal before this module loaded).
 */
export async function start (env: NodeJS.ProcessEnv, onReload: (reload: () => void) => void): Promise<void> {
  const config = loadConfig(env)
  await checkHost(config.host)
  const app = await buildApp(config)
  let extraListeners: Server[] = []
  // A failed reload is logged and shown in /readyz by the store or token file itself.
  onReload(() => { app.reload().catch(() => {}) })
  // SIGHUP means "reload the store" here, not "stop": keep it away from close-with-grace.
  closeWithGrace({ delay: config.shutdownTimeoutMs + LAST_RESORT_MS, logger: app.log, skip: ['SIGHUP'] }, async ({ signal, err }) => {
    /* c8 ignore next 2 -- reached only through an uncaught exception, i.e. a bug; no request can cause one */
    if (err !== undefined) app.log.error({ err }, 'shutting down after an uncaught error')
    else app.log.info({ signal }, 'shutting down: no new connections, finishing in-flight requests')
    // They stop accepting now; each closes once the connections it accepted have ended.
    const drained = closeListeners(extraListeners)
    // In-flight requests get SHUTDOWN_TIMEOUT_MS; then their connections are cut so the exit stays bounded.
    const cut = setTimeout(() => {
      app.log.warn({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown timeout: closing the remaining connections')
      app.server.closeAllConnections()
    }, config.shutdownTimeoutMs)
    await app.close()
    // The HTTP server waits only for the connections it accepted itself; those of the other
    // sockets are its too (closeAllConnections cuts them at the timeout), but only they know when they end.
    await drained
    clearTimeout(cut)
    app.log.info('stopped')
  })
  // SO_REUSEPORT spreads connections over several sockets on Linux only (listeners.ts says why).
  /* c8 ignore next -- the tests run on Linux */
  const sockets = process.platform === 'linux' ? config.listenSockets : 1
  // Fastify hands these options to Node's server.listen as they are; its type lacks reusePort (Node 22.12+).
  const listenOptions = { port: config.port, host: config.host, backlog: config.listenBacklog, reusePort: sockets > 1 }
  if (sockets > 1) await checkPortFree(config.host, config.port)
  await app.listen(listenOptions)
  extraListeners = await listenMore(app.server, sockets, config.listenBacklog)
  const backlog = backlogWarning(config.listenBacklog)
  if (backlog !== undefined) app.log.warn({ listenBacklog: config.listenBacklog }, backlog)
  const { mode, exampleOpen } = config.auth
  if (exampleOpen) {
    app.log.warn({ authMode: mode }, 'AUTH_MODE unset with the bundled example store: the API runs open (anyone who can reach this port can sign for the example devices); set AUTH_TOKENS_FILE for access control, and STORE_FILE for real devices')
  } else if (mode === 'none') {
    app.log.warn({ authMode: mode }, 'AUTH_MODE=none: anyone who can reach this port can get credentials; keep the service on a private network')
  } else {
    app.log.info({ authMode: mode, tls: config.tls !== undefined }, `access control: ${mode}`)
  }
}

/** Startup failed: one message naming every problem, no stack trace for a known cause, exit 1. */
export function failStartup (err: unknown): never {
  const code = (err as NodeJS.ErrnoException).code
  if (err instanceof ConfigError || err instanceof DeviceFileError || err instanceof TokenFileError || err instanceof TlsFileError ||
    err instanceof SharedDeviceKeyError) {
    process.stderr.write(`enos-mqtt-signer: ${err.message}\n`)
  } else if (err instanceof SchemaError || (isAppError(err) && err.code === 'STORE_UNAVAILABLE')) {
    // The database: its schema does not fit, or it cannot be reached (the message has no secret).
    process.stderr.write(`enos-mqtt-signer: STORE=postgres: ${err.message}\n`)
  } else if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
    process.stderr.write(`enos-mqtt-signer: cannot listen (${code}); check HOST and PORT\n`)
  } else {
    process.stderr.write(`enos-mqtt-signer: failed to start: ${String((err as Error).stack)}\n`)
  }
  process.exit(1)
}
