// POST /sign/batch with a JSON body: results in order, one per item, each failure alone, and the whole-batch errors.
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { batchResponseSchema } from '../../src/schemas/batch.js'
import { EXAMPLE, EXAMPLE_PASSWORDS, FIXED_NOW, brokenStore, buildTestApp, contractPassword, createLogSink, unavailableStore } from '../helper.js'

const json = { 'content-type': 'application/json' }

interface StoreDevice { productKey: string, deviceKey: string, deviceSecret: string, enabled: boolean }

/** A store of `count` devices: every tenth one disabled. */
function storeDevices (count: number): StoreDevice[] {
  return Array.from({ length: count }, (_, i) => ({
    productKey: `Pk${i % 7}`,
    deviceKey: `dev-${i}`,
    deviceSecret: `secret-${i}-${'x'.repeat(i % 20)}`,
    enabled: i % 10 !== 3
  }))
}

async function appWithStore (t: Test, devices: StoreDevice[], env: Record<string, string> = {}): Promise<Awaited<ReturnType<typeof buildTestApp>>> {
  const dir = t.testdir({ 'devices.json': JSON.stringify({ devices }) })
  return buildTestApp(t, { STORE_FILE: join(dir, 'devices.json'), ...env })
}

const METHODS = ['hmacsha1', 'SHA256', 'md5', 'hmacmd5', 'sha1', 'hmacsha256']

t.test('POST /sign/batch – 1000 devices with unknown, invalid, disabled and bad-method items: every one answered, in order', async (t) => {
  const devices = storeDevices(1000)
  const app = await appWithStore(t, devices, { MQTT_HOST: 'mqtt.example.com' })
  const items = devices.map((device, i) => {
    const item: Record<string, unknown> = { productKey: device.productKey, deviceKey: device.deviceKey, reference: `ref-${i}` }
    if (i % 10 === 1) item.deviceKey = `ghost-${i}`
    if (i % 10 === 2) item.deviceKey = 'has space'
    if (i % 10 === 4) item.signMethod = 'sha512'
    if (i % 10 === 5) item.clientId = `SN "${i}" \\ x`
    if (i % 10 === 6) item.timestamp = '1524448722000'
    if (i % 10 === 7) item.signMethod = METHODS[i % METHODS.length]
    return item
  })
  const res = await app.inject({ method: 'POST', url: '/sign/batch', payload: { devices: items } })
  t.equal(res.statusCode, 200)
  const body = batchResponseSchema.parse(res.json())
  t.equal(body.results.length, 1000)
  const expectedCodes: Record<number, string> = { 1: 'DEVICE_NOT_FOUND', 2: 'VALIDATION_FAILED', 3: 'DEVICE_DISABLED', 4: 'UNSUPPORTED_SIGN_METHOD' }
  let signed = 0
  body.results.forEach((result, i) => {
    const item = items[i] as Record<string, string>
    const device = devices[i] as StoreDevice
    if (result.index !== i || result.reference !== `ref-${i}`) t.fail(`result ${i} is out of place: ${JSON.stringify(result)}`)
    const code = expectedCodes[i % 10]
    if (code !== undefined) {
      if (result.ok || result.error.code !== code) t.fail(`item ${i}: expected ${code}, got ${JSON.stringify(result)}`)
      return
    }
    signed++
    const clientId = item.clientId ?? device.deviceKey
    const timestamp = item.timestamp ?? String(FIXED_NOW)
    const signMethod = (item.signMethod ?? 'hmacsha1').toLowerCase()
    const want = contractPassword({ ...device, clientId, timestamp, signMethod })
    if (!result.ok || result.mqttPassword !== want || result.clientId !== clientId || result.timestamp !== timestamp ||
      result.mqttClientId !== `${clientId}|securemode=2,signmethod=${signMethod},timestamp=${timestamp}|` ||
      result.mqttUsername !== `${device.deviceKey}&${device.productKey}`) {
      t.fail(`item ${i}: wrong credentials ${JSON.stringify(result)}`)
    }
  })
  t.same(body.summary, { total: 1000, signed, failed: 1000 - signed })
  t.equal(signed, 600)
  t.same(body.broker, { host: 'mqtt.example.com', port: 8883, tls: true, uri: 'mqtts://mqtt.example.com:8883', protocolVersion: 4 }, 'the broker once, at the top')
  t.notMatch(res.body, /"results":\[[^\]]*"broker"/, 'and not in any result')
})

