// POST /sign: productKey + deviceKey in, ready-to-use MQTT CONNECT credentials out.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import type { SignMethod } from '../core/sign-method.js'
import { credentialsSchema, signRequestSchema, type Broker } from '../schemas/credentials.js'
import { deviceRefusal } from '../auth/caller.js'
import { callerOf } from '../plugins/auth.js'
import { ACCESS_ERRORS, COMMON_ERRORS, SECURITY, errorResponses } from '../schemas/error.js'
import { jsonResponse } from '../schemas/response.js'
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
      security: SECURITY,
      body: signRequestSchema,
      response: {
        200: jsonResponse(credentialsSchema, 'Signed: the three MQTT CONNECT fields, what went into them and, when MQTT_HOST is set, where to connect.'),
        ...errorResponses({
          400: 'The body is not valid: not JSON (MALFORMED_JSON); a field missing, of the wrong type, breaking its rule or unknown (VALIDATION_FAILED, details lists each); or a signMethod that is not one of the six (UNSUPPORTED_SIGN_METHOD).',
          403: 'The caller may not sign for this product or device (FORBIDDEN: the same answer whether or not the device exists), or lacks the sign scope; or the device is in the store but disabled (DEVICE_DISABLED).',
          404: 'No such productKey/deviceKey in the store (DEVICE_NOT_FOUND).',
          ...ACCESS_ERRORS,
          ...COMMON_ERRORS
        })
      }
    },
    config: { scope: 'sign', audit: true },
    onRequest: app.limits.perCaller
  }, async (request, reply) => {
    const { productKey, deviceKey, clientId = deviceKey } = request.body
    request.deviceRef = { productKey, deviceKey, clientId }
    // Who may sign for the device is decided from its keys, before its per-device limit and any lookup.
    const refusal = deviceRefusal(callerOf(request), productKey, deviceKey)
    if (refusal !== undefined) throw refusal
    await app.limits.perDevice(request, reply)
    const credentials = await signDevice(app.store, request.body, { signMethod: defaultSignMethod, timestamp: String(clock()) })
    request.outcome = 'signed'
    return broker === undefined ? credentials : { ...credentials, broker }
  })
}

export default signRoute
