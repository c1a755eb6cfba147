// One POST /sign/batch against real HTTP servers that answer well, refuse, stall, cut or speak another protocol.
import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import t from 'tap'
import { batchUrl, describeUrl, postBatch, type BatchTarget, type Outcome, type ResultLine } from '../../src/cli/batch-client.js'
import type { Teardown } from '../helper.js'
import { closedPort, listenTestApp } from './cli-helper.js'

type Handler = (req: IncomingMessage, res: ServerResponse) => void

async function listenHttp (t: Teardown, handler: Handler): Promise<URL> {
  const server = createServer(handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return new URL(`http://127.0.0.1:${(server.address() as { port: number }).port}`)
}

async function * lines (...items: string[]): AsyncGenerator<string> {
  for (const item of items) yield item + '\n'
}

/** Sends `body` to `url` and collects the results. */
async function post (url: URL, body: AsyncIterable<string> = lines(), options: Partial<BatchTarget> = {}, onResult = (): void => {}): Promise<{ outcome: Outcome, results: ResultLine[] }> {
  const results: ResultLine[] = []
  const outcome = await postBatch({ url, token: undefined, timeoutMs: 5000, ...options }, body, (result) => { results.push(result); onResult() }, new AbortController().signal)
  return { outcome, results }
}

function answer (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/x-ndjson', ...headers })
  res.end(body)
}

t.test('batchUrl and describeUrl: the path is kept (a proxy prefix), credentials, query and fragment are not', async (t) => {
  t.equal(batchUrl(new URL('http://h:1')).href, 'http://h:1/sign/batch')
  t.equal(batchUrl(new URL('https://u:p@h/signer//?x=1#y')).href, 'https://u:p@h/signer/sign/batch')
  t.equal(describeUrl(new URL('https://u:p@h/signer/?x=1#y')), 'https://h/signer')
})

t.test('the real service: results in order, then complete with the broker, and the bearer token sent', async (t) => {
  const { app, url } = await listenTestApp(t, { MQTT_HOST: 'mqtt.example.com' })
  let authorization: string | undefined
  app.server.on('request', (request: IncomingMessage) => { authorization = request.headers.authorization })
  const { outcome, results } = await post(new URL(url), lines('{"productKey":"123","deviceKey":"test"}', '{"productKey":"123","deviceKey":"nobody"}'), { token: 't0k' })
  t.match(outcome, { kind: 'complete', broker: { host: 'mqtt.example.com' } })
  t.match(results, [{ line: 1, ok: true }, { line: 2, ok: false, error: { code: 'DEVICE_NOT_FOUND' } }])
  t.equal(authorization, 'Bearer t0k')
})

t.test('refusals: 429/502/503/504 are retried (with Retry-After), 401/403/404/405 and the rest are fatal', async (t) => {
  const replies: Record<string, [number, string, Record<string, string>?]> = {
    '/busy/sign/batch': [429, '{"code":"RATE_LIMITED","message":"slow down"}', { 'retry-after': '3' }],
    '/down/sign/batch': [503, '{"statusCode":503,"code":"SHUTTING_DOWN","error":"Service Unavailable","message":"stopping"}', { 'retry-after': '1' }],
    '/proxy/sign/batch': [502, '<html>bad gateway</html>'],
    '/auth/sign/batch': [401, '{"code":"UNAUTHORIZED","message":"no token"}'],
    '/forbidden/sign/batch': [403, '{"code":"FORBIDDEN"}'],
    '/old/sign/batch': [404, '{"code":"ROUTE_NOT_FOUND","message":"no such path"}'],
    '/bug/sign/batch': [500, 'null'],
    '/teapot/sign/batch': [418, ''],
    '/odd/sign/batch': [599, 'x'.repeat(100_000)]
  }
  const base = await listenHttp(t, (req, res) => {
    req.resume()
    const [status, body, headers] = replies[String(req.url)] as [number, string, Record<string, string>?]
    answer(res, status, body, { 'content-type': 'application/json', ...headers })
  })
  const at = (path: string): URL => new URL(path, base)
  t.same((await post(at('/busy'))).outcome, { kind: 'retry', reason: 'the service answered 429 RATE_LIMITED: slow down', retryAfterMs: 3000 })
  t.same((await post(at('/down/'))).outcome, { kind: 'retry', reason: 'the service answered 503 SHUTTING_DOWN: stopping', retryAfterMs: 1000 })
  t.same((await post(at('/proxy'))).outcome, { kind: 'retry', reason: 'the service answered 502 Bad Gateway', retryAfterMs: undefined })
  t.match((await post(at('/auth'))).outcome, { kind: 'fatal', reason: 'the service refused the request (401 UNAUTHORIZED: no token); check --token or ENOS_SIGNER_TOKEN' })
  t.match((await post(at('/forbidden'))).outcome, { kind: 'fatal', reason: /\(403 FORBIDDEN\); check --token/ })
  t.match((await post(at('/old'))).outcome, { kind: 'fatal', reason: /404 ROUTE_NOT_FOUND: no such path: http:\/\/127\.0\.0\.1:\d+\/old has no POST \/sign\/batch; check --url/ })
  t.same((await post(at('/bug'))).outcome, { kind: 'fatal', reason: 'the service answered 500 Internal Server Error' })
  t.same((await post(at('/teapot'))).outcome, { kind: 'fatal', reason: 'the service answered 418 I\'m a Teapot' })
  t.same((await post(at('/odd'))).outcome, { kind: 'fatal', reason: 'the service answered 599' }, 'a long body is not read to its end')
})

t.test('a refusal whose connection is cut before its body ends is still read as a refusal', async (t) => {
  const url = await listenHttp(t, (req, res) => {
    req.resume()
    res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '2', 'content-length': '100' })
    res.write('{"code":"SHUT')
    setImmediate(() => res.destroy())
  })
  t.same((await post(url)).outcome, { kind: 'retry', reason: 'the service answered 503 Service Unavailable', retryAfterMs: 2000 })
})

