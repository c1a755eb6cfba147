// listenMore: more sockets on one port (SO_REUSEPORT), each handing its connections to the one HTTP server.
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { Server } from 'node:net'
import t from 'tap'
import { checkPortFree, closeListeners, listenMore } from '../src/listeners.js'

t.test('the extra sockets listen on the same port, their connections are answered by the one server, MAX_CONNECTIONS is shared out', { skip: process.platform !== 'linux' && 'SO_REUSEPORT balancing is Linux only' }, async (t) => {
  const server = createServer((_req, res) => { res.end('ok') })
  server.maxConnections = 100
  server.listen({ port: 0, host: '127.0.0.1', reusePort: true })
  await once(server, 'listening')
  let extra: Server[] = []
  t.teardown(async () => { server.closeAllConnections(); server.close(); await closeListeners(extra) })
  extra = await listenMore(server, 4, 511)
  t.equal(extra.length, 3)
  const port = (server.address() as { port: number }).port
  for (const listener of extra) t.equal((listener.address() as { port: number }).port, port)
  t.same([server, ...extra].map((s) => s.maxConnections), [25, 25, 25, 25], '100 connections shared out among 4 sockets')

  const byExtras = new Set<Server>()
  for (const listener of extra) listener.on('connection', () => byExtras.add(listener))
  for (let i = 0; i < 60; i++) {
    const res = await fetch(`http://127.0.0.1:${port}/`, { headers: { connection: 'close' } })
    t.equal(await res.text(), 'ok')
  }
  t.ok(byExtras.size >= 1, `the kernel spread new connections over the extra sockets too (${byExtras.size} of 3 took some)`)

  const drops: unknown[] = []
  server.on('drop', (data) => drops.push(data))
  extra[0]?.emit('drop', { localPort: port })
  t.same(drops, [{ localPort: port }], "an extra socket's dropped connection is reported as the server's (MAX_CONNECTIONS' warning)")

  const closed = closeListeners(extra)
  t.ok(extra.every((listener) => !listener.listening), 'closing: they accept no more at once')
  server.closeIdleConnections()
  await closed
  t.pass('closed once the connections they accepted ended')
  t.equal(await (await fetch(`http://127.0.0.1:${port}/`)).text(), 'ok', 'the server itself still answers until it is closed')
})

t.test('one socket: nothing more, maxConnections untouched; fewer connections than sockets: as many sockets as connections; no bound: none shared out', { skip: process.platform !== 'linux' && 'SO_REUSEPORT is Linux only' }, async (t) => {
  const server = createServer()
  server.listen({ port: 0, host: '127.0.0.1', reusePort: true })
  await once(server, 'listening')
  t.teardown(() => server.close())
  server.maxConnections = 10
  t.same(await listenMore(server, 1, 511), [])
  t.equal(server.maxConnections, 10)
  const few = await listenMore(server, 16, 511)
  t.teardown(async () => { await closeListeners(few) })
  t.equal(few.length, 9, 'MAX_CONNECTIONS=10 with 16 wanted: 10 sockets, one connection each, never more than the bound')
  t.same([server, ...few].map((s) => s.maxConnections), Array(10).fill(1))
  await closeListeners(few)
  server.maxConnections = 10
  server.maxConnections = Infinity
  const more = await listenMore(server, 1, 511)
  t.same(more, [])
  t.equal(server.maxConnections, Infinity)
})

t.test('a socket that cannot listen fails the start and leaves none open; a taken port is refused before SO_REUSEPORT would share it', { skip: process.platform !== 'linux' && 'SO_REUSEPORT is Linux only' }, async (t) => {
  // A server listening WITHOUT SO_REUSEPORT: no other socket may join it.
  const server = createServer()
  server.listen({ port: 0, host: '127.0.0.1' })
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  await t.rejects(listenMore(server, 4, 511), { code: 'EADDRINUSE' })
  await t.rejects(checkPortFree('127.0.0.1', port), { code: 'EADDRINUSE' }, 'the port is taken: refused as listen always did')
  await new Promise((resolve) => server.close(resolve))
  await checkPortFree('127.0.0.1', port)
  t.pass('once the server is closed the port is free: no extra socket was left listening on it')
  await checkPortFree('127.0.0.1', 0)
})
