// buildApp: the whole HTTP service as a Fastify instance. Never listens, never reads the environment.
import { readFileSync } from 'node:fs'
import { createServer as createHttpServer, type Server } from 'node:http'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import type { TLSSocket } from 'node:tls'
import Fastify, { type FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import type { DestinationStream } from 'pino'
import { TOKEN_SETTLE_MAX_MS, createTokenStore, type TokenStore } from './auth/token-store.js'
import type { Config } from './config.js'
import { TurnDestination } from './log-destination.js'
import metrics from './plugins/metrics.js'
import errorHandler, { handleClientError, sendError } from './plugins/error-handler.js'
import admission from './plugins/admission.js'
import auth from './plugins/auth.js'
import connections from './plugins/connections.js'
import rateLimits from './plugins/rate-limits.js'
import requestGuard from './plugins/request-guard.js'
import { requestLoggerFactory } from './plugins/request-logger.js'
import requestLog, { REDACT_PATHS, RequestLogController, genReqId, serializeError } from './plugins/request-log.js'
import storePlugin from './plugins/store.js'
import swagger from './plugins/swagger.js'
import healthRoutes from './routes/health.js'
import batchRoute from './routes/batch.js'
import signRoute from './routes/sign.js'
import verifyRoute from './routes/verify.js'
import type { Broker } from './schemas/credentials.js'
import { serializerCompiler } from './schemas/serializer.js'
import { validatorCompiler } from './schemas/validator.js'
import type { DeviceStore } from './store/store.js'
import { readTlsFiles, tlsOptions, watchTlsFiles } from './tls.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Reloads the device store and the token file now (SIGHUP). */
    reload: () => Promise<void>
  }
}

export interface AppDeps {
  /** Use this store instead of opening STORE_FILE. */
  store?: DeviceStore
  /** Epoch milliseconds; the default is Date.now. */
  clock?: () => number
  /** Epoch milliseconds the rate-limit windows are counted by; the default is Date.now. */
  limitClock?: () => number
  /** Where log lines go; the default is stdout. */
  logStream?: DestinationStream
  /** Admission control's clock (monotonic milliseconds) and how long the event loop has been busy in this turn; both measured by default. */
  admission?: { clock?: () => number, loopBusy?: () => number }
}

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }

/** What a device needs to reach the broker, fixed by configuration and computed once. */
export function brokerFromConfig (mqtt: Config['mqtt']): Broker | undefined {
  if (mqtt === undefined) return undefined
  const scheme = mqtt.tls ? 'mqtts' : 'mqtt'
  return {
    host: mqtt.host,
    port: mqtt.port,
    tls: mqtt.tls,
    uri: `${scheme}://${mqtt.host}:${mqtt.port}`,
    ...(mqtt.websocketUrl !== undefined && { websocketUri: mqtt.websocketUrl }),
    protocolVersion: 4
  }
}

