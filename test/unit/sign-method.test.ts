import t from 'tap'
import { DEFAULT_SIGN_METHOD, SIGN_METHODS, normalizeSignMethod, resolveSignMethod } from '../../src/core/sign-method.js'

t.test('the six contract method names map to their plain digests', async (t) => {
  t.same(SIGN_METHODS, { hmacsha1: 'sha1', sha1: 'sha1', sha256: 'sha256', hmacsha256: 'sha256', md5: 'md5', hmacmd5: 'md5' })
  t.equal(DEFAULT_SIGN_METHOD, 'hmacsha1')
})

t.test('names are trimmed and matched case-insensitively', async (t) => {
  t.equal(normalizeSignMethod(' SHA256 '), 'sha256')
  t.equal(normalizeSignMethod('HmacMD5'), 'hmacmd5')
  t.equal(normalizeSignMethod('sha512'), undefined)
  t.equal(normalizeSignMethod('constructor'), undefined, 'no prototype keys')
})

t.test('resolveSignMethod throws UNSUPPORTED_SIGN_METHOD for an unknown name', async (t) => {
  t.equal(resolveSignMethod('MD5'), 'md5')
  t.throws(() => resolveSignMethod('hmacsha512'), { code: 'UNSUPPORTED_SIGN_METHOD', statusCode: 400 })
})
