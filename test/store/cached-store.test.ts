// The cache in front of a remote store, over a fake store whose answers, failures and calls the tests control.
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { AppError } from '../../src/errors.js'
import { createCachedStore, STALE_RECHECK_MS, type CacheOptions } from '../../src/store/cached-store.js'
import { deviceId, type Device, type DeviceKeys, type DeviceStore } from '../../src/store/store.js'

const A: Device = { productKey: 'P1', deviceKey: 'a', deviceSecret: 'secret-a', enabled: true }
const B: Device = { productKey: 'P1', deviceKey: 'b', deviceSecret: 'secret-b', enabled: true }

/** A store over a map; `down` makes every lookup fail as a real backend's outage does; `calls` counts lookups. */
function fakeStore (devices: Device[]) {
  const rows = new Map(devices.map((d) => [deviceId(d.productKey, d.deviceKey), d]))
  const state = { down: false, calls: 0, batchCalls: 0, gate: undefined as Promise<void> | undefined, closed: false }
  const fail = (): never => { throw new AppError('STORE_UNAVAILABLE', 'the device database did not answer (connect ECONNREFUSED); retry shortly') }
  const store: DeviceStore = {
    kind: 'fake',
    async findDevice (productKey, deviceKey) {
      state.calls++
      await state.gate
      if (state.down) fail()
      return rows.get(deviceId(productKey, deviceKey))
    },
    async findDevices (keys: readonly DeviceKeys[]) {
      state.batchCalls++
      if (state.down) fail()
      return keys.map((k) => rows.get(deviceId(k.productKey, k.deviceKey)))
    },
    async checkHealth () {
      return state.down
        ? { ok: false, kind: 'fake', detail: 'the device database did not answer' }
        : { ok: true, kind: 'fake', detail: `${rows.size} devices`, devices: rows.size }
    },
    async close () { state.closed = true }
  }
  return { store, rows, state }
}

const OPTIONS: CacheOptions = { maxEntries: 100, ttlMs: 60_000, negativeTtlMs: 60_000, negativeMaxEntries: 100, staleMs: 60_000 }

t.test('a cached device is answered without asking the store again; hits and misses are counted', async (t) => {
  const { store, state } = fakeStore([A])
  const cached = createCachedStore(store, OPTIONS)
  t.teardown(() => cached.close())
  t.same(await cached.findDevice('P1', 'a'), A)
  t.same(await cached.findDevice('P1', 'a'), A)
  t.equal(state.calls, 1)
  t.match((await cached.checkHealth()).cache, { size: 1, maxEntries: 100, hits: 1, misses: 1, hitRate: 0.5, staleHits: 0, failures: 0 })
  t.same(cached.cacheStats?.(), { hits: 1, misses: 1 }, 'the counts /metrics reads')
})

t.test('the hit rate is 0 before the first lookup', async (t) => {
  const cached = createCachedStore(fakeStore([]).store, OPTIONS)
  t.teardown(() => cached.close())
  t.match((await cached.checkHealth()).cache, { hitRate: 0, size: 0 })
})

t.test('concurrent misses for one device become one lookup', async (t) => {
  const { store, state } = fakeStore([A])
  let open = (): void => {}
  state.gate = new Promise((resolve) => { open = resolve })
  const cached = createCachedStore(store, OPTIONS)
  t.teardown(() => cached.close())
  const answers = Array.from({ length: 20 }, async () => cached.findDevice('P1', 'a'))
  open()
  t.same(await Promise.all(answers), Array.from({ length: 20 }, () => A))
  t.equal(state.calls, 1)
  t.match((await cached.checkHealth()).cache, { hits: 19, misses: 1 }, 'the lookups that joined the one query count as hits')
})

t.test('an unknown device is remembered for CACHE_NEGATIVE_TTL_MS, or not at all with 0', async (t) => {
  const { store, state, rows } = fakeStore([])
  const cached = createCachedStore(store, { ...OPTIONS, negativeTtlMs: 30 })
  t.teardown(() => cached.close())
  t.equal(await cached.findDevice('P1', 'a'), undefined)
  t.equal(await cached.findDevice('P1', 'a'), undefined)
  t.equal(state.calls, 1, 'the second lookup was answered by the negative entry')
  rows.set(deviceId('P1', 'a'), A)
  await sleep(60)
  t.same(await cached.findDevice('P1', 'a'), A, 'a device added is found once the negative entry has expired')

  const uncached = createCachedStore(fakeStore([]).store, { ...OPTIONS, negativeTtlMs: 0 })
  t.teardown(() => uncached.close())
  t.equal(await uncached.findDevice('P1', 'x'), undefined)
  t.match((await uncached.checkHealth()).cache, { size: 0 }, 'nothing is kept for an unknown device')
})

