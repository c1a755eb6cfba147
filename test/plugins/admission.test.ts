// Admission control over real HTTP: the OVERLOADED answer, probes, Connection: close, fairness, the in-flight bound, metrics.
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { Agent, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http'
import t from 'tap'
import type { AppDeps } from '../../src/app.js'
import type { DeviceStore } from '../../src/store/store.js'
import { EXAMPLE, buildTestApp, createLogSink, makeToken, writeTokenFile, type Teardown } from '../helper.js'

interface Answer { status: number, headers: IncomingHttpHeaders, body: string }

/** A request on a real connection; `agent` keeps connections alive, so the server's Connection header shows. */
async function send (port: number, method: string, path: string, options: { body?: object, headers?: Record<string, string>, agent?: Agent } = {}): Promise<Answer> {
  const body = options.body === undefined ? undefined : JSON.stringify(options.body)
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      method,
      path,
      agent: options.agent ?? false,
      headers: { ...(body !== undefined && { 'content-type': 'application/json' }), ...options.headers }
    }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

const SIGN = { productKey: EXAMPLE.productKey, deviceKey: EXAMPLE.deviceKey }

/** Pressure the test sets: how long the loop reports itself busy, and the admission clock. */
function pressure (): { busy: number, now: number, deps: AppDeps } {
  const state = { busy: 0, now: 0, deps: {} as AppDeps }
  state.deps = { admission: { loopBusy: () => state.busy, clock: () => state.now } }
  return state
}

async function listening (t: Teardown, env: Record<string, string>, deps: AppDeps): Promise<number> {
  const app = await buildTestApp(t, { OVERLOAD_BUSY_MS: '50', OVERLOAD_QUEUE_MS: '0', ...env }, deps)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('not listening on TCP')
  return address.port
}

t.test('POST /sign – loop busy past OVERLOAD_BUSY_MS -> 503 OVERLOADED, Retry-After drawn from the range, no log line per answer', async (t) => {
  const p = pressure()
  const sink = createLogSink()
  const port = await listening(t, { LOG_LEVEL: 'info', OVERLOAD_RETRY_AFTER_MIN_S: '2', OVERLOAD_RETRY_AFTER_MAX_S: '40' }, { ...p.deps, logStream: sink.stream })
  t.equal((await send(port, 'POST', '/sign', { body: SIGN })).status, 200)
  p.busy = 1000
  const seen = new Set<string>()
  for (let i = 0; i < 20; i++) {
    const answer = await send(port, 'POST', '/sign', { body: SIGN })
    t.equal(answer.status, 503)
    const seconds = Number(answer.headers['retry-after'])
    t.ok(Number.isInteger(seconds) && seconds >= 2 && seconds <= 40, `Retry-After ${seconds} within 2..40`)
    seen.add(String(seconds))
    t.equal(answer.headers.connection, 'close')
    t.match(answer.headers['x-request-id'], /\S/)
    t.equal(answer.headers['content-type'], 'application/json; charset=utf-8')
    t.same(JSON.parse(answer.body), {
      statusCode: 503,
      code: 'OVERLOADED',
      error: 'Service Unavailable',
      message: `the service has more requests than it can answer now; retry after ${seconds} s (Retry-After), as the other callers will`
    })
  }
  // 20 draws from 39 values all alike: about 1 in 10^31.
  t.ok(seen.size > 1, 'Retry-After varies from answer to answer')
  const completed = sink.lines().filter((line) => line.msg === 'request completed')
  t.equal(completed.length, 1, 'only the admitted request has a log line')
  const warnings = sink.lines().filter((line) => String(line.msg).startsWith('overloaded'))
  t.equal(warnings.length, 1, 'one warning per 10 s, not one per answer')
  t.same(warnings[0]?.shed, { busy: 1, queue: 0, in_flight: 0 })
})

t.test('POST /sign – shed with Accept: text/plain -> the OVERLOADED answer as text lines', async (t) => {
  const p = pressure()
  const port = await listening(t, {}, p.deps)
  p.busy = 1000
  const answer = await send(port, 'POST', '/sign', { body: SIGN, headers: { accept: 'text/plain' } })
  t.equal(answer.status, 503)
  t.equal(answer.headers['content-type'], 'text/plain; charset=utf-8')
  t.match(answer.body, /^error=OVERLOADED\nmessage=the service has more requests than it can answer now; retry after \d+ s/)
  t.equal(Number(answer.headers['content-length']), Buffer.byteLength(answer.body))
})

t.test('while shedding, /healthz, /readyz and /metrics answer, and /metrics counts the shed requests by reason', async (t) => {
  const p = pressure()
  const port = await listening(t, {}, p.deps)
  p.busy = 1000
  t.equal((await send(port, 'GET', '/docs/json')).status, 200, 'the /docs pages (made before admission control) are not shed')
  for (let i = 0; i < 3; i++) t.equal((await send(port, 'POST', '/sign', { body: SIGN })).status, 503)
  t.equal((await send(port, 'POST', '/verify', { body: { clientId: 'c', username: 'u', password: 'p' } })).status, 503, 'POST /verify is shed too')
  t.equal((await send(port, 'POST', '/sign/batch', { body: { devices: [SIGN] } })).status, 503, 'a new batch is shed too')
  t.equal((await send(port, 'GET', '/healthz')).status, 200)
  t.equal((await send(port, 'GET', '/readyz')).status, 200)
  const metrics = await send(port, 'GET', '/metrics')
  t.equal(metrics.status, 200)
  t.match(metrics.body, /^enos_signer_requests_shed_total\{reason="busy"\} 5$/m)
  t.match(metrics.body, /^enos_signer_requests_shed_total\{reason="in_flight"\} 0$/m)
  t.match(metrics.body, /^enos_signer_requests_in_flight 0$/m)
})

t.test('admitted answers say Connection: close for a window after a shed, keep-alive otherwise', async (t) => {
  const p = pressure()
  const port = await listening(t, {}, p.deps)
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  t.equal((await send(port, 'POST', '/sign', { body: SIGN, agent })).headers.connection, 'keep-alive')
  p.busy = 1000
  t.equal((await send(port, 'POST', '/sign', { body: SIGN, agent })).status, 503)
  p.busy = 0
  const during = await send(port, 'POST', '/sign', { body: SIGN, agent })
  t.equal(during.status, 200)
  t.equal(during.headers.connection, 'close', 'a new connection gets a turn')
  p.now += 1000
  t.equal((await send(port, 'POST', '/sign', { body: SIGN, agent })).headers.connection, 'keep-alive')
})

t.test('fairness: while one token floods, another token with few requests is still admitted', async (t) => {
  const heavy = makeToken('heavy', ['sign'], '*')
  const light = makeToken('light', ['sign'], '*')
  const p = pressure()
  const port = await listening(t, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: writeTokenFile(t, [heavy, light]) }, p.deps)
  const as = (token: { token: string }): { body: object, headers: Record<string, string> } => ({ body: SIGN, headers: { authorization: `Bearer ${token.token}` } })
  for (let i = 0; i < 20; i++) t.equal((await send(port, 'POST', '/sign', as(heavy))).status, 200)
  t.equal((await send(port, 'POST', '/sign', as(light))).status, 200)
  // Mild pressure (between half of OVERLOAD_BUSY_MS and all of it): the caller above its share is shed, the other is not.
  p.busy = 30
  for (let i = 0; i < 5; i++) t.equal((await send(port, 'POST', '/sign', as(heavy))).status, 503)
  t.equal((await send(port, 'POST', '/sign', as(light))).status, 200)
  // Full pressure: the light caller still gets in while it has less than half its share.
  p.busy = 1000
  t.equal((await send(port, 'POST', '/sign', as(heavy))).status, 503)
  t.equal((await send(port, 'POST', '/sign', as(light))).status, 200)
  // An unauthenticated request is still refused by access control, not counted against anyone.
  t.equal((await send(port, 'POST', '/sign', { body: SIGN })).status, 401)
})

