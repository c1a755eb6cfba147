// The error body every route answers with (see plugins/error-handler.ts), registered once for $ref.
import { z } from 'zod'

export const errorBodySchema = z.object({
  statusCode: z.number().int().describe('The HTTP status, repeated.'),
  code: z.string().describe('Stable error code (see the README table); match on this, not on the message.'),
  error: z.string().describe('The HTTP reason phrase.'),
  message: z.string().describe('What went wrong and what to do about it.'),
  details: z.array(z.object({
    path: z.string().describe('The request field, dotted; empty for the body as a whole.'),
    message: z.string()
  })).optional().describe('One entry per invalid field (VALIDATION_FAILED, UNSUPPORTED_SIGN_METHOD).')
}).meta({ id: 'Error' })

/** Response schemas for the given error statuses, for a route's `schema.response`. */
export function errorResponses<const S extends number> (...statuses: S[]): Record<S, typeof errorBodySchema> {
  return Object.fromEntries(statuses.map((status) => [status, errorBodySchema])) as Record<S, typeof errorBodySchema>
}
