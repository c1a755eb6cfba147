// `enos-mqtt-signer token create` as a child process: a token printed once, an entry the service loads, and that token working.
import { writeFileSync } from 'node:fs'
import t from 'tap'
import { buildTestApp, tempDir } from '../helper.js'
import { CHILD_BUDGET_MS } from '../e2e/process-helper.js'
import { runCli } from './cli-helper.js'

// Seven children (runCli), one budget each.
t.setTimeout(7 * CHILD_BUDGET_MS)

t.test('token create prints a 256-bit token once and an entry the service loads; the token then signs', async (t) => {
  const result = await runCli(t, ['token', 'create', '--name', 'line-7', '--scopes', 'sign,sign:batch', '--products', '123, Ab12Cd34', '--expires', '2099-01-01T00:00:00Z'])
  t.equal(result.code, 0)
  const token = result.stdout.trim()
  t.match(token, /^[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url')
  t.equal(Buffer.from(token, 'base64url').length, 32)
  const entry = JSON.parse(result.stderr.slice(result.stderr.indexOf('{'))) as Record<string, unknown>
  t.match(entry, { name: 'line-7', sha256: /^[0-9a-f]{64}$/, scopes: ['sign', 'sign:batch'], products: ['123', 'Ab12Cd34'], expires: '2099-01-01T00:00:00Z' })
  t.notOk(result.stderr.includes(token), 'the token is printed once, on standard output only')
  const path = `${tempDir(t, 'tokens-')}/tokens.json`
  writeFileSync(path, JSON.stringify({ tokens: [entry] }))
  const app = await buildTestApp(t, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: path })
  const res = await app.inject({ method: 'POST', url: '/sign', headers: { authorization: `Bearer ${token}` }, payload: { productKey: '123', deviceKey: 'test' } })
  t.equal(res.statusCode, 200)
  const again = await runCli(t, ['token', 'create', '--name', 'line-7', '--scopes', 'verify', '--products', '*'])
  t.not(again.stdout.trim(), token, 'a new token every time')
  t.match(JSON.parse(again.stderr.slice(again.stderr.indexOf('{'))), { products: '*' })
})

t.test('token create --fleet prints a fleet entry the service loads (sign only); with sign:batch it is refused, naming why', async (t) => {
  const result = await runCli(t, ['token', 'create', '--name', 'boiler-firmware', '--scopes', 'sign', '--products', 'P1', '--fleet'])
  t.equal(result.code, 0)
  const entry = JSON.parse(result.stderr.slice(result.stderr.indexOf('{'))) as Record<string, unknown>
  t.match(entry, { name: 'boiler-firmware', scopes: ['sign'], products: ['P1'], fleet: true })
  const path = `${tempDir(t, 'tokens-')}/tokens.json`
  writeFileSync(path, JSON.stringify({ tokens: [entry] }))
  const app = await buildTestApp(t, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: path })
  const res = await app.inject({ method: 'POST', url: '/sign', headers: { authorization: `Bearer ${result.stdout.trim()}` }, payload: { productKey: 'P1', deviceKey: 'none' } })
  t.equal(res.statusCode, 404, 'the token is taken (an unknown device of its product)')
  const batch = await runCli(t, ['token', 'create', '--name', 'firmware', '--scopes', 'sign,sign:batch', '--products', 'P1', '--fleet'])
  t.equal(batch.code, 2)
  t.equal(batch.stdout, '')
  t.equal(batch.stderr, 'token create: a fleet token may hold only the "sign" scope (it is shared by the firmware of many devices), not "sign:batch": give batch signing or verification a token of its own\n')
})

t.test('token create refuses what the service would refuse, with exit 2 and no token', async (t) => {
  const bad = await runCli(t, ['token', 'create', '--name', 'bad name', '--scopes', 'admin', '--products', 'x y'])
  t.equal(bad.code, 2)
  t.equal(bad.stdout, '')
  t.equal(bad.stderr, 'token create: name must be 1-64 characters from A-Z a-z 0-9 _ . : @ -; scopes must each be one of sign, sign:batch, verify; ' +
    'products must each be "*" or a productKey (1-64 characters from A-Z a-z 0-9 _ . : % -)\n')
  const expires = await runCli(t, ['token', 'create', '--name', 'a', '--scopes', 'sign', '--products', '*', '--expires', 'next week'])
  t.equal(expires.code, 2)
  t.match(expires.stderr, /--expires <date>.*must be an ISO date and time/)
  const help = await runCli(t, ['token', 'create', '--help'])
  t.match(help.stdout, /--name <name>[\s\S]*--scopes <list>[\s\S]*--products <list>[\s\S]*--expires <date>[\s\S]*--fleet +a fleet token, shared by the firmware of many devices[\s\S]*Rotating a token without downtime/)
})
