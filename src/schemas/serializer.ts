// Response serialization: the routes' zod schemas compiled once to fast-json-stringify.
import type { FastifySerializerCompiler } from 'fastify/types/schema.js'
import fastJsonStringify, { type Schema } from 'fast-json-stringify'
import { z } from 'zod'

/**
 * Replaces fastify-type-provider-zod's serializer (a zod encode plus JSON.stringify on every
 * response, the largest cost of POST /sign in the profiles) with fast-json-stringify compiled
 * from the same zod schema: zod stays the one source of truth, and fields the schema does not
 * name are still never written, so nothing stray can leak into a response.
 */
export const serializerCompiler: FastifySerializerCompiler<z.ZodType> = ({ schema }) =>
  fastJsonStringify(z.toJSONSchema(schema, { target: 'draft-7', io: 'output' }) as Schema)
