import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import type { FileStore } from '../../src/store/file-store.js'
import { brokenStore, buildTestApp, unavailableStore } from '../helper.js'

t.test('GET /healthz -> 200 ok', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'GET', url: '/healthz' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'ok' })
})

t.test('GET /readyz – store loaded -> 200 with what is served', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { status: 'ready', store: { ok: true, kind: 'file', devices: 4, detail: /4 devices from .*devices\.json/, loadedAt: String } })
  t.notMatch(res.body, /deviceSecret|5eCr3t/)
})

t.test('GET /readyz – store down -> 503 with the reason and Retry-After', async (t) => {
  const app = await buildTestApp(t, {}, { store: unavailableStore() })
  const res = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '5')
  t.same(res.json(), {
    status: 'unavailable',
    store: { ok: false, kind: 'fake', detail: 'the device store is not reachable; retry shortly' },
    access: { mode: 'none', rateLimits: { perCaller: 0, perDevice: 0, batchItemsPerCaller: 2_000_000, verifyPerDevice: 60, verifyPerCaller: 0, shared: false } }
  })
})

t.test('GET /readyz – a store failing unexpectedly -> 503 without its internals', async (t) => {
  const app = await buildTestApp(t, {}, { store: brokenStore() })
  const res = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(res.statusCode, 503)
  t.equal(res.json().store.detail, 'the store did not answer its health check')
  t.notMatch(res.body, /hunter2/)
})

t.test('GET /readyz – a store that reports itself not ok -> 503', async (t) => {
  const store = unavailableStore()
  store.checkHealth = async () => ({ ok: false, kind: 'fake', detail: 'warming up' })
  const app = await buildTestApp(t, {}, { store })
  const res = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(res.statusCode, 503)
  t.match(res.json(), { status: 'unavailable', store: { detail: 'warming up' } })
})

t.test('the app closes the store it was given', async (t) => {
  let closed = 0
  const store = unavailableStore()
  store.close = async () => { closed++ }
  const app = await buildTestApp(t, {}, { store })
  await app.close()
  t.equal(closed, 1)
})

t.test('GET /readyz – a failed reload is reported while the previous data keeps serving', async (t) => {
  const dir = t.testdir({ 'devices.csv': 'productKey,deviceKey,deviceSecret\n123,test,deviceSecret\n' })
  const file = join(dir, 'devices.csv')
  const app = await buildTestApp(t, { STORE_FILE: file })
  await writeFile(file, 'productKey,deviceKey,deviceSecret\n123,test,\n')
  await app.store.reload?.()
  const res = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(res.statusCode, 200, 'still ready: the old version is served')
  t.match(res.json(), { status: 'ready', store: { devices: 1, lastReloadError: { message: /line 2: deviceSecret must be/, at: String } } })
  const sign = await app.inject({ method: 'POST', url: '/sign', payload: { productKey: '123', deviceKey: 'test' } })
  t.equal(sign.statusCode, 200)
})

t.test('GET /readyz – a change held by the shrink guard is shown while every device keeps signing', async (t) => {
  const dir = t.testdir({ 'devices.csv': 'productKey,deviceKey,deviceSecret\n123,test,deviceSecret\n123,other,s2\n' })
  const file = join(dir, 'devices.csv')
  const app = await buildTestApp(t, { STORE_FILE: file, STORE_WATCH: 'true', STORE_SETTLE_MS: '0' })
  // Cut just after the header, as a writer caught mid-write would leave it.
  await writeFile(file, 'productKey,deviceKey,deviceSecret\n')
  const store = app.store as FileStore
  // Each check looks at the file once; the guard holds the change on the first check after it settles.
  while ((await store.checkHealth()).heldReload === undefined) await store.check()
  const res = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { status: 'ready', store: { devices: 2, heldReload: { devices: 0, removed: 2, message: /send SIGHUP to apply it/, at: String } } })
  const sign = await app.inject({ method: 'POST', url: '/sign', payload: { productKey: '123', deviceKey: 'other' } })
  t.equal(sign.statusCode, 200)
})
