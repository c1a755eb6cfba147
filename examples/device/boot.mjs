// What a device does at boot, in Node: ask the signer for credentials, connect over TLS, publish one message.
// Run from the repository (it uses its mqtt package): SIGNER_URL=http://127.0.0.1:8080 MQTT_CA_FILE=ca.pem node examples/device/boot.mjs
import { readFileSync } from 'node:fs'
import { connectAsync } from 'mqtt'

const { SIGNER_URL = 'http://127.0.0.1:8080', SIGNER_TOKEN, PRODUCT_KEY = '123', DEVICE_KEY = 'test', MQTT_CA_FILE } = process.env

const res = await fetch(`${SIGNER_URL}/sign`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', ...(SIGNER_TOKEN && { authorization: `Bearer ${SIGNER_TOKEN}` }) },
  body: JSON.stringify({ productKey: PRODUCT_KEY, deviceKey: DEVICE_KEY })
})
const creds = await res.json()
if (!res.ok) throw new Error(`POST /sign: ${creds.code}: ${creds.message}`)
if (creds.broker === undefined) throw new Error('the signer has no MQTT_HOST configured: it did not say where to connect')

const client = await connectAsync(creds.broker.uri, {
  clientId: creds.mqttClientId,
  username: creds.mqttUsername,
  password: creds.mqttPassword,
  protocolVersion: 4,
  ...(MQTT_CA_FILE && { ca: readFileSync(MQTT_CA_FILE) }),
  reconnectPeriod: 0
})
const topic = `/sys/${PRODUCT_KEY}/${DEVICE_KEY}/thing/measurepoint/post`
await client.publishAsync(topic, JSON.stringify({ params: { temperature: 21.5 } }), { qos: 1 })
await client.endAsync()
console.log(`published to ${topic}`)