t.test('answers that are not the batch protocol are fatal, and never quoted', async (t) => {
  const bodies: Record<string, [string, string?]> = {
    '/html/sign/batch': ['<html>hello</html>', 'text/html'],
    '/text/sign/batch': ['{"line":1,"ok":true,"mqttPassword":"SECRET"\n'],
    '/array/sign/batch': ['[1,2]\n'],
    '/shape/sign/batch': ['{"line":"1","ok":true}\n'],
    '/bad-error/sign/batch': ['{"line":1,"ok":false,"error":{"code":7}}\n'],
    '/long/sign/batch': ['{"line":1,"x":"' + 'x'.repeat(70_000)]
  }
  const base = await listenHttp(t, (req, res) => {
    req.resume()
    const [body, type] = bodies[String(req.url)] as [string, string?]
    answer(res, 200, body, type === undefined ? {} : { 'content-type': type })
  })
  const fatal = async (path: string): Promise<string> => {
    const { outcome } = await post(new URL(path, base))
    t.equal(outcome.kind, 'fatal', path)
    return (outcome as { reason: string }).reason
  }
  t.match(await fatal('/html'), /does not answer like the signing service \(the answer is text\/html, not application\/x-ndjson\); check --url/)
  const text = await fatal('/text')
  t.match(text, /a line of the answer is not JSON/)
  t.notMatch(text, /SECRET/)
  t.match(await fatal('/array'), /not a JSON object/)
  t.match(await fatal('/shape'), /no line number, ok flag or error/)
  t.match(await fatal('/bad-error'), /no line number, ok flag or error/)
  t.match(await fatal('/long'), /longer than 65536 bytes/)
})

t.test('a stream that ends without its summary, or with the service\'s own error line, is worth a retry', async (t) => {
  const base = await listenHttp(t, (req, res) => {
    req.resume()
    if (req.url === '/cut/sign/batch') answer(res, 200, '{"line":1,"ok":true}\n{"line":2,"ok":tr')
    else answer(res, 200, '{"line":1,"ok":true}\n{"error":{"code":"REQUEST_TIMEOUT","message":"the stream sent nothing for 10000 ms"}}\n')
  })
  const cut = await post(new URL('/cut', base))
  t.same(cut.outcome, { kind: 'retry', reason: 'the answer was cut before its summary line' })
  t.equal(cut.results.length, 1, 'the half line is not taken')
  const idle = await post(new URL('/idle', base))
  t.same(idle.outcome, { kind: 'retry', reason: 'the service ended the answer: REQUEST_TIMEOUT: the stream sent nothing for 10000 ms' })
})

t.test('network failures are retried: refused, reset mid-answer, nothing moving for timeoutMs', async (t) => {
  const port = await closedPort()
  t.same((await post(new URL(`http://127.0.0.1:${port}`))).outcome, { kind: 'retry', reason: 'cannot reach the service (ECONNREFUSED)' })
  t.same((await post(new URL(`https://127.0.0.1:${port}`))).outcome, { kind: 'retry', reason: 'cannot reach the service (ECONNREFUSED)' }, 'https too')
  let cutAnswer = (): void => {}
  const base = await listenHttp(t, (req, res) => {
    req.resume()
    if (req.url !== '/reset/sign/batch') return // never answers
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' })
      res.write('{"line":1,"ok":true}\n')
      // The connection ends in the middle of the answer, once the client holds the first result
      // (cutting it at once would race the client's read of that line on a busy machine).
      cutAnswer = () => res.socket?.end()
    })
  })
  const reset = await post(new URL('/reset', base), lines(), {}, () => cutAnswer())
  t.same(reset.outcome, { kind: 'retry', reason: 'the connection failed (ECONNRESET)' })
  t.equal(reset.results.length, 1)
  t.same((await post(new URL('/stall', base), lines('{}'), { timeoutMs: 200 })).outcome, { kind: 'retry', reason: 'no answer (nothing moved for 0.2 s)' })
})

t.test('a failure of the caller\'s own (the body, or a result it cannot take) ends the attempt', async (t) => {
  const { url } = await listenTestApp(t)
  async function * failing (): AsyncGenerator<string> {
    yield '{"productKey":"123","deviceKey":"test"}\n'
    throw new Error('input broke')
  }
  const broken = await postBatch({ url: new URL(url), token: undefined, timeoutMs: 5000 }, failing(), () => {}, new AbortController().signal)
  t.equal(broken.kind, 'retry', 'the caller knows why; to the client it is a failed request')
  async function * brokenAtOnce (): AsyncGenerator<string> {
    throw new Error('input broke at once')
  }
  t.same(await postBatch({ url: new URL(url), token: undefined, timeoutMs: 5000 }, brokenAtOnce(), () => {}, new AbortController().signal),
    { kind: 'retry', reason: 'the connection failed (ECONNRESET)' }, 'a body that fails aborts the request')

  const refused = postBatch({ url: new URL(url), token: undefined, timeoutMs: 5000 }, lines('{"productKey":"123","deviceKey":"test"}'), () => { throw new Error('disk full') }, new AbortController().signal)
  await t.rejects(refused, { message: 'disk full' }, 'an error of onResult is the caller\'s, passed on as it is')
})
