// Benchmark baselines, each a bare Fastify 5 app with one POST /sign route and none of the service's
// plugins, run by sign-throughput.ts as `node --import tsx test/bench/bare-server.ts`:
//   BARE_WORK unset: the ceiling (a). It parses the same JSON body and answers a constant of the same
//     shape and size as a signing answer.
//   BARE_WORK=1: the same route doing the real work (a′): a lookup in STORE_FILE's devices (a Map) and
//     the hash of the signing core, answered in the same shape. a′/a is what the work costs; the
//     service against a′ is what everything around it costs.
// Both take the service's settings where they apply: LOG_LEVEL (one line per request at info, written
// synchronously to stdout like the service's), body limit, keep-alive timeout, and request timeouts.
// Listens on PORT and prints `Server listening at <url>` once ready, as the service does.
import { readFileSync } from 'node:fs'
import Fastify from 'fastify'
import pino from 'pino'
import { signCredentials } from '../../src/core/credentials.js'
import type { SignMethod } from '../../src/core/sign-method.js'

const level = process.env.LOG_LEVEL ?? 'info'
const app = Fastify({
  logger: { level, stream: pino.destination({ dest: 1, sync: true }) },
  disableRequestLogging: true,
  bodyLimit: 16_384,
  keepAliveTimeout: 72_000,
  requestTimeout: 10_000
})

interface Body { productKey: string, deviceKey: string, clientId?: string, timestamp?: string, signMethod?: string }

const constant = {
  mqttClientId: '00:1B:44:11:3A:B7|securemode=2,signmethod=hmacsha1,timestamp=1795594636999|',
  mqttUsername: 'dev-000001&AbCdEfGh',
  mqttPassword: '093A032F713517CAE55622C75C1D5219ED618729',
  clientId: '00:1B:44:11:3A:B7',
  timestamp: '1795594636999',
  signMethod: 'hmacsha1',
  secureMode: 2
}

const secrets = new Map<string, string>()
if (process.env.BARE_WORK === '1') {
  const { devices } = JSON.parse(readFileSync(process.env.STORE_FILE as string, 'utf8')) as { devices: Array<{ productKey: string, deviceKey: string, deviceSecret: string }> }
  for (const d of devices) secrets.set(`${d.deviceKey}&${d.productKey}`, d.deviceSecret)
  app.post<{ Body: Body }>('/sign', async (request, reply) => {
    const { productKey, deviceKey, clientId = deviceKey, timestamp = String(Date.now()), signMethod = 'hmacsha1' } = request.body
    const deviceSecret = secrets.get(`${deviceKey}&${productKey}`)
    if (deviceSecret === undefined) return reply.code(404).send({ code: 'DEVICE_NOT_FOUND' })
    const signed = signCredentials({ productKey, deviceKey, clientId, timestamp, signMethod: signMethod.toLowerCase() as SignMethod, deviceSecret })
    if (level === 'info') request.log.info({ route: '/sign', statusCode: 200, productKey, deviceKey, outcome: 'signed' }, 'request completed')
    return signed
  })
} else {
  app.post<{ Body: Body }>('/sign', async (request) => {
    if (level === 'info') request.log.info({ route: '/sign', statusCode: 200, productKey: request.body.productKey, deviceKey: request.body.deviceKey, outcome: 'signed' }, 'request completed')
    return constant
  })
}

const port = Number(process.env.PORT ?? 0)
const host = process.env.HOST ?? '127.0.0.1'
const address = await app.listen({ port, host })
process.stdout.write(`Server listening at ${address}\n`)

const stop = (): void => { app.close().then(() => process.exit(0), () => process.exit(1)) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
