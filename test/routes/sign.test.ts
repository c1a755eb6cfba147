import t from 'tap'
import { EXAMPLE, EXAMPLE_PASSWORDS, FIXED_NOW, brokenStore, buildTestApp, unavailableStore, writeTokenFile } from '../helper.js'

const example = { productKey: EXAMPLE.productKey, deviceKey: EXAMPLE.deviceKey, clientId: EXAMPLE.clientId, timestamp: EXAMPLE.timestamp }

t.test('POST /sign – the worked example -> 200 with the contract password and mqttClientId', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/sign', payload: { ...example, signMethod: 'hmacsha1' } })
  t.equal(res.statusCode, 200)
  t.same(res.json(), {
    mqttClientId: '123|securemode=2,signmethod=hmacsha1,timestamp=1524448722000|',
    mqttUsername: 'test&123',
    mqttPassword: EXAMPLE_PASSWORDS.hmacsha1,
    clientId: '123',
    timestamp: '1524448722000',
    signMethod: 'hmacsha1',
    secureMode: 2
  })
  t.match(res.headers['content-type'], /^application\/json/)
})

t.test('POST /sign – each sign method family gives its contract password', async (t) => {
  const app = await buildTestApp(t)
  const cases = [['sha1', 'hmacsha1'], ['sha256', 'sha256'], ['hmacsha256', 'sha256'], ['md5', 'md5'], ['HMACMD5', 'md5']] as const
  for (const [signMethod, family] of cases) {
    const res = await app.inject({ method: 'POST', url: '/sign', payload: { ...example, signMethod } })
    t.equal(res.statusCode, 200, signMethod)
    const body = res.json()
    t.equal(body.mqttPassword, EXAMPLE_PASSWORDS[family], `${signMethod} password`)
    t.equal(body.signMethod, signMethod.toLowerCase(), 'the method name is normalised to lower case')
    t.equal(body.mqttClientId, `123|securemode=2,signmethod=${signMethod.toLowerCase()},timestamp=1524448722000|`)
  }
})

t.test('POST /sign – clientId defaults to the deviceKey and timestamp to the service clock', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/sign', payload: { productKey: '123', deviceKey: 'test' } })
  t.equal(res.statusCode, 200)
  t.match(res.json(), {
    clientId: 'test',
    timestamp: String(FIXED_NOW),
    signMethod: 'hmacsha1',
    mqttClientId: `test|securemode=2,signmethod=hmacsha1,timestamp=${FIXED_NOW}|`
  })
})

t.test('POST /sign – SIGN_METHOD sets the default method', async (t) => {
  const app = await buildTestApp(t, { SIGN_METHOD: 'sha256' })
  const res = await app.inject({ method: 'POST', url: '/sign', payload: example })
  t.equal(res.json().mqttPassword, EXAMPLE_PASSWORDS.sha256)
})

t.test('POST /sign – with MQTT_HOST the response says where to connect', async (t) => {
  const app = await buildTestApp(t, { MQTT_HOST: 'mqtt-cn4.envisioniot.com', MQTT_WEBSOCKET_URL: 'wss://mqtt-cn4.envisioniot.com:443/mqtt' })
  const res = await app.inject({ method: 'POST', url: '/sign', payload: example })
  t.same(res.json().broker, {
    host: 'mqtt-cn4.envisioniot.com',
    port: 8883,
    tls: true,
    uri: 'mqtts://mqtt-cn4.envisioniot.com:8883',
    websocketUri: 'wss://mqtt-cn4.envisioniot.com/mqtt',
    protocolVersion: 4
  })
})

t.test('POST /sign – a plain-TCP broker port gives an mqtt:// URI and no WebSocket URI', async (t) => {
  const app = await buildTestApp(t, { MQTT_HOST: '10.1.2.3', MQTT_PORT: '11883', MQTT_TLS: 'false' })
  const res = await app.inject({ method: 'POST', url: '/sign', payload: example })
  t.same(res.json().broker, { host: '10.1.2.3', port: 11883, tls: false, uri: 'mqtt://10.1.2.3:11883', protocolVersion: 4 })
})

