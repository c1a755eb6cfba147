// The device-friendly answer: `key=value` lines a microcontroller reads with a line reader, chosen by the Accept header.
import type { FastifyRequest } from 'fastify'
import Negotiator from 'negotiator'
import { z } from 'zod'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route answers `Accept: text/plain` with `key=value` lines, its errors included. */
    textAnswers?: boolean
  }
}

export const TEXT_PLAIN = 'text/plain; charset=utf-8'

/** JSON first: it is the answer when Accept is absent, `*\/*`, or names neither type. */
const OFFERED = ['application/json', 'text/plain']

/**
 * Whether the request prefers text/plain to JSON (q-values, `text/*` and `*\/*` as RFC 9110
 * says). An Accept that allows neither gets JSON rather than a 406: a device that asks for
 * something odd still gets an answer it can log.
 */
export function prefersText (request: FastifyRequest): boolean {
  // Most callers send no Accept (or */*): JSON without parsing anything.
  const { accept } = request.headers
  if (accept === undefined || accept === '*/*' || request.routeOptions.config?.textAnswers !== true) return false
  return new Negotiator(request.raw).mediaType(OFFERED) === 'text/plain'
}

/** `key=value` lines, each ended by `\n`. Values never hold a line break: one is replaced by a space. */
export function textLines (fields: ReadonlyArray<readonly [string, string | number | boolean]>): string {
  return fields.map(([key, value]) => `${key}=${String(value).replace(/[\r\n]+/g, ' ')}\n`).join('')
}

/** The text form of an answer, as OpenAPI documents it. */
export const textAnswerSchema = z.string()
