import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { writeFile } from 'node:fs/promises'
import { connect, createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { EXAMPLE_PASSWORDS, type Teardown } from '../helper.js'

const SERVER = fileURLToPath(new URL('../../src/server.ts', import.meta.url))

interface Running {
  child: ChildProcess
  port: number
  output: () => string
  exit: Promise<[number | null, NodeJS.Signals | null]>
}

/** Runs src/server.ts as its own process (same loader and coverage as the test) and waits for "listening". */
function run (t: Teardown, env: Record<string, string>): { child: ChildProcess, output: () => string, exit: Running['exit'] } {
  const child = spawn(process.execPath, [...process.execArgv, SERVER], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', STORE_WATCH: 'false', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  child.stdout?.on('data', (chunk: Buffer) => { out += chunk.toString() })
  child.stderr?.on('data', (chunk: Buffer) => { out += chunk.toString() })
  const exit = once(child, 'exit') as Running['exit']
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  return { child, output: () => out, exit }
}

/** Waits until the process has printed something matching `pattern`; fails if it exits first. */
async function waitFor (proc: ReturnType<typeof run>, pattern: RegExp): Promise<RegExpExecArray> {
  const exited = proc.exit.then(() => { throw new Error(`server exited: ${proc.output()}`) })
  for (;;) {
    const match = pattern.exec(proc.output())
    if (match !== null) return match
    await Promise.race([once(proc.child.stdout!, 'data'), exited])
  }
}

async function start (t: Teardown, env: Record<string, string> = {}): Promise<Running> {
  const proc = run(t, env)
  const [, port] = await waitFor(proc, /Server listening at http:\/\/127\.0\.0\.1:(\d+)/)
  return { ...proc, port: Number(port) }
}

async function sign (port: number, body: object): Promise<Response> {
  return fetch(`http://127.0.0.1:${port}/sign`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
}

/** Resolves once the port refuses new connections (the server stopped accepting). */
async function waitUntilRefused (port: number): Promise<void> {
  for (;;) {
    const socket = connect(port, '127.0.0.1')
    const refused = await new Promise<boolean>((resolve) => {
      socket.once('connect', () => { socket.destroy(); resolve(false) })
      socket.once('error', () => resolve(true))
    })
    if (refused) return
  }
}

/** Opens a POST /sign whose headers the server has read (it answered 100 Continue) but whose body is not sent yet. */
async function openInFlightRequest (port: number, body: string): Promise<Socket> {
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(`POST /sign HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\n\r\n`)
  const [first] = await once(socket, 'data') as [Buffer]
  if (!first.toString().startsWith('HTTP/1.1 100 Continue')) throw new Error(`unexpected: ${first.toString()}`)
  return socket
}

t.test('npm start path: the server signs on the bundled example store and warns that it is the example', async (t) => {
  const server = await start(t, {})
  const res = await sign(server.port, { productKey: '123', deviceKey: 'test', clientId: '123', timestamp: '1524448722000' })
  t.equal(res.status, 200)
  t.equal(((await res.json()) as { mqttPassword: string }).mqttPassword, EXAMPLE_PASSWORDS.hmacsha1)
  t.match(server.output(), /serving the bundled example store/)
  t.match(server.output(), /AUTH_MODE=none: anyone who can reach this port can get credentials/)
  server.child.kill('SIGTERM')
  t.same(await server.exit, [0, null])
})

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

t.test('a bad configuration stops startup with one message naming every bad variable', async (t) => {
  const proc = run(t, { PORT: 'eighty', SIGN_METHOD: 'sha512', AUTH_MODE: 'open' })
  const [code] = await proc.exit
  t.equal(code, 1)
  t.match(proc.output(), /^enos-mqtt-signer: Invalid configuration:\n {2}PORT: .*\n {2}SIGN_METHOD: .*\n {2}AUTH_MODE: .*\n$/)
})

t.test('a bad store file stops startup naming the file and line', async (t) => {
  const dir = t.testdir({ 'devices.csv': 'productKey,deviceKey,deviceSecret\n123,test,topsecret\n123,test,othersecret\n' })
  const proc = run(t, { STORE_FILE: join(dir, 'devices.csv') })
  t.equal((await proc.exit)[0], 1)
  t.match(proc.output(), /devices\.csv: line 3: duplicate device/)
  t.notMatch(proc.output(), /topsecret|othersecret/)
})

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

t.test('any other startup failure exits 1 with the cause', async (t) => {
  const proc = run(t, { HOST: 'no-such-host.invalid' })
  t.equal((await proc.exit)[0], 1)
  t.match(proc.output(), /failed to start: .*(ENOTFOUND|EAI_AGAIN)/)
})
