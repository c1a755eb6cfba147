// Two service processes share one real Redis: one per-device limit between them; with Redis gone they go on, counting alone, loudly.
import { Redis } from 'ioredis'
import t from 'tap'
import { buildTestApp } from '../helper.js'
import { CHILD_BUDGET_MS, sign, start, waitFor } from './process-helper.js'
import { startRedis } from './redis-helper.js'

t.setTimeout(4 * CHILD_BUDGET_MS)

const device = { productKey: '123', deviceKey: 'test' }

t.test('two replicas sharing one Redis enforce one per-device limit between them', async (t) => {
  const redis = await startRedis(t)
  const env = { RATE_LIMIT_REDIS_URL: redis.url, RATE_LIMIT_PER_DEVICE: '30' }
  const [a, b] = await Promise.all([start(t, env), start(t, env)])
  if (a === undefined || b === undefined) throw new Error('no replicas')
  await Promise.all([waitFor(a, /rate-limit counters shared through Redis/), waitFor(b, /rate-limit counters shared through Redis/)])
  const statuses: number[] = []
  for (let i = 0; i < 31; i++) statuses.push((await sign(i % 2 === 0 ? a.port : b.port, device)).status)
  t.same(statuses.slice(0, 30), Array(30).fill(200), '30 requests, spread over both, signed')
  t.equal(statuses[30], 429, 'the 31st, whichever replica gets it, is limited')
  t.equal((await sign(a.port, device)).status, 429)
  t.equal((await sign(b.port, device)).status, 429)
  t.match(await (await fetch(`http://127.0.0.1:${a.port}/readyz`)).json(), { access: { rateLimits: { shared: true, redis: 'up' } } })

  await redis.kill()
  const [res] = await Promise.all([sign(a.port, { productKey: 'Ab12Cd34', deviceKey: 'boiler-0001' }), waitFor(a, /rate-limit Redis unreachable: counting in this process alone/)])
  t.equal(res.status, 200, 'Redis gone: still signing, with local counters')
  t.match(await (await fetch(`http://127.0.0.1:${a.port}/readyz`)).json(), { status: 'ready', access: { rateLimits: { shared: false, redis: 'down' } } })
  let limited = 0
  for (let i = 0; i < 31; i++) if ((await sign(a.port, { productKey: 'Ab12Cd34', deviceKey: 'boiler-0002' })).status === 429) limited++
  t.equal(limited, 1, 'and the limit still holds, per process')

  // Redis back on the same port: shared again, by itself.
  const back = await startRedis(t, redis.port)
  await waitFor(a, /rate-limit counters shared through Redis[\s\S]*rate-limit counters shared through Redis/)
  t.match(await (await fetch(`http://127.0.0.1:${a.port}/readyz`)).json(), { access: { rateLimits: { shared: true } } })
  for (const replica of [a, b]) replica.child.kill('SIGTERM')
  t.same(await a.exit, [0, null])
  t.same(await b.exit, [0, null])
  await back.kill()
})

t.test('a Redis that stops answering while connected: each request waits at most its command timeout, then counts alone, loudly', async (t) => {
  const redis = await startRedis(t)
  const server = await start(t, { RATE_LIMIT_REDIS_URL: redis.url, RATE_LIMIT_PER_DEVICE: '30' })
  await waitFor(server, /rate-limit counters shared through Redis/)
  const admin = new Redis(redis.url)
  t.teardown(() => admin.disconnect())
  // Every client's commands are held for 5 s; the connection stays up, so the service still takes Redis as ready.
  await admin.call('CLIENT', 'PAUSE', '5000')
  const [res] = await Promise.all([sign(server.port, device), waitFor(server, /"problem":"Command timed out"[^\n]*rate-limit Redis unreachable/)])
  t.equal(res.status, 200, 'signed, counted in this process')
  server.child.kill('SIGTERM')
  t.same(await server.exit, [0, null])
})