t.test('POST /sign/batch – the codes and messages of a failed item are those POST /sign answers for the same request', async (t) => {
  const app = await buildTestApp(t)
  const requests = [
    { productKey: '123', deviceKey: 'nobody' },
    { productKey: 'Ab12Cd34', deviceKey: 'retired-0003' },
    { productKey: '123', deviceKey: 'test', signMethod: 'sha512' },
    { productKey: '123', deviceKey: 'test', timestamp: 1524448722000 },
    { productKey: '123', deviceKey: 'test', colour: 'red', clientId: 'a|b' },
    { deviceKey: 'test' },
    null,
    42,
    ['123', 'test']
  ]
  const batch = (await app.inject({ method: 'POST', url: '/sign/batch', payload: { devices: requests } })).json()
  for (const [i, request] of requests.entries()) {
    const single = (await app.inject({ method: 'POST', url: '/sign', headers: json, payload: JSON.stringify(request) })).json()
    const { code, message, details } = batch.results[i].error
    t.equal(code, single.code, `${JSON.stringify(request)}: code`)
    t.same(details, single.details, 'details')
    t.equal(message, single.message.replace('invalid request body', 'invalid device'), 'message')
  }
})

t.test('POST /sign/batch – a bad reference fails its item like any bad field; a good one is echoed even on a failed item', async (t) => {
  const app = await buildTestApp(t)
  const devices = [{ productKey: '123', deviceKey: 'test', reference: 42 }, { productKey: '123', deviceKey: 'test', reference: 'r'.repeat(129) }, { productKey: 'bad key', deviceKey: 'test', reference: 'mine' }]
  t.match((await app.inject({ method: 'POST', url: '/sign/batch', payload: { devices } })).json().results, [
    { index: 0, ok: false, error: { code: 'VALIDATION_FAILED', details: [{ path: 'reference', message: 'must be a string' }] } },
    { index: 1, ok: false, error: { code: 'VALIDATION_FAILED', details: [{ path: 'reference', message: 'must be at most 128 characters' }] } },
    { index: 2, reference: 'mine', ok: false, error: { code: 'VALIDATION_FAILED', details: [{ path: 'productKey' }] } }
  ])
})

t.test('POST /sign/batch – items without a timestamp share one, taken when the request arrives', async (t) => {
  let now = FIXED_NOW
  const app = await buildTestApp(t, {}, { clock: () => now++ })
  const devices = [{ productKey: '123', deviceKey: 'test' }, { productKey: '123', deviceKey: 'test', timestamp: '42' }, { productKey: '123', deviceKey: 'test' }]
  const { results } = (await app.inject({ method: 'POST', url: '/sign/batch', payload: { devices } })).json()
  t.same(results.map((r: { timestamp: string }) => r.timestamp), [String(FIXED_NOW), '42', String(FIXED_NOW)])
  t.equal(now, FIXED_NOW + 1, 'the clock is read once')
})

t.test('POST /sign/batch – the worked example signs in a batch as it does alone', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/sign/batch', payload: { devices: [{ ...EXAMPLE, deviceSecret: undefined, signMethod: 'sha256' }] } })
  t.match(res.json(), { results: [{ index: 0, ok: true, mqttPassword: EXAMPLE_PASSWORDS.sha256 }], summary: { total: 1, signed: 1, failed: 0 } })
  t.notOk('broker' in res.json(), 'no broker without MQTT_HOST')
})

