// POST /sign: productKey + deviceKey in, ready-to-use MQTT CONNECT credentials out.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import type { SignMethod } from '../core/sign-method.js'
import { credentialsSchema, signRequestSchema, type Broker } from '../schemas/credentials.js'
import { errorResponses } from '../schemas/error.js'
import { signDevice } from '../sign-device.js'

export interface SignRouteOptions {
  defaultSignMethod: SignMethod
  broker: Broker | undefined
  /** Epoch milliseconds; stamps credentials whose request names no timestamp. */
  clock: () => number
}

const signRoute: FastifyPluginAsyncZod<SignRouteOptions> = async (app, { defaultSignMethod, broker, clock }) => {
  app.post('/sign', {
    schema: {
      tags: ['signing'],
      operationId: 'sign',
      summary: 'Sign MQTT CONNECT credentials for one device',
      description: 'Looks up the deviceSecret of productKey/deviceKey in the store and returns mqttClientId, mqttUsername and mqttPassword.',
      body: signRequestSchema,
      response: { 200: credentialsSchema, ...errorResponses(400, 403, 404, 408, 413, 415, 500, 503) }
    }
  }, async (request) => {
    const { productKey, deviceKey } = request.body
    request.deviceRef = { productKey, deviceKey }
    const credentials = await signDevice(app.store, request.body, { signMethod: defaultSignMethod, timestamp: String(clock()) })
    request.outcome = 'signed'
    return broker === undefined ? credentials : { ...credentials, broker }
  })
}

export default signRoute
