// Open connections: the MAX_CONNECTIONS bound (logged when it bites), the cut of connections gone
// quiet, and a quick, clean close of every connection at shutdown.
import { readFileSync } from 'node:fs'
import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { Server as TlsServer } from 'node:tls'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

export interface ConnectionsOptions {
  /** Connections beyond this many are closed as they arrive; undefined: the open-file limit minus FD_RESERVE. */
  maxConnections: number | undefined
  /** A connection on which nothing has been read or written for this long is closed. */
  idleTimeoutMs: number
  /** How often connections are looked at for that; a quiet connection is closed within idleTimeoutMs + this. */
  checkEveryMs: number
  /** Where the process's limits are read (tests point it elsewhere). */
  limitsFile?: string
}

/** File descriptors kept free of connections: the store file and its watches, the log, database and Redis pools. */
export const FD_RESERVE = 128

/**
 * The default connection bound: the soft open-file limit less FD_RESERVE. Past the limit, accept()
 * fails with EMFILE and Node resets new connections, legitimate ones included, and nothing else
 * in the process (a store reload, a log file) can open a file either.
 * @returns undefined when the limit is unlimited or cannot be read (not Linux).
 */
export function defaultMaxConnections (limitsFile = '/proc/self/limits'): number | undefined {
  let text: string
  try {
    text = readFileSync(limitsFile, 'utf8')
  } catch {
    return undefined
  }
  const soft = /^Max open files\s+(\d+)/m.exec(text)?.[1]
  return soft === undefined ? undefined : Math.max(16, Number(soft) - FD_RESERVE)
}

/** How often, at most, refused connections are reported: a flood must not flood the log too. */
const DROP_REPORT_MS = 10_000

/** What Node's http server keeps on a socket: the response in flight on it. */
interface HttpSocket extends Socket {
  _httpMessage?: ServerResponse | null
}

/** What the sweep last saw of a connection: its byte count and since when that has not moved. */
interface Activity { bytes: number, quietSince: number }

async function connections (app: FastifyInstance, options: ConnectionsOptions): Promise<void> {
  const maxConnections = options.maxConnections ?? defaultMaxConnections(options.limitsFile)
  const open = new Set<HttpSocket>()
  const track = (socket: HttpSocket): void => {
    open.add(socket)
    socket.once('close', () => open.delete(socket))
  }
  app.server.on('connection', track)
  // Over HTTPS the response sits on the TLS socket, which only this event hands out.
  app.server.on('secureConnection', track)

  // The sockets HTTP runs on (over HTTPS the TLS ones, which Node's own idle timer watched too),
  // each with what the sweep saw of it.
  const carriers = new Map<Socket, Activity>()
  app.server.on(app.server instanceof TlsServer ? 'secureConnection' : 'connection', (socket: Socket) => {
    carriers.set(socket, { bytes: 0, quietSince: Date.now() })
    socket.once('close', () => carriers.delete(socket))
  })

  // Quiet connections are found by a sweep instead of Node's per-socket idle timer
  // (server.setTimeout): Node re-arms that timer for every request and refreshes it on every read
  // and write, which cost a few percent of the CPU of POST /sign (measured). A sweep looks at each
  // connection's byte count once every checkEveryMs and closes those where it has not moved for
  // idleTimeoutMs: the same rule, with a resolution of checkEveryMs.
  const sweep = setInterval(() => {
    const now = Date.now()
    for (const [socket, seen] of carriers) {
      const bytes = socket.bytesRead + socket.bytesWritten
      if (bytes !== seen.bytes) {
        seen.bytes = bytes
        seen.quietSince = now
      } else if (now - seen.quietSince >= options.idleTimeoutMs) {
        socket.destroy()
      }
    }
  }, options.checkEveryMs)
  sweep.unref()
  app.addHook('onClose', (_app, done) => {
    clearInterval(sweep)
    done()
  })

  if (maxConnections !== undefined) {
    app.server.maxConnections = maxConnections
    let dropped = 0
    let reportedAt = 0
    app.server.on('drop', () => {
      dropped++
      const now = Date.now()
      if (now - reportedAt < DROP_REPORT_MS) return
      reportedAt = now
      app.log.warn({ maxConnections, dropped }, 'MAX_CONNECTIONS reached: new connections are closed as they arrive')
      dropped = 0
    })
  }

  // Node closes the connections idle at the moment the server closes, but a response still in
  // flight would go out with keep-alive and hold its connection until SHUTDOWN_TIMEOUT_MS: make
  // each say Connection: close instead, so the connection ends with it.
  app.addHook('preClose', (done) => {
    for (const socket of open) {
      const response = socket._httpMessage
      if (response == null) continue
      if (!response.headersSent) response.shouldKeepAlive = false
      // A streamed answer (POST /sign/batch with NDJSON) has its headers out already: end its connection with it.
      else response.once('finish', () => socket.destroySoon())
    }
    done()
  })
}

export default fp(connections, { name: 'connections', fastify: '5.x' })
