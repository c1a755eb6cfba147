// AppError: the answers to clients carry no stack trace; the service's own failures keep theirs.
import t from 'tap'
import { AppError } from '../src/errors.js'

t.test('a 4xx AppError has no stack frames, a 5xx one has them, and the process limit is left as it was', async (t) => {
  const before = Error.stackTraceLimit
  const refused = new AppError('DEVICE_NOT_FOUND', 'no device')
  t.equal(refused.statusCode, 404)
  t.equal(refused.stack, 'AppError: no device', 'only the header line')
  const failed = new AppError('STORE_UNAVAILABLE', 'down', { cause: new Error('ECONNREFUSED') })
  t.equal(failed.statusCode, 503)
  t.match(failed.stack, /^AppError: down\n {4}at /, 'frames, for the log')
  t.equal(Error.stackTraceLimit, before)
  t.match(new Error('plain').stack, /\n {4}at /, 'other errors still get theirs')
})
