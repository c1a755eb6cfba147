// A fleet booting through each of its three ways to be a caller, over real sockets with the shipped limits: a fleet token, one NAT address when open, and a certificate per device.
import { once } from 'node:events'
import { Agent as HttpAgent, request, type IncomingMessage } from 'node:http'
import { Agent as HttpsAgent } from 'node:https'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { buildTestApp, FIXED_NOW, makeToken, writeTokenFile, type TestToken } from '../helper.js'
import { createDeviceDatabase, startPostgres } from '../pg-helper.js'
import { post, serve } from './tls-client.js'

// About 15 s on an idle machine (201 certificates made with openssl, 6030 TLS requests): a budget for a busy one.
t.setTimeout(300_000)

/** The shipped limits (an empty variable counts as unset): the test helper turns them off otherwise. */
const SHIPPED = { RATE_LIMIT_PER_CALLER: '', RATE_LIMIT_PER_DEVICE: '' }
/** More than the shipped RATE_LIMIT_PER_CALLER (6000) allows one caller in a minute. */
const DEVICES = 6100

function storeFile (t: Test, count: number): string {
  const devices = Array.from({ length: count }, (_, i) => ({ productKey: 'P1', deviceKey: `boot-${i}`, deviceSecret: `secret-${i}` }))
  return join(t.testdir({ 'devices.json': JSON.stringify({ devices }) }), 'devices.json')
}

function fleetToken (name: string, products: string[]): TestToken {
  const token = makeToken(name, ['sign'], products)
  return { ...token, entry: { ...token.entry, fleet: true } }
}

interface Client { port: number, agent: HttpAgent }

/** POST /sign over a real connection of `agent` (from `localAddress` when given); answers the status and the body. */
async function sign (client: Client, deviceKey: string, headers: Record<string, string> = {}, localAddress?: string): Promise<{ status: number, body: Record<string, unknown> }> {
  const req = request({ host: '127.0.0.1', port: client.port, path: '/sign', method: 'POST', agent: client.agent, headers: { 'content-type': 'application/json', ...headers }, ...(localAddress !== undefined && { localAddress }) })
  req.end(JSON.stringify({ productKey: 'P1', deviceKey }))
  const [res] = await once(req, 'response') as [IncomingMessage]
  let text = ''
  for await (const chunk of res) text += String(chunk)
  return { status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }
}

async function listen (t: Test, app: FastifyInstance): Promise<Client> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const agent = new HttpAgent({ keepAlive: true, maxSockets: 50 })
  t.teardown(() => agent.destroy())
  return { port: (app.server.address() as { port: number }).port, agent }
}

/** Every device boot-0 ... boot-(count - 1) signs once, 50 at a time over 50 keep-alive connections; the count of each status. */
async function boot (client: Client, count: number, headers: Record<string, string> = {}): Promise<Record<number, number>> {
  const statuses: Record<number, number> = {}
  for (let i = 0; i < count; i += 50) {
    const group = await Promise.all(Array.from({ length: Math.min(50, count - i) }, async (_, j) => (await sign(client, `boot-${i + j}`, headers)).status))
    for (const status of group) statuses[status] = (statuses[status] ?? 0) + 1
  }
  return statuses
}

t.test('fleet token: 6,100 devices sharing one token all sign in one minute; the 31st signature of one device gets 429', async (t) => {
  const fleet = fleetToken('boiler-firmware', ['P1'])
  const tool = makeToken('provisioning', ['sign'], ['P1'])
  const app = await buildTestApp(t, { ...SHIPPED, AUTH_MODE: 'token', AUTH_TOKENS_FILE: writeTokenFile(t, [fleet, tool]), STORE_FILE: storeFile(t, DEVICES) })
  const client = await listen(t, app)
  const headers = { authorization: `Bearer ${fleet.token}` }
  t.same(await boot(client, DEVICES, headers), { 200: DEVICES })
  for (let i = 1; i < 30; i++) await sign(client, 'boot-1', headers)
  t.match(await sign(client, 'boot-1', headers), { status: 429, body: { code: 'RATE_LIMITED', message: /RATE_LIMIT_PER_DEVICE/ } })
  // boot-1 is past its own limit now: one 429 of its own, the rest past RATE_LIMIT_PER_CALLER.
  t.same(await boot(client, DEVICES, { authorization: `Bearer ${tool.token}` }), { 200: 5999, 429: DEVICES - 5999 }, 'a token that is not a fleet token stops at RATE_LIMIT_PER_CALLER')
  t.match(await sign(client, 'boot-0', { authorization: `Bearer ${tool.token}` }), { status: 429, body: { message: /RATE_LIMIT_PER_CALLER/ } })
})

