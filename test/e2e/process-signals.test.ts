// E2E, the real service as a child process: SIGTERM/SIGINT shut it down gracefully, SIGHUP reloads the store.
import { once } from 'node:events'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { EXAMPLE_PASSWORDS } from '../helper.js'
import { CHILD_BUDGET_MS, openInFlightRequest, sign, start, waitFor, waitUntilRefused } from './process-helper.js'

t.setTimeout(4 * CHILD_BUDGET_MS)

t.test('SIGTERM: new connections are refused, the in-flight request completes, exit 0', async (t) => {
  const server = await start(t, { STORE_FILE: fileURLToPath(new URL('../../examples/devices.json', import.meta.url)) })
  const body = JSON.stringify({ productKey: '123', deviceKey: 'test', clientId: '123', timestamp: '1524448722000' })
  const socket = await openInFlightRequest(server.port, body)
  let response = ''
  socket.on('data', (chunk: Buffer) => { response += chunk.toString() })
  server.child.kill('SIGTERM')
  await waitUntilRefused(server.port)
  const closed = once(socket, 'close')
  socket.end(body)
  await closed
  t.match(response, /^HTTP\/1\.1 200 OK/)
  t.match(response, EXAMPLE_PASSWORDS.hmacsha1)
  t.same(await server.exit, [0, null])
  t.match(server.output(), /shutting down/)
})

t.test('SIGINT also stops the server cleanly', async (t) => {
  const server = await start(t)
  server.child.kill('SIGINT')
  t.same(await server.exit, [0, null])
})

t.test('a request that never finishes does not hold shutdown beyond SHUTDOWN_TIMEOUT_MS', async (t) => {
  const server = await start(t, { SHUTDOWN_TIMEOUT_MS: '200' })
  const socket = await openInFlightRequest(server.port, '{"productKey":"123","deviceKey":"test"}')
  const cut = once(socket, 'close')
  server.child.kill('SIGTERM')
  t.same(await server.exit, [0, null], 'exits 0 once the stalled connection is cut')
  await cut
  t.match(server.output(), /shutdown timeout: closing the remaining connections/)
})

t.test('SIGHUP reloads the store file', async (t) => {
  const dir = t.testdir({ 'devices.csv': 'productKey,deviceKey,deviceSecret\n123,test,deviceSecret\n' })
  const file = join(dir, 'devices.csv')
  const server = await start(t, { STORE_FILE: file })
  t.equal((await sign(server.port, { productKey: 'P1', deviceKey: 'new-device' })).status, 404)
  await writeFile(file, 'productKey,deviceKey,deviceSecret\n123,test,deviceSecret\nP1,new-device,s3cret\n')
  server.child.kill('SIGHUP')
  await waitFor(server, /device store reloaded/)
  t.equal((await sign(server.port, { productKey: 'P1', deviceKey: 'new-device' })).status, 200)
  server.child.kill('SIGTERM')
  await server.exit
})