t.test('POST /sign/batch – more than BATCH_MAX_ITEMS -> 413 BATCH_TOO_LARGE for the whole batch', async (t) => {
  const app = await buildTestApp(t)
  const devices = Array.from({ length: 1001 }, () => ({ productKey: '123', deviceKey: 'test' }))
  const res = await app.inject({ method: 'POST', url: '/sign/batch', payload: { devices } })
  t.equal(res.statusCode, 413)
  t.same(res.json(), {
    statusCode: 413,
    code: 'BATCH_TOO_LARGE',
    error: 'Payload Too Large',
    message: 'a batch holds at most 1000 devices (BATCH_MAX_ITEMS) and this one has 1001: split it, or stream it as application/x-ndjson'
  })
  const small = await buildTestApp(t, { BATCH_MAX_ITEMS: '2' })
  t.equal((await small.inject({ method: 'POST', url: '/sign/batch', payload: { devices: devices.slice(0, 3) } })).statusCode, 413)
  t.equal((await small.inject({ method: 'POST', url: '/sign/batch', payload: { devices: devices.slice(0, 2) } })).statusCode, 200)
})

t.test('POST /sign/batch – the body limit follows BATCH_MAX_ITEMS, not the 16 KiB of POST /sign', async (t) => {
  const app = await buildTestApp(t, { BATCH_MAX_ITEMS: '100' })
  const item = { productKey: '123', deviceKey: 'test', clientId: 'c'.repeat(64), reference: 'r'.repeat(128), signMethod: 'hmacsha1', timestamp: '1524448722000' }
  const full = JSON.stringify({ devices: Array.from({ length: 100 }, () => item) }, null, 2)
  t.ok(full.length > 16 * 1024, `${full.length} bytes`)
  t.equal((await app.inject({ method: 'POST', url: '/sign/batch', headers: json, payload: full })).statusCode, 200)
  const huge = JSON.stringify({ devices: [{ ...item, reference: 'x'.repeat(101 * 1024) }] })
  const res = await app.inject({ method: 'POST', url: '/sign/batch', headers: json, payload: huge })
  t.equal(res.statusCode, 413)
  t.equal(res.json().code, 'PAYLOAD_TOO_LARGE')
})

t.test('POST /sign/batch – a body that is not a batch at all fails the whole request', async (t) => {
  const app = await buildTestApp(t)
  const cases: Array<[string, number, string, RegExp]> = [
    ['{"devices":[]}', 400, 'VALIDATION_FAILED', /devices: must list at least one device/],
    ['{}', 400, 'VALIDATION_FAILED', /devices: is required/],
    ['{"devices":{"productKey":"123"}}', 400, 'VALIDATION_FAILED', /devices: must be an array of devices/],
    ['[{"productKey":"123","deviceKey":"test"}]', 400, 'VALIDATION_FAILED', /must be an object with a "devices" array/],
    ['{"devices":[{"productKey":"123","deviceKey":"test"}],"dryRun":true}', 400, 'VALIDATION_FAILED', /dryRun: is not a known field/],
    ['{"devices":[', 400, 'MALFORMED_JSON', /not valid JSON/]
  ]
  for (const [payload, status, code, message] of cases) {
    const res = await app.inject({ method: 'POST', url: '/sign/batch', headers: json, payload })
    t.equal(res.statusCode, status, payload)
    t.match(res.json(), { statusCode: status, code, message }, payload)
  }
  const text = await app.inject({ method: 'POST', url: '/sign/batch', headers: { 'content-type': 'text/csv' }, payload: 'productKey,deviceKey\n123,test\n' })
  t.equal(text.statusCode, 415)
  t.match(text.json().message, /application\/json/)
})

