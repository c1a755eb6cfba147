// POST /sign: productKey + deviceKey in, ready-to-use MQTT CONNECT credentials out.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import type { SignMethod } from '../core/sign-method.js'
import { credentialsSchema, signRequestSchema, type Broker } from '../schemas/credentials.js'
import { deviceRefusal } from '../auth/caller.js'
import { callerOf } from '../plugins/auth.js'
import { ACCESS_ERRORS, COMMON_ERRORS, SECURITY, errorResponses, withTextErrors } from '../schemas/error.js'
import { REQUEST_ID_HEADER } from '../schemas/response.js'
import { TEXT_PLAIN, prefersText, textAnswerSchema, textLines } from '../schemas/text.js'
import type { SignedCredentials } from '../core/credentials.js'
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
      description: 'Looks up the deviceSecret of productKey/deviceKey in the store and returns mqttClientId, mqttUsername and mqttPassword. ' +
        'As JSON by default; with Accept: text/plain as key=value lines a device reads with a line reader (errors too: error=<CODE> and message=<...>, same status codes).',
      security: SECURITY,
      body: signRequestSchema,
      response: {
        200: {
          description: 'Signed: the three MQTT CONNECT fields, what went into them and, when MQTT_HOST is set, where to connect.',
          headers: REQUEST_ID_HEADER,
          content: {
            'application/json': { schema: credentialsSchema },
            'text/plain': { schema: textAnswerSchema.describe('mqttClientId=, mqttUsername= and mqttPassword= lines, then mqttHost=, mqttPort= and mqttTls= when MQTT_HOST is set.') }
          }
        },
        ...withTextErrors(errorResponses({
          400: 'The body is not valid: not JSON (MALFORMED_JSON); a field missing, of the wrong type, breaking its rule or unknown (VALIDATION_FAILED, details lists each); or a signMethod that is not one of the six (UNSUPPORTED_SIGN_METHOD).',
          403: 'The caller may not sign for this product or device (FORBIDDEN: the same answer whether or not the device exists), or lacks the sign scope; or the device is in the store but disabled (DEVICE_DISABLED).',
          404: 'No such productKey/deviceKey in the store (DEVICE_NOT_FOUND).',
          ...ACCESS_ERRORS,
          ...COMMON_ERRORS
        }))
      }
    },
    config: { scope: 'sign', audit: true, textAnswers: true },
    onRequest: app.limits.perCaller
  }, async (request, reply) => {
    const { productKey, deviceKey, clientId = deviceKey } = request.body
    request.deviceRef = { productKey, deviceKey, clientId }
    // Who may sign for the device is decided from its keys, before its per-device limit and any lookup.
    const refusal = deviceRefusal(callerOf(request), productKey, deviceKey)
    if (refusal !== undefined) throw refusal
    // Counted only once the store has found the device: made-up deviceKeys make no counters.
    const { perDevice } = app.limits
    const found = perDevice === undefined ? undefined : () => perDevice(request, reply, request.body)
    if (app.refuseSharedDeviceKey !== undefined) await app.refuseSharedDeviceKey(callerOf(request), deviceKey)
    const credentials = await signDevice(app.storeFor(request), request.body, { signMethod: defaultSignMethod, timestamp: String(clock()) }, found)
    request.outcome = 'signed'
    if (prefersText(request)) return reply.type(TEXT_PLAIN).send(credentialsText(credentials, broker))
    return broker === undefined ? credentials : { ...credentials, broker }
  })
}

/** The text answer: the three CONNECT fields, then where to connect when configured. */
export function credentialsText (credentials: SignedCredentials, broker: Broker | undefined): string {
  return textLines([
    ['mqttClientId', credentials.mqttClientId],
    ['mqttUsername', credentials.mqttUsername],
    ['mqttPassword', credentials.mqttPassword],
    ...(broker === undefined ? [] : [['mqttHost', broker.host], ['mqttPort', broker.port], ['mqttTls', broker.tls]] as const)
  ])
}

export default signRoute
