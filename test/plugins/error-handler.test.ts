import t from 'tap'
import { validatorCompiler } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { AppError, ERROR_STATUS } from '../../src/errors.js'
import { toAppError, toErrorBody } from '../../src/plugins/error-handler.js'
import { buildTestApp } from '../helper.js'

const json = { 'content-type': 'application/json' }

t.test('malformed JSON -> 400 MALFORMED_JSON', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/sign', headers: json, payload: '{"productKey": "123",' })
  t.equal(res.statusCode, 400)
  t.match(res.json(), { statusCode: 400, code: 'MALFORMED_JSON', error: 'Bad Request', message: /not valid JSON/ })
})

t.test('an empty JSON body -> 400 MALFORMED_JSON', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/sign', headers: json, payload: '' })
  t.match(res.json(), { statusCode: 400, code: 'MALFORMED_JSON', message: /empty/ })
})

t.test('a __proto__ key (prototype poisoning) -> 400, not a 500', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/sign', headers: json, payload: '{"productKey":"123","deviceKey":"test","__proto__":{"x":1}}' })
  t.equal(res.statusCode, 400)
  t.equal(res.json().code, 'MALFORMED_JSON')
})

t.test('a non-JSON body -> 415 UNSUPPORTED_MEDIA_TYPE', async (t) => {
  const app = await buildTestApp(t)
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml']) {
    const res = await app.inject({ method: 'POST', url: '/sign', headers: { 'content-type': type }, payload: 'productKey=123&deviceKey=test' })
    t.equal(res.statusCode, 415, type)
    t.match(res.json(), { statusCode: 415, code: 'UNSUPPORTED_MEDIA_TYPE', error: 'Unsupported Media Type', message: /application\/json/ }, type)
  }
})

t.test('a body over BODY_LIMIT -> 413 PAYLOAD_TOO_LARGE', async (t) => {
  const app = await buildTestApp(t, { BODY_LIMIT: '1024' })
  const res = await app.inject({ method: 'POST', url: '/sign', headers: json, payload: JSON.stringify({ productKey: '123', deviceKey: 'test', pad: 'x'.repeat(2000) }) })
  t.equal(res.statusCode, 413)
  t.match(res.json(), { statusCode: 413, code: 'PAYLOAD_TOO_LARGE', error: 'Payload Too Large', message: /BODY_LIMIT/ })
})

t.test('an unknown route -> 404 ROUTE_NOT_FOUND in the same error shape', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'GET', url: '/signature' })
  t.equal(res.statusCode, 404)
  t.same(res.json(), { statusCode: 404, code: 'ROUTE_NOT_FOUND', error: 'Not Found', message: 'no route GET /signature; see /docs' })
})

t.test('a known path with another method -> 405 METHOD_NOT_ALLOWED with Allow', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'GET', url: '/sign' })
  t.equal(res.statusCode, 405)
  t.equal(res.headers.allow, 'POST')
  t.same(res.json(), { statusCode: 405, code: 'METHOD_NOT_ALLOWED', error: 'Method Not Allowed', message: 'GET /sign is not supported; this path takes POST' })
})

t.test('a missing file under /docs/static -> 404 ROUTE_NOT_FOUND through the not-found handler', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'GET', url: '/docs/static/nope.js' })
  t.equal(res.statusCode, 404)
  t.same(res.json(), { statusCode: 404, code: 'ROUTE_NOT_FOUND', error: 'Not Found', message: 'no route GET /docs/static/nope.js; see /docs' })
})

t.test('a Range or a precondition the /docs files cannot meet -> 416 and 412 with their own codes', async (t) => {
  const app = await buildTestApp(t)
  const range = await app.inject({ method: 'GET', url: '/docs/static/swagger-ui.css', headers: { range: 'bytes=999999999-' } })
  t.same(range.json(), { statusCode: 416, code: 'RANGE_NOT_SATISFIABLE', error: 'Range Not Satisfiable', message: 'the Range header asks for bytes the file does not have' })
  const precondition = await app.inject({ method: 'GET', url: '/docs/static/swagger-ui.css', headers: { 'if-match': '"other"' } })
  t.match(precondition.json(), { statusCode: 412, code: 'PRECONDITION_FAILED', message: /If-Match/ })
})