t.test('POST /sign/batch – a store that is down fails each item with STORE_UNAVAILABLE; the batch still answers 200', async (t) => {
  const app = await buildTestApp(t, {}, { store: unavailableStore() })
  const res = await app.inject({ method: 'POST', url: '/sign/batch', payload: { devices: [{ productKey: '123', deviceKey: 'test' }, { productKey: 'bad key', deviceKey: 'test' }] } })
  t.equal(res.statusCode, 200)
  t.match(res.json(), {
    results: [{ index: 0, ok: false, error: { code: 'STORE_UNAVAILABLE', message: /^the device store is not answering; retry after 5 seconds/ } }, { index: 1, ok: false, error: { code: 'VALIDATION_FAILED' } }],
    summary: { total: 2, signed: 0, failed: 2 }
  })
})

t.test('POST /sign/batch – a store failing unexpectedly fails each item INTERNAL, logged with its cause, told to nobody', async (t) => {
  const sink = createLogSink()
  const app = await buildTestApp(t, { LOG_LEVEL: 'info' }, { store: brokenStore(), logStream: sink.stream })
  const res = await app.inject({ method: 'POST', url: '/sign/batch', payload: { devices: [{ productKey: '123', deviceKey: 'test' }] } })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { results: [{ ok: false, error: { code: 'INTERNAL', message: /request id in the logs/ } }] })
  t.notMatch(res.body, /hunter2/)
  t.match(sink.lines().find((line) => line.level === 50), { msg: 'batch lookup failed', err: { message: /hunter2/ } })
})

t.test('POST /sign/batch – one log line with the batch size and counts, and no password in it', async (t) => {
  const sink = createLogSink()
  const app = await buildTestApp(t, { LOG_LEVEL: 'info' }, { logStream: sink.stream })
  const res = await app.inject({
    method: 'POST',
    url: '/sign/batch',
    headers: { 'x-request-id': 'batch-1' },
    payload: { devices: [{ productKey: '123', deviceKey: 'test' }, { productKey: '123', deviceKey: 'nobody' }, { productKey: 'Ab12Cd34', deviceKey: 'boiler-0001' }] }
  })
  const lines = sink.lines().filter((line) => line.msg === 'request completed')
  t.match(lines, [{ reqId: 'batch-1', route: '/sign/batch', statusCode: 200, batch: { size: 3, signed: 2, failed: 1 }, outcome: 'signed' }])
  for (const result of res.json().results.filter((r: { ok: boolean }) => r.ok)) t.notMatch(sink.raw(), result.mqttPassword)
  t.notMatch(sink.raw(), /deviceSecret|5eCr3t/)
})

t.test('POST /sign/batch – the audit line lists at most 1000 failures and 100 products, and counts the rest', async (t) => {
  const devices = Array.from({ length: 150 }, (_, i) => ({ productKey: `P${i}`, deviceKey: 'd', deviceSecret: 's', enabled: true }))
  const sink = createLogSink()
  const dir = t.testdir({ 'devices.json': JSON.stringify({ devices }) })
  const app = await buildTestApp(t, { STORE_FILE: join(dir, 'devices.json'), LOG_LEVEL: 'info', BATCH_MAX_ITEMS: '2000' }, { logStream: sink.stream })
  const items = [...devices.map(({ productKey }) => ({ productKey, deviceKey: 'd' })), ...Array.from({ length: 1005 }, () => ({ productKey: 'P0', deviceKey: 'ghost' }))]
  const res = await app.inject({ method: 'POST', url: '/sign/batch', payload: { devices: items } })
  t.match(res.json().summary, { total: 1155, signed: 150, failed: 1005 })
  const { batch } = sink.lines().find((line) => line.msg === 'request completed') as { batch: Record<string, unknown> }
  t.equal((batch.failures as unknown[]).length, 1000)
  t.equal(batch.failuresNotListed, 5)
  t.equal(Object.keys(batch.signedByProduct as object).length, 100)
  t.equal(batch.signedOtherProducts, 50)
})
