// POST /sign: productKey + deviceKey in, ready-to-use MQTT CONNECT credentials out.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { signCredentials } from '../core/credentials.js'
import { resolveSignMethod, type SignMethod } from '../core/sign-method.js'
import { AppError } from '../errors.js'
import { credentialsSchema, signRequestSchema, type Broker } from '../schemas/credentials.js'
import { errorResponses } from '../schemas/error.js'

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
    const { productKey, deviceKey, clientId = deviceKey, timestamp, signMethod } = request.body
    request.deviceRef = { productKey, deviceKey }
    const method = signMethod === undefined ? defaultSignMethod : resolveSignMethod(signMethod)
    const device = await app.store.findDevice(productKey, deviceKey)
    if (device === undefined) {
      throw new AppError('DEVICE_NOT_FOUND', `no device with productKey "${productKey}" and deviceKey "${deviceKey}" in the store`)
    }
    if (!device.enabled) {
      throw new AppError('DEVICE_DISABLED', `device "${deviceKey}" of product "${productKey}" is disabled in the store`)
    }
    const credentials = signCredentials({
      productKey,
      deviceKey,
      deviceSecret: device.deviceSecret,
      clientId,
      timestamp: timestamp ?? String(clock()),
      signMethod: method
    })
    request.outcome = 'signed'
    return broker === undefined ? credentials : { ...credentials, broker }
  })
}

export default signRoute
