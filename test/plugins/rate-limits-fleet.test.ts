// A fleet at boot with the shipped limits: one fleet token, or one address when open, signs 20,000 distinct devices in one window; each device still has its own limit.
import { rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { buildTestApp, makeToken, writeTokenFile, type TestToken } from '../helper.js'

// About 10 s on an idle machine: a budget for a busy one.
t.setTimeout(240_000)

/** The shipped limits (an empty variable counts as unset): the test helper turns them off otherwise. */
const SHIPPED = { RATE_LIMIT_PER_CALLER: '', RATE_LIMIT_PER_DEVICE: '' }
const DEVICES = 20_000

/** A store file of `count` real devices boot-0 ... of product P1. */
function manyDevices (t: Test, count: number): string {
  const devices = Array.from({ length: count }, (_, i) => ({ productKey: 'P1', deviceKey: `boot-${i}`, deviceSecret: `secret-${i}` }))
  return join(t.testdir({ 'devices.json': JSON.stringify({ devices }) }), 'devices.json')
}

function fleetToken (name: string, products: string[] | '*', scopes = ['sign']): TestToken {
  const token = makeToken(name, scopes, products)
  return { ...token, entry: { ...token.entry, fleet: true } }
}

/** Signs devices boot-from ... boot-(to - 1) once each, 200 at a time; answers the count of each status. */
async function boot (app: FastifyInstance, from: number, to: number, headers: Record<string, string> = {}): Promise<Record<number, number>> {
  const statuses: Record<number, number> = {}
  for (let i = from; i < to; i += 200) {
    const group = await Promise.all(Array.from({ length: Math.min(200, to - i) }, async (_, j) =>
      (await app.inject({ method: 'POST', url: '/sign', headers, payload: { productKey: 'P1', deviceKey: `boot-${i + j}` } })).statusCode))
    for (const status of group) statuses[status] = (statuses[status] ?? 0) + 1
  }
  return statuses
}

const bearer = (token: TestToken): Record<string, string> => ({ authorization: `Bearer ${token.token}` })
const sign = async (app: FastifyInstance, deviceKey: string, headers: Record<string, string> = {}): Promise<number> =>
  (await app.inject({ method: 'POST', url: '/sign', headers, payload: { productKey: 'P1', deviceKey } })).statusCode

t.test('a fleet token, shipped limits: 20,000 distinct devices sign in one window; a device past RATE_LIMIT_PER_DEVICE gets 429', async (t) => {
  const fleet = fleetToken('boiler-firmware', ['P1'])
  const app = await buildTestApp(t, { ...SHIPPED, AUTH_MODE: 'token', AUTH_TOKENS_FILE: writeTokenFile(t, [fleet]), STORE_FILE: manyDevices(t, DEVICES) })
  t.match((await app.inject({ method: 'GET', url: '/readyz' })).json().access.rateLimits, { perCaller: 6000, perDevice: 30 }, 'the shipped limits')
  t.same(await boot(app, 0, DEVICES, bearer(fleet)), { 200: DEVICES }, `${DEVICES} devices, more than RATE_LIMIT_PER_CALLER, all signed`)
  for (let i = 1; i < 30; i++) await sign(app, 'boot-0', bearer(fleet))
  const limited = await app.inject({ method: 'POST', url: '/sign', headers: bearer(fleet), payload: { productKey: 'P1', deviceKey: 'boot-0' } })
  t.equal(limited.statusCode, 429, 'the 31st signature of one device in the window')
  t.match(limited.json(), { code: 'RATE_LIMITED', message: /RATE_LIMIT_PER_DEVICE/ })
  t.ok(Number(limited.headers['retry-after']) >= 1, 'with Retry-After')
  t.equal(await sign(app, 'boot-1', bearer(fleet)), 200, 'the other devices go on')
  t.equal((await app.inject({ method: 'POST', url: '/sign', headers: bearer(fleet), payload: { productKey: 'P2', deviceKey: 'boot-1' } })).statusCode, 403, 'within its products only')
})

t.test('a token that is not a fleet token, shipped limits: still one caller, 429 past RATE_LIMIT_PER_CALLER', async (t) => {
  const tool = makeToken('provisioning', ['sign'], ['P1'])
  const fleet = fleetToken('boiler-firmware', ['P1'])
  const app = await buildTestApp(t, { ...SHIPPED, AUTH_MODE: 'token', AUTH_TOKENS_FILE: writeTokenFile(t, [tool, fleet]), STORE_FILE: manyDevices(t, 6001) })
  t.same(await boot(app, 0, 6000, bearer(tool)), { 200: 6000 })
  const limited = await app.inject({ method: 'POST', url: '/sign', headers: bearer(tool), payload: { productKey: 'P1', deviceKey: 'boot-6000' } })
  t.equal(limited.statusCode, 429)
  t.match(limited.json().message, /^more than 6000 requests a minute from this caller \(RATE_LIMIT_PER_CALLER\)/)
  t.equal(await sign(app, 'boot-6000', bearer(fleet)), 200, 'the fleet token is not held back by it')
})

t.test('open, shipped limits: 20,000 devices behind one address (a NAT) sign in one window; a device past RATE_LIMIT_PER_DEVICE gets 429', async (t) => {
  const app = await buildTestApp(t, { ...SHIPPED, AUTH_MODE: 'none', STORE_FILE: manyDevices(t, DEVICES) })
  t.match((await app.inject({ method: 'GET', url: '/readyz' })).json().access.rateLimits, { perCaller: 0, perDevice: 30 }, 'no per-address budget by default')
  t.same(await boot(app, 0, DEVICES, {}), { 200: DEVICES }, `${DEVICES} devices from 127.0.0.1, all signed`)
  for (let i = 1; i < 30; i++) await sign(app, 'boot-7')
  t.equal(await sign(app, 'boot-7'), 429, 'the 31st signature of one device')
})

t.test('open with RATE_LIMIT_PER_CALLER set: it counts per address, as before', async (t) => {
  const app = await buildTestApp(t, { AUTH_MODE: 'none', RATE_LIMIT_PER_CALLER: '5', STORE_FILE: manyDevices(t, 10) })
  t.same(await boot(app, 0, 5), { 200: 5 })
  t.equal(await sign(app, 'boot-5'), 429)
})

t.test('a fleet token with sign:batch or verify stops startup, naming it; such a reload keeps the tokens in force and shows in /readyz', async (t) => {
  const batcher = fleetToken('firmware-batch', ['P1'], ['sign', 'sign:batch'])
  await t.rejects(buildTestApp(t, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: writeTokenFile(t, [batcher]) }), {
    message: /tokens\[0\] \(firmware-batch\): a fleet token may hold only the "sign" scope \(it is shared by the firmware of many devices\), not "sign:batch": give batch signing or verification a token of its own/
  })
  const unsure = join(t.testdir({ 'tokens.json': JSON.stringify({ tokens: [{ ...makeToken('unsure', ['sign'], '*').entry, fleet: 'yes' }] }) }), 'tokens.json')
  await t.rejects(buildTestApp(t, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: unsure }), { message: /tokens\[0\] \(unsure\): fleet must be true or false/ })
  const fleet = fleetToken('firmware', ['P1'])
  const tokensFile = writeTokenFile(t, [fleet])
  const app = await buildTestApp(t, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: tokensFile, STORE_FILE: manyDevices(t, 1) })
  const broker = fleetToken('firmware-broker', '*', ['verify', 'sign', 'sign:batch'])
  const next = `${tokensFile}.new`
  await writeFile(next, JSON.stringify({ tokens: [fleet.entry, broker.entry] }))
  await rename(next, tokensFile)
  await app.reload()
  const ready = (await app.inject({ method: 'GET', url: '/readyz' })).json()
  t.match(ready.access.tokens, { tokens: 1, lastReloadError: { message: /tokens\[1\] \(firmware-broker\): a fleet token may hold only the "sign" scope .*not "verify" or "sign:batch"/ } })
  t.equal(await sign(app, 'boot-0', bearer(fleet)), 200, 'the tokens in force still sign')
  t.equal(await sign(app, 'boot-0', bearer(broker)), 401, 'the refused entry is not in force')
  t.notMatch(JSON.stringify(ready), broker.entry.sha256)
})

