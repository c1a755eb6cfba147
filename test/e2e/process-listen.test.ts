// E2E, the real service as a child process: when it cannot listen, it exits 1 saying why.
import { once } from 'node:events'
import { createServer } from 'node:net'
import t from 'tap'
import { CHILD_BUDGET_MS, run, start } from './process-helper.js'

t.setTimeout(3 * CHILD_BUDGET_MS)

t.test('a port in use stops startup with a message saying so', async (t) => {
  const blocker = createServer()
  blocker.listen(0, '127.0.0.1')
  await once(blocker, 'listening')
  t.teardown(() => blocker.close())
  const { port } = blocker.address() as { port: number }
  const proc = run(t, { PORT: String(port) })
  t.equal((await proc.exit)[0], 1)
  t.match(proc.output(), /cannot listen \(EADDRINUSE\); check HOST and PORT/)
})

t.test('a second copy of the service on the same port is refused, though both would listen with SO_REUSEPORT', async (t) => {
  const first = await start(t, {})
  const second = run(t, { PORT: String(first.port) })
  t.equal((await second.exit)[0], 1)
  t.match(second.output(), /cannot listen \(EADDRINUSE\); check HOST and PORT/)
  first.child.kill('SIGTERM')
  await first.exit
})

t.test('a HOST that does not resolve stops startup with the one-line configuration message, no stack', async (t) => {
  const proc = run(t, { HOST: 'no-such-host.invalid' })
  t.equal((await proc.exit)[0], 1)
  t.match(proc.output(), /\nenos-mqtt-signer: Invalid configuration:\n {2}HOST: does not resolve to an address \((ENOTFOUND|EAI_AGAIN)\)\n$/)
  t.notMatch(proc.output(), /\n {4}at /, 'no stack trace')
})

t.test('a HOST with a port in it is named as the mistake', async (t) => {
  const proc = run(t, { HOST: 'localhost:8080' })
  t.equal((await proc.exit)[0], 1)
  t.match(proc.output(), /enos-mqtt-signer: Invalid configuration:\n {2}HOST: must be an IP address or a host name \(no port, no scheme\)\n$/)
})
