// Known answers, parsing tables and properties of the EnOS signing contract (ENOS-SIGNING.md).
import { createHash, createHmac } from 'node:crypto'
import fc from 'fast-check'
import t from 'tap'
import {
  SECURE_MODE,
  buildMqttSignContent,
  buildSignContent,
  computePassword,
  formatMqttClientId,
  parseCredentials,
  parseMqttClientId,
  parseMqttUsername,
  signCredentials,
  verifyCredentials,
  type SignInput
} from '../../src/core/credentials.js'
import { isValidClientId, isValidKey, isValidSecret, isValidTimestamp } from '../../src/core/fields.js'
import { SIGN_METHODS, SIGN_METHOD_NAMES, type SignMethod } from '../../src/core/sign-method.js'
import { EXAMPLE, EXAMPLE_PASSWORDS } from '../helper.js'

const EXAMPLE_CONTENT = 'clientId123deviceKeytestproductKey123timestamp1524448722000'

/** The contract's worked-example password for each of the six method names. */
const PASSWORD_BY_METHOD: Record<SignMethod, string> = {
  hmacsha1: EXAMPLE_PASSWORDS.hmacsha1,
  sha1: EXAMPLE_PASSWORDS.hmacsha1,
  sha256: EXAMPLE_PASSWORDS.sha256,
  hmacsha256: EXAMPLE_PASSWORDS.sha256,
  md5: EXAMPLE_PASSWORDS.md5,
  hmacmd5: EXAMPLE_PASSWORDS.md5
}

const HEX_LENGTH: Record<SignMethod, number> = { hmacsha1: 40, sha1: 40, sha256: 64, hmacsha256: 64, md5: 32, hmacmd5: 32 }

function signExample (signMethod: SignMethod): ReturnType<typeof signCredentials> {
  return signCredentials({ ...EXAMPLE, signMethod })
}

t.test('the sign content of the worked example is the sorted names, each followed by its value', async (t) => {
  const { clientId, deviceKey, productKey, timestamp } = EXAMPLE
  t.equal(buildSignContent({ clientId, deviceKey, productKey, timestamp }), EXAMPLE_CONTENT)
})

t.test('buildSignContent sorts the names whatever order the params come in', async (t) => {
  const { clientId, deviceKey, productKey, timestamp } = EXAMPLE
  t.equal(buildSignContent({ timestamp, productKey, clientId, deviceKey }), EXAMPLE_CONTENT)
  t.equal(buildSignContent({ productKey, timestamp, deviceKey, clientId }), EXAMPLE_CONTENT)
})

t.test('buildSignContent sorts by UTF-16 code unit, not by locale', async (t) => {
  t.ok('a'.localeCompare('B') < 0, 'locale order would put a first')
  t.equal(buildSignContent({ a: '2', B: '1' }), 'B1a2')
  t.equal(buildSignContent({ B: '1', a: '2' }), 'B1a2')
})

t.test('each of the six method names gives the worked example password of its digest', async (t) => {
  for (const method of SIGN_METHOD_NAMES) {
    t.equal(signExample(method).mqttPassword, PASSWORD_BY_METHOD[method], method)
    t.equal(computePassword(EXAMPLE_CONTENT, EXAMPLE.deviceSecret, method), PASSWORD_BY_METHOD[method], `${method} via computePassword`)
  }
  t.equal(SIGN_METHOD_NAMES.length, 6)
})

t.test('signCredentials writes the method asked for into mqttClientId, with no spaces', async (t) => {
  for (const method of SIGN_METHOD_NAMES) {
    t.same(signExample(method), {
      mqttClientId: `123|securemode=2,signmethod=${method},timestamp=1524448722000|`,
      mqttUsername: 'test&123',
      mqttPassword: PASSWORD_BY_METHOD[method],
      clientId: '123',
      timestamp: '1524448722000',
      signMethod: method,
      secureMode: 2
    }, method)
  }
})

t.test('formatMqttClientId matches the contract worked examples', async (t) => {
  t.equal(SECURE_MODE, 2)
  t.equal(formatMqttClientId('123', 'hmacsha1', '1524448722000'), '123|securemode=2,signmethod=hmacsha1,timestamp=1524448722000|')
  t.equal(formatMqttClientId('123', 'sha256', '1524448722000'), '123|securemode=2,signmethod=sha256,timestamp=1524448722000|')
  t.equal(formatMqttClientId('123', 'md5', '1524448722000'), '123|securemode=2,signmethod=md5,timestamp=1524448722000|')
})

