// E2E: credentials issued by POST /sign over real HTTP open a real MQTT session over TLS on a broker
// that checks them as EnOS does (see enos-broker.ts). The client uses nothing but the HTTP response.
import { connectAsync, type MqttClient } from 'mqtt'
import t, { type Test } from 'tap'
import { EXAMPLE, EXAMPLE_PASSWORDS, FIXED_NOW, buildTestApp } from '../helper.js'
import { checkEnosConnect, startEnosBroker } from './enos-broker.js'

/** The response body of POST /sign, typed here rather than imported so the test reads the wire. */
interface Credentials {
  mqttClientId: string
  mqttUsername: string
  mqttPassword: string
  clientId: string
  timestamp: string
  signMethod: string
  secureMode: number
  broker?: { host: string, port: number, tls: boolean, uri: string, websocketUri?: string, protocolVersion: 4 }
}

const device = { productKey: EXAMPLE.productKey, deviceKey: EXAMPLE.deviceKey }
const broker = await startEnosBroker(t, { dir: t.testdir(), devices: [{ ...device, deviceSecret: EXAMPLE.deviceSecret }] })
const app = await buildTestApp(t, { MQTT_HOST: '127.0.0.1', MQTT_PORT: String(broker.port) })
const origin = await app.listen({ port: 0, host: '127.0.0.1' })

async function sign (t: Test, body: Record<string, string>): Promise<Credentials> {
  const res = await fetch(`${origin}/sign`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body)
  })
  t.equal(res.status, 200, 'POST /sign answers 200')
  return await res.json() as Credentials
}

/** Connects with the three CONNECT fields and the broker address of a /sign response, and nothing else. */
async function connectWith (t: Test, creds: Credentials): Promise<MqttClient> {
  const client = await connectAsync(brokerOf(creds).uri, connectOptions(creds))
  t.teardown(() => client.endAsync())
  return client
}

function connectOptions (creds: Credentials) {
  return {
    clientId: creds.mqttClientId,
    username: creds.mqttUsername,
    password: creds.mqttPassword,
    protocolVersion: brokerOf(creds).protocolVersion,
    ca: broker.ca,
    reconnectPeriod: 0,
    connectTimeout: 10_000
  }
}

function brokerOf (creds: Credentials): NonNullable<Credentials['broker']> {
  if (creds.broker === undefined) throw new Error('the /sign response has no broker object')
  return creds.broker
}

/** Subscribes, publishes at QoS 1 and waits for the message to come back through the broker. */
async function assertSessionWorks (t: Test, client: MqttClient, topic: string): Promise<void> {
  const granted = await client.subscribeAsync(topic, { qos: 1 })
  t.match(granted, [{ topic, qos: 1 }], 'the broker grants the subscription')
  const payload = JSON.stringify({ id: topic, method: 'thing.measurepoint.post', params: { temperature: 21.5 } })
  const received = new Promise<[string, string]>((resolve) => {
    client.once('message', (gotTopic, gotPayload) => { resolve([gotTopic, gotPayload.toString('utf8')]) })
  })
  await client.publishAsync(topic, payload, { qos: 1 })
  t.same(await received, [topic, payload], 'the published message comes back on the subscription')
}

function attemptsFor (mqttClientId: string) {
  return broker.attempts.filter((attempt) => attempt.mqttClientId === mqttClientId)
}

t.test("the test broker's own check passes the worked examples of ENOS-SIGNING.md and refuses wrong schemes", async (t) => {
  // Guards the judge: were the broker's check wrong the same way as the signer, every e2e test would still pass.
  const devices = [{ ...device, deviceSecret: EXAMPLE.deviceSecret }]
  const id = (method: string, suffix = `securemode=2,signmethod=${method},timestamp=${EXAMPLE.timestamp}`) => `${EXAMPLE.clientId}|${suffix}|`
  const check = (mqttClientId: string, password: string, username = 'test&123') =>
    checkEnosConnect(devices, mqttClientId, username, Buffer.from(password))
  for (const [method, password] of Object.entries(EXAMPLE_PASSWORDS)) {
    t.equal(check(id(method), password), undefined, `${method}: the documented password is accepted`)
    t.equal(check(id(method), password.toLowerCase()), undefined, `${method}: lower-case hex is accepted too`)
  }
  t.equal(check(id('hmacsha1'), '235A589C08A21949DFD4AB72FA27FFD9AC255A01'), 'mqttPassword does not match', 'a real HMAC is refused')
  t.equal(check(id('sha256'), EXAMPLE_PASSWORDS.hmacsha1), 'mqttPassword does not match', 'a password of another method is refused')
  t.equal(check(id('hmacsha1', `securemode=2, signmethod=hmacsha1, timestamp=${EXAMPLE.timestamp}`), EXAMPLE_PASSWORDS.hmacsha1),
    'bad parameter " signmethod=hmacsha1" in mqttClientId', 'the spaces the public doc prints are refused')
  t.equal(check(id('hmacsha1', `securemode=3,signmethod=hmacsha1,timestamp=${EXAMPLE.timestamp}`), EXAMPLE_PASSWORDS.hmacsha1),
    'securemode is not 2')
  t.equal(check(id('hmacsha1'), EXAMPLE_PASSWORDS.hmacsha1, '123&test'), 'unknown device', 'username order is deviceKey&productKey')
})

