// One documented response of a route: its JSON schema, when it is sent, and the headers it carries.
import type { z } from 'zod'

/** A response header as @fastify/swagger documents it: a JSON schema plus when and why it is sent. */
export interface HeaderDoc {
  type: 'string' | 'integer'
  description: string
}

/** Sent with every answer (plugins/request-log.ts), errors included. */
export const REQUEST_ID_HEADER = {
  'X-Request-Id': {
    type: 'string',
    description: 'The request\'s id: the caller\'s X-Request-Id if a plain token, else a new UUID; its log line has it as reqId.'
  }
} as const satisfies Record<string, HeaderDoc>

/** Sent with every 503 (errors.ts DEFAULT_RETRY_AFTER, GET /readyz). */
export const RETRY_AFTER_HEADER = {
  'Retry-After': { type: 'integer', description: 'Seconds to wait before trying again.' }
} as const satisfies Record<string, HeaderDoc>

/**
 * The "content type" form of a Fastify response schema. Unlike a bare zod schema, it carries a
 * description for the response itself (fastify-type-provider-zod keeps it, @fastify/swagger shows
 * it instead of "Default Response"), so a shared schema such as Error stays one $ref component
 * while each status says in its own words when it happens. Fastify serializes it as usual (per
 * content type), and the type provider still infers the reply type from `schema`.
 */
export interface JsonResponse<S extends z.ZodType> {
  description: string
  /** Not read by Fastify; plugins/swagger.ts puts them into the document. */
  headers: Record<string, HeaderDoc>
  content: { 'application/json': { schema: S } }
}

/** A JSON response of `schema`, sent when `description` says, with X-Request-Id and any `headers` documented. */
export function jsonResponse<S extends z.ZodType> (schema: S, description: string, headers: Record<string, HeaderDoc> = {}): JsonResponse<S> {
  return { description, headers: { ...REQUEST_ID_HEADER, ...headers }, content: { 'application/json': { schema } } }
}