t.test('the password is not an HMAC keyed by the secret', async (t) => {
  const hmac = createHmac('sha1', EXAMPLE.deviceSecret).update(EXAMPLE_CONTENT + EXAMPLE.deviceSecret).digest('hex').toUpperCase()
  t.equal(hmac, '235A589C08A21949DFD4AB72FA27FFD9AC255A01', 'the contract value of the wrong scheme')
  t.not(signExample('hmacsha1').mqttPassword, hmac)
  const hmacOfContent = createHmac('sha1', EXAMPLE.deviceSecret).update(EXAMPLE_CONTENT).digest('hex').toUpperCase()
  t.not(signExample('hmacsha1').mqttPassword, hmacOfContent)
})

t.test('the password signs the names as well as the values', async (t) => {
  const valuesOnly = '123test1231524448722000' + EXAMPLE.deviceSecret
  for (const digest of ['sha1', 'sha256', 'md5'] as const) {
    t.not(signExample(digest).mqttPassword, createHash(digest).update(valuesOnly).digest('hex').toUpperCase(), digest)
  }
})

t.test('the secret is UTF-8 encoded before hashing', async (t) => {
  const secret = 'sécret-密钥-🔑'
  const expected = createHash('sha256').update(Buffer.from(EXAMPLE_CONTENT + secret, 'utf8')).digest('hex').toUpperCase()
  t.equal(computePassword(EXAMPLE_CONTENT, secret, 'sha256'), expected)
})

interface ClientIdCase { name: string, input: string, value?: unknown, reason?: RegExp }

