// The OpenAPI document: in step with the code, valid 3.0.3, every response described, a body example that signs.
import { readFile } from 'node:fs/promises'
// An independent check of the document against the official OpenAPI JSON schemas (the OAI's own
// 2.0/3.0/3.1 schemas, compiled with ajv), small, maintained and offline: it is what rejected the
// zod `examples` that 3.0 does not allow, which @fastify/swagger itself lets through.
import { Validator } from '@seriousme/openapi-schema-validator'
import t from 'tap'
import { renderOpenApi } from '../src/openapi.js'
import { EXAMPLE_PASSWORDS, buildTestApp } from './helper.js'

const committedPath = new URL('../openapi/openapi.json', import.meta.url)

interface Operation {
  responses: Record<string, { description: string, headers?: Record<string, unknown> }>
}

const readSpec = async (): Promise<Record<string, unknown>> => JSON.parse(await readFile(committedPath, 'utf8')) as Record<string, unknown>

t.test('openapi/openapi.json matches the code (run `npm run openapi` after changing a route)', async (t) => {
  t.equal(await renderOpenApi(), await readFile(committedPath, 'utf8'))
})

t.test('the spec is valid OpenAPI 3.0.3', async (t) => {
  const spec = await readSpec()
  t.equal(spec.openapi, '3.0.3')
  const result = await new Validator().validate(spec)
  t.equal(result.valid, true, 'the validator accepts it', { errors: result.errors })
})

t.test('the validator refuses what 3.0 does not allow (a schema with `examples`, as zod emits it)', async (t) => {
  const spec = await readSpec()
  const broken = structuredClone(spec) as { components: { schemas: Record<string, { properties: Record<string, object> }> } }
  const productKey = broken.components.schemas.SignRequestInput?.properties.productKey
  t.ok(productKey, 'the request schema is a component')
  Object.assign(productKey ?? {}, { examples: ['123'] })
  const result = await new Validator().validate(broken)
  t.equal(result.valid, false)
  t.match(result.errors, [{ instancePath: '/components/schemas/SignRequestInput/properties/productKey', params: { additionalProperty: 'examples' } }])
})

t.test('the spec documents POST /sign with every status it can return', async (t) => {
  const spec = JSON.parse(await readFile(committedPath, 'utf8'))
  const sign = spec.paths['/sign'].post
  t.equal(sign.operationId, 'sign')
  t.same(Object.keys(sign.responses).sort(), ['200', '400', '401', '403', '404', '408', '413', '415', '429', '500', '503'])
  t.ok(spec.components.schemas.Error, 'errors share one $ref schema')
  t.same(sign.responses['404'].content['application/json'].schema, { $ref: '#/components/schemas/Error' })
  t.notOk('description' in spec.components.schemas.Error, 'the per-status description is on the response, not in the shared schema')
  t.same(Object.keys(spec.paths).sort(), ['/healthz', '/readyz', '/sign', '/sign/batch', '/verify'])
  t.same(Object.keys(sign.responses['200'].content), ['application/json', 'text/plain'], 'the credentials as JSON or as text lines')
  for (const [status, response] of Object.entries<{ content: Record<string, unknown> }>(sign.responses)) {
    t.same(Object.keys(response.content), ['application/json', 'text/plain'], `${status} as JSON or as text lines`)
  }
})

t.test('the spec documents POST /verify: JSON or form in, the decision out, its scope, every status', async (t) => {
  const spec = await readSpec() as { paths: Record<string, Record<string, { operationId: string, security: unknown, requestBody: { content: Record<string, unknown> }, responses: Record<string, { content: Record<string, unknown> }> }>> }
  const verify = spec.paths['/verify']?.post
  t.equal(verify?.operationId, 'verify')
  t.same(verify?.security, [{ bearerAuth: [] }, {}])
  t.same(Object.keys(verify?.requestBody.content ?? {}), ['application/json', 'application/x-www-form-urlencoded'])
  t.same(verify?.responses['200']?.content, { 'application/json': { schema: { $ref: '#/components/schemas/VerifyResult' } } })
  t.same(Object.keys(verify?.responses ?? {}).sort(), ['200', '400', '401', '403', '408', '413', '415', '429', '500', '503'])
})

t.test('the spec documents POST /sign/batch with both content types, in and out, and every status', async (t) => {
  const spec = await readSpec() as { paths: Record<string, Record<string, { operationId: string, requestBody: { content: Record<string, unknown> }, responses: Record<string, { content: Record<string, unknown> }> }>> }
  const batch = spec.paths['/sign/batch']?.post
  t.equal(batch?.operationId, 'signBatch')
  t.same(Object.keys(batch?.requestBody.content ?? {}), ['application/json', 'application/x-ndjson'])
  t.same(Object.keys(batch?.responses['200']?.content ?? {}), ['application/json', 'application/x-ndjson'])
  t.same(Object.keys(batch?.responses ?? {}).sort(), ['200', '400', '401', '403', '408', '413', '415', '429', '500', '503'])
})

t.test('the request body example of POST /sign/batch signs the example device as it is', async (t) => {
  const spec = await readSpec() as { components: { schemas: Record<string, { example?: unknown }> } }
  const example = spec.components.schemas.BatchRequestInput?.example
  t.match(example, { devices: [{ productKey: '123', deviceKey: 'test' }] })
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/sign/batch', payload: example as object })
  t.match(res.json(), { results: [{ ok: true, mqttPassword: EXAMPLE_PASSWORDS.hmacsha1 }], summary: { signed: 1, failed: 0 } })
})

t.test('every response says when it happens and documents X-Request-Id (and Retry-After on 503)', async (t) => {
  const spec = await readSpec() as { paths: Record<string, Record<string, Operation>> }
  for (const [path, operations] of Object.entries(spec.paths)) {
    for (const [method, { responses }] of Object.entries(operations)) {
      for (const [status, response] of Object.entries(responses)) {
        const where = `${method.toUpperCase()} ${path} ${status}`
        t.not(response.description, 'Default Response', `${where} has a description`)
        t.ok(response.headers?.['X-Request-Id'], `${where} documents X-Request-Id`)
        if (status === '503') t.ok(response.headers?.['Retry-After'], `${where} documents Retry-After`)
      }
    }
  }
})

t.test('the request body example of POST /sign signs the example device as it is', async (t) => {
  const spec = await readSpec() as { components: { schemas: Record<string, { example?: unknown }> } }
  const example = spec.components.schemas.SignRequestInput?.example
  t.same(example, { productKey: '123', deviceKey: 'test', clientId: '123', timestamp: '1524448722000', signMethod: 'hmacsha1' })
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/sign', payload: example as object })
  t.equal(res.statusCode, 200)
  t.equal(res.json().mqttPassword, EXAMPLE_PASSWORDS.hmacsha1)
})

t.test('GET /openapi.json serves the same document and /docs is browsable', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'GET', url: '/openapi.json' })
  t.equal(res.statusCode, 200)
  t.same(res.json().paths, JSON.parse(await readFile(committedPath, 'utf8')).paths)
  const docs = await app.inject({ method: 'GET', url: '/docs/' })
  t.equal(docs.statusCode, 200)
  t.match(docs.headers['content-type'], /text\/html/)
  t.match(docs.body, /swagger/i)
})
