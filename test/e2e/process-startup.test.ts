// E2E, the real service as a child process: it starts with no configuration on the example store; a bad configuration or store file stops it with a clear message.
import { join } from 'node:path'
import t from 'tap'
import { EXAMPLE_PASSWORDS } from '../helper.js'
import { CHILD_BUDGET_MS, run, sign, start } from './process-helper.js'

t.setTimeout(3 * CHILD_BUDGET_MS)

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