/** A store whose lookups wait until `open()`; a fake of our own interface. */
function slowStore (): { store: DeviceStore, open: () => void } {
  let open: () => void = () => {}
  const gate = new Promise<void>((resolve) => { open = resolve })
  const device = { ...SIGN, deviceSecret: EXAMPLE.deviceSecret, enabled: true }
  const store: DeviceStore = {
    kind: 'slow',
    findDevice: async () => { await gate; return device },
    findDevices: async (keys) => { await gate; return keys.map(() => device) },
    checkHealth: async () => ({ ok: true, kind: 'slow', detail: 'waits' }),
    close: async () => {}
  }
  return { store, open: () => open() }
}

t.test('OVERLOAD_MAX_IN_FLIGHT: with a slow store, requests past the bound get 503 OVERLOADED until one finishes', async (t) => {
  const { store, open } = slowStore()
  const port = await listening(t, { OVERLOAD_BUSY_MS: '0', OVERLOAD_MAX_IN_FLIGHT: '2' }, { store })
  const first = send(port, 'POST', '/sign', { body: SIGN })
  const second = send(port, 'POST', '/sign', { body: SIGN })
  // Wait until both are in flight (waiting for the store).
  for (;;) {
    const metrics = await send(port, 'GET', '/metrics')
    if (/^enos_signer_requests_in_flight 2$/m.test(metrics.body)) break
  }
  const third = await send(port, 'POST', '/sign', { body: SIGN })
  t.equal(third.status, 503)
  t.equal(JSON.parse(third.body).code, 'OVERLOADED')
  open()
  t.equal((await first).status, 200)
  t.equal((await second).status, 200)
  t.equal((await send(port, 'POST', '/sign', { body: SIGN })).status, 200)
  const metrics = await send(port, 'GET', '/metrics')
  t.match(metrics.body, /^enos_signer_requests_shed_total\{reason="in_flight"\} 1$/m)
  t.match(metrics.body, /^enos_signer_requests_in_flight 0$/m)
})