t.test('a fleet token signs with text answers (its 429 too), and is refused POST /sign/batch and POST /verify', async (t) => {
  const fleet = fleetToken('boiler-firmware', ['P1'])
  const app = await buildTestApp(t, { ...SHIPPED, AUTH_MODE: 'token', AUTH_TOKENS_FILE: writeTokenFile(t, [fleet]), STORE_FILE: manyDevices(t, 1) })
  const text = { ...bearer(fleet), accept: 'text/plain' }
  const first = await app.inject({ method: 'POST', url: '/sign', headers: text, payload: { productKey: 'P1', deviceKey: 'boot-0' } })
  t.equal(first.statusCode, 200)
  t.match(first.body, /^mqttClientId=boot-0\|[^\n]*\nmqttUsername=boot-0&P1\nmqttPassword=[0-9A-F]{40}\n/)
  for (let i = 1; i < 30; i++) await sign(app, 'boot-0', bearer(fleet))
  const limited = await app.inject({ method: 'POST', url: '/sign', headers: text, payload: { productKey: 'P1', deviceKey: 'boot-0' } })
  t.equal(limited.statusCode, 429)
  t.match(limited.body, /^error=RATE_LIMITED\n/)
  t.ok(Number(limited.headers['retry-after']) >= 1)
  const batch = await app.inject({ method: 'POST', url: '/sign/batch', headers: bearer(fleet), payload: { devices: [{ productKey: 'P1', deviceKey: 'boot-0' }] } })
  t.match(batch.json(), { statusCode: 403, code: 'FORBIDDEN', message: 'the token "boiler-firmware" has no "sign:batch" scope' })
  const verify = await app.inject({ method: 'POST', url: '/verify', headers: bearer(fleet), payload: { clientid: 'boot-0', username: 'boot-0&P1', password: 'x' } })
  t.equal(verify.statusCode, 403)
})