t.test('a change in the store is served once the entry is older than the TTL', async (t) => {
  const { store, rows } = fakeStore([A])
  const cached = createCachedStore(store, { ...OPTIONS, ttlMs: 30 })
  t.teardown(() => cached.close())
  t.equal((await cached.findDevice('P1', 'a'))?.deviceSecret, 'secret-a')
  rows.set(deviceId('P1', 'a'), { ...A, deviceSecret: 'rotated', enabled: false })
  await sleep(60)
  t.match(await cached.findDevice('P1', 'a'), { deviceSecret: 'rotated', enabled: false })
})

t.test('while the store is down, an expired entry answers until CACHE_STALE_MS past its TTL; the store is tried again at most every second per device', async (t) => {
  const { store, state } = fakeStore([A, B])
  const cached = createCachedStore(store, { ...OPTIONS, ttlMs: 30, staleMs: 60_000 })
  t.teardown(() => cached.close())
  await cached.findDevice('P1', 'a')
  state.down = true
  await sleep(60)
  const calls = state.calls
  t.same(await cached.findDevice('P1', 'a'), A, 'stale, but answered')
  t.same(await cached.findDevice('P1', 'a'), A, 'answered again without a new attempt')
  t.equal(state.calls, calls + 1)
  t.ok(STALE_RECHECK_MS >= 1000)
  await t.rejects(cached.findDevice('P1', 'b'), { code: 'STORE_UNAVAILABLE' }, 'a device never cached fails')
  const health = await cached.checkHealth()
  t.match(health, { ok: false, detail: /did not answer; the 1 cached devices keep signing/, cache: { staleHits: 2, failures: 1 } })
})

t.test('an entry past TTL + CACHE_STALE_MS no longer answers while the store is down', async (t) => {
  const { store, state } = fakeStore([A])
  const cached = createCachedStore(store, { ...OPTIONS, ttlMs: 20, staleMs: 10 })
  t.teardown(() => cached.close())
  await cached.findDevice('P1', 'a')
  state.down = true
  await sleep(60)
  await t.rejects(cached.findDevice('P1', 'a'), { code: 'STORE_UNAVAILABLE' })
})

t.test('findDevices asks the store once for all the misses of a batch, and caches the answers', async (t) => {
  const { store, state } = fakeStore([A, B])
  const cached = createCachedStore(store, OPTIONS)
  t.teardown(() => cached.close())
  t.same(await cached.findDevices([]), [])
  await cached.findDevice('P1', 'a')
  const keys = [{ productKey: 'P1', deviceKey: 'a' }, { productKey: 'P1', deviceKey: 'b' }, { productKey: 'P1', deviceKey: 'nobody' }, { productKey: 'P1', deviceKey: 'b' }]
  t.same(await cached.findDevices(keys), [A, B, undefined, B])
  t.equal(state.batchCalls, 1)
  t.same(await cached.findDevices(keys), [A, B, undefined, B], 'all from the cache now')
  t.equal(state.batchCalls, 1)
  t.equal(state.calls, 1)
  t.match((await cached.checkHealth()).cache, { hits: 5, misses: 4 })
})

t.test('findDevices with negative caching off does not keep unknown devices', async (t) => {
  const { store, state } = fakeStore([A])
  const cached = createCachedStore(store, { ...OPTIONS, negativeTtlMs: 0 })
  t.teardown(() => cached.close())
  await cached.findDevices([{ productKey: 'P1', deviceKey: 'nobody' }])
  await cached.findDevices([{ productKey: 'P1', deviceKey: 'nobody' }])
  t.equal(state.batchCalls, 2)
})

t.test('findDevices while the store is down: each device with a usable entry is answered from it, only the others fail', async (t) => {
  const { store, state } = fakeStore([A, B])
  const cached = createCachedStore(store, { ...OPTIONS, ttlMs: 30 })
  t.teardown(() => cached.close())
  await cached.findDevices([{ productKey: 'P1', deviceKey: 'a' }])
  state.down = true
  await sleep(60)
  t.same(await cached.findDevices([{ productKey: 'P1', deviceKey: 'a' }]), [A])
  const mixed = await cached.findDevices([{ productKey: 'P1', deviceKey: 'a' }, { productKey: 'P1', deviceKey: 'b' }])
  t.same(mixed[0], A, 'the stale entry answers')
  t.match(mixed[1], { code: 'STORE_UNAVAILABLE' }, 'the device never cached fails alone')
  t.ok(mixed[1] instanceof AppError)
  // A stale entry served by a failed single lookup answers a batch as stale too.
  await cached.findDevice('P1', 'a')
  t.same(await cached.findDevices([{ productKey: 'P1', deviceKey: 'a' }]), [A])
  t.match((await cached.checkHealth()).cache, { staleHits: 4, failures: 1 })
})

