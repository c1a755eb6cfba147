// The hand-written batch results are exactly what their zod schemas describe, whatever the values in them.
import fc from 'fast-check'
import t from 'tap'
import { signCredentials } from '../../src/core/credentials.js'
import { SIGN_METHOD_NAMES } from '../../src/core/sign-method.js'
import { AppError, ERROR_STATUS, type ErrorCode } from '../../src/errors.js'
import { batchLineSchema, failedResultSchema, signedResultSchema, writeFailed, writePosition, writeSigned } from '../../src/schemas/batch.js'

const KEY_CHARS = [...'abcXYZ019_.:%-']
// Printable ASCII without |, with the characters JSON must escape among them.
const CLIENT_ID_CHARS = [...' "\\/abc{}~\'', ...Array.from({ length: 20 }, (_, i) => String.fromCharCode(0x21 + i * 4))].filter((c) => c !== '|')
const key = fc.string({ unit: fc.constantFrom(...KEY_CHARS), minLength: 1, maxLength: 64 })
const clientId = fc.string({ unit: fc.constantFrom(...CLIENT_ID_CHARS), minLength: 1, maxLength: 64 })
const reference = fc.option(fc.string({ unit: 'grapheme', maxLength: 128 }), { nil: undefined })

t.test('writeSigned writes valid JSON that signedResultSchema accepts, with every value as it was', async (t) => {
  fc.assert(fc.property(key, key, clientId, fc.nat(), fc.constantFrom(...SIGN_METHOD_NAMES), reference, fc.string({ minLength: 1, maxLength: 40 }),
    (productKey, deviceKey, id, index, signMethod, ref, deviceSecret) => {
      const credentials = signCredentials({ productKey, deviceKey, deviceSecret, clientId: id, timestamp: '1524448722000', signMethod })
      const parsed = signedResultSchema.parse(JSON.parse(writeSigned(writePosition('index', index, ref), credentials)))
      const { index: at, reference: echoed, ok, ...rest } = parsed
      return at === index && echoed === ref && ok && JSON.stringify(rest) === JSON.stringify(credentials)
    }))
  t.pass('every generated result round-trips')
})

t.test('writeFailed writes valid JSON that failedResultSchema accepts, and the NDJSON form is a batch line', async (t) => {
  const codes = Object.keys(ERROR_STATUS) as ErrorCode[]
  fc.assert(fc.property(fc.constantFrom(...codes), fc.string({ unit: 'grapheme', maxLength: 80 }), fc.nat(), reference, fc.boolean(), (code, message, at, ref, withDetails) => {
    const details = withDetails ? [{ path: 'deviceKey', message }] : undefined
    const error = new AppError(code, message, { details })
    const byIndex = failedResultSchema.parse(JSON.parse(writeFailed(writePosition('index', at, ref), error)))
    const byLine = batchLineSchema.parse(JSON.parse(writeFailed(writePosition('line', at + 1, ref), error)))
    return byIndex.error.code === code && byIndex.error.message === message && byIndex.reference === ref &&
      JSON.stringify(byIndex.error.details) === JSON.stringify(details) && 'line' in byLine && byLine.line === at + 1
  }))
  t.pass('every generated failure round-trips')
})