const CLIENT_ID_CASES: ClientIdCase[] = [
  { name: 'the worked example', input: '123|securemode=2,signmethod=hmacsha1,timestamp=1524448722000|', value: { clientId: '123', secureMode: 2, signMethod: 'hmacsha1', timestamp: '1524448722000' } },
  { name: 'params in another order', input: 'dev-1|timestamp=7,signmethod=md5,securemode=2|', value: { clientId: 'dev-1', secureMode: 2, signMethod: 'md5', timestamp: '7' } },
  { name: 'a method name in upper and mixed case', input: 'x|securemode=2,signmethod=HmacSHA256,timestamp=1|', value: { clientId: 'x', secureMode: 2, signMethod: 'hmacsha256', timestamp: '1' } },
  { name: 'another secure mode (parsing does not judge it)', input: 'x|signmethod=SHA1,timestamp=1,securemode=3|', value: { clientId: 'x', secureMode: 3, signMethod: 'sha1', timestamp: '1' } },
  { name: 'a clientId with spaces, commas and equals signs', input: 'a b,c=d~|securemode=2,signmethod=sha256,timestamp=1|', value: { clientId: 'a b,c=d~', secureMode: 2, signMethod: 'sha256', timestamp: '1' } },
  { name: 'a 20-digit timestamp', input: 'x|securemode=2,signmethod=md5,timestamp=12345678901234567890|', value: { clientId: 'x', secureMode: 2, signMethod: 'md5', timestamp: '12345678901234567890' } },
  { name: 'a missing timestamp', input: 'x|securemode=2,signmethod=sha1|', reason: /needs timestamp=/ },
  { name: 'a missing securemode', input: 'x|signmethod=sha1,timestamp=1|', reason: /needs securemode=/ },
  { name: 'a missing signmethod', input: 'x|securemode=2,timestamp=1|', reason: /needs a supported signmethod/ },
  { name: 'a repeated param', input: 'x|securemode=2,securemode=2,signmethod=sha1,timestamp=1|', reason: /unexpected or repeated parameter "securemode=2"/ },
  { name: 'an unknown param', input: 'x|securemode=2,signmethod=sha1,timestamp=1,foo=bar|', reason: /unexpected or repeated parameter "foo=bar"/ },
  { name: 'a param without =', input: 'x|securemode=2,signmethod=sha1,timestamp|', reason: /unexpected or repeated parameter "timestamp"/ },
  { name: 'a space after a comma', input: 'x|securemode=2, signmethod=sha1,timestamp=1|', reason: /unexpected or repeated parameter " signmethod=sha1"/ },
  { name: 'an upper-case param name', input: 'x|SECUREMODE=2,signmethod=sha1,timestamp=1|', reason: /unexpected or repeated parameter/ },
  { name: 'no params at all', input: 'x||', reason: /unexpected or repeated parameter ""/ },
  { name: 'only a clientId and one bar', input: 'x|', reason: /unexpected or repeated parameter ""/ },
  { name: 'an empty clientId', input: '|securemode=2,signmethod=sha1,timestamp=1|', reason: /must look like/ },
  { name: 'no bar at all', input: 'x', reason: /must look like/ },
  { name: 'an empty string', input: '', reason: /must look like/ },
  { name: 'no trailing bar', input: 'x|securemode=2,signmethod=sha1,timestamp=1', reason: /must look like/ },
  { name: 'a timestamp with a letter', input: 'x|securemode=2,signmethod=sha1,timestamp=12a|', reason: /needs timestamp=/ },
  { name: 'an empty timestamp', input: 'x|securemode=2,signmethod=sha1,timestamp=|', reason: /needs timestamp=/ },
  { name: 'a 21-digit timestamp', input: 'x|securemode=2,signmethod=sha1,timestamp=123456789012345678901|', reason: /needs timestamp=/ },
  { name: 'a negative timestamp', input: 'x|securemode=2,signmethod=sha1,timestamp=-1|', reason: /needs timestamp=/ },
  { name: 'a securemode that is not a number', input: 'x|securemode=two,signmethod=sha1,timestamp=1|', reason: /needs securemode=/ },
  { name: 'an empty securemode', input: 'x|securemode=,signmethod=sha1,timestamp=1|', reason: /needs securemode=/ },
  { name: 'a four-digit securemode', input: 'x|securemode=1234,signmethod=sha1,timestamp=1|', reason: /needs securemode=/ },
  { name: 'a securemode with a leading zero', input: 'x|securemode=02,signmethod=sha1,timestamp=1|', reason: /needs securemode=/ },
  { name: 'a method name with spaces around it', input: 'x|securemode=2,signmethod= sha1 ,timestamp=1|', reason: /needs a supported signmethod/ },
  { name: 'an unsupported method', input: 'x|securemode=2,signmethod=sha512,timestamp=1|', reason: /needs a supported signmethod/ },
  { name: 'a clientId with a control character', input: 'ab\u0001c|securemode=2,signmethod=sha1,timestamp=1|', reason: /clientId part of mqttClientId is not valid/ },
  { name: 'a clientId with a tab', input: 'ab\tc|securemode=2,signmethod=sha1,timestamp=1|', reason: /clientId part of mqttClientId is not valid/ },
  { name: 'a clientId with a non-ASCII letter', input: 'caf\u00e9|securemode=2,signmethod=sha1,timestamp=1|', reason: /clientId part of mqttClientId is not valid/ },
  { name: 'a 65-character clientId', input: 'c'.repeat(65) + '|securemode=2,signmethod=sha1,timestamp=1|', reason: /clientId part of mqttClientId is not valid/ },
  { name: 'a bar inside the params', input: 'x|securemode=2,signmethod=sha1,timestamp=1|x|', reason: /needs timestamp=/ }
]

t.test('parseMqttClientId accepts valid clientIds and names what is wrong with the others', async (t) => {
  for (const { name, input, value, reason } of CLIENT_ID_CASES) {
    const result = parseMqttClientId(input)
    if (reason === undefined) t.same(result, { ok: true, value }, name)
    else t.match(result, { ok: false, reason }, name)
  }
})

t.test('parseMqttClientId accepts a 64-character clientId', async (t) => {
  const clientId = 'c'.repeat(64)
  t.match(parseMqttClientId(`${clientId}|securemode=2,signmethod=sha1,timestamp=1|`), { ok: true, value: { clientId } })
})

t.test('a long unexpected parameter is cut to 32 characters in the reason', async (t) => {
  const result = parseMqttClientId(`x|securemode=2,signmethod=sha1,timestamp=1,${'y'.repeat(100)}|`)
  t.same(result, { ok: false, reason: `mqttClientId has an unexpected or repeated parameter "${'y'.repeat(32)}"` })
})