t.test('POST /sign with only productKey and deviceKey -> credentials that open an MQTT 3.1.1 session over TLS', async (t) => {
  const creds = await sign(t, device)
  t.same(creds, {
    mqttClientId: `test|securemode=2,signmethod=hmacsha1,timestamp=${FIXED_NOW}|`,
    mqttUsername: 'test&123',
    mqttPassword: creds.mqttPassword,
    clientId: EXAMPLE.deviceKey,
    timestamp: String(FIXED_NOW),
    signMethod: 'hmacsha1',
    secureMode: 2,
    broker: { host: '127.0.0.1', port: broker.port, tls: true, uri: `mqtts://127.0.0.1:${broker.port}`, protocolVersion: 4 }
  }, 'clientId defaults to the deviceKey, the timestamp to the service clock, the method to hmacsha1')
  t.match(creds.mqttPassword, /^[0-9A-F]{40}$/, 'a SHA-1 password in upper-case hex')

  const client = await connectWith(t, creds)
  t.ok(client.connected, 'the broker accepted the CONNECT')
  t.same(attemptsFor(creds.mqttClientId), [{
    mqttClientId: creds.mqttClientId,
    mqttUsername: creds.mqttUsername,
    protocolVersion: 4,
    accepted: true,
    reason: undefined
  }], 'the broker saw exactly one MQTT 3.1.1 CONNECT with these fields and accepted it')
  await assertSessionWorks(t, client, `/sys/${device.productKey}/${device.deviceKey}/thing/measurepoint/post`)
})

const FAMILIES = [
  { signMethod: 'hmacsha1', hexLength: 40 },
  { signMethod: 'sha1', hexLength: 40 },
  { signMethod: 'sha256', hexLength: 64 },
  { signMethod: 'hmacsha256', hexLength: 64 },
  { signMethod: 'md5', hexLength: 32 },
  { signMethod: 'hmacmd5', hexLength: 32 }
]

for (const { signMethod, hexLength } of FAMILIES) {
  t.test(`POST /sign with signMethod ${signMethod} -> the broker recomputes the password and accepts the session`, async (t) => {
    const clientId = `e2e-${signMethod}`
    const timestamp = '1735689600000'
    const creds = await sign(t, { ...device, clientId, timestamp, signMethod })
    t.match(creds, {
      mqttClientId: `${clientId}|securemode=2,signmethod=${signMethod},timestamp=${timestamp}|`,
      mqttUsername: 'test&123',
      mqttPassword: new RegExp(`^[0-9A-F]{${hexLength}}$`),
      clientId,
      timestamp,
      signMethod,
      secureMode: 2
    })

    const client = await connectWith(t, creds)
    t.match(attemptsFor(creds.mqttClientId), [{ protocolVersion: 4, accepted: true }], 'accepted as MQTT 3.1.1')
    await assertSessionWorks(t, client, `/sys/${device.productKey}/${device.deviceKey}/e2e/${signMethod}`)
  })
}

t.test('a password with one character changed -> CONNACK 4 Bad username or password', async (t) => {
  const creds = await sign(t, { ...device, clientId: 'e2e-tampered' })
  const first = creds.mqttPassword.charAt(0)
  // Another hex digit, not just another case: the broker compares hex without regard to case.
  const tampered = { ...creds, mqttPassword: (first === '0' ? '1' : '0') + creds.mqttPassword.slice(1) }
  t.not(tampered.mqttPassword.toUpperCase(), creds.mqttPassword.toUpperCase())

  await t.rejects(connectAsync(brokerOf(tampered).uri, connectOptions(tampered)),
    { code: 4, message: 'Connection refused: Bad username or password' })
  t.match(attemptsFor(creds.mqttClientId), [{ protocolVersion: 4, accepted: false, reason: 'mqttPassword does not match' }],
    'refused by the password check, not for a malformed field')
})

t.test('credentials signed for another clientId than the one presented -> CONNACK 4 Bad username or password', async (t) => {
  const signedFor = await sign(t, { ...device, clientId: 'e2e-mac-A' })
  const presented = await sign(t, { ...device, clientId: 'e2e-mac-B' })
  t.equal(signedFor.timestamp, presented.timestamp, 'same timestamp: only the clientId differs')
  const mixed = { ...signedFor, mqttClientId: presented.mqttClientId }

  await t.rejects(connectAsync(brokerOf(mixed).uri, connectOptions(mixed)),
    { code: 4, message: 'Connection refused: Bad username or password' })
  t.match(attemptsFor(presented.mqttClientId), [{ accepted: false, reason: 'mqttPassword does not match' }],
    'refused by the password check')

  const client = await connectWith(t, presented)
  t.ok(client.connected, 'the credentials signed for e2e-mac-B itself are accepted')
})
