import fc from 'fast-check'
import t from 'tap'
import { ERROR_STATUS } from '../../src/errors.js'
import { buildTestApp } from '../helper.js'

const CODES = new Set(Object.keys(ERROR_STATUS))

t.test('POST /sign – no JSON body of any shape gets a 5xx; every error has a known code', async (t) => {
  const app = await buildTestApp(t)
  const field = fc.oneof(fc.string({ maxLength: 70 }), fc.constantFrom('123', 'test', 'sha256', 'MD5', '1524448722000'), fc.anything())
  const body = fc.oneof(
    fc.anything(),
    fc.record({ productKey: field, deviceKey: field, clientId: field, timestamp: field, signMethod: field }, { requiredKeys: [] }),
    fc.dictionary(fc.string({ maxLength: 12 }), field)
  )
  await fc.assert(fc.asyncProperty(body, async (payload) => {
    const json = JSON.stringify(payload) ?? 'null'
    const res = await app.inject({ method: 'POST', url: '/sign', headers: { 'content-type': 'application/json' }, payload: json })
    if (res.statusCode === 200) return
    const error = res.json()
    if (res.statusCode >= 500 || !CODES.has(error.code) || error.statusCode !== res.statusCode) {
      throw new Error(`${res.statusCode} ${res.body} for ${json}`)
    }
  }), { numRuns: 400 })
  t.pass('400 random bodies answered without a 5xx')
})

t.test('POST /sign – random bytes as a JSON body get a 4xx', async (t) => {
  const app = await buildTestApp(t)
  await fc.assert(fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 300 }), async (bytes) => {
    const res = await app.inject({ method: 'POST', url: '/sign', headers: { 'content-type': 'application/json' }, payload: Buffer.from(bytes) })
    if (res.statusCode < 400 || res.statusCode >= 500) throw new Error(`${res.statusCode} ${res.body}`)
  }), { numRuns: 200 })
  t.pass('200 random payloads answered with a 4xx')
})