interface UsernameCase { name: string, input: string, value?: unknown }

const USERNAME_CASES: UsernameCase[] = [
  { name: 'the worked example', input: 'test&123', value: { deviceKey: 'test', productKey: '123' } },
  { name: 'the SDK special keys', input: '%channel%&%VIRT_GATEWAY%', value: { deviceKey: '%channel%', productKey: '%VIRT_GATEWAY%' } },
  { name: 'every allowed character', input: 'aZ09_.:%-&Pk', value: { deviceKey: 'aZ09_.:%-', productKey: 'Pk' } },
  { name: '64-character keys', input: `${'d'.repeat(64)}&${'p'.repeat(64)}`, value: { deviceKey: 'd'.repeat(64), productKey: 'p'.repeat(64) } },
  { name: 'no ampersand', input: 'test123' },
  { name: 'two ampersands', input: 'a&b&c' },
  { name: 'an empty deviceKey', input: '&123' },
  { name: 'an empty productKey', input: 'test&' },
  { name: 'an empty string', input: '' },
  { name: 'a space in a key', input: 'te st&123' },
  { name: 'a 65-character deviceKey', input: `${'d'.repeat(65)}&123` },
  { name: 'a 65-character productKey', input: `test&${'p'.repeat(65)}` },
  { name: 'a slash in a key', input: 'test&12/3' }
]

t.test('parseMqttUsername splits deviceKey&productKey and refuses anything else', async (t) => {
  for (const { name, input, value } of USERNAME_CASES) {
    const result = parseMqttUsername(input)
    if (value !== undefined) t.same(result, { ok: true, value }, name)
    else t.same(result, { ok: false, reason: 'mqttUsername must be <deviceKey>&<productKey>' }, name)
  }
})

t.test('parseCredentials merges the username and clientId parts', async (t) => {
  const signed = signExample('sha256')
  t.same(parseCredentials(signed), {
    ok: true,
    value: { clientId: '123', secureMode: 2, signMethod: 'sha256', timestamp: '1524448722000', deviceKey: 'test', productKey: '123' }
  })
})

t.test('verifyCredentials accepts the triple signCredentials issued, for every method', async (t) => {
  for (const method of SIGN_METHOD_NAMES) {
    const result = verifyCredentials(signExample(method), EXAMPLE.deviceSecret)
    t.same(result, {
      ok: true,
      value: { clientId: '123', secureMode: 2, signMethod: method, timestamp: '1524448722000', deviceKey: 'test', productKey: '123' }
    }, method)
  }
})

t.test('verifyCredentials accepts a lower-case hex password, as the Java and Python SDKs send', async (t) => {
  for (const method of ['sha256', 'md5', 'hmacsha1'] as const) {
    const signed = signExample(method)
    t.match(verifyCredentials({ ...signed, mqttPassword: signed.mqttPassword.toLowerCase() }, EXAMPLE.deviceSecret), { ok: true }, method)
  }
})

t.test('verifyCredentials accepts a presented method name in another case', async (t) => {
  const signed = signExample('sha256')
  t.match(verifyCredentials({ ...signed, mqttClientId: signed.mqttClientId.replace('sha256', 'SHA256') }, EXAMPLE.deviceSecret), { ok: true, value: { signMethod: 'sha256' } })
})

t.test('verifyCredentials rejects a password with one wrong digit', async (t) => {
  const signed = signExample('hmacsha1')
  const last = signed.mqttPassword.slice(-1)
  const wrong = signed.mqttPassword.slice(0, -1) + (last === '0' ? '1' : '0')
  t.same(verifyCredentials({ ...signed, mqttPassword: wrong }, EXAMPLE.deviceSecret), { ok: false, reason: 'mqttPassword does not match' })
})

t.test('verifyCredentials rejects the right triple checked against another secret', async (t) => {
  t.same(verifyCredentials(signExample('md5'), 'otherSecret'), { ok: false, reason: 'mqttPassword does not match' })
  t.same(verifyCredentials(signExample('md5'), EXAMPLE.deviceSecret + ' '), { ok: false, reason: 'mqttPassword does not match' })
})

