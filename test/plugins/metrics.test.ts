// GET /metrics scraped over real HTTP after real traffic: each counter moved by exactly what was sent, and no label names a device or a secret.
import { copyFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { EXAMPLE_STORE_FILE } from '../../src/config.js'
import type { Device, DeviceStore } from '../../src/store/store.js'
import { EXAMPLE, EXAMPLE_SECRETS, buildTestApp, makeToken, tempDir, unavailableStore, writeTokenFile } from '../helper.js'

interface Series { name: string, labels: Record<string, string>, value: number }

/** Prometheus' text format, one series a line: `name{label="value",...} number`. */
function parseMetrics (text: string): Series[] {
  return text.split('\n').filter((line) => line !== '' && !line.startsWith('#')).map((line) => {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match === null) throw new Error(`not a series: ${line}`)
    const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]))
    return { name: match[1] as string, labels, value: Number(match[3]) }
  })
}

interface Scrape { text: string, series: Series[], contentType: string | null, sum: (name: string, labels?: Record<string, string>) => number }

async function scrape (base: string): Promise<Scrape> {
  const res = await fetch(`${base}/metrics`)
  if (res.status !== 200) throw new Error(`GET /metrics: ${res.status}`)
  const text = await res.text()
  const series = parseMetrics(text)
  /** The total of the series of that name whose labels include all of `labels`. */
  const sum = (name: string, labels: Record<string, string> = {}): number => series
    .filter((s) => s.name === name && Object.entries(labels).every(([key, value]) => s.labels[key] === value))
    .reduce((total, s) => total + s.value, 0)
  return { text, series, contentType: res.headers.get('content-type'), sum }
}

async function listen (t: Parameters<typeof buildTestApp>[0], env: Record<string, string>, store?: DeviceStore): Promise<{ app: FastifyInstance, base: string }> {
  const app = await buildTestApp(t, env, store === undefined ? {} : { store })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  return { app, base: `http://127.0.0.1:${address.port}` }
}

function post (base: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
}

const example = { productKey: EXAMPLE.productKey, deviceKey: EXAMPLE.deviceKey }
const boiler = { productKey: 'Ab12Cd34', deviceKey: 'boiler-0001' }

