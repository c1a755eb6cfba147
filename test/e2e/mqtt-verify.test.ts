// E2E: a broker that authenticates through POST /verify over HTTP (as EMQX's HTTP authenticator does) lets
// an mqtt.js client in over TLS and over secure WebSocket with credentials from POST /sign, and refuses tampering.
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt'
import t, { type Test } from 'tap'
import { EXAMPLE, EXAMPLE_SECRETS, FIXED_NOW, buildTestApp, contractPassword, makeToken, writeTokenFile } from '../helper.js'
import { startVerifyingBroker } from './verify-broker.js'

interface Credentials {
  mqttClientId: string
  mqttUsername: string
  mqttPassword: string
  broker: { uri: string, websocketUri: string, protocolVersion: 4 }
}

const MAX_AGE_MS = 600_000
const signer = makeToken('device-boot', ['sign'], '*')
const brokerToken = makeToken('emqx', ['verify'], '*')
let origin = ''
const broker = await startVerifyingBroker(t, { dir: t.testdir(), verifyUrl: () => `${origin}/verify`, token: brokerToken.token })
const app = await buildTestApp(t, {
  AUTH_MODE: 'token',
  AUTH_TOKENS_FILE: writeTokenFile(t, [signer, brokerToken]),
  MAX_CREDENTIAL_AGE_MS: String(MAX_AGE_MS),
  MQTT_HOST: 'localhost',
  MQTT_PORT: String(broker.tlsPort),
  MQTT_WEBSOCKET_URL: `wss://localhost:${broker.wssPort}/mqtt`
})
origin = await app.listen({ port: 0, host: '127.0.0.1' })

async function sign (t: Test, body: Record<string, string>): Promise<Credentials> {
  const res = await fetch(`${origin}/sign`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${signer.token}` },
    body: JSON.stringify(body)
  })
  t.equal(res.status, 200, 'POST /sign answers 200')
  return await res.json() as Credentials
}

const TRANSPORTS = [
  { name: 'MQTT over TLS', url: (c: Credentials) => c.broker.uri },
  { name: 'MQTT over secure WebSocket', url: (c: Credentials) => c.broker.websocketUri }
] as const

function options (creds: Pick<Credentials, 'mqttClientId' | 'mqttUsername' | 'mqttPassword'>): IClientOptions {
  return {
    clientId: creds.mqttClientId,
    username: creds.mqttUsername,
    password: creds.mqttPassword,
    protocolVersion: 4,
    ca: broker.ca,
    reconnectPeriod: 0,
    connectTimeout: 10_000
  }
}

async function connect (t: Test, url: string, creds: Credentials): Promise<MqttClient> {
  const client = await connectAsync(url, options(creds))
  t.teardown(() => client.endAsync())
  return client
}

/** Subscribes, publishes at QoS 1 and waits for its own message to come back through the broker. */
async function assertOwnMessage (t: Test, client: MqttClient, topic: string): Promise<void> {
  t.match(await client.subscribeAsync(topic, { qos: 1 }), [{ topic, qos: 1 }], 'the broker grants the subscription')
  const received = new Promise<[string, string]>((resolve) => {
    client.once('message', (gotTopic, payload) => { resolve([gotTopic, payload.toString('utf8')]) })
  })
  const payload = JSON.stringify({ id: topic, params: { temperature: 21.5 } })
  await client.publishAsync(topic, payload, { qos: 1 })
  t.same(await received, [topic, payload], 'the QoS 1 message comes back on the subscription')
}

const answersFor = (mqttClientId: string): string[] => broker.attempts.filter((a) => a.mqttClientId === mqttClientId).map((a) => a.answer)

for (const transport of TRANSPORTS) {
  t.test(`${transport.name}: credentials from POST /sign -> the broker asks POST /verify, allows, and the session works`, async (t) => {
    const clientId = `e2e-${transport.name.length}`
    const creds = await sign(t, { productKey: EXAMPLE.productKey, deviceKey: EXAMPLE.deviceKey, clientId, signMethod: 'sha256' })
    const client = await connect(t, transport.url(creds), creds)
    t.ok(client.connected)
    t.same(answersFor(creds.mqttClientId), ['allow'], 'one CONNECT, allowed by the service')
    await assertOwnMessage(t, client, `/sys/123/test/${clientId}`)
  })

  t.test(`${transport.name}: the lower-case hex the Java and Python SDKs send is allowed too`, async (t) => {
    const creds = await sign(t, { productKey: EXAMPLE.productKey, deviceKey: EXAMPLE.deviceKey, clientId: `lower-${transport.name.length}`, signMethod: 'md5' })
    const client = await connect(t, transport.url(creds), { ...creds, mqttPassword: creds.mqttPassword.toLowerCase() })
    t.ok(client.connected)
  })

  t.test(`${transport.name}: tampered, borrowed, disabled or too old credentials -> CONNACK 4; a username of another form -> CONNACK 5`, async (t) => {
    const base = { productKey: EXAMPLE.productKey, deviceKey: EXAMPLE.deviceKey }
    const mine = await sign(t, { ...base, clientId: `mine-${transport.name.length}` })
    const boiler = await sign(t, { productKey: 'Ab12Cd34', deviceKey: 'boiler-0001', clientId: `boiler-${transport.name.length}` })
    const old = await sign(t, { ...base, clientId: `old-${transport.name.length}`, timestamp: String(FIXED_NOW - MAX_AGE_MS - 1) })
    // POST /sign refuses a disabled device, so its credentials are computed here from the contract, as a device that kept them would hold them.
    const retiredId = `retired|securemode=2,signmethod=hmacsha1,timestamp=${FIXED_NOW}|`
    const retired = { ...mine, mqttClientId: retiredId, mqttUsername: 'retired-0003&Ab12Cd34', mqttPassword: contractPassword({ clientId: 'retired', deviceKey: 'retired-0003', productKey: 'Ab12Cd34', timestamp: String(FIXED_NOW), deviceSecret: EXAMPLE_SECRETS[3] as string, signMethod: 'hmacsha1' }) }
    const flip = (hex: string): string => (hex[0] === '0' ? '1' : '0') + hex.slice(1)
    const cases: Array<[string, Credentials, number]> = [
      ['a wrong password', { ...mine, mqttPassword: flip(mine.mqttPassword) }, 4],
      ['a tampered timestamp', { ...mine, mqttClientId: mine.mqttClientId.replace(String(FIXED_NOW), String(FIXED_NOW + 1)) }, 4],
      // hmacsha1 -> md5, another digest (sha1 would be the same digest and the same password).
      ['a tampered method', { ...mine, mqttClientId: mine.mqttClientId.replace('hmacsha1', 'md5') }, 4],
      ['another device\'s credentials under this device\'s name', { ...boiler, mqttUsername: mine.mqttUsername }, 4],
      ['a disabled device with its right password', retired, 4],
      ['credentials older than MAX_CREDENTIAL_AGE_MS', old, 4],
      ['a username that is not deviceKey&productKey (ignore: no other authenticator)', { ...mine, mqttUsername: 'admin' }, 5]
    ]
    for (const [name, creds, code] of cases) {
      t.not(creds.mqttClientId, '')
      await t.rejects(connectAsync(transport.url(mine), options(creds)), { code }, `${name} -> CONNACK ${code}`)
      t.same(answersFor(creds.mqttClientId).at(-1), code === 4 ? 'deny' : 'ignore', `the service answered ${code === 4 ? 'deny' : 'ignore'}`)
    }
    const client = await connect(t, transport.url(mine), mine)
    t.ok(client.connected, 'the untampered credentials are allowed')
  })
}
