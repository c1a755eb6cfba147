// Ports on 127.0.0.1 for the real servers the tests and benches start (Redis, PostgreSQL, the service):
// one that was free a moment ago, and whether one accepts connections yet.
import { once } from 'node:events'
import { connect, createServer } from 'node:net'

export async function freePort (): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** Whether something accepts connections on `port` now. */
export async function canConnect (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}
