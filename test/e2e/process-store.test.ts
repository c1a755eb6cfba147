// The real service and a real store file being changed under it: writes caught half-way, SIGHUP during startup.
import { appendFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { CHILD_BUDGET_MS, run, sign, start, waitFor } from './process-helper.js'

t.setTimeout(3 * CHILD_BUDGET_MS)

const HEADER = 'productKey,deviceKey,deviceSecret\n'
const ROWS = ['P1,dev-1,secret-one\n', 'P1,dev-2,secret-two\n', 'P1,dev-3,secret-three\n']
const request = { productKey: 'P1', clientId: 'c1', timestamp: '1524448722000' }

async function passwordOf (port: number, deviceKey: string): Promise<string | undefined> {
  const res = await sign(port, { ...request, deviceKey })
  return res.status === 200 ? ((await res.json()) as { mqttPassword: string }).mqttPassword : `status ${res.status}`
}

async function readyz (port: number): Promise<{ status: number, body: { store: Record<string, unknown> } }> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`)
  return { status: res.status, body: await res.json() as { store: Record<string, unknown> } }
}

t.test('a CSV written in two pieces with a pause is never served half: not cut mid-line, not cut at a line end', async (t) => {
  const dir = t.testdir({ 'devices.csv': HEADER + ROWS.join('') })
  const file = join(dir, 'devices.csv')
  const server = await start(t, { STORE_FILE: file, STORE_WATCH: 'true', STORE_SETTLE_MS: '200', STORE_POLL_MS: '100' })
  const before = await Promise.all(['dev-1', 'dev-2', 'dev-3'].map((key) => passwordOf(server.port, key)))

  // Piece one ends inside the line of dev-2; the writer then pauses for longer than the settle time.
  const rotated = HEADER + ROWS.join('').replaceAll('secret-', 'rotated-')
  const cut = rotated.indexOf('rotated-two') + 4
  await writeFile(file, rotated.slice(0, cut))
  await waitFor(server, /does not end with a newline[^\n]*"msg":"device store reload failed/)
  t.same(await Promise.all(['dev-1', 'dev-2', 'dev-3'].map((key) => passwordOf(server.port, key))), before, 'every device signs as before, dev-2 with its whole secret')
  t.match(await readyz(server.port), { status: 200, body: { status: 'ready', store: { devices: 3, lastReloadError: { message: /line 3: the file does not end with a newline/ } } } })

  // Piece two finishes the file: it is loaded by itself.
  await appendFile(file, rotated.slice(cut))
  await waitFor(server, /"devices":3,"removed":0,"msg":"device store reloaded"/)
  t.not(await passwordOf(server.port, 'dev-3'), before[2], 'the finished file is served')

  // A writer cut exactly at a line end: a valid, shorter file. Held, and applied only on SIGHUP.
  await writeFile(file, HEADER)
  await waitFor(server, /device store change held/)
  t.match(await readyz(server.port), { status: 200, body: { store: { devices: 3, heldReload: { devices: 0, removed: 3 } } } })
  t.equal((await sign(server.port, { ...request, deviceKey: 'dev-1' })).status, 200, 'still signing')
  server.child.kill('SIGHUP')
  await waitFor(server, /"trigger":"SIGHUP","devices":0,"removed":3,"msg":"device store reloaded"/)
  t.equal((await sign(server.port, { ...request, deviceKey: 'dev-1' })).status, 404)
  server.child.kill('SIGTERM')
  t.same(await server.exit, [0, null])
})

t.test('SIGHUP while the service is still loading is ignored, not fatal', async (t) => {
  const dir = t.testdir({ 'devices.csv': HEADER + ROWS.join('') })
  const proc = run(t, { STORE_FILE: join(dir, 'devices.csv') })
  await waitFor(proc, /"msg":"starting"/)
  // The app's modules take a while to load from here on; three signals land in that time.
  for (let i = 0; i < 3; i++) proc.child.kill('SIGHUP')
  const [, port] = await waitFor(proc, /Server listening at http:\/\/127\.0\.0\.1:(\d+)/)
  t.equal(proc.child.exitCode, null, 'still running')
  t.equal((await sign(Number(port), { ...request, deviceKey: 'dev-1' })).status, 200)
  proc.child.kill('SIGTERM')
  t.same(await proc.exit, [0, null])
})
