// The signing request and the signed credentials, shared by POST /sign and (later) the batch route.
import { z } from 'zod'
import { CLIENT_ID_PATTERN, CLIENT_ID_RULE, KEY_PATTERN, KEY_RULE, TIMESTAMP_PATTERN, TIMESTAMP_RULE } from '../core/fields.js'
import { SECURE_MODE } from '../core/credentials.js'
import { SIGN_METHOD_NAMES } from '../core/sign-method.js'

/** A string field: a missing one "is required", a wrong JSON type gets the field's rule in its message. */
const text = (rule: string) => z.string({ error: (issue) => issue.input === undefined ? 'is required' : `must be a string: ${rule}` })
const key = (what: string) => text(KEY_RULE).regex(KEY_PATTERN, `must be ${KEY_RULE}`).describe(what)

/** A sign method name is looked up after trimming and lower-casing; longer than this, it is not one. */
const MAX_SIGN_METHOD_LENGTH = 32

/**
 * The bundled example device (examples/devices.json), as /docs pre-fills "Try it out": it signs as
 * it is (mqttPassword 093A032F713517CAE55622C75C1D5219ED618729, the worked example of the contract).
 */
export const SIGN_REQUEST_EXAMPLE = {
  productKey: '123',
  deviceKey: 'test',
  clientId: '123',
  timestamp: '1524448722000',
  signMethod: 'hmacsha1'
} as const

// `example`, not `examples`: zod copies .meta() into the schema as it is, and an OpenAPI 3.0 schema
// object allows only a single `example` (`examples` is 3.1 / JSON Schema), so the document stays valid 3.0.3.
const signRequestFields = z.strictObject({
  productKey: key('The product the device belongs to.').meta({ example: SIGN_REQUEST_EXAMPLE.productKey }),
  deviceKey: key('The device, unique within its product.').meta({ example: SIGN_REQUEST_EXAMPLE.deviceKey }),
  clientId: text(CLIENT_ID_RULE).regex(CLIENT_ID_PATTERN, `must be ${CLIENT_ID_RULE}`).optional()
    .describe('MQTT client id (MAC address or serial number). Default: the deviceKey, as the official SDKs do.')
    .meta({ example: SIGN_REQUEST_EXAMPLE.clientId }),
  timestamp: text(`${TIMESTAMP_RULE}, e.g. "1524448722000"`).regex(TIMESTAMP_PATTERN, `must be ${TIMESTAMP_RULE}`).optional()
    .describe("Epoch milliseconds as a string. Default: the service's clock.").meta({ example: SIGN_REQUEST_EXAMPLE.timestamp }),
  signMethod: text('a sign method name').max(MAX_SIGN_METHOD_LENGTH, `must be at most ${MAX_SIGN_METHOD_LENGTH} characters`).optional()
    .describe(`One of ${SIGN_METHOD_NAMES.join(', ')}, case-insensitive. Default: SIGN_METHOD.`)
    .meta({ example: SIGN_REQUEST_EXAMPLE.signMethod })
})

// A whole-object example: Swagger UI pre-fills the request body from it (without one it builds
// `"signMethod": "string"`, which fails with 400).
export const signRequestSchema = signRequestFields.meta({
  id: 'SignRequest',
  example: SIGN_REQUEST_EXAMPLE satisfies z.input<typeof signRequestFields>
})

export type SignRequest = z.infer<typeof signRequestSchema>

export const brokerSchema = z.object({
  host: z.string(),
  port: z.number().int(),
  tls: z.boolean().describe('Whether the port speaks TLS.'),
  uri: z.string().describe('mqtts://host:port (mqtt:// when tls is false).'),
  websocketUri: z.string().optional().describe('MQTT over (secure) WebSocket, when the deployment offers it.'),
  protocolVersion: z.literal(4).describe('MQTT 3.1.1, the version EnOS speaks.')
}).meta({ id: 'Broker' })

export type Broker = z.infer<typeof brokerSchema>

export const credentialsSchema = z.object({
  mqttClientId: z.string().describe('CONNECT client identifier: <clientId>|securemode=2,signmethod=<m>,timestamp=<ts>|'),
  mqttUsername: z.string().describe('CONNECT user name: <deviceKey>&<productKey>'),
  mqttPassword: z.string().describe('CONNECT password: upper-case hex digest. Treat it as a secret.'),
  clientId: z.string(),
  timestamp: z.string(),
  signMethod: z.enum(SIGN_METHOD_NAMES),
  secureMode: z.literal(SECURE_MODE),
  broker: brokerSchema.optional().describe('Where to connect; present when the service is configured with MQTT_HOST.')
}).meta({ id: 'Credentials' })
