// Two service processes share one real Redis: one per-device limit between them; with Redis gone they go on, counting alone, loudly.
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import t from 'tap'
import { REDIS_COMMAND_TIMEOUT_MS } from '../../src/plugins/rate-limits.js'
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

t.test('a Redis that hangs with its connection up (SIGSTOP): the breaker opens at the first timeout, no request waits for Redis, /readyz and /metrics say counting is local, and sharing resumes by itself', async (t) => {
  const redis = await startRedis(t)
  // Both limits on: the per-caller count goes to Redis first (open mode has it off by default).
  const server = await start(t, { RATE_LIMIT_REDIS_URL: redis.url, RATE_LIMIT_PER_DEVICE: '1000', RATE_LIMIT_PER_CALLER: '100000' })
  await waitFor(server, /rate-limit counters shared through Redis/)
  const readyz = async (): Promise<unknown> => (await (await fetch(`http://127.0.0.1:${server.port}/readyz`)).json() as { access: { rateLimits: unknown } }).access.rateLimits
  const metric = async (name: string): Promise<string | undefined> =>
    new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text())?.[1]
  t.equal(await metric('enos_signer_rate_limit_shared'), '1')
  t.equal(await metric('enos_signer_rate_limit_breaker_openings_total'), '0')
  t.match(await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text(), /^# TYPE enos_signer_rate_limit_breaker_openings_total counter$/m, 'a _total name is a counter')
  const admin = new Redis(redis.url)
  const pid = Number(/process_id:(\d+)/.exec(await admin.info('server'))?.[1])
  admin.disconnect()
  // The process stops; its socket stays open, so the service's connection stays 'ready'.
  process.kill(pid, 'SIGSTOP')
  t.teardown(() => { try { process.kill(pid, 'SIGCONT') } catch {} })

  // Both limits on (per caller, per device): before the breaker, each request waited the command timeout twice.
  const requests = 20
  const started = performance.now()
  const statuses: number[] = []
  // The first few at once: those already waiting on Redis when the breaker opens go on locally too.
  const together = 5
  statuses.push(...await Promise.all(Array.from({ length: together }, async () => (await sign(server.port, device)).status)))
  for (let i = together; i < requests; i++) statuses.push((await sign(server.port, device)).status)
  const elapsed = performance.now() - started
  t.same(statuses, Array(requests).fill(200), 'signed, counted in this process')
  t.ok(elapsed < requests * REDIS_COMMAND_TIMEOUT_MS, `${requests} requests in ${Math.round(elapsed)} ms: fewer than one command timeout each (only the first ones waited, once)`)
  await waitFor(server, /"problem":"Command timed out"[^\n]*rate-limit Redis not answering: counting in this process alone/)
  t.match(await readyz(), { shared: false, redis: 'unresponsive' })
  t.equal(await metric('enos_signer_rate_limit_shared'), '0')
  t.equal(await metric('enos_signer_rate_limit_breaker_openings_total'), '1')

  process.kill(pid, 'SIGCONT')
  await waitFor(server, /rate-limit Redis answering again: counters shared through Redis/)
  t.match(await readyz(), { shared: true, redis: 'up' })
  t.equal(await metric('enos_signer_rate_limit_shared'), '1')
  const other = { productKey: 'Ab12Cd34', deviceKey: 'boiler-0001' }
  t.equal((await sign(server.port, other)).status, 200)
  const again = new Redis(redis.url)
  t.teardown(() => again.disconnect())
  t.same((await again.keys('*:device:*')).map((key) => key.replace(/^.*:device:\d+:/, '')), ['Ab12Cd34/boiler-0001'], 'counted in Redis again; the device signed while Redis hung was counted locally, not there')
  t.equal(await metric('enos_signer_rate_limit_breaker_openings_total'), '1', 'opened once for the whole hang')

  // Hung again soon after (a flapping Redis): opened and closed again, quietly (one warning per 10 s).
  process.kill(pid, 'SIGSTOP')
  t.equal((await sign(server.port, other)).status, 200)
  t.match(await readyz(), { shared: false, redis: 'unresponsive' })
  t.equal(await metric('enos_signer_rate_limit_breaker_openings_total'), '2')
  process.kill(pid, 'SIGCONT')
  while (((await readyz()) as { shared: boolean }).shared !== true) await sleep(50)
  t.equal(await metric('enos_signer_rate_limit_shared'), '1')
  t.equal(server.output().match(/rate-limit Redis not answering/g)?.length, 1, 'one warning')
  t.equal(server.output().match(/rate-limit Redis answering again/g)?.length, 1, 'and one line for its closing')
  server.child.kill('SIGTERM')
  t.same(await server.exit, [0, null])
})

t.test('a Redis that is not there at startup: the service starts, counts alone, and says so, once', async (t) => {
  const server = await start(t, { RATE_LIMIT_REDIS_URL: 'redis://127.0.0.1:1', RATE_LIMIT_PER_DEVICE: '2' })
  await waitFor(server, /rate-limit Redis unreachable/)
  t.same([(await sign(server.port, device)).status, (await sign(server.port, device)).status, (await sign(server.port, device)).status], [200, 200, 429])
  // Time for a few more connection attempts (every 250, 500, 750 ms ...), each refused: one warning per 10 s, not one each.
  await sleep(1500)
  t.equal(server.output().match(/rate-limit Redis unreachable/g)?.length, 1, 'warned once')
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