t.test('after real traffic each counter moved by exactly what was sent', async (t) => {
  const storeFile = join(tempDir(t, 'metrics-'), 'devices.json')
  copyFileSync(EXAMPLE_STORE_FILE, storeFile)
  const { app, base } = await listen(t, { STORE_FILE: storeFile, RATE_LIMIT_PER_DEVICE: '3' })

  const statuses: number[] = []
  const send = async (res: Promise<Response>): Promise<void> => {
    const answer = await res
    await answer.arrayBuffer()
    statuses.push(answer.status)
  }
  for (let i = 0; i < 3; i++) await send(post(base, '/sign', example))
  await send(post(base, '/sign', example))
  await send(post(base, '/sign', { ...boiler, signMethod: 'SHA256' }))
  await send(post(base, '/sign', { productKey: '123', deviceKey: 'nobody' }))
  await send(post(base, '/sign', { productKey: 'Ab12Cd34', deviceKey: 'retired-0003' }))
  await send(post(base, '/sign', { ...boiler, signMethod: 'hmacsha512' }))
  await send(post(base, '/sign', { productKey: '123' }))
  await send(post(base, '/sign/batch', { devices: [boiler, { productKey: 'Ab12Cd34', deviceKey: 'boiler-0002' }, { productKey: '123', deviceKey: 'nobody' }] }))
  await send(fetch(`${base}/no/such/path?deviceKey=test`))
  await send(fetch(`${base}/healthz`))
  t.same(statuses, [200, 200, 200, 429, 200, 404, 403, 400, 400, 200, 404, 200], 'the traffic got the answers it should')

  writeFileSync(storeFile, JSON.stringify({ devices: [{ productKey: '123', deviceKey: 'test', deviceSecret: 'deviceSecret' }] }))
  await app.reload()
  writeFileSync(storeFile, '{ not json')
  await app.reload()

  const m = await scrape(base)
  t.match(m.contentType, /^text\/plain; version=0\.0\.4/)
  const requests = (route: string, status: string): number => m.sum('enos_signer_http_request_duration_seconds_count', { method: route === '/healthz' || route === 'unmatched' ? 'GET' : 'POST', route, status_code: status })
  t.equal(requests('/sign', '200'), 4)
  t.equal(requests('/sign', '429'), 1)
  t.equal(requests('/sign', '404'), 1)
  t.equal(requests('/sign', '403'), 1)
  t.equal(requests('/sign', '400'), 2)
  t.equal(requests('/sign/batch', '200'), 1)
  t.equal(requests('unmatched', '404'), 1, 'an unknown path is counted under one route value, not its URL')
  t.equal(requests('/healthz', '200'), 1)
  t.equal(m.sum('enos_signer_http_request_duration_seconds_count'), 12, 'the scrape itself is counted once it is answered')
  t.equal(m.sum('enos_signer_http_request_duration_seconds_bucket', { route: '/sign', status_code: '200', le: '+Inf' }), 4, 'the histogram has every request in its last bucket')

  t.equal(m.sum('enos_signer_signatures_total', { sign_method: 'hmacsha1', outcome: 'signed' }), 3)
  t.equal(m.sum('enos_signer_signatures_total', { sign_method: 'sha256', outcome: 'signed' }), 1, 'a method is counted under its normal name')
  t.equal(m.sum('enos_signer_signatures_total', { sign_method: 'hmacsha1', outcome: 'RATE_LIMITED' }), 1)
  t.equal(m.sum('enos_signer_signatures_total', { outcome: 'DEVICE_NOT_FOUND' }), 1)
  t.equal(m.sum('enos_signer_signatures_total', { outcome: 'DEVICE_DISABLED' }), 1)
  t.equal(m.sum('enos_signer_signatures_total', { sign_method: 'unsupported', outcome: 'UNSUPPORTED_SIGN_METHOD' }), 1, 'an unknown method is one label value')
  t.equal(m.sum('enos_signer_signatures_total'), 8, 'a body that failed validation names no device: not a signature')

  t.equal(m.sum('enos_signer_batch_items_total', { outcome: 'signed' }), 2)
  t.equal(m.sum('enos_signer_batch_items_total', { outcome: 'failed' }), 1)
  t.equal(m.sum('enos_signer_rate_limited_total', { route: '/sign', limit: 'device' }), 1)
  t.equal(m.sum('enos_signer_auth_failures_total'), 0, 'open: nobody refused')

  t.equal(m.sum('enos_signer_store_lookup_duration_seconds_count', { store: 'file', operation: 'find', result: 'ok' }), 7, 'the unsupported method never reaches the store; the rate-limited request does (a device is counted once found)')
  t.equal(m.sum('enos_signer_store_lookup_duration_seconds_count', { store: 'file', operation: 'find_many', result: 'ok' }), 1)
  t.equal(m.sum('enos_signer_store_devices_looked_up_total', { store: 'file', result: 'found' }), 8, 'a disabled device is found')
  t.equal(m.sum('enos_signer_store_devices_looked_up_total', { store: 'file', result: 'missing' }), 2)
  t.equal(m.sum('enos_signer_store_reloads_total', { store: 'file', outcome: 'reloaded' }), 1)
  t.equal(m.sum('enos_signer_store_reloads_total', { store: 'file', outcome: 'failed' }), 1)
  t.equal(m.sum('enos_signer_store_ready', { store: 'file' }), 1)
  t.equal(m.sum('enos_signer_store_devices', { store: 'file' }), 1, 'the devices of the version now served')
  t.ok(m.sum('enos_signer_store_loaded_timestamp_seconds') > Date.now() / 1000 - 3600)
  t.notOk(m.series.some((s) => s.name === 'enos_signer_store_cache_lookups_total'), 'the file store has no cache')

  t.ok(m.sum('process_resident_memory_bytes') > 0, 'process metrics')
  t.ok(m.series.some((s) => s.name === 'nodejs_eventloop_lag_p99_seconds'), 'Node metrics')
  t.equal(m.sum('enos_signer_info', { version: '0.1.0' }), 1)

  const labelValues = m.series.flatMap((s) => Object.values(s.labels))
  for (const secret of [...EXAMPLE_SECRETS, 'boiler-0001', 'boiler-0002', 'retired-0003', 'nobody', '/no/such/path', 'deviceKey=test']) {
    t.notOk(labelValues.some((value) => value.includes(secret)), `no label holds ${secret}`)
  }
  t.notOk(labelValues.includes('test'), 'no label holds the deviceKey test')
})

