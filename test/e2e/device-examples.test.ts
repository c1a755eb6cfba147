// The device examples (examples/device: Node with mqtt.js, Python with paho-mqtt, shell with curl's text answer and
// mosquitto_pub) each sign, connect over TLS to a broker that asks POST /verify, and publish one message that arrives.
import { execFile, execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { connectAsync } from 'mqtt'
import t, { type Test } from 'tap'
import { EXAMPLE, buildTestApp, makeToken, writeTokenFile } from '../helper.js'
import { startVerifyingBroker } from './verify-broker.js'

const DEVICE_DIR = fileURLToPath(new URL('../../examples/device/', import.meta.url))
const REPO = fileURLToPath(new URL('../../', import.meta.url))

const signer = makeToken('device-boot', ['sign'], '*')
const brokerToken = makeToken('lab-broker', ['verify'], '*')
let origin = ''
const broker = await startVerifyingBroker(t, { dir: t.testdir(), verifyUrl: () => `${origin}/verify`, token: brokerToken.token })
const app = await buildTestApp(t, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: writeTokenFile(t, [signer, brokerToken]), MQTT_HOST: 'localhost', MQTT_PORT: String(broker.tlsPort) })
origin = await app.listen({ port: 0, host: '127.0.0.1' })

/** The first interpreter that can import paho.mqtt: python3 on PATH (maybe pyenv's), then Debian's own. */
function pythonWithPaho (): string | undefined {
  return ['python3', '/usr/bin/python3'].find((python) => {
    try {
      execFileSync(python, ['-c', 'import paho.mqtt'], { stdio: 'ignore' })
      return true
    } catch {
      return false
    }
  })
}

function hasCommand (name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** Runs an example as a device would run it, with the signer's URL, its token and the broker's CA in the environment. */
async function runExample (t: Test, command: string, args: string[], overrides: Record<string, string | undefined> = {}): Promise<string> {
  const env = { ...process.env, SIGNER_URL: origin, SIGNER_TOKEN: signer.token, MQTT_CA_FILE: broker.caFile, PRODUCT_KEY: EXAMPLE.productKey, DEVICE_KEY: EXAMPLE.deviceKey, ...overrides }
  return await new Promise((resolve, reject) => {
    const child = execFile(command, args, { cwd: REPO, env, timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${args.at(-1)} failed: ${String(stderr)}`, { cause: err }))
      else resolve(stdout)
    })
    t.teardown(() => { child.kill() })
  })
}

/** An observer device subscribed to the example device's topic: resolves with the first message there. */
async function watchTopic (t: Test, topic: string): Promise<{ message: Promise<string> }> {
  const res = await fetch(`${origin}/sign`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${signer.token}` }, body: JSON.stringify({ productKey: 'Ab12Cd34', deviceKey: 'boiler-0001', clientId: `observer-${Math.random()}` }) })
  const creds = await res.json() as { mqttClientId: string, mqttUsername: string, mqttPassword: string }
  const observer = await connectAsync(`mqtts://localhost:${broker.tlsPort}`, { clientId: creds.mqttClientId, username: creds.mqttUsername, password: creds.mqttPassword, protocolVersion: 4, ca: broker.ca, reconnectPeriod: 0 })
  t.teardown(() => observer.endAsync())
  await observer.subscribeAsync(topic, { qos: 1 })
  // Wrapped: an async function returning a promise would wait for the message itself.
  return { message: new Promise((resolve) => { observer.once('message', (_topic, payload) => { resolve(payload.toString('utf8')) }) }) }
}

const TOPIC = `/sys/${EXAMPLE.productKey}/${EXAMPLE.deviceKey}/thing/measurepoint/post`

async function checkExample (t: Test, command: string, file: string): Promise<void> {
  const { message } = await watchTopic(t, TOPIC)
  const before = broker.attempts.filter((a) => a.answer === 'allow').length
  const stdout = await runExample(t, command, [DEVICE_DIR + file])
  t.equal(stdout.trim(), `published to ${TOPIC}`)
  t.same(JSON.parse(await message), { params: { temperature: 21.5 } }, 'its message reached a subscriber through the broker')
  t.equal(broker.attempts.filter((a) => a.answer === 'allow').length, before + 1, 'the broker let it in after asking POST /verify')
}

t.test('examples/device/boot.mjs (Node, mqtt.js) signs, connects over TLS and publishes', async (t) => {
  await checkExample(t, process.execPath, 'boot.mjs')
})

t.test('examples/device/boot.py (Python, paho-mqtt, the client of the EnOS guide) signs, connects over TLS and publishes', async (t) => {
  const python = pythonWithPaho()
  if (python === undefined) {
    t.fail('python3 with paho-mqtt is missing: apt-get install python3-paho-mqtt (.ci/run does it)')
    return
  }
  await checkExample(t, python, 'boot.py')
})

t.test('examples/device/boot.sh (curl with the text answer, mosquitto_pub) signs, connects over TLS and publishes', async (t) => {
  for (const tool of ['curl', 'mosquitto_pub']) {
    if (!hasCommand(tool)) {
      t.fail(`${tool} is missing: apt-get install ${tool === 'curl' ? 'curl' : 'mosquitto-clients'} (.ci/run does it)`)
      return
    }
  }
  await checkExample(t, 'sh', 'boot.sh')
})

t.test('examples/device/boot.mjs fails loudly: the signer\'s error, no broker configured, a broker certificate it cannot check', async (t) => {
  const run = async (env: Record<string, string | undefined>) => await runExample(t, process.execPath, [DEVICE_DIR + 'boot.mjs'], env)
  await t.rejects(run({ DEVICE_KEY: 'ghost' }), { message: /POST \/sign: DEVICE_NOT_FOUND: no device with productKey "123" and deviceKey "ghost"/ })
  const open = await buildTestApp(t, { MQTT_HOST: 'localhost', MQTT_PORT: String(broker.tlsPort) })
  const openUrl = await open.listen({ port: 0, host: '127.0.0.1' })
  await t.rejects(run({ SIGNER_URL: openUrl, SIGNER_TOKEN: undefined, MQTT_CA_FILE: undefined }), { message: /self-signed certificate/ }, 'no CA: TLS refuses the broker')
  const noBroker = await buildTestApp(t)
  const noBrokerUrl = await noBroker.listen({ port: 0, host: '127.0.0.1' })
  await t.rejects(run({ SIGNER_URL: noBrokerUrl }), { message: /the signer has no MQTT_HOST configured/ })
})