t.test('POST /sign – the deviceSecret is never part of the response', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/sign', payload: example })
  t.notMatch(res.body, /deviceSecret/)
})

const invalid: Array<[string, Record<string, unknown>, string]> = [
  ['missing productKey', { deviceKey: 'test' }, 'productKey'],
  ['missing deviceKey', { productKey: '123' }, 'deviceKey'],
  ['productKey with a space', { productKey: '12 3', deviceKey: 'test' }, 'productKey'],
  ['deviceKey too long', { productKey: '123', deviceKey: 'd'.repeat(65) }, 'deviceKey'],
  ['deviceKey with &', { productKey: '123', deviceKey: 'te&st' }, 'deviceKey'],
  ['productKey as a number', { productKey: 123, deviceKey: 'test' }, 'productKey'],
  ['empty clientId', { productKey: '123', deviceKey: 'test', clientId: '' }, 'clientId'],
  ['clientId with |', { productKey: '123', deviceKey: 'test', clientId: 'a|b' }, 'clientId'],
  ['clientId with a control character', { productKey: '123', deviceKey: 'test', clientId: 'a\nb' }, 'clientId'],
  ['clientId with non-ASCII', { productKey: '123', deviceKey: 'test', clientId: 'café' }, 'clientId'],
  ['clientId longer than 64', { productKey: '123', deviceKey: 'test', clientId: 'c'.repeat(65) }, 'clientId'],
  ['timestamp as a number', { productKey: '123', deviceKey: 'test', timestamp: 1524448722000 }, 'timestamp'],
  ['timestamp with letters', { productKey: '123', deviceKey: 'test', timestamp: '15244e8' }, 'timestamp'],
  ['timestamp negative', { productKey: '123', deviceKey: 'test', timestamp: '-1' }, 'timestamp'],
  ['signMethod not a string', { productKey: '123', deviceKey: 'test', signMethod: ['sha1'] }, 'signMethod'],
  ['signMethod absurdly long', { productKey: '123', deviceKey: 'test', signMethod: 'x'.repeat(33) }, 'signMethod'],
  ['an unknown field', { productKey: '123', deviceKey: 'test', deviceSecret: 'guess' }, 'deviceSecret']
]

t.test('POST /sign – each invalid field -> 400 VALIDATION_FAILED naming the field', async (t) => {
  const app = await buildTestApp(t)
  for (const [name, payload, field] of invalid) {
    const res = await app.inject({ method: 'POST', url: '/sign', payload })
    t.equal(res.statusCode, 400, name)
    const body = res.json()
    t.match(body, { statusCode: 400, code: 'VALIDATION_FAILED', error: 'Bad Request' }, name)
    t.ok(body.details.some((d: { path: string }) => d.path === field), `${name}: details name ${field}`)
    t.match(body.message, field, `${name}: the message names ${field}`)
  }
})

t.test('POST /sign – a body that is not an object -> 400 VALIDATION_FAILED', async (t) => {
  const app = await buildTestApp(t)
  for (const payload of ['[]', '"text"', '42', 'null']) {
    const res = await app.inject({ method: 'POST', url: '/sign', headers: { 'content-type': 'application/json' }, payload })
    t.equal(res.statusCode, 400, payload)
    t.equal(res.json().code, 'VALIDATION_FAILED', payload)
  }
})

t.test('POST /sign – several bad fields are all reported at once', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/sign', payload: { productKey: '', deviceKey: '', timestamp: 'now' } })
  t.same(res.json().details.map((d: { path: string }) => d.path).sort(), ['deviceKey', 'productKey', 'timestamp'])
})