t.test('a request whose client goes away before its answer leaves the in-flight count', async (t) => {
  const { store, open } = slowStore()
  t.teardown(open)
  const port = await listening(t, { OVERLOAD_MAX_IN_FLIGHT: '1' }, { store })
  const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/sign', agent: false, headers: { 'content-type': 'application/json' } })
  req.on('error', () => {})
  req.end(JSON.stringify(SIGN))
  for (;;) {
    if (/^enos_signer_requests_in_flight 1$/m.test((await send(port, 'GET', '/metrics')).body)) break
  }
  req.destroy()
  for (;;) {
    if (/^enos_signer_requests_in_flight 0$/m.test((await send(port, 'GET', '/metrics')).body)) break
  }
  t.pass('the count went back to 0 while the store still holds the lookup')
})

t.test('OVERLOAD_BUSY_MS=0, OVERLOAD_QUEUE_MS=0 and OVERLOAD_MAX_IN_FLIGHT=0: nothing is shed, however busy', async (t) => {
  const p = pressure()
  const port = await listening(t, { OVERLOAD_BUSY_MS: '0', OVERLOAD_MAX_IN_FLIGHT: '0' }, p.deps)
  p.busy = 100_000
  t.equal((await send(port, 'POST', '/sign', { body: SIGN })).status, 200)
  t.match((await send(port, 'GET', '/metrics')).body, /^enos_signer_requests_shed_total\{reason="busy"\} 0$/m)
})

t.test('an NDJSON stream already open when shedding starts is not cut; a new one is refused', async (t) => {
  const p = pressure()
  const port = await listening(t, {}, p.deps)
  const line = `${JSON.stringify(SIGN)}\n`
  const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/sign/batch', agent: false, headers: { 'content-type': 'application/x-ndjson' } })
  const [res] = await new Promise<[IncomingMessage]>((resolve, reject) => {
    req.on('response', (response) => resolve([response]))
    req.on('error', reject)
    req.write(line)
  })
  t.equal(res.statusCode, 200)
  res.setEncoding('utf8')
  let received = ''
  const lines = async (n: number): Promise<void> => {
    while (received.split('\n').length - 1 < n) received += String((await once(res, 'data'))[0])
  }
  await lines(1)
  p.busy = 1000
  t.equal((await send(port, 'POST', '/sign/batch', { body: { devices: [SIGN] } })).status, 503, 'a new batch is shed')
  req.write(line)
  await lines(2)
  req.end()
  await once(res, 'end')
  const answers = received.trim().split('\n').map((text) => JSON.parse(text) as Record<string, unknown>)
  t.ok(answers.filter((answer) => typeof answer.mqttPassword === 'string').length >= 2, 'both lines signed while shedding')
})

/** A raw connection the server has accepted (its 'connection' event has come), for timing the wait before its request. */
let nextAddress = 2
/** Each from a loopback address of its own (127.0.0.2, .3, ...): the queue signal counts one connection per address. */
async function accepted (t: Teardown, server: import('node:net').Server, port: number, localAddress = `127.0.0.${nextAddress++}`): Promise<Socket> {
  const seen = once(server, 'connection')
  const socket = connect({ port, host: '127.0.0.1', localAddress })
  t.teardown(() => socket.destroy())
  await seen
  return socket
}

/** Sends POST /sign on a raw connection and reads the status line. */
async function statusOn (socket: Socket): Promise<number> {
  const body = JSON.stringify(SIGN)
  socket.write(`POST /sign HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`)
  let text = ''
  for await (const chunk of socket) text += String(chunk)
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1])
}

t.test('OVERLOAD_QUEUE_MS: when most new connections waited past it for their first request, the next ones are shed (reason queue); a late minority does not', async (t) => {
  const p = pressure()
  const app = await buildTestApp(t, { OVERLOAD_BUSY_MS: '0', OVERLOAD_QUEUE_MS: '100' }, p.deps)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  // Three connections accepted at 0 whose requests are read at 1000 (they waited 1 s), one prompt.
  const waited = [await accepted(t, app.server, port), await accepted(t, app.server, port), await accepted(t, app.server, port)]
  p.now = 1000
  for (const socket of waited) t.equal(await statusOn(socket), 200, 'in the first interval nothing is known yet')
  p.now = 1150
  t.equal(await statusOn(await accepted(t, app.server, port)), 503, 'the interval before: most new connections waited 1 s')
  t.match((await send(port, 'GET', '/metrics')).body, /^enos_signer_requests_shed_total\{reason="queue"\} 1$/m)
  p.now = 1300
  t.equal(await statusOn(await accepted(t, app.server, port)), 200, 'the interval before had one prompt connection (its median wait 0): admitted again')

  // One late sender among prompt ones: the median stays 0, however many connections it opens.
  const late: Socket[] = []
  for (let i = 0; i < 8; i++) late.push(await accepted(t, app.server, port, '127.0.0.200'))
  p.now = 2000
  for (const socket of late) t.equal(await statusOn(socket), 200)
  for (let i = 0; i < 5; i++) t.equal(await statusOn(await accepted(t, app.server, port)), 200)
  p.now = 2150
  t.equal(await statusOn(await accepted(t, app.server, port)), 200, 'eight late connections from one address (four counted), five prompt ones from others: not a queue')
})
