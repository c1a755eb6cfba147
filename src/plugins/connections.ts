// Open connections: the MAX_CONNECTIONS bound (logged when it bites) and a quick, clean close of every connection at shutdown.
import { readFileSync } from 'node:fs'
import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

export interface ConnectionsOptions {
  /** Connections beyond this many are closed as they arrive; undefined: the open-file limit minus FD_RESERVE. */
  maxConnections: number | undefined
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