t.test('POST /sign – unknown sign method -> 400 UNSUPPORTED_SIGN_METHOD listing the supported ones', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/sign', payload: { ...example, signMethod: 'hmacsha512' } })
  t.equal(res.statusCode, 400)
  t.match(res.json(), { code: 'UNSUPPORTED_SIGN_METHOD', message: /hmacsha1, sha1, sha256, hmacsha256, md5, hmacmd5/, details: [{ path: 'signMethod' }] })
})

t.test('POST /sign – unknown device -> 404 DEVICE_NOT_FOUND', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/sign', payload: { productKey: '123', deviceKey: 'nobody' } })
  t.equal(res.statusCode, 404)
  t.match(res.json(), { statusCode: 404, code: 'DEVICE_NOT_FOUND', error: 'Not Found', message: /nobody/ })
})

t.test('POST /sign – a known deviceKey under another productKey is not found', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/sign', payload: { productKey: 'Ab12Cd34', deviceKey: 'test' } })
  t.equal(res.json().code, 'DEVICE_NOT_FOUND')
})

t.test('POST /sign – disabled device -> 403 DEVICE_DISABLED', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/sign', payload: { productKey: 'Ab12Cd34', deviceKey: 'retired-0003' } })
  t.equal(res.statusCode, 403)
  t.match(res.json(), { code: 'DEVICE_DISABLED', error: 'Forbidden' })
})

t.test('POST /sign – store down -> 503 STORE_UNAVAILABLE with Retry-After', async (t) => {
  const app = await buildTestApp(t, {}, { store: unavailableStore() })
  const res = await app.inject({ method: 'POST', url: '/sign', payload: example })
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '5')
  t.match(res.json(), { statusCode: 503, code: 'STORE_UNAVAILABLE', error: 'Service Unavailable' })
})

t.test('POST /sign – an unexpected failure -> 500 INTERNAL that reveals nothing', async (t) => {
  const app = await buildTestApp(t, {}, { store: brokenStore() })
  const res = await app.inject({ method: 'POST', url: '/sign', payload: example })
  t.equal(res.statusCode, 500)
  t.same(Object.keys(res.json()).sort(), ['code', 'error', 'message', 'statusCode'])
  t.match(res.json(), { code: 'INTERNAL', error: 'Internal Server Error' })
  t.notMatch(res.body, /postgres|hunter2|leaked|stack/)
})

t.test('POST /sign – validation messages say what to send', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/sign', payload: { deviceKey: 'test', timestamp: 1524448722000 } })
  t.same(res.json().details, [
    { path: 'productKey', message: 'is required' },
    { path: 'timestamp', message: 'must be a string: epoch milliseconds as a string of 1-20 digits, e.g. "1524448722000"' }
  ])
})

t.test('POST /sign – Accept: text/plain -> the three CONNECT fields as key=value lines', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/sign', payload: { ...example, signMethod: 'hmacsha1' }, headers: { accept: 'text/plain' } })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-type'], 'text/plain; charset=utf-8')
  t.equal(res.body, [
    'mqttClientId=123|securemode=2,signmethod=hmacsha1,timestamp=1524448722000|',
    'mqttUsername=test&123',
    `mqttPassword=${EXAMPLE_PASSWORDS.hmacsha1}`,
    ''
  ].join('\n'))
})

t.test('POST /sign – text/plain with MQTT_HOST -> the broker host, port and TLS after the three fields', async (t) => {
  const app = await buildTestApp(t, { MQTT_HOST: 'mqtt-cn4.envisioniot.com', MQTT_PORT: '18883' })
  const res = await app.inject({ method: 'POST', url: '/sign', payload: example, headers: { accept: 'text/plain' } })
  t.same(res.body.split('\n').slice(3), ['mqttHost=mqtt-cn4.envisioniot.com', 'mqttPort=18883', 'mqttTls=true', ''])
})

