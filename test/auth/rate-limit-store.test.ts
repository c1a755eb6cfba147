// The counter store: Redis while it answers, this process's own counters the moment it does not.
import t from 'tap'
import { REDIS_KEY_PREFIX, fallbackStore } from '../../src/auth/rate-limit-store.js'

/** A stand-in for an ioredis client that answers the plugin's rate-limit script, or fails like a dead connection. */
function fakeRedis (): { client: object, keys: string[], failing: { now: boolean } } {
  const keys: string[] = []
  const failing = { now: false }
  const counts = new Map<string, number>()
  const client = {
    defineCommand () {},
    rateLimit (key: string, timeWindow: number, _max: number, _continue: boolean, _backoff: boolean, callback: (err: Error | null, result?: [number, number]) => void) {
      keys.push(key)
      if (failing.now) return callback(new Error('Connection is closed.'))
      counts.set(key, (counts.get(key) ?? 0) + 1)
      callback(null, [counts.get(key) as number, timeWindow])
    }
  }
  return { client, keys, failing }
}

const incr = async (store: { incr: (...args: never[]) => void }, key: string): Promise<number> => new Promise((resolve, reject) => {
  (store.incr as (key: string, cb: (err: Error | null, r?: { current: number }) => void, w: number, m: number) => void)(key, (err, result) => err === null ? resolve(result?.current ?? -1) : reject(err), 60_000, 10)
})

t.test('counts in Redis while it is up, and in this process when a command fails, saying so', async (t) => {
  const redis = fakeRedis()
  const failures: Array<Error | null> = []
  const Store = fallbackStore({ redis: redis.client, isUp: () => true, failed: (err) => { failures.push(err) } })
  const store = new Store().child({ continueExceeding: false, exponentialBackoff: false, routeInfo: {} })
  t.equal(await incr(store, 'device:P1/d1'), 1)
  t.equal(await incr(store, 'device:P1/d1'), 2)
  t.ok(redis.keys.every((key) => key.startsWith(REDIS_KEY_PREFIX)), 'under the service\'s own prefix')
  redis.failing.now = true
  t.equal(await incr(store, 'device:P1/d1'), 1, 'the local count starts afresh')
  t.equal(await incr(store, 'device:P1/d1'), 2)
  t.equal(failures.length, 2)
  t.match(failures[0], { message: 'Connection is closed.' })
})

t.test('counts locally without asking Redis while it is down, and without Redis at all', async (t) => {
  const redis = fakeRedis()
  const down = new (fallbackStore({ redis: redis.client, isUp: () => false, failed () {} }))()
  t.equal(await incr(down, 'k'), 1)
  t.same(redis.keys, [], 'Redis is not asked')
  const alone = new (fallbackStore({ redis: undefined, isUp: () => false, failed () {} }))()
  t.equal(await incr(alone.child({}), 'k'), 1)
})