t.test('access refusals are counted by code, and the per-caller limit apart from the per-device one', async (t) => {
  const tokens = [makeToken('tool', ['sign'], ['Ab12Cd34']), makeToken('prober', ['sign:batch'], '*')]
  const { base } = await listen(t, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: writeTokenFile(t, tokens), RATE_LIMIT_PER_CALLER: '2' })
  const auth = (i: number): Record<string, string> => ({ authorization: `Bearer ${tokens[i]?.token as string}` })
  const statuses = [
    (await post(base, '/sign', boiler)).status,
    (await post(base, '/sign', boiler, { authorization: 'Bearer not-a-token' })).status,
    (await post(base, '/sign', example, auth(0))).status,
    (await post(base, '/sign', boiler, auth(1))).status,
    (await post(base, '/sign', boiler, auth(0))).status,
    (await post(base, '/sign', boiler, auth(0))).status
  ]
  t.same(statuses, [401, 401, 403, 403, 200, 429])
  const m = await scrape(base)
  t.equal(m.sum('enos_signer_auth_failures_total', { route: '/sign', code: 'UNAUTHENTICATED' }), 2)
  t.equal(m.sum('enos_signer_auth_failures_total', { route: '/sign', code: 'FORBIDDEN' }), 2)
  t.equal(m.sum('enos_signer_rate_limited_total', { route: '/sign', limit: 'caller' }), 1)
  t.equal(m.sum('enos_signer_rate_limited_total', { limit: 'device' }), 0)
  for (const { token } of tokens) t.notOk(m.text.includes(token), 'no token in the metrics')
  t.notOk(/tool|prober/.test(m.text), 'no caller name in the metrics')
})

t.test('a store that cannot answer: lookups counted as errors, not ready', async (t) => {
  const { base } = await listen(t, {}, unavailableStore())
  t.equal((await post(base, '/sign', example)).status, 503)
  t.equal((await post(base, '/sign/batch', { devices: [example] })).status, 200, 'a batch answers each item: this one failed')
  const m = await scrape(base)
  t.equal(m.sum('enos_signer_store_lookup_duration_seconds_count', { store: 'fake', operation: 'find_many', result: 'error' }), 1)
  t.equal(m.sum('enos_signer_store_lookup_duration_seconds_count', { store: 'fake', operation: 'find', result: 'error' }), 1)
  t.equal(m.sum('enos_signer_store_ready', { store: 'fake' }), 0)
  t.equal(m.sum('enos_signer_signatures_total', { outcome: 'STORE_UNAVAILABLE' }), 1)
  t.equal(m.sum('enos_signer_batch_items_total', { outcome: 'failed' }), 1)
  t.notOk(m.series.some((s) => s.name === 'enos_signer_store_devices'), 'no device count when the store cannot say')
})

t.test('a store with a cache: its hits and misses are read at each scrape', async (t) => {
  const device: Device = { ...example, deviceSecret: EXAMPLE.deviceSecret, enabled: true }
  const stats = { hits: 0, misses: 0 }
  const cached: DeviceStore = {
    kind: 'cached',
    findDevice: async () => { stats.hits++; return device },
    findDevices: async (keys) => keys.map(() => { stats.misses++; return undefined }),
    checkHealth: async () => ({ ok: true, kind: 'cached', detail: 'cached' }),
    cacheStats: () => ({ ...stats }),
    close: async () => {}
  }
  const { app, base } = await listen(t, {}, cached)
  t.equal((await post(base, '/sign', example)).status, 200)
  t.equal((await post(base, '/sign/batch', { devices: [boiler, boiler] })).status, 200)
  const m = await scrape(base)
  t.equal(m.sum('enos_signer_store_cache_lookups_total', { store: 'cached', result: 'hit' }), 1)
  t.equal(m.sum('enos_signer_store_cache_lookups_total', { store: 'cached', result: 'miss' }), 2)
  t.same(app.store.cacheStats?.(), { hits: 1, misses: 2 }, 'the app\'s store passes the figures on')
  t.equal(app.store.reload, undefined, 'a store without reload gets none')
})

t.test('METRICS_ENABLED=false: GET /metrics is 404 ROUTE_NOT_FOUND and the app works as before', async (t) => {
  const { app, base } = await listen(t, { METRICS_ENABLED: 'false' })
  await app.reload()
  const res = await fetch(`${base}/metrics`)
  t.equal(res.status, 404)
  t.match(await res.json(), { code: 'ROUTE_NOT_FOUND' })
  t.equal((await post(base, '/sign', example)).status, 200)
})