t.test('an Expect other than 100-continue -> 417 EXPECTATION_FAILED, without reading the body', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/sign', headers: { expect: 'x-custom' }, payload: '{not json' })
  t.equal(res.statusCode, 417)
  t.equal(res.headers.connection, 'close')
  t.match(res.json(), { code: 'EXPECTATION_FAILED' })
})

t.test('a malformed URL -> 400 BAD_REQUEST', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'GET', url: '/%zz', headers: { 'x-request-id': 'bad-url-1' } })
  t.equal(res.statusCode, 400)
  t.equal(res.headers['x-request-id'], 'bad-url-1')
  t.match(res.json(), { statusCode: 400, code: 'BAD_REQUEST', error: 'Bad Request' })
})

t.test('another client error of the HTTP layer gets the code its status has in the table', async (t) => {
  const err = Object.assign(new Error('Request body size did not match Content-Length'), { statusCode: 400, code: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH' })
  t.match(toAppError(err), { code: 'BAD_REQUEST', statusCode: 400, message: /Content-Length/ })
  t.match(toAppError(Object.assign(new Error('Request Timeout'), { statusCode: 408 })), { code: 'REQUEST_TIMEOUT', statusCode: 408 })
  t.match(toAppError(Object.assign(new Error('Forbidden'), { status: 403 })), { code: 'ROUTE_NOT_FOUND', statusCode: 404, message: 'no such path; see /docs' })
  t.match(toAppError(Object.assign(new Error('I am a teapot'), { statusCode: 418 })), { code: 'BAD_REQUEST', statusCode: 400, message: 'I am a teapot' }, 'a status the table has no code for is a 400')
})

t.test('every code has exactly the status of the table, whoever throws it', async (t) => {
  for (const [code, status] of Object.entries(ERROR_STATUS)) {
    t.equal(new AppError(code as keyof typeof ERROR_STATUS, 'x').statusCode, status, code)
  }
})

t.test('a non-client error becomes INTERNAL and keeps the original only as its cause', async (t) => {
  const cause = Object.assign(new Error('socket hang up at db:5432'), { statusCode: 502 })
  const mapped = toAppError(cause)
  t.match(mapped, { code: 'INTERNAL', statusCode: 500 })
  t.notMatch(mapped.message, /db:5432/)
  t.equal(mapped.cause, cause)
})

t.test('the error table maps every code to a 4xx or 5xx', async (t) => {
  for (const [code, status] of Object.entries(ERROR_STATUS)) {
    t.ok(status >= 400 && status < 600, code)
    t.match(code, /^[A-Z][A-Z_]+$/, `${code} is UPPER_SNAKE`)
  }
})

t.test('unknown fields of a nested object are named by their full path', async (t) => {
  const validate = validatorCompiler({ schema: z.object({ device: z.strictObject({ deviceKey: z.string() }) }) } as never)
  const result = validate({ device: { deviceKey: 'd', secret: 'x', colour: 'red' } }) as { error: unknown[] }
  const err = Object.assign(new Error('invalid'), { validation: result.error, validationContext: 'body' })
  t.match(toAppError(err), {
    code: 'VALIDATION_FAILED',
    message: 'invalid request body: device.secret: is not a known field; device.colour: is not a known field',
    details: [{ path: 'device.secret', message: 'is not a known field' }, { path: 'device.colour', message: 'is not a known field' }]
  })
})

t.test('a 405 carries its Allow header; a 503 its Retry-After', async (t) => {
  t.same(new AppError('METHOD_NOT_ALLOWED', 'x', { headers: { allow: 'POST' } }).headers, { allow: 'POST' })
  t.equal(new AppError('SHUTTING_DOWN', 'x').retryAfter, 1)
  t.equal(new AppError('STORE_UNAVAILABLE', 'x').retryAfter, 5)
  t.same(toErrorBody(new AppError('BAD_REQUEST', 'odd client')), { statusCode: 400, code: 'BAD_REQUEST', error: 'Bad Request', message: 'odd client' })
})
