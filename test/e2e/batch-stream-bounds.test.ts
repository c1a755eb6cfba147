// NDJSON streams on real sockets, bounded: a client that never reads holds little server memory and stalls its own writes; streams per caller are limited.
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import type { ClientRequest, IncomingMessage } from 'node:http'
import t from 'tap'
import { buildTestApp, makeToken, writeTokenFile } from '../helper.js'
import { openStream, readAll, writeUntilStalled } from './ndjson-client.js'
import { CHILD_BUDGET_MS, start } from './process-helper.js'

// The whole file, past tap's 60 s: the first test alone took 15-49 s (with other files' load beside it).
t.setTimeout(5 * CHILD_BUDGET_MS)

/** A 64 KiB chunk of the shortest lines there are: each one an item that fails validation, answered by a result line 50 times its size. */
const TINY_LINES = '{}\n'.repeat(Math.floor(65536 / 3))

const rssMb = (pid: number): number => Number((/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8')) as RegExpExecArray)[1]) / 1024

t.test('streams whose clients never read: each stops reading its input (the writes stall) and the server\'s memory stays bounded', async (t) => {
  t.setTimeout(4 * CHILD_BUDGET_MS)
  const count = 20
  const server = await start(t, { BATCH_STREAMS_PER_CALLER: '0', REQUEST_TIMEOUT_MS: '600000' })
  // Warm up: one whole stream, so that the code and buffers of the first use are in the baseline.
  const warm = openStream(server.port)
  warm.req.end(TINY_LINES)
  t.match(await readAll(await warm.response), /"complete"|"summary"/)
  const before = rssMb(server.child.pid as number)
  const streams = Array.from({ length: count }, () => openStream(server.port))
  t.teardown(() => { for (const { req } of streams) req.destroy() })
  const written = await Promise.all(streams.map(async ({ req, response }) => {
    const res = await response
    res.on('error', () => {})
    res.pause()
    return writeUntilStalled(req, TINY_LINES)
  }))
  const after = rssMb(server.child.pid as number)
  t.ok(streams.every(({ req }) => req.writableNeedDrain), 'every client\'s writes are held back')
  // Before the answers were sliced, a 64 KiB chunk of such lines became 5 MB of answer at once, and
  // up to 16 of them waited in the answer's stream: these 20 streams grew this server (under the test
  // loader) by about 500 MB. Sliced, each held a slice or two of about 60 KB and some input, and
  // they still grew it by about 157 MB: the garbage of zod's safeParse failing each line, promoted
  // to the old space faster than it was collected. Checked through `~standard`, 10-11 MB.
  t.ok(after - before < 75, `${count} streams grew the server's RSS by ${Math.round(after - before)} MB (from ${Math.round(before)} MB), after ${Math.round(Math.min(...written) / 1024)} KiB or more written each`)
})

t.test('BATCH_STREAMS_PER_CALLER: the stream past it gets 429 naming it, another caller is not affected, and a slot is free again once a stream ends', async (t) => {
  const first = makeToken('first', ['sign', 'sign:batch'], '*')
  const other = makeToken('other', ['sign', 'sign:batch'], '*')
  const app = await buildTestApp(t, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: writeTokenFile(t, [first, other]), BATCH_STREAMS_PER_CALLER: '2', REQUEST_TIMEOUT_MS: '15000' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const line = JSON.stringify({ productKey: '123', deviceKey: 'test', clientId: '123' }) + '\n'
  const opened: ClientRequest[] = []
  t.teardown(() => { for (const req of opened) req.destroy() })
  /** Opens a stream of `token` and resolves with its response once its first line is answered (or its refusal). */
  const begin = async (token: string): Promise<{ req: ClientRequest, res: IncomingMessage }> => {
    const { req, response } = openStream(port, token)
    opened.push(req)
    req.write(line)
    const res = await response
    if (res.statusCode === 200) await once(res, 'data')
    return { req, res }
  }
  const a1 = await begin(first.token)
  const a2 = await begin(first.token)
  const refused = await begin(first.token)
  t.equal(refused.res.statusCode, 429)
  t.equal(refused.res.headers['retry-after'], '5')
  t.equal(refused.res.headers.connection, 'close')
  // The refused request is not read: the answer ends its connection, which the client closes.
  refused.req.destroy()
  t.match(JSON.parse(await readAll(refused.res)), { statusCode: 429, code: 'RATE_LIMITED', message: 'this caller already has 2 NDJSON streams open, the most allowed (BATCH_STREAMS_PER_CALLER): end one, or retry after 5 s' })
  const b1 = await begin(other.token)
  t.equal(b1.res.statusCode, 200, 'another caller opens its stream')
  // A stream that ends: its slot is free once its connection has closed.
  const closed = once(a1.req.socket as NonNullable<ClientRequest['socket']>, 'close')
  a1.req.end()
  t.match(await readAll(a1.res), /"summary":\{"total":1,"signed":1,"failed":0\}/)
  await closed
  const a3 = await begin(first.token)
  t.equal(a3.res.statusCode, 200, 'the slot of the ended stream is used again')
  // A client that goes away frees its slot too (the server sees the close a moment later).
  a2.req.destroy()
  let again = await begin(first.token)
  while (again.res.statusCode === 429) {
    await readAll(again.res)
    again.req.destroy()
    await new Promise((resolve) => setTimeout(resolve, 20))
    again = await begin(first.token)
  }
  t.equal(again.res.statusCode, 200, 'the slot of the aborted stream is used again')
  for (const { req, res } of [a3, again, b1]) {
    req.end()
    t.match(await readAll(res), /"summary":\{"total":1,"signed":1,"failed":0\}/)
  }
})
