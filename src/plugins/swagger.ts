// The OpenAPI document, generated from the routes' zod schemas, served at /openapi.json and browsable at /docs.
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod'

async function swaggerPlugin (app: FastifyInstance, opts: { version: string }): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'enos-mqtt-signer',
        description: 'Turns productKey + deviceKey into ready-to-use EnOS IoT Hub MQTT CONNECT credentials.',
        version: opts.version
      },
      tags: [
        { name: 'signing', description: 'MQTT CONNECT credentials' },
        { name: 'health', description: 'Liveness and readiness' }
      ]
    },
    transform: jsonSchemaTransform,
    transformObject: jsonSchemaTransformObject
  })
  await app.register(swaggerUi, { routePrefix: '/docs', logLevel: 'warn' })
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
}

export default fp(swaggerPlugin, { name: 'swagger', fastify: '5.x' })