export async function buildApp (config: Readonly<Config>, deps: AppDeps = {}): Promise<FastifyInstance> {
  const logController = new RequestLogController()
  const checkEvery = Math.min(1000, Math.ceil(config.requestTimeoutMs / 4))
  const tlsMaterial = config.tls === undefined ? undefined : await readTlsFiles(config.tls)
  const serverOptions = {
    // Node reads these only when the server is created: the whole request, headers and body, must
    // arrive within REQUEST_TIMEOUT_MS, and so must the headers alone (Node's own default would be 60 s).
    requestTimeout: config.requestTimeoutMs,
    headersTimeout: config.requestTimeoutMs,
    // Node checks those timeouts every connectionsCheckingInterval (30 s by default): check often
    // enough that REQUEST_TIMEOUT_MS means what it says.
    connectionsCheckingInterval: checkEvery,
    // Node's own check answers an empty 400 that nobody logs; the request guard answers instead.
    requireHostHeader: false
  }
  const app = Fastify({
    logger: {
      level: config.logLevel,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: { err: serializeError },
      // Written synchronously at the end of each turn of the event loop (see TurnDestination): no
      // line is lost when the process exits, and a log reader that falls behind slows the service
      // down instead of piling lines up in memory. pino's default destination is asynchronous.
      stream: deps.logStream ?? new TurnDestination(1)
    },
    logController,
    // request.log made lazily: most requests log nothing but their completion line.
    childLoggerFactory: requestLoggerFactory,
    genReqId,
    bodyLimit: config.bodyLimit,
    // The server is made here (HTTP, or HTTPS when TLS_* is set), so its options are set where it is made.
    serverFactory (handler) {
      const server = config.tls === undefined || tlsMaterial === undefined
        ? createHttpServer(serverOptions, handler)
        // An HTTPS server is an HTTP server to Fastify and to every plugin here: same events, same methods.
        : createHttpsServer({ ...serverOptions, ...tlsOptions(tlsMaterial, config.tls) }, handler) as unknown as Server
      server.keepAliveTimeout = config.keepAliveTimeoutMs
      return server
    },
    clientErrorHandler: handleClientError,
    // Requests that arrive while closing get the standard error body from the request guard instead of Fastify's plain 503.
    return503OnClosing: false,
    // Errors found before routing (a malformed URL) skip the usual completion log: write it here.
    frameworkErrors (err, request, reply) {
      reply.header('x-request-id', request.id)
      sendError(err, request, reply)
      logController.requestCompleted(err, request, reply)
    }
  }).withTypeProvider<ZodTypeProvider>()

  app.setValidatorCompiler(validatorCompiler)
  app.setSerializerCompiler(serializerCompiler)
  // Only JSON bodies are accepted: without its text/plain parser Fastify answers 415 for anything else.
  app.removeContentTypeParser('text/plain')

  // The request decorators (device, outcome, batch counts) first: the /docs routes that swagger
  // registers get a request type of their own, made from the root's as it is at that moment.
  await app.register(requestLog)
  await app.register(swagger, { version })
  // Before everything it counts: the store's lookups, and every request from its first hook.
  await app.register(metrics, { enabled: config.metricsEnabled, defaultSignMethod: config.signMethod, version })
  await app.register(errorHandler)
  await app.register(connections, {
    maxConnections: config.maxConnections,
    // The cut of a quiet connection comes well after the request timeout has been noticed (within
    // checkEvery), so a slow request always gets its 408 and a log line instead of a silent close.
    idleTimeoutMs: 2 * config.requestTimeoutMs + checkEvery,
    checkEveryMs: checkEvery
  })
  await app.register(requestGuard)
  const tokens = await openTokens(app, config)
  // The TLS files are watched below; a request is only ever served once they are.
  const isCurrentTls = config.tls === undefined
    ? undefined
    /* c8 ignore next -- `?? false` only before the watch below is set up, and no request is served before it */
    : (socket: TLSSocket): boolean => tls?.isCurrent(socket) ?? false
  await app.register(auth, { mode: config.auth.mode, tokens, mtlsIdentity: config.auth.mtlsIdentity, isCurrentTls })
  await app.register(rateLimits, { ...config.rateLimit, clock: deps.limitClock })
  // After authentication (fairness needs the caller), before any route's own hook (the per-caller limit) and any body.
  await app.register(admission, { ...config.overload, ...deps.admission })
  const tls = config.tls === undefined || tlsMaterial === undefined
    ? undefined
    : await watchTlsFiles(app.server as unknown as HttpsServer, config.tls, app.log.child({ component: 'tls' }), tlsMaterial)
  if (tls !== undefined) app.addHook('onClose', async () => { await tls.close() })
  try {
    await app.register(storePlugin, { config, store: deps.store })
  } catch (err) {
    // A store that stops startup (a bad file, a database that cannot be used): stop watching the TLS files too.
    await tls?.close()
    throw err
  }
  await app.register(healthRoutes, {
    files: {
      STORE_FILE: config.store === 'file' ? config.storeFile : undefined,
      AUTH_TOKENS_FILE: config.auth.tokensFile,
      TLS_CERT_FILE: config.tls?.certFile,
      TLS_KEY_FILE: config.tls?.keyFile,
      TLS_CLIENT_CA_FILE: config.tls?.clientCaFile,
      TLS_CRL_FILE: config.tls?.crlFile
    },
    access: () => ({
      mode: config.auth.mode,
      ...(tokens !== undefined && { tokens: tokens.health() }),
      rateLimits: app.limits.health(),
      ...(tls !== undefined && { tls: { lastReloadError: tls.lastReloadError() } })
    })
  })
  // SIGHUP: every file the service reads while it runs, each reloaded as its own rules say.
  app.decorate('reload', async () => { await Promise.all([app.store.reload?.(), tokens?.reload(), tls?.reload()]) })
  const signing = { defaultSignMethod: config.signMethod, broker: brokerFromConfig(config.mqtt), clock: deps.clock ?? Date.now }
  await app.register(signRoute, signing)
  await app.register(batchRoute, {
    ...signing,
    maxItems: config.batchMaxItems,
    streamMaxItems: config.batchStream.maxItems,
    streamMaxMs: config.batchStream.maxMs,
    maxLineBytes: config.bodyLimit,
    idleMs: config.requestTimeoutMs,
    streamsPerCaller: config.batchStream.perCaller
  })
  await app.register(verifyRoute, { ...config.verify, clock: signing.clock })
  return app
}

/** The tokens of AUTH_TOKENS_FILE when it is set, reloaded like the store and closed with the app. */
async function openTokens (app: FastifyInstance, config: Readonly<Config>): Promise<TokenStore | undefined> {
  const path = config.auth.tokensFile
  if (path === undefined || config.auth.mode === 'none') return undefined
  const tokens = await createTokenStore({
    path,
    watch: config.storeWatch,
    settleMs: Math.min(config.storeSettleMs, TOKEN_SETTLE_MAX_MS),
    pollMs: config.storePollMs,
    log: app.log.child({ component: 'tokens' })
  })
  app.addHook('onClose', async () => { await tokens.close() })
  return tokens
}