t.test('a Redis that is not there at startup: the service starts, counts alone, and says so', async (t) => {
  const server = await start(t, { RATE_LIMIT_REDIS_URL: 'redis://127.0.0.1:1', RATE_LIMIT_PER_DEVICE: '2' })
  await waitFor(server, /rate-limit Redis unreachable/)
  t.same([(await sign(server.port, device)).status, (await sign(server.port, device)).status, (await sign(server.port, device)).status], [200, 200, 429])
  server.child.kill('SIGTERM')
  t.same(await server.exit, [0, null])
})

t.test('with Redis: made-up deviceKeys make no keys there; a batch on one replica and /sign on another share one budget per device, and the items budget', async (t) => {
  const redis = await startRedis(t)
  const env = { RATE_LIMIT_REDIS_URL: redis.url, RATE_LIMIT_PER_DEVICE: '30', RATE_LIMIT_BATCH_ITEMS_PER_CALLER: '100', RATE_LIMIT_PER_CALLER: '0' }
  const [a, b] = [await buildTestApp(t, env), await buildTestApp(t, env)]
  for (const app of [a, b]) {
    while ((await app.inject({ method: 'GET', url: '/readyz' })).json().access.rateLimits.shared !== true) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  const admin = new Redis(redis.url)
  t.teardown(() => admin.disconnect())

  for (let i = 0; i < 200; i++) await a.inject({ method: 'POST', url: '/sign', payload: { productKey: '123', deviceKey: `made-up-${i}` } })
  const madeUp = Array.from({ length: 50 }, (_, i) => ({ productKey: '123', deviceKey: `batch-made-up-${i}` }))
  t.same((await a.inject({ method: 'POST', url: '/sign/batch', payload: { devices: madeUp } })).json().summary, { total: 50, signed: 0, failed: 50 })
  const keys = await admin.keys('*')
  t.same(keys.filter((key) => key.includes('made-up')), [], 'no counter for a device that is not in the store')

  const batch = (await a.inject({ method: 'POST', url: '/sign/batch', payload: { devices: Array(40).fill(device) } })).json()
  t.same(batch.summary, { total: 40, signed: 30, failed: 10 }, 'one chunk counted in Redis: 30 of 40 signed')
  t.equal((await b.inject({ method: 'POST', url: '/sign', payload: device })).statusCode, 429, 'the other replica\'s /sign sees the batch\'s count')
  const stream = await b.inject({ method: 'POST', url: '/sign/batch', headers: { 'content-type': 'application/x-ndjson' }, payload: `${JSON.stringify({ productKey: 'Ab12Cd34', deviceKey: 'boiler-0001' })}\n`.repeat(20) })
  t.match(stream.body.trim().split('\n').at(-1), '{"summary":{"total":20,"signed":10,"failed":10}}', 'the open callers\' items budget (100) is shared too: 50 + 40 before, 10 left')
})

t.test('with Redis: POST /verify counts per device there, apart from the signing count of the same device', async (t) => {
  const redis = await startRedis(t)
  const app = await buildTestApp(t, { RATE_LIMIT_REDIS_URL: redis.url, RATE_LIMIT_VERIFY_PER_DEVICE: '2', RATE_LIMIT_PER_DEVICE: '1' })
  while ((await app.inject({ method: 'GET', url: '/readyz' })).json().access.rateLimits.shared !== true) await new Promise((resolve) => setTimeout(resolve, 20))
  const signed = (await app.inject({ method: 'POST', url: '/sign', payload: { ...device, clientId: 'c1', timestamp: '1' } })).json()
  const body = { clientid: signed.mqttClientId, username: signed.mqttUsername, password: signed.mqttPassword }
  const results = []
  for (let i = 0; i < 3; i++) results.push((await app.inject({ method: 'POST', url: '/verify', payload: body })).json().result)
  t.same(results, ['allow', 'allow', 'deny'], 'the signing count (1, spent) is not the verify count (2)')
  const admin = new Redis(redis.url)
  t.teardown(() => admin.disconnect())
  t.match((await admin.keys('*verify-device*')), [/:123\/test$/])
})
