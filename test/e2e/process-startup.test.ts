// E2E, the real service as a child process: it starts with no configuration on the example store; a bad configuration or store file stops it with a clear message.
import { join } from 'node:path'
import t from 'tap'
import { EXAMPLE_STORE_FILE } from '../../src/config.js'
import { EXAMPLE_PASSWORDS, makeToken, writeTokenFile } from '../helper.js'
import { CHILD_BUDGET_MS, run, sign, start, waitFor } from './process-helper.js'

t.setTimeout(8 * CHILD_BUDGET_MS)

const example = { productKey: '123', deviceKey: 'test', clientId: '123', timestamp: '1524448722000' }

t.test('npm start path: with nothing set, the server signs on the bundled example store, open, and says so', async (t) => {
  // AUTH_MODE empty counts as unset: the quick start as a new user runs it.
  const server = await start(t, { AUTH_MODE: '' })
  const res = await sign(server.port, example)
  t.equal(res.status, 200)
  t.equal(((await res.json()) as { mqttPassword: string }).mqttPassword, EXAMPLE_PASSWORDS.hmacsha1)
  t.match(server.output(), /serving the bundled example store/)
  await waitFor(server, /AUTH_MODE unset with the bundled example store: the API runs open/)
  server.child.kill('SIGTERM')
  t.same(await server.exit, [0, null])
})

t.test('a real store with a token file: access control by token, and the log says so', async (t) => {
  const token = makeToken('factory', ['sign'], ['123'])
  const server = await start(t, { AUTH_MODE: '', STORE_FILE: EXAMPLE_STORE_FILE, AUTH_TOKENS_FILE: writeTokenFile(t, [token]) })
  await waitFor(server, /"authMode":"token".*"msg":"access control: token"/)
  t.equal((await sign(server.port, example)).status, 401)
  const res = await fetch(`http://127.0.0.1:${server.port}/sign`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token.token}` }, body: JSON.stringify(example) })
  t.equal(res.status, 200)
  t.notMatch(server.output(), token.token)
  server.child.kill('SIGTERM')
  t.same(await server.exit, [0, null])
})

t.test('AUTH_TOKENS_FILE without STORE_FILE: the example store is served by token, not open', async (t) => {
  const token = makeToken('factory', ['sign'], ['123'])
  const server = await start(t, { AUTH_MODE: '', AUTH_TOKENS_FILE: writeTokenFile(t, [token]) })
  const [mode] = await waitFor(server, /access control: token|the API runs open/)
  t.equal(mode, 'access control: token')
  t.equal((await sign(server.port, example)).status, 401, 'no token: refused')
  const res = await fetch(`http://127.0.0.1:${server.port}/sign`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token.token}` }, body: JSON.stringify(example) })
  t.equal(res.status, 200)
  server.child.kill('SIGTERM')
  t.same(await server.exit, [0, null])
})

t.test('a real store, AUTH_MODE unset, no token file: startup stops naming the two ways out', async (t) => {
  const proc = run(t, { AUTH_MODE: '', STORE_FILE: EXAMPLE_STORE_FILE })
  t.equal((await proc.exit)[0], 1)
  t.match(proc.output(), /AUTH_TOKENS_FILE: is required with AUTH_MODE=token \(the default with a real store\): create a token file \(enos-mqtt-signer token create\), or set AUTH_MODE=none to run the API open on purpose/)
})

t.test('a bad configuration stops startup with one message naming every bad variable', async (t) => {
  const proc = run(t, { PORT: 'eighty', SIGN_METHOD: 'sha512', AUTH_MODE: 'open' })
  const [code] = await proc.exit
  t.equal(code, 1)
  t.match(proc.output(), /^\{"level":30,[^\n]*"msg":"starting"\}\nenos-mqtt-signer: Invalid configuration:\n {2}PORT: .*\n {2}SIGN_METHOD: .*\n {2}AUTH_MODE: .*\n$/)
})

t.test('a bad store file stops startup naming the file and line', async (t) => {
  const dir = t.testdir({ 'devices.csv': 'productKey,deviceKey,deviceSecret\n123,test,topsecret\n123,test,othersecret\n' })
  const proc = run(t, { STORE_FILE: join(dir, 'devices.csv') })
  t.equal((await proc.exit)[0], 1)
  t.match(proc.output(), /devices\.csv: line 3: duplicate device/)
  t.notMatch(proc.output(), /topsecret|othersecret/)
})

t.test('a misspelt variable stops startup naming it and the setting it probably meant, whatever else the environment holds', async (t) => {
  // run() passes this process's whole environment (the shell's, npm's, tap's): none of it may trip the check.
  const proc = run(t, { AUTH_MODE: '', STORE_FIEL: '/data/devices.csv' })
  t.equal((await proc.exit)[0], 1)
  t.match(proc.output(), /\nenos-mqtt-signer: Invalid configuration:\n {2}STORE_FIEL: is not a setting of this service; did you mean STORE_FILE\?\n$/)
})
