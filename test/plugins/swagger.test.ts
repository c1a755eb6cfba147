// The swagger plugin's route transform: documented response headers survive the zod conversion.
import Fastify from 'fastify'
import { serializerCompiler as zodSerializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod'
import t from 'tap'
import { z } from 'zod'
import swagger from '../../src/plugins/swagger.js'
import { jsonResponse } from '../../src/schemas/response.js'

t.test('responses declared with jsonResponse keep their headers; a bare zod schema is documented as it was', async (t) => {
  const app = Fastify().withTypeProvider<ZodTypeProvider>()
  t.teardown(() => app.close())
  app.setValidatorCompiler(validatorCompiler)
  app.setSerializerCompiler(zodSerializerCompiler)
  await app.register(swagger, { version: '0.0.0' })
  const ok = z.object({ ok: z.boolean() })
  app.get('/documented', { schema: { response: { 200: jsonResponse(ok, 'Fine.') } } }, async () => ({ ok: true }))
  app.get('/bare', { schema: { response: { 200: ok } } }, async () => ({ ok: true }))
  await app.ready()
  const { paths } = app.swagger() as { paths: Record<string, { get: { responses: Record<string, unknown> } }> }
  t.match(paths['/documented']?.get.responses['200'], { description: 'Fine.', headers: { 'X-Request-Id': { schema: { type: 'string' } } } })
  t.notOk(Object.hasOwn(paths['/bare']?.get.responses['200'] ?? {}, 'headers'))
  t.match(paths['/bare']?.get.responses['200'], { description: 'Default Response', content: { 'application/json': {} } })
})
