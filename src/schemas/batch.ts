// POST /sign/batch: the item, the two result shapes and the summary, as zod schemas (the contract and the docs) and as fast writers.
import { z } from 'zod'
import type { SignedCredentials } from '../core/credentials.js'
import type { AppError } from '../errors.js'
import { SIGN_REQUEST_EXAMPLE, brokerSchema, credentialsSchema, signRequestSchema, type Broker } from './credentials.js'

export const MAX_REFERENCE_LENGTH = 128

export const batchItemSchema = signRequestSchema.extend({
  reference: z.string({ error: 'must be a string' })
    .max(MAX_REFERENCE_LENGTH, `must be at most ${MAX_REFERENCE_LENGTH} characters`).optional()
    .describe('Your own id for this item (at most 128 characters), echoed back with its result.')
}).meta({ id: 'BatchItem' })

export type BatchItem = z.infer<typeof batchItemSchema>

export const batchRequestSchema = z.strictObject({
  devices: z.array(batchItemSchema).describe('At most BATCH_MAX_ITEMS devices. Each one is checked on its own: a bad item fails alone.')
}).meta({
  id: 'BatchRequest',
  // Swagger UI's "Try it out" pre-fills this: the bundled example device, signed as it is.
  example: { devices: [{ ...SIGN_REQUEST_EXAMPLE, reference: 'line-1' }] satisfies Array<z.input<typeof batchItemSchema>> }
})

/**
 * What the route itself insists on before looking at any item: an object with a non-empty
 * `devices` array and nothing else. Items are validated one by one (batchItemSchema), so that
 * one bad item never fails the others.
 */
export const batchEnvelopeSchema = z.strictObject({
  devices: z.array(z.unknown(), { error: (issue) => issue.input === undefined ? 'is required' : 'must be an array of devices' })
    .min(1, 'must list at least one device')
}, { error: 'must be an object with a "devices" array' })

const itemErrorSchema = z.object({
  code: z.string().describe('The code POST /sign would answer for this device (see the README table).'),
  message: z.string(),
  details: z.array(z.object({ path: z.string(), message: z.string() })).optional()
}).meta({ id: 'BatchItemError' })

const reference = z.string().optional().describe('The item\'s reference, when it sent one.')
const byIndex = { index: z.number().int().describe('0-based position of the item in `devices`.'), reference }
const byLine = { line: z.number().int().describe('1-based number of the input line.'), reference }

const { broker: _broker, ...credentialFields } = credentialsSchema.shape
export const signedResultSchema = z.object({ ...byIndex, ok: z.literal(true), ...credentialFields }).meta({ id: 'BatchSigned' })
export const failedResultSchema = z.object({ ...byIndex, ok: z.literal(false), error: itemErrorSchema }).meta({ id: 'BatchFailed' })

export const batchSummarySchema = z.object({
  total: z.number().int(),
  signed: z.number().int(),
  failed: z.number().int()
}).meta({ id: 'BatchSummary' })

export type BatchSummary = z.infer<typeof batchSummarySchema>

export const batchResponseSchema = z.object({
  results: z.array(z.union([signedResultSchema, failedResultSchema])).describe('One result per item, in the order of `devices`.'),
  summary: batchSummarySchema,
  broker: brokerSchema.optional().describe('Where to connect, once for all devices; present when the service is configured with MQTT_HOST.')
}).meta({ id: 'BatchResponse' })

/**
 * One line of the NDJSON answer: a result per input line (as in a JSON batch, with `line` for
 * `index`), then the summary; or, when the stream was ended early (idle, a limit, its token,
 * shutdown), an error line and then the summary with `"complete":false`.
 */
export const batchLineSchema = z.union([
  z.object({ ...byLine, ok: z.literal(true), ...credentialFields }).meta({ id: 'BatchLineSigned' }),
  z.object({ ...byLine, ok: z.literal(false), error: itemErrorSchema }).meta({ id: 'BatchLineFailed' }),
  z.object({
    summary: batchSummarySchema,
    complete: z.literal(false).optional().describe('Present, false, when the stream was ended early (after an error line): lines after the last result were not answered.'),
    broker: brokerSchema.optional().describe('Where to connect; present when the service is configured with MQTT_HOST.')
  }).meta({ id: 'BatchLineSummary', description: 'The last line of the answer: of a complete one, or, with "complete":false, of one ended early.' }),
  z.object({ error: itemErrorSchema }).meta({
    id: 'BatchLineError',
    description: 'The stream was ended early, before the summary: idle (REQUEST_TIMEOUT), too long (STREAM_LIMIT_REACHED), its token removed, expired (UNAUTHENTICATED) or without sign:batch (FORBIDDEN), or the service shutting down (SHUTTING_DOWN). The message names the last line answered.'
  })
]).describe('One line of the NDJSON answer.')

/**
 * Where a result stands: `"index":3` in a JSON batch, `"line":4` in an NDJSON stream, plus the
 * reference when the item had one. Written once per result, before its other fields.
 */
export function writePosition (key: 'index' | 'line', at: number, reference: string | undefined): string {
  return `{"${key}":${at}` + (reference === undefined ? '' : `,"reference":${JSON.stringify(reference)}`)
}

/**
 * One signed result as JSON text, the fields of signedResultSchema in its order. Written by hand
 * because a batch writes up to millions of them: keys, timestamps, method names and the hex
 * password are plain ASCII by their rules, and the two fields that may hold `"` or `\` (clientId
 * and mqttClientId) go through JSON.stringify. A test checks the output against the schema.
 */
export function writeSigned (position: string, c: SignedCredentials): string {
  // clientId is printable ASCII: only `"` and `\` need escaping, and mqttClientId holds nothing else that might.
  const plain = !NEEDS_ESCAPE.test(c.clientId)
  const clientId = plain ? '"' + c.clientId + '"' : JSON.stringify(c.clientId)
  const mqttClientId = plain ? '"' + c.mqttClientId + '"' : JSON.stringify(c.mqttClientId)
  return position + ',"ok":true,"mqttClientId":' + mqttClientId + ',"mqttUsername":"' + c.mqttUsername +
    '","mqttPassword":"' + c.mqttPassword + '","clientId":' + clientId + ',"timestamp":"' + c.timestamp +
    '","signMethod":"' + c.signMethod + '","secureMode":' + c.secureMode + '}'
}

const NEEDS_ESCAPE = /["\\]/

/** One failed result as JSON text: the code, message and details of the error POST /sign would answer. */
export function writeFailed (position: string, err: AppError): string {
  const error = err.details === undefined ? { code: err.code, message: err.message } : { code: err.code, message: err.message, details: err.details }
  return position + ',"ok":false,"error":' + JSON.stringify(error) + '}'
}

/** `{"total":..,"signed":..,"failed":..}` */
export function writeSummary (summary: BatchSummary): string {
  return `{"total":${summary.total},"signed":${summary.signed},"failed":${summary.failed}}`
}

/** The broker object as JSON text, once per response; empty when there is none. */
export function writeBroker (broker: Broker | undefined): string {
  return broker === undefined ? '' : ',"broker":' + JSON.stringify(broker)
}
