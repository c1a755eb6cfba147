// Deciding a broker's CONNECT: the worked examples in both cases of hex, tampering, the device's state and the age bound.
import t from 'tap'
import { signCredentials } from '../../src/core/credentials.js'
import { decideVerify, startVerify } from '../../src/core/verify.js'
import { EXAMPLE, EXAMPLE_PASSWORDS } from '../helper.js'

const device = { deviceSecret: EXAMPLE.deviceSecret, enabled: true }
const NOW = Number(EXAMPLE.timestamp)
const open = { now: NOW, maxAgeMs: 0 }
const presented = (method: string, mqttPassword: string, timestamp: string = EXAMPLE.timestamp) => ({
  mqttClientId: `${EXAMPLE.clientId}|securemode=2,signmethod=${method},timestamp=${timestamp}|`,
  mqttUsername: `${EXAMPLE.deviceKey}&${EXAMPLE.productKey}`,
  mqttPassword
})

t.test('every worked example of ENOS-SIGNING.md is allowed, in upper- and lower-case hex', async (t) => {
  for (const [method, password] of Object.entries(EXAMPLE_PASSWORDS)) {
    t.same(decideVerify(presented(method, password), device, open), { result: 'allow', reason: 'password matches' }, `${method} upper`)
    t.same(decideVerify(presented(method, password.toLowerCase()), device, open), { result: 'allow', reason: 'password matches' }, `${method} lower`)
  }
})

t.test('a flipped digit, a changed timestamp, a changed method and another device\'s password are denied', async (t) => {
  const password = EXAMPLE_PASSWORDS.hmacsha1
  const flipped = (password[0] === '0' ? '1' : '0') + password.slice(1)
  const deny = { result: 'deny', reason: 'mqttPassword does not match' }
  t.same(decideVerify(presented('hmacsha1', flipped), device, open), deny, 'flipped digit')
  t.same(decideVerify(presented('hmacsha1', password, '1524448722001'), device, open), deny, 'changed timestamp')
  t.same(decideVerify(presented('sha1', EXAMPLE_PASSWORDS.sha256), device, open), deny, 'changed method')
  const other = signCredentials({ ...EXAMPLE, deviceKey: 'other', deviceSecret: 'otherSecret', signMethod: 'hmacsha1' })
  t.same(decideVerify({ ...presented('hmacsha1', other.mqttPassword) }, device, open), deny, 'another device\'s password')
  t.same(decideVerify(presented('hmacsha1', ''), device, open), deny, 'no password')
})

t.test('an unknown or disabled device is denied, even with the right password', async (t) => {
  t.same(decideVerify(presented('hmacsha1', EXAMPLE_PASSWORDS.hmacsha1), undefined, open), { result: 'deny', reason: 'unknown device' })
  t.same(decideVerify(presented('hmacsha1', EXAMPLE_PASSWORDS.hmacsha1), { ...device, enabled: false }, open), { result: 'deny', reason: 'device disabled' })
})

t.test('MAX_CREDENTIAL_AGE_MS: older or further in the future than the bound is denied; at the bound is allowed', async (t) => {
  const good = presented('hmacsha1', EXAMPLE_PASSWORDS.hmacsha1)
  t.same(decideVerify(good, device, { now: NOW + 1000, maxAgeMs: 1000 }), { result: 'allow', reason: 'password matches' }, 'exactly the bound, old')
  t.same(decideVerify(good, device, { now: NOW - 1000, maxAgeMs: 1000 }), { result: 'allow', reason: 'password matches' }, 'exactly the bound, ahead')
  t.same(decideVerify(good, device, { now: NOW + 1001, maxAgeMs: 1000 }), { result: 'deny', reason: 'timestamp older than MAX_CREDENTIAL_AGE_MS' })
  t.same(decideVerify(good, device, { now: NOW - 1001, maxAgeMs: 1000 }), { result: 'deny', reason: 'timestamp further in the future than MAX_CREDENTIAL_AGE_MS' })
  t.same(decideVerify(good, device, { now: NOW + 10 ** 12, maxAgeMs: 0 }), { result: 'allow', reason: 'password matches' }, '0: no age check')
})

t.test('startVerify: the device to look up, a username of another form per VERIFY_NOT_OURS, a malformed client id denied before any lookup', async (t) => {
  const good = presented('hmacsha1', EXAMPLE_PASSWORDS.hmacsha1)
  t.same(startVerify(good, 'ignore'), { productKey: '123', deviceKey: 'test', clientId: '123' })
  for (const mqttUsername of ['admin', '', 'a&b&c', '&123', 'test&']) {
    t.same(startVerify({ ...good, mqttUsername }, 'ignore'), { decided: { result: 'ignore', reason: 'username is not <deviceKey>&<productKey>' } }, JSON.stringify(mqttUsername))
  }
  t.same(startVerify({ ...good, mqttUsername: 'admin' }, 'deny'), { decided: { result: 'deny', reason: 'username is not <deviceKey>&<productKey>' } })
  t.match(startVerify({ ...good, mqttClientId: '123' }, 'ignore'), { decided: { result: 'deny', reason: /must look like/ } })
  t.match(startVerify({ ...good, mqttClientId: '123|securemode=2,signmethod=sha512,timestamp=1|' }, 'ignore'), { decided: { result: 'deny', reason: /supported signmethod/ } })
})

t.test('securemode other than 2 is denied even with the right password', async (t) => {
  const good = presented('hmacsha1', EXAMPLE_PASSWORDS.hmacsha1)
  t.same(decideVerify({ ...good, mqttClientId: good.mqttClientId.replace('securemode=2', 'securemode=3') }, device, open),
    { result: 'deny', reason: 'only securemode=2 (static activation) is supported' })
})