t.test('findDevices while the store is down: fresh entries answer, and a device whose lookup failed is tried again at most every second', async (t) => {
  const { store, state } = fakeStore([A, B])
  const cached = createCachedStore(store, { ...OPTIONS, ttlMs: 30 })
  t.teardown(() => cached.close())
  await cached.findDevices([{ productKey: 'P1', deviceKey: 'a' }])
  state.down = true
  await sleep(60)
  const calls = state.batchCalls
  t.same(await cached.findDevices([{ productKey: 'P1', deviceKey: 'a' }]), [A])
  t.same(await cached.findDevices([{ productKey: 'P1', deviceKey: 'a' }]), [A])
  t.equal(state.batchCalls, calls + 1, 'the second batch was answered by the stale entry without a new attempt')
})

t.test('findDevices while the store is down: a fresh entry answers though the other devices of the batch cannot be looked up', async (t) => {
  const { store, state } = fakeStore([A, B])
  const cached = createCachedStore(store, OPTIONS)
  t.teardown(() => cached.close())
  await cached.findDevice('P1', 'a')
  state.down = true
  const answers = await cached.findDevices([{ productKey: 'P1', deviceKey: 'b' }, { productKey: 'P1', deviceKey: 'a' }, { productKey: 'P1', deviceKey: 'b' }])
  t.match(answers, [{ code: 'STORE_UNAVAILABLE' }, A, { code: 'STORE_UNAVAILABLE' }])
  t.match((await cached.checkHealth()).cache, { failures: 2 })
})

t.test('findDevices passes on a failure that is not the store being unavailable (a bug)', async (t) => {
  const { store } = fakeStore([A])
  const cached = createCachedStore({ ...store, findDevices: async () => { throw new TypeError('boom') } }, OPTIONS)
  t.teardown(() => cached.close())
  await t.rejects(cached.findDevices([{ productKey: 'P1', deviceKey: 'a' }]), TypeError)
})

t.test('unknown devices are kept apart: a flood of made-up keys never evicts a cached device', async (t) => {
  const { store, state } = fakeStore([A, B])
  const cached = createCachedStore(store, { ...OPTIONS, maxEntries: 2, negativeMaxEntries: 5 })
  t.teardown(() => cached.close())
  await cached.findDevice('P1', 'a')
  await cached.findDevices([{ productKey: 'P1', deviceKey: 'b' }])
  for (let i = 0; i < 50; i++) await cached.findDevice('P1', `junk-${i}`)
  await cached.findDevices(Array.from({ length: 50 }, (_, i) => ({ productKey: 'P1', deviceKey: `junk-batch-${i}` })))
  t.match((await cached.checkHealth()).cache, { size: 2, unknown: 5, maxUnknown: 5 })
  state.down = true
  t.same(await cached.findDevices([{ productKey: 'P1', deviceKey: 'a' }, { productKey: 'P1', deviceKey: 'b' }]), [A, B], 'both still cached')
  t.same(await cached.findDevice('P1', 'a'), A)
  t.equal(await cached.findDevice('P1', 'junk-batch-49'), undefined, 'a recent unknown device is still remembered')
})

t.test('a device removed from the store is forgotten, and remembered as unknown', async (t) => {
  const { store, rows, state } = fakeStore([A, B])
  const cached = createCachedStore(store, { ...OPTIONS, ttlMs: 20 })
  t.teardown(() => cached.close())
  await cached.findDevice('P1', 'a')
  await cached.findDevices([{ productKey: 'P1', deviceKey: 'b' }])
  rows.clear()
  await sleep(40)
  t.equal(await cached.findDevice('P1', 'a'), undefined)
  t.same(await cached.findDevices([{ productKey: 'P1', deviceKey: 'b' }]), [undefined])
  const calls = state.calls + state.batchCalls
  state.down = true
  t.equal(await cached.findDevice('P1', 'a'), undefined, 'answered by the unknown cache, not by the old entry')
  t.same(await cached.findDevices([{ productKey: 'P1', deviceKey: 'a' }, { productKey: 'P1', deviceKey: 'b' }]), [undefined, undefined])
  t.equal(state.calls + state.batchCalls, calls)
  t.match((await cached.checkHealth()).cache, { size: 0, unknown: 2 })
})

t.test('with CACHE_NEGATIVE_MAX_ENTRIES=0 no unknown device is remembered', async (t) => {
  const { store, state } = fakeStore([])
  const cached = createCachedStore(store, { ...OPTIONS, negativeMaxEntries: 0 })
  t.teardown(() => cached.close())
  await cached.findDevice('P1', 'x')
  await cached.findDevice('P1', 'x')
  t.equal(state.calls, 2)
  t.match((await cached.checkHealth()).cache, { unknown: 0, maxUnknown: 0 })
})

t.test('close() closes the store behind the cache', async (t) => {
  const { store, state } = fakeStore([A])
  const cached = createCachedStore(store, OPTIONS)
  await cached.close()
  t.equal(state.closed, true)
  t.equal(cached.kind, 'fake')
})