t.test('verifyCredentials rejects a password of another length', async (t) => {
  const signed = signExample('sha256')
  for (const mqttPassword of ['', signed.mqttPassword.slice(0, -2), signed.mqttPassword + '00', EXAMPLE_PASSWORDS.md5]) {
    t.same(verifyCredentials({ ...signed, mqttPassword }, EXAMPLE.deviceSecret), { ok: false, reason: 'mqttPassword does not match' }, `length ${mqttPassword.length}`)
  }
})

t.test('verifyCredentials rejects a password that only upper-cases to the right hex', async (t) => {
  const signed = signExample('sha256')
  t.match(signed.mqttPassword, /FF/, 'the example password has an FF to disguise')
  // U+FB00 (the "ff" ligature) upper-cases to "FF": it is not hex and no broker would take it.
  const disguised = signed.mqttPassword.replace('FF', '\ufb00')
  t.equal(disguised.toUpperCase(), signed.mqttPassword)
  t.same(verifyCredentials({ ...signed, mqttPassword: disguised }, EXAMPLE.deviceSecret), { ok: false, reason: 'mqttPassword does not match' })
})

t.test('verifyCredentials rejects a triple whose timestamp was changed after signing', async (t) => {
  const signed = signExample('hmacsha1')
  const replayed = { ...signed, mqttClientId: signed.mqttClientId.replace('1524448722000', '1524448722001') }
  t.same(verifyCredentials(replayed, EXAMPLE.deviceSecret), { ok: false, reason: 'mqttPassword does not match' })
})

t.test('verifyCredentials rejects a method whose digest differs from the one signed with', async (t) => {
  const signed = signExample('sha256')
  const relabelled = { ...signed, mqttClientId: signed.mqttClientId.replace('sha256', 'md5') }
  t.same(verifyCredentials(relabelled, EXAMPLE.deviceSecret), { ok: false, reason: 'mqttPassword does not match' })
})

t.test('verifyCredentials refuses a securemode other than 2, even with the right password', async (t) => {
  const signed = signExample('hmacsha1')
  for (const mode of ['0', '3', '9']) {
    const other = { ...signed, mqttClientId: signed.mqttClientId.replace('securemode=2', `securemode=${mode}`) }
    t.same(verifyCredentials(other, EXAMPLE.deviceSecret), { ok: false, reason: 'only securemode=2 (static activation) is supported' }, `securemode=${mode}`)
  }
})

t.test('verifyCredentials rejects a malformed username or clientId with the parse reason', async (t) => {
  const signed = signExample('hmacsha1')
  t.same(verifyCredentials({ ...signed, mqttUsername: 'test' }, EXAMPLE.deviceSecret), { ok: false, reason: 'mqttUsername must be <deviceKey>&<productKey>' })
  t.same(verifyCredentials({ ...signed, mqttUsername: '123&test' }, EXAMPLE.deviceSecret), { ok: false, reason: 'mqttPassword does not match' }, 'swapped keys')
  t.match(verifyCredentials({ ...signed, mqttClientId: '123' }, EXAMPLE.deviceSecret), { ok: false, reason: /must look like/ })
  t.match(verifyCredentials({ ...signed, mqttClientId: signed.mqttClientId.slice(0, -1) }, EXAMPLE.deviceSecret), { ok: false, reason: /must look like/ })
})

// Property tests: arbitraries that generate only inputs fields.ts calls valid.

const KEY_CHARS = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:%-']
const CLIENT_ID_CHARS = Array.from({ length: 0x7f - 0x20 }, (_, i) => String.fromCharCode(0x20 + i)).filter((c) => c !== '|')

const keyArb = fc.string({ unit: fc.constantFrom(...KEY_CHARS), minLength: 1, maxLength: 64 })
const clientIdArb = fc.string({ unit: fc.constantFrom(...CLIENT_ID_CHARS), minLength: 1, maxLength: 64 })
const timestampArb = fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: 1, maxLength: 20 })
// Up to 256 code points, some of them astral (two UTF-16 units): keep those within the 256-unit limit.
const secretArb = fc.string({ unit: 'binary', minLength: 1, maxLength: 256, size: '+1' }).filter(isValidSecret)
const methodArb = fc.constantFrom(...SIGN_METHOD_NAMES)

const inputArb: fc.Arbitrary<SignInput> = fc.record({
  productKey: keyArb,
  deviceKey: keyArb,
  deviceSecret: secretArb,
  clientId: clientIdArb,
  timestamp: timestampArb,
  signMethod: methodArb
})