t.test('POST /sign – content negotiation: JSON unless text/plain is preferred (absent, */*, q-values, text/*, an unknown type)', async (t) => {
  const app = await buildTestApp(t)
  const cases: Array<[string | undefined, 'json' | 'text']> = [
    [undefined, 'json'],
    ['*/*', 'json'],
    ['application/json', 'json'],
    ['text/plain', 'text'],
    ['text/*', 'text'],
    ['text/plain;q=0.5, application/json', 'json'],
    ['application/json;q=0.1, text/plain', 'text'],
    ['text/plain, */*;q=0.1', 'text'],
    ['text/html', 'json'],
    ['text/plain;q=0', 'json']
  ]
  for (const [accept, want] of cases) {
    const res = await app.inject({ method: 'POST', url: '/sign', payload: example, headers: accept === undefined ? {} : { accept } })
    t.equal(res.statusCode, 200)
    t.match(res.headers['content-type'], want === 'json' ? /^application\/json/ : /^text\/plain/, `Accept: ${String(accept)} -> ${want}`)
  }
})

t.test('POST /sign – errors as text lines with the same status: error=CODE and message=...', async (t) => {
  const app = await buildTestApp(t)
  const text = { accept: 'text/plain' }
  const notFound = await app.inject({ method: 'POST', url: '/sign', payload: { productKey: '123', deviceKey: 'ghost' }, headers: text })
  t.equal(notFound.statusCode, 404)
  t.equal(notFound.headers['content-type'], 'text/plain; charset=utf-8')
  t.equal(notFound.body, 'error=DEVICE_NOT_FOUND\nmessage=no device with productKey "123" and deviceKey "ghost" in the store\n')
  const disabled = await app.inject({ method: 'POST', url: '/sign', payload: { productKey: 'Ab12Cd34', deviceKey: 'retired-0003' }, headers: text })
  t.equal(disabled.statusCode, 403)
  t.match(disabled.body, /^error=DEVICE_DISABLED\nmessage=.+\n$/)
  const malformed = await app.inject({ method: 'POST', url: '/sign', payload: '{', headers: { ...text, 'content-type': 'application/json' } })
  t.equal(malformed.statusCode, 400)
  t.equal(malformed.body, 'error=MALFORMED_JSON\nmessage=the request body is not valid JSON\n')
})

t.test('POST /sign – a text error stays two lines whatever the request put into its message', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/sign', payload: { ...example, 'evil\r\nmqttPassword=0000': 1 }, headers: { accept: 'text/plain' } })
  t.equal(res.statusCode, 400)
  const lines = res.body.split('\n')
  t.equal(lines.length, 3, 'two lines and the final newline')
  t.equal(lines[0], 'error=VALIDATION_FAILED')
  t.match(lines[1], /^message=invalid request body: evil mqttPassword=0000: is not a known field$/)
})

t.test('POST /sign – a text error from access control: 401 with its challenge, as lines', async (t) => {
  const app = await buildTestApp(t, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: writeTokenFile(t, []) })
  const res = await app.inject({ method: 'POST', url: '/sign', payload: example, headers: { accept: 'text/plain' } })
  t.equal(res.statusCode, 401)
  t.equal(res.headers['www-authenticate'], 'Bearer realm="enos-mqtt-signer"')
  t.equal(res.body, 'error=UNAUTHENTICATED\nmessage=send Authorization: Bearer <token>\n')
})

t.test('POST /sign/batch ignores Accept: text/plain (only POST /sign answers in lines)', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/sign/batch', payload: { devices: [{ productKey: '123', deviceKey: 'ghost' }, 'x'] }, headers: { accept: 'text/plain' } })
  t.match(res.headers['content-type'], /^application\/json/)
  const bad = await app.inject({ method: 'POST', url: '/sign/batch', payload: {}, headers: { accept: 'text/plain' } })
  t.equal(bad.statusCode, 400)
  t.match(bad.json(), { code: 'VALIDATION_FAILED' })
})
