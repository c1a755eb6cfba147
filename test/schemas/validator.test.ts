// The validator's fast path for flat string bodies answers exactly what zod answers, and is used only where it can.
import t from 'tap'
import { validatorCompiler as zodValidatorCompiler } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { signRequestSchema } from '../../src/schemas/credentials.js'
import { flatStringFields, validatorCompiler } from '../../src/schemas/validator.js'

const compile = (schema: z.ZodType): ((data: unknown) => unknown) => validatorCompiler({ schema, method: 'POST', url: '/x', httpPart: 'body' }) as (data: unknown) => unknown
const viaZod = (schema: z.ZodType): ((data: unknown) => unknown) => zodValidatorCompiler({ schema, method: 'POST', url: '/x', httpPart: 'body' }) as (data: unknown) => unknown

t.test('POST /sign bodies: every one gets what zod gives it, valid or not', async (t) => {
  t.ok(flatStringFields(signRequestSchema), 'the sign body has the fast path')
  const fast = compile(signRequestSchema)
  const slow = viaZod(signRequestSchema)
  const base = { productKey: 'Ab12', deviceKey: 'dev-1' }
  const bodies: unknown[] = [
    base,
    { ...base, clientId: '00:1B:44:11:3A:B7', timestamp: '1524448722000', signMethod: 'HmacSHA1' },
    { ...base, signMethod: 'x'.repeat(32) },
    { ...base, signMethod: 'x'.repeat(33) },
    { ...base, signMethod: '' },
    { ...base, clientId: 'a|b' },
    { ...base, clientId: '' },
    { ...base, timestamp: '12a' },
    { ...base, timestamp: 1524448722000 },
    { ...base, extra: 'x' },
    { productKey: 'Ab12' },
    { deviceKey: 'dev-1', productKey: 'bad key' },
    { productKey: 'p'.repeat(65), deviceKey: 'd' },
    { ...base, deviceKey: null },
    {},
    [],
    null,
    'text',
    42
  ]
  for (const body of bodies) t.same(fast(body), slow(body), JSON.stringify(body))
  t.equal((fast(base) as { value: unknown }).value, base, 'a body that passes is answered as it is')
})

t.test('a schema with anything but regex and length checks of strings goes through zod alone', async (t) => {
  const schemas = [
    z.object({ a: z.string() }),
    z.strictObject({ a: z.string().refine((value) => value !== 'no') }),
    z.strictObject({ a: z.string().trim() }),
    z.strictObject({ a: z.string().default('x') }),
    z.strictObject({ a: z.number() }),
    z.strictObject({ a: z.coerce.string() }),
    z.strictObject({ a: z.string().regex(/a/g) }),
    z.strictObject({ a: z.string().email() }),
    z.strictObject({ a: z.string() }).refine((value) => value.a !== 'no'),
    z.string()
  ]
  for (const schema of schemas) t.equal(flatStringFields(schema), undefined)
  const refined = z.strictObject({ a: z.string().refine((value) => value !== 'no', 'not no') })
  t.same(compile(refined)({ a: 'no' }), viaZod(refined)({ a: 'no' }))
  t.match(compile(refined)({ a: 'no' }), { error: Array })
  t.ok(flatStringFields(z.strictObject({ a: z.string().min(2).max(3), b: z.string().optional() })))
  const lengths = compile(z.strictObject({ a: z.string().min(2).max(3) }))
  t.same(lengths({ a: 'ab' }), { value: { a: 'ab' } })
  t.match(lengths({ a: 'a' }), { error: Array })
})
