// The open default of the bundled example store holds only for the example's content: other devices at its path are refused, at startup and on reload.
import { copyFileSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.js'
import { EXAMPLE_STORE_FILE, loadConfig, type Config } from '../../src/config.js'
import { parseDeviceFile } from '../../src/store/device-file.js'
import { EXAMPLE_DEVICES, isExampleDevices } from '../../src/store/example-devices.js'
import { EXAMPLE_PASSWORDS, createLogSink, tempDir } from '../helper.js'

const example = { productKey: '123', deviceKey: 'test', clientId: '123', timestamp: '1524448722000' }
const REAL_DEVICES = 'productKey,deviceKey,deviceSecret\nPk000001,meter-1,r3alS3cretOfMeter1xxxxxxxxxxxxxx\n'

/**
 * The config of an empty environment (AUTH_MODE unset: open on the example), with the example's
 * path standing for a file at it, as a volume mounted over examples/devices.json would be.
 */
function exampleDefault (storeFile: string): Readonly<Config> {
  const config = loadConfig({ LOG_LEVEL: 'info', STORE_WATCH: 'false' })
  return Object.freeze({ ...config, storeFile })
}

async function build (t: Test, storeFile: string): Promise<{ app: FastifyInstance, sink: ReturnType<typeof createLogSink> }> {
  const sink = createLogSink()
  const app = await buildApp(exampleDefault(storeFile), { logStream: sink.stream })
  t.teardown(() => app.close())
  return { app, sink }
}

t.test('EXAMPLE_DEVICES are exactly what examples/devices.json holds', async (t) => {
  const shipped = await parseDeviceFile(readFileSync(EXAMPLE_STORE_FILE), 'json')
  t.ok(isExampleDevices(shipped))
  t.equal(shipped.size, EXAMPLE_DEVICES.length)
})

t.test('the example store, in another order or format, runs open with AUTH_MODE unset', async (t) => {
  const dir = tempDir(t, 'example-')
  const csv = ['productKey,deviceKey,deviceSecret,enabled', ...[...EXAMPLE_DEVICES].reverse().map((d) => `${d.productKey},${d.deviceKey},${d.deviceSecret},${String(d.enabled)}`)].join('\n') + '\n'
  writeFileSync(join(dir, 'devices.csv'), csv)
  const { app } = await build(t, join(dir, 'devices.csv'))
  const res = await app.inject({ method: 'POST', url: '/sign', payload: example })
  t.equal(res.statusCode, 200)
  t.equal(res.json().mqttPassword, EXAMPLE_PASSWORDS.hmacsha1)
})

t.test('other devices at the example path with AUTH_MODE unset stop startup: they are not served open', async (t) => {
  const dir = tempDir(t, 'mounted-')
  const path = join(dir, 'devices.csv')
  writeFileSync(path, REAL_DEVICES)
  await t.rejects(build(t, path), {
    name: 'DeviceFileError',
    message: `${path}: is not the bundled example store (it holds 1 device), and with AUTH_MODE unset it would be served open: set AUTH_TOKENS_FILE (access by token), or AUTH_MODE=none to run open on purpose`
  })
  const tampered = EXAMPLE_DEVICES.map((d) => ({ ...d, enabled: true }))
  writeFileSync(join(dir, 'enabled.json'), JSON.stringify({ devices: tampered }))
  await t.rejects(build(t, join(dir, 'enabled.json')), { name: 'DeviceFileError', message: /is not the bundled example store \(it holds 4 devices\)/ }, 'the example with a retired device enabled is not the example')
  const more = [...EXAMPLE_DEVICES, { productKey: '123', deviceKey: 'extra', deviceSecret: 'extraSecretxxxxxxxx', enabled: true }]
  writeFileSync(join(dir, 'more.json'), JSON.stringify({ devices: more }))
  await t.rejects(build(t, join(dir, 'more.json')), { name: 'DeviceFileError', message: /it holds 5 devices/ }, 'nor the example plus one device')
})

t.test('a reload that would put other devices in place of the served example is refused; the example stays served', async (t) => {
  const dir = tempDir(t, 'reload-')
  const path = join(dir, 'devices.json')
  copyFileSync(EXAMPLE_STORE_FILE, path)
  const { app, sink } = await build(t, path)
  writeFileSync(join(dir, 'next.json'), JSON.stringify({ devices: [{ productKey: 'Pk000001', deviceKey: 'meter-1', deviceSecret: 'r3alS3cretOfMeter1xxxxxxxxxxxxxx' }] }))
  renameSync(join(dir, 'next.json'), path)
  await app.reload()
  t.equal((await app.inject({ method: 'POST', url: '/sign', payload: { ...example, productKey: 'Pk000001', deviceKey: 'meter-1' } })).statusCode, 404, 'the new device is not served')
  t.equal((await app.inject({ method: 'POST', url: '/sign', payload: example })).statusCode, 200, 'the example still is')
  const ready = (await app.inject({ method: 'GET', url: '/readyz' })).json()
  t.match(ready, { store: { devices: 4, lastReloadError: { message: /is not the bundled example store \(it holds 1 device\)/ } } })
  const failed = sink.lines().find((line) => line.msg === 'device store reload failed; still serving the previous version')
  t.match(failed, { level: 50, problem: /is not the bundled example store/ })
  t.notMatch(sink.raw(), /r3alS3cret/, 'no secret of the refused file in the log')
})
