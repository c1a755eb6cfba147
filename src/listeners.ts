// More listening sockets on the service's port (SO_REUSEPORT), each handing its connections to the one HTTP server.
import { once } from 'node:events'
import { createServer, type Server } from 'node:net'

/**
 * Why: Node (libuv since 1.45) accepts ONE connection per listening socket per turn of the event
 * loop. In a boot storm every turn also serves the requests that are ready, so new connections
 * are accepted only as fast as requests are answered: they wait in the kernel's queue, where no
 * admission control can see them, until it overflows and the kernel drops them (the client then
 * retries after 1, 3, 7 s). Measured with 15,000 devices booting: the queue sat full (4,097/4,096),
 * 74,702 connections dropped, p99 6-8 s. With `count` sockets the kernel spreads new connections
 * over them and a turn accepts up to `count`: the wait moves into the process, where it is measured
 * (OVERLOAD_QUEUE_MS) and shed with a 503 and Retry-After.
 *
 * Linux only (SO_REUSEPORT balancing); the main server must listen with `reusePort: true`.
 * MAX_CONNECTIONS is shared out: each socket takes its part of `server.maxConnections`, rounded
 * down (the kernel spreads connections evenly, not exactly, so the bound may bite a little early).
 * @returns the extra listeners, to be closed before the server (they stop accepting).
 */
export async function listenMore (server: Server, wanted: number, backlog: number): Promise<Server[]> {
  const address = server.address()
  /* c8 ignore next -- the service listens on TCP (HOST, PORT), never on a pipe */
  if (address === null || typeof address === 'string') return []
  const bounded = Number.isFinite(server.maxConnections)
  // Never more sockets than connections allowed, and the shares rounded down: never past the bound.
  const count = bounded ? Math.min(wanted, server.maxConnections) : wanted
  const share = bounded ? Math.floor(server.maxConnections / count) : undefined
  if (share !== undefined) server.maxConnections = share
  const extra: Server[] = []
  try {
    for (let i = 1; i < count; i++) {
      // noDelay as Node's http server sets it for its own connections.
      const listener = createServer({ noDelay: true }, (socket) => { server.emit('connection', socket) })
      if (share !== undefined) listener.maxConnections = share
      // MAX_CONNECTIONS' report (src/plugins/connections.ts) listens to the HTTP server's 'drop'.
      listener.on('drop', (data) => server.emit('drop', data))
      listener.listen({ host: address.address, port: address.port, backlog, reusePort: true })
      extra.push(listener)
      await once(listener, 'listening')
    }
  } catch (err) {
    // One socket could not listen (the port taken by another user's reuse socket): none is left open.
    await closeListeners(extra)
    throw err
  }
  return extra
}

/**
 * With SO_REUSEPORT, a second process (a stale copy, another version) binding the same port would
 * not fail with EADDRINUSE: the kernel would quietly share the connections between the two. So the
 * port is first bound without it, which fails as listen always did when the port is taken.
 * Port 0 (any free port) needs no check.
 */
export async function checkPortFree (host: string, port: number): Promise<void> {
  if (port === 0) return
  const probe = createServer()
  probe.listen({ host, port })
  try {
    await once(probe, 'listening')
  } finally {
    await new Promise((resolve) => probe.close(resolve))
  }
}

/**
 * Closes the extra listeners: they accept no new connection from now on. Resolves once every
 * connection they accepted has ended (those are the HTTP server's, which answers, closes idle ones
 * and cuts the rest at the shutdown timeout, but counts only its own when it closes).
 */
export async function closeListeners (listeners: Server[]): Promise<void> {
  await Promise.all(listeners.map(async (listener) => { await new Promise((resolve) => listener.close(resolve)) }))
}