t.test('open: 6,100 devices behind one address (a NAT) all sign in one minute; the 31st signature of one device gets 429', async (t) => {
  const app = await buildTestApp(t, { ...SHIPPED, AUTH_MODE: 'none', STORE_FILE: storeFile(t, DEVICES) })
  const client = await listen(t, app)
  t.same(await boot(client, DEVICES), { 200: DEVICES })
  for (let i = 1; i < 30; i++) await sign(client, 'boot-2')
  t.match(await sign(client, 'boot-2'), { status: 429, body: { code: 'RATE_LIMITED', message: /RATE_LIMIT_PER_DEVICE/ } })
})

t.test('certificates: 201 devices with their own certificate each sign 30 times (6,030 in one minute, past RATE_LIMIT_PER_CALLER); a 31st gets 429', async (t) => {
  const count = 201
  const { port, pki } = await serve(t, (pki) => ({ ...SHIPPED, LOG_LEVEL: 'silent', AUTH_MODE: 'mtls', TLS_CLIENT_CA_FILE: pki.ca.certFile, STORE_FILE: storeFile(t, count) }))
  const certs = Array.from({ length: count }, (_, i) => pki.issue(`boot-${i}`, `P1/boot-${i}`))
  const statuses: Record<number, number> = {}
  for (let i = 0; i < count; i += 20) {
    await Promise.all(certs.slice(i, i + 20).map(async (cert, j) => {
      const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1 })
      try {
        for (let k = 0; k < 30; k++) {
          const { status } = await post(port, '/sign', { productKey: 'P1', deviceKey: `boot-${i + j}` }, { ca: pki.ca.cert, client: cert, agent })
          statuses[status] = (statuses[status] ?? 0) + 1
        }
      } finally {
        agent.destroy()
      }
    }))
  }
  t.same(statuses, { 200: count * 30 }, 'each device is its own caller: no budget shared between them')
  const last = await post(port, '/sign', { productKey: 'P1', deviceKey: 'boot-0' }, { ca: pki.ca.cert, client: certs[0] })
  t.match(last, { status: 429, body: { code: 'RATE_LIMITED', message: /RATE_LIMIT_PER_DEVICE/ } }, 'the 31st of one device')
})

t.test('fleet token on PostgreSQL: the unknown devices it may look up are counted per client address, so one holder cannot spend them for the fleet', async (t) => {
  const postgres = await startPostgres(t)
  const url = await createDeviceDatabase(postgres, [{ productKey: 'P1', deviceKey: 'boot-0', deviceSecret: 'secret-0', enabled: true }])
  const fleet = fleetToken('boiler-firmware', ['P1'])
  const config = loadConfig({
    LOG_LEVEL: 'silent', STORE: 'postgres', DATABASE_URL: url, AUTH_MODE: 'token', AUTH_TOKENS_FILE: writeTokenFile(t, [fleet]), RATE_LIMIT_UNKNOWN_PER_CALLER: '20'
  })
  const app = await buildApp(config, { clock: () => FIXED_NOW })
  t.teardown(() => app.close())
  const client = await listen(t, app)
  const headers = { authorization: `Bearer ${fleet.token}` }
  for (let i = 0; i < 20; i++) t.equal((await sign(client, `made-up-${i}`, headers, '127.0.0.1')).status, 404)
  t.match(await sign(client, 'made-up-new', headers, '127.0.0.1'), { status: 429, body: { message: /RATE_LIMIT_UNKNOWN_PER_CALLER/ } }, 'spent from 127.0.0.1')
  const elsewhere = new HttpAgent({ keepAlive: true })
  t.teardown(() => elsewhere.destroy())
  const other = { port: client.port, agent: elsewhere }
  t.equal((await sign(other, 'made-up-elsewhere', headers, '127.0.0.2')).status, 404, 'another address of the same fleet token still asks the database')
  t.equal((await sign(other, 'boot-0', headers, '127.0.0.2')).status, 200, 'and its real devices sign')
})
