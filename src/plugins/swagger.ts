// The OpenAPI document, generated from the routes' zod schemas, served at /openapi.json and browsable at /docs.
import swagger, { type SwaggerTransform } from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod'

/** The part of an OpenAPI 3 document the pruning reads; this service emits no Swagger 2 documents. */
interface OpenApiLike {
  paths?: unknown
  components?: { schemas?: Record<string, unknown> }
}

/**
 * The zod provider emits an input and an output variant of every registered schema; drop the
 * ones no path refers to, so generated clients do not get duplicate types.
 */
export function pruneUnusedSchemas<T extends object> (spec: T): T {
  const { paths, components } = spec as OpenApiLike
  const schemas: Record<string, unknown> = { ...components?.schemas }
  const used = new Set<string>()
  const visit = (node: unknown): void => {
    if (typeof node !== 'object' || node === null) return
    for (const [key, value] of Object.entries(node)) {
      const name = key === '$ref' && typeof value === 'string' ? value.replace('#/components/schemas/', '') : undefined
      if (name === undefined) visit(value)
      else if (!used.has(name)) {
        used.add(name)
        visit(schemas[name])
      }
    }
  }
  visit(paths)
  const kept = Object.fromEntries(Object.entries(schemas).filter(([name]) => used.has(name)))
  return { ...spec, components: { ...components, schemas: kept } }
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null

/**
 * jsonSchemaTransform turns the zod schemas into JSON schemas, but of a response given by content
 * type (schemas/response.ts) it keeps only `description` and `content`: put the declared `headers`
 * back, so that @fastify/swagger documents them (X-Request-Id, Retry-After).
 */
export const transformRoute: SwaggerTransform = (route) => {
  const transformed = withBodyByContentType(route)
  const declared = route.schema.response
  const emitted = transformed.schema.response
  // Hidden routes (emitted has nothing) and routes without response schemas have no headers to add.
  if (!isRecord(declared) || !isRecord(emitted)) return transformed
  const response = Object.fromEntries(Object.entries(emitted).map(([status, doc]) => {
    // A declared response is a zod schema or a JsonResponse; only the latter has headers.
    const { headers } = declared[status] as { headers?: unknown }
    // jsonSchemaTransform emits one response object per declared status.
    return [status, headers === undefined ? doc : { ...doc as object, headers }]
  }))
  return { ...transformed, schema: { ...transformed.schema, response } }
}

/** A body given per content type: `{ content: { <type>: { schema: <zod> } } }`. */
interface BodyByContentType { content: Record<string, { schema: unknown }> }

function isBodyByContentType (body: unknown): body is BodyByContentType {
  return isRecord(body) && isRecord(body.content)
}

/**
 * jsonSchemaTransform converts one zod body; a body given per content type (POST /sign/batch
 * takes JSON or NDJSON) is converted one content type at a time, in @fastify/swagger's form.
 */
function withBodyByContentType (route: Parameters<SwaggerTransform>[0]): ReturnType<typeof jsonSchemaTransform> {
  const { body } = route.schema
  if (!isBodyByContentType(body)) return jsonSchemaTransform(route)
  const transformed = jsonSchemaTransform({ ...route, schema: { ...route.schema, body: undefined } })
  const content = Object.fromEntries(Object.entries(body.content).map(([type, { schema }]) =>
    [type, { schema: jsonSchemaTransform({ ...route, schema: { body: schema } }).schema.body }]))
  return { ...transformed, schema: { ...transformed.schema, body: { content } } }
}

async function swaggerPlugin (app: FastifyInstance, opts: { version: string }): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'enos-mqtt-signer',
        description: 'Turns productKey + deviceKey into ready-to-use EnOS IoT Hub MQTT CONNECT credentials.',
        version: opts.version
      },
      components: {
        securitySchemes: {
          bearerAuth: {
            type: 'http',
            scheme: 'bearer',
            description: 'AUTH_MODE=token (the default with a real store) or mtls: a token of AUTH_TOKENS_FILE with the route\'s scope (sign, sign:batch, verify) and the product. ' +
              'With AUTH_MODE=mtls a device may instead present a client certificate naming it (OpenAPI 3.0 has no scheme for mutual TLS). With AUTH_MODE=none nothing is needed.'
          }
        }
      },
      tags: [
        { name: 'signing', description: 'MQTT CONNECT credentials' },
        { name: 'verification', description: 'For brokers: check credentials a device presents' },
        { name: 'health', description: 'Liveness and readiness' }
      ]
    },
    transform: transformRoute,
    transformObject: (doc) => pruneUnusedSchemas(jsonSchemaTransformObject(doc))
  })
  await app.register(swaggerUi, { routePrefix: '/docs' })
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
}

export default fp(swaggerPlugin, { name: 'swagger', fastify: '5.x' })
