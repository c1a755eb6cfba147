// The CLI as a child process when the service says "later" (503, 429 with Retry-After), cannot be reached, or the run is interrupted.
import { once } from 'node:events'
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http'
import { join } from 'node:path'
import t from 'tap'
import { CHILD_BUDGET_MS } from '../e2e/process-helper.js'
import type { Teardown } from '../helper.js'
import { closedPort, filesIn, listenTestApp, readCsv, runCli, spawnCli } from './cli-helper.js'

// One CLI process per test, and the waits the service asks for.
t.setTimeout(4 * CHILD_BUDGET_MS)

const DEVICES_CSV = 'productKey,deviceKey\n123,test\nAb12Cd34,boiler-0001\nAb12Cd34,boiler-0002\n'

type Handler = (req: IncomingMessage, res: ServerResponse) => void

/** A real HTTP server on a free loopback port, closed (with its connections) at teardown. */
async function listenHttp (t: Teardown, handler: Handler): Promise<string> {
  const server = createServer(handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`
}

/** Forwards a request to `target` and its answer back, both streamed. */
function proxy (target: string, req: IncomingMessage, res: ServerResponse): void {
  const upstream = request(target + String(req.url), { method: req.method, headers: req.headers }, (answer) => {
    res.writeHead(answer.statusCode as number, answer.headers)
    answer.pipe(res)
  })
  req.pipe(upstream)
}

function refuse (res: ServerResponse, status: number, code: string, retryAfter: string): void {
  const body = JSON.stringify({ statusCode: status, code, error: 'later', message: `the test says ${code}` })
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'retry-after': retryAfter })
  res.end(body)
}

t.test('503 SHUTTING_DOWN and 429, each with Retry-After: the CLI waits as long as asked, then completes', async (t) => {
  const { url: service } = await listenTestApp(t)
  const arrivals: number[] = []
  const url = await listenHttp(t, (req, res) => {
    arrivals.push(performance.now())
    req.resume()
    if (arrivals.length === 1) refuse(res, 503, 'SHUTTING_DOWN', '1')
    else if (arrivals.length === 2) refuse(res, 429, 'RATE_LIMITED', '2')
    else proxy(service, req, res)
  })
  const dir = t.testdir({ 'devices.csv': DEVICES_CSV })
  // --max-delay 1: a backoff of its own would wait less than a second; the waits below are the service's.
  const result = await runCli(t, ['sign-batch', '--url', url, '--in', join(dir, 'devices.csv'), '--out', join(dir, 'out.csv'), '--max-delay', '1'])
  t.equal(result.code, 0, result.stderr)
  t.equal(arrivals.length, 3)
  t.ok((arrivals[1] as number) - (arrivals[0] as number) >= 1000, 'Retry-After: 1 after the 503')
  t.ok((arrivals[2] as number) - (arrivals[1] as number) >= 2000, 'Retry-After: 2 after the 429')
  t.match(result.stderr, /the service answered 503 SHUTTING_DOWN: the test says SHUTTING_DOWN; retry 1 of 8 in 1\.\d s/)
  t.match(result.stderr, /the service answered 429 RATE_LIMITED: the test says RATE_LIMITED; retry 2 of 8 in 2\.\d s/)
  t.equal(readCsv(join(dir, 'out.csv')).rows.length, 3, 'every device once')
})

t.test('the service cannot be reached: --retries retries with backoff, then exit 2, and no output file', async (t) => {
  const port = await closedPort()
  const dir = t.testdir({ 'devices.csv': DEVICES_CSV })
  const result = await runCli(t, ['sign-batch', '--url', `http://user:pw@127.0.0.1:${port}/`, '--in', join(dir, 'devices.csv'), '--out', join(dir, 'out.csv'), '--errors', join(dir, 'errors.csv'), '--retries', '2', '--max-delay', '1'])
  t.equal(result.code, 2)
  t.match(result.stderr, /cannot reach the service \(ECONNREFUSED\); retry 1 of 2 in [\d.]+ s/)
  t.match(result.stderr, /retry 2 of 2/)
  t.match(result.stderr, new RegExp(`giving up after 3 attempts in a row without progress; the last: cannot reach the service \\(ECONNREFUSED\\) \\(http://127\\.0\\.0\\.1:${port}\\)`))
  t.notMatch(result.stderr, /pw@/, 'credentials in the URL are never printed')
  t.match(result.stderr, /out\.csv was not written/)
  t.same(filesIn(dir), ['devices.csv'], 'neither output nor temporary file is left')
})

t.test('SIGINT while the service holds the request: exit 130, the temporary files removed, no output', async (t) => {
  let contentType: string | undefined
  let arrived: () => void = () => {}
  const request = new Promise<void>((resolve) => { arrived = resolve })
  const url = await listenHttp(t, (req) => {
    contentType = req.headers['content-type']
    // Reads what is sent, and never answers.
    req.resume()
    arrived()
  })
  const dir = t.testdir({ 'devices.csv': DEVICES_CSV })
  const cli = spawnCli(t, ['sign-batch', '--url', url, '--in', join(dir, 'devices.csv'), '--out', join(dir, 'out.csv'), '--errors', join(dir, 'errors.csv')])
  await request
  t.equal(filesIn(dir).filter((name) => name.endsWith('.tmp')).length, 2, 'both outputs are being written to temporary files')
  cli.child.kill('SIGINT')
  t.same(await cli.exit, [130, null])
  t.equal(contentType, 'application/x-ndjson')
  t.match(cli.stderr(), /interrupted/)
  t.same(filesIn(dir), ['devices.csv'], 'nothing left behind')
})
