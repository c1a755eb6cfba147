// buildApp: the whole HTTP service as a Fastify instance. Never listens, never reads the environment.
import { readFileSync } from 'node:fs'
import Fastify, { type FastifyInstance } from 'fastify'
import { validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod'
import type { DestinationStream } from 'pino'
import type { Config } from './config.js'
import errorHandler, { handleClientError, sendError } from './plugins/error-handler.js'
import requestLog, { REDACT_PATHS, RequestLogController, genReqId, serializeError } from './plugins/request-log.js'
import storePlugin from './plugins/store.js'
import swagger from './plugins/swagger.js'
import healthRoutes from './routes/health.js'
import signRoute from './routes/sign.js'
import type { Broker } from './schemas/credentials.js'
import { serializerCompiler } from './schemas/serializer.js'
import type { DeviceStore } from './store/store.js'

export interface AppDeps {
  /** Use this store instead of opening STORE_FILE. */
  store?: DeviceStore
  /** Epoch milliseconds; the default is Date.now. */
  clock?: () => number
  /** Where log lines go; the default is stdout. */
  logStream?: DestinationStream
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
  const app = Fastify({
    logger: {
      level: config.logLevel,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: { err: serializeError },
      ...(deps.logStream && { stream: deps.logStream })
    },
    logController,
    genReqId,
    bodyLimit: config.bodyLimit,
    requestTimeout: config.requestTimeoutMs,
    // Node checks request timeouts every connectionsCheckingInterval (30 s by default): check often
    // enough that REQUEST_TIMEOUT_MS means what it says, and let the idle-socket cut come later, so
    // a slow request gets its 408 instead of a silent close.
    http: { connectionsCheckingInterval: Math.min(1000, config.requestTimeoutMs) },
    connectionTimeout: 2 * config.requestTimeoutMs,
    clientErrorHandler: handleClientError,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    return503OnClosing: true,
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

  await app.register(swagger, { version })
  await app.register(errorHandler)
  await app.register(requestLog)
  await app.register(storePlugin, { config, store: deps.store })
  await app.register(healthRoutes)
  await app.register(signRoute, {
    defaultSignMethod: config.signMethod,
    broker: brokerFromConfig(config.mqtt),
    clock: deps.clock ?? Date.now
  })
  return app
}
