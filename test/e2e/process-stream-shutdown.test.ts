// E2E, the real service as a child process: an NDJSON stream open at SIGTERM is ended, not waited for, and always audited.
import { once } from 'node:events'
import { request, type ClientRequest, type IncomingMessage } from 'node:http'
import t from 'tap'
import { writeUntilStalled } from './ndjson-client.js'
import { CHILD_BUDGET_MS, start, type RunningServer } from './process-helper.js'

t.setTimeout(2 * CHILD_BUDGET_MS)

const line = JSON.stringify({ productKey: '123', deviceKey: 'test', clientId: '123', timestamp: '1524448722000' }) + '\n'

async function openStream (port: number): Promise<{ req: ClientRequest, res: IncomingMessage }> {
  const req = request({ port, host: '127.0.0.1', method: 'POST', path: '/sign/batch', headers: { 'content-type': 'application/x-ndjson' } })
  req.on('error', () => {})
  req.flushHeaders()
  const [res] = await once(req, 'response') as [IncomingMessage]
  res.on('error', () => {})
  return { req, res }
}

/** The service's one log line for POST /sign/batch, parsed. */
function auditLines (server: RunningServer): Array<Record<string, unknown>> {
  return server.output().split('\n').filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === 'request completed' && l.route === '/sign/batch')
}

t.test('SIGTERM: an open stream answers what it has read, ends with SHUTTING_DOWN and its summary, is audited, and the process exits without waiting out SHUTDOWN_TIMEOUT_MS', async (t) => {
  // A shutdown that waited for the stream would outlast this file's time budget.
  const server = await start(t, { SHUTDOWN_TIMEOUT_MS: '3600000', REQUEST_TIMEOUT_MS: '3600000' })
  const { req, res } = await openStream(server.port)
  req.write(line + line)
  let text = ''
  res.setEncoding('utf8')
  res.on('data', (chunk: string) => { text += chunk })
  while (text.split('\n').length < 3) await once(res, 'data')
  server.child.kill('SIGTERM')
  await once(res, 'end')
  const lines = text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>)
  t.match(lines, [
    { line: 1, ok: true },
    { line: 2, ok: true },
    { error: { code: 'SHUTTING_DOWN', message: 'the service is shutting down; it was ended after line 2, with 2 devices signed; send the rest in a new stream' } },
    { summary: { total: 2, signed: 2, failed: 0 }, complete: false }
  ])
  req.destroy()
  t.same(await server.exit, [0, null])
  t.notMatch(server.output(), /shutdown timeout/)
  t.match(auditLines(server), [{ audit: true, caller: 'open', outcome: 'SHUTTING_DOWN', batch: { size: 2, signed: 2, failed: 0, signedByProduct: { 123: 2 } } }])
})

t.test('SIGTERM: a stream that cannot finish (its client does not read) is cut at SHUTDOWN_TIMEOUT_MS and still audited', async (t) => {
  const server = await start(t, { SHUTDOWN_TIMEOUT_MS: '300', REQUEST_TIMEOUT_MS: '3600000' })
  const { req, res } = await openStream(server.port)
  res.pause()
  // Write until the request is held back for good: the answer cannot go out, so the stream is stuck.
  // "For good" is 5 s without a drain: a busy machine's server can take over a second for a chunk,
  // and a stop that early leaves an answer small enough for the socket buffers, which then ends.
  await writeUntilStalled(req, line.repeat(1000))
  server.child.kill('SIGTERM')
  t.same(await server.exit, [0, null])
  req.destroy()
  t.match(server.output(), /shutdown timeout: closing the remaining connections/)
  const [audit] = auditLines(server)
  t.match(audit, { audit: true, outcome: 'SHUTTING_DOWN', reason: 'the service is shutting down; the answer was cut before it ended', batch: { signedByProduct: { 123: Number } } })
  t.ok((audit?.batch as { signed: number }).signed > 0, 'the devices signed before the cut are counted')
})
