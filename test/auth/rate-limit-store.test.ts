// The counters: fixed one-minute windows, nothing evicted within one; in a real Redis while it answers, in this process the moment it does not.
import { Redis } from 'ioredis'
import t from 'tap'
import { Counters, REDIS_KEY_PREFIX, type CounterKey, type SharedCounters } from '../../src/auth/rate-limit-store.js'
import { startRedis } from '../e2e/redis-helper.js'

const MINUTE = 60_000
const k = (key: string): CounterKey => ({ group: 'g', key })
const alone: SharedCounters = { redis: undefined, isUp: () => false, failed () {} }

t.test('counts each key in order within its window, and starts again from 0 in the next one', async (t) => {
  let now = 7 * MINUTE + 500
  const counters = new Counters('test', MINUTE, alone, () => now)
  t.same(await counters.add([k('a'), k('b'), k('a')]), { counts: [1, 1, 2], window: { endsAt: 8 * MINUTE } }, 'a key named twice counts twice')
  t.same((await counters.add([k('a')], [10])).counts, [12], 'by a given amount')
  now = 8 * MINUTE - 1
  t.same((await counters.add([k('a')])).counts, [13], 'the same window to its last millisecond')
  t.same((await counters.add([{ group: 'h', key: 'a' }])).counts, [1], 'the same key in another group is another counter')
  t.equal(counters.localKeys, 3)
  now = 8 * MINUTE
  t.same(await counters.add([k('a')]), { counts: [1], window: { endsAt: 9 * MINUTE } }, 'a new window')
  t.equal(counters.localKeys, 1, 'the old window is dropped whole')
})

t.test('a counter is never evicted within its window, whatever else is counted', async (t) => {
  const counters = new Counters('test', MINUTE, alone, () => 3 * MINUTE)
  for (let i = 0; i < 31; i++) await counters.add([k('device:P/real')])
  const others = Array.from({ length: 200_000 }, (_, i) => k(`made-up-${i}`))
  await counters.add(others)
  t.same((await counters.add([k('device:P/real')])).counts, [32], 'still counted after 200,000 other keys')
})

t.test('with a real Redis: counts there, under the service\'s prefix and the window\'s index, shared by two processes\' counters', async (t) => {
  const server = await startRedis(t)
  const redis = new Redis(server.url)
  t.teardown(() => redis.disconnect())
  await redis.ping()
  const failures: Error[] = []
  const shared: SharedCounters = { redis, isUp: () => redis.status === 'ready', failed: (err) => { failures.push(err) } }
  const now = 1000 * MINUTE + 10
  const a = new Counters('test', MINUTE, shared, () => now)
  const b = new Counters('test', MINUTE, shared, () => now)
  t.same(await a.add([k('k'), k('k'), k('j')], [1, 2, 5]), { counts: [1, 3, 5], window: { endsAt: 1001 * MINUTE } })
  t.same((await b.add([k('k')])).counts, [4], 'the other replica sees the same count')
  t.same((await new Counters('other-limit', MINUTE, shared, () => now).add([k('k')])).counts, [1], 'another limit counts apart')
  t.equal(await redis.get(`${REDIS_KEY_PREFIX}test:1000:g/k`), '4')
  const ttl = await redis.pttl(`${REDIS_KEY_PREFIX}test:1000:g/k`)
  t.ok(ttl > MINUTE && ttl <= 2 * MINUTE, `expires by itself (${ttl} ms)`)
  t.equal(a.localKeys, 0, 'nothing counted locally')
  t.same(failures, [])

  // Every client's commands held: the command times out, and the count goes on locally, saying so.
  const slow = new Redis(server.url, { commandTimeout: 100, maxRetriesPerRequest: 0 })
  t.teardown(() => slow.disconnect())
  await slow.ping()
  const admin = new Redis(server.url)
  t.teardown(() => admin.disconnect())
  const c = new Counters('test', MINUTE, { redis: slow, isUp: () => true, failed: (err) => { failures.push(err) } }, () => now)
  await admin.call('CLIENT', 'PAUSE', '1000')
  t.same((await c.add([k('k')])).counts, [1], 'the local count starts afresh')
  t.match(failures, [{ message: /timed out/ }])
})

t.test('a Redis that is down is not asked', async (t) => {
  const asked: string[] = []
  const redis = { defineCommand () {}, enosSignerCount () { asked.push('count') } }
  const counters = new Counters('test', MINUTE, { redis, isUp: () => false, failed () {} })
  t.same((await counters.add([k('k')])).counts, [1])
  t.same(asked, [])
})
