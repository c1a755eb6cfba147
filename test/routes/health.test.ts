import { rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import t from 'tap'
import { HEALTH_CHECK_FAILED, scrubbed, withoutPaths } from '../../src/routes/health.js'
import type { FileStore } from '../../src/store/file-store.js'
import { brokenStore, buildTestApp, makeToken, unavailableStore, writeTokenFile } from '../helper.js'

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
  t.match(res.json(), { status: 'ready', store: { ok: true, kind: 'file', devices: 4, detail: '4 devices from STORE_FILE', loadedAt: String } })
  t.notMatch(res.body, /deviceSecret|5eCr3t|devices\.json|\//)
})

t.test('GET /readyz – store down -> 503 with the reason and Retry-After', async (t) => {
  const app = await buildTestApp(t, {}, { store: unavailableStore() })
  const res = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '5')
  t.same(res.json(), {
    status: 'unavailable',
    store: { ok: false, kind: 'fake', detail: HEALTH_CHECK_FAILED },
    access: { mode: 'none', rateLimits: { perCaller: 0, perDevice: 0, batchItemsPerCaller: 2_000_000, verifyPerDevice: 60, verifyPerCaller: 0, shared: false } }
  })
})

t.test('GET /readyz – a store failing unexpectedly -> 503 without its internals', async (t) => {
  const app = await buildTestApp(t, {}, { store: brokenStore() })
  const res = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(res.statusCode, 503)
  t.equal(res.json().store.detail, HEALTH_CHECK_FAILED)
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

t.test('GET /readyz names the files by their variables, never their paths, even in a failed reload', async (t) => {
  const dir = t.testdir({ 'devices.csv': 'productKey,deviceKey,deviceSecret\n123,test,deviceSecret\n' })
  const file = join(dir, 'devices.csv')
  const tokens = writeTokenFile(t, [makeToken('probe', ['sign'], '*')])
  const app = await buildTestApp(t, { STORE_FILE: file, AUTH_MODE: 'token', AUTH_TOKENS_FILE: tokens })
  const before = await app.inject({ method: 'GET', url: '/readyz' })
  t.match(before.json(), { status: 'ready', store: { detail: '1 devices from STORE_FILE' }, access: { tokens: { tokens: 1 } } })
  t.notOk('path' in before.json().access.tokens, 'the token file is counted, not located')
  await rm(file)
  await writeFile(tokens, '{ "tokens": [')
  await app.reload()
  const res = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(res.statusCode, 200, 'still ready: the old versions are served')
  t.match(res.json(), {
    store: { lastReloadError: { message: 'cannot read STORE_FILE: ENOENT' } },
    access: { tokens: { lastReloadError: { message: /^AUTH_TOKENS_FILE: / } } }
  })
  for (const path of [dir, tokens, dirname(tokens), '/tmp']) t.notOk(res.body.includes(path), `${path} is not shown`)
})

t.test('withoutPaths: the longest path is named first; other quoted absolute paths are hidden; the rest stays', async (t) => {
  const files = { A_FILE: '/etc/a', A_DEEPER_FILE: '/etc/a/b.pem', UNSET: undefined, EMPTY: '' }
  t.equal(withoutPaths('cannot read /etc/a/b.pem: ENOENT', files), 'cannot read A_DEEPER_FILE: ENOENT')
  t.equal(withoutPaths("ENOENT: no such file or directory, open '/srv/x.pem'; A_FILE line 3", files), 'ENOENT: no such file or directory, open [path]; A_FILE line 3')
  t.equal(withoutPaths('3 devices, 2 removed', files), '3 devices, 2 removed')
  t.same(scrubbed({ a: ['at /etc/a', 3], b: { c: '/etc/a' }, d: null, e: true }, files), { a: ['at A_FILE', 3], b: { c: 'A_FILE' }, d: null, e: true }, 'every string of a body, at any depth')
})