type ChangeableField = 'productKey' | 'deviceKey' | 'clientId' | 'timestamp' | 'deviceSecret'
const FIELD_ARBS: Record<ChangeableField, fc.Arbitrary<string>> = {
  productKey: keyArb,
  deviceKey: keyArb,
  clientId: clientIdArb,
  timestamp: timestampArb,
  deviceSecret: secretArb
}

const RUNS = { numRuns: 300 }

t.test('the arbitraries only generate inputs that fields.ts calls valid', async (t) => {
  t.doesNotThrow(() => fc.assert(fc.property(inputArb, (input) =>
    isValidKey(input.productKey) && isValidKey(input.deviceKey) && isValidClientId(input.clientId) &&
    isValidTimestamp(input.timestamp) && isValidSecret(input.deviceSecret)
  ), RUNS))
})

t.test('property: signed credentials parse back to their inputs and verify with the secret', async (t) => {
  t.doesNotThrow(() => fc.assert(fc.property(inputArb, (input) => {
    const signed = signCredentials(input)
    const parsed = parseCredentials(signed)
    if (!parsed.ok) return false
    const { clientId, deviceKey, productKey, timestamp, signMethod, secureMode } = parsed.value
    return clientId === input.clientId && deviceKey === input.deviceKey && productKey === input.productKey &&
      timestamp === input.timestamp && signMethod === input.signMethod && secureMode === 2 &&
      verifyCredentials(signed, input.deviceSecret).ok
  }), RUNS))
})

t.test('property: changing any one input to another valid value changes the password', async (t) => {
  const changeArb = fc.tuple(inputArb, fc.constantFrom<ChangeableField>('productKey', 'deviceKey', 'clientId', 'timestamp', 'deviceSecret'))
    .chain(([input, field]) => FIELD_ARBS[field]
      .filter((value) => value !== input[field])
      .map((value) => ({ input, changed: { ...input, [field]: value } })))
  t.doesNotThrow(() => fc.assert(fc.property(changeArb, ({ input, changed }) =>
    signCredentials(input).mqttPassword !== signCredentials(changed).mqttPassword
  ), RUNS))
})

t.test('property: changing the sign method changes mqttClientId, and the password exactly when the digest changes', async (t) => {
  const methodArb = fc.constantFrom(...SIGN_METHOD_NAMES)
  const changeArb = fc.tuple(inputArb, methodArb).filter(([input, method]) => method !== input.signMethod)
  t.doesNotThrow(() => fc.assert(fc.property(changeArb, ([input, method]) => {
    const before = signCredentials(input)
    const after = signCredentials({ ...input, signMethod: method })
    const sameDigest = SIGN_METHODS[method] === SIGN_METHODS[input.signMethod]
    return before.mqttClientId !== after.mqttClientId && (before.mqttPassword === after.mqttPassword) === sameDigest
  }), RUNS))
})

t.test('property: the password is upper-case hex of the digest length', async (t) => {
  t.doesNotThrow(() => fc.assert(fc.property(inputArb, (input) => {
    const password = signCredentials(input).mqttPassword
    return /^[0-9A-F]+$/.test(password) && password.length === HEX_LENGTH[input.signMethod]
  }), RUNS))
})

t.test('buildMqttSignContent is buildSignContent of the four MQTT parameters, for any values', async (t) => {
  fc.assert(fc.property(clientIdArb, keyArb, keyArb, timestampArb, (clientId, deviceKey, productKey, timestamp) =>
    buildMqttSignContent(clientId, deviceKey, productKey, timestamp) === buildSignContent({ timestamp, productKey, deviceKey, clientId })))
  t.pass('equal over every generated input')
})

t.test('computePassword is the plain digest of the UTF-8 content plus secret, as createHash computes it', async (t) => {
  fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 100 }), secretArb, fc.constantFrom(...(['hmacsha1', 'sha256', 'md5'] as const)), (content, secret, method) => {
    const digest = { hmacsha1: 'sha1', sha256: 'sha256', md5: 'md5' }[method]
    return computePassword(content, secret, method) === createHash(digest).update(content + secret, 'utf8').digest('hex').toUpperCase()
  }))
  t.pass('equal over every generated input')
})
