// Real overload: load processes flood a real server process; it sheds with 503 OVERLOADED, keeps its probes, and recovers.
import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import t from 'tap'
import { EXAMPLE, type Teardown } from '../helper.js'
import { CHILD_BUDGET_MS, sign, start, type RunningServer } from './process-helper.js'

t.setTimeout(4 * CHILD_BUDGET_MS)

/**
 * A load process (plain JavaScript: no loader to start): CONNECTIONS keep-alive connections
 * sending POST /sign back to back for SECONDS, never waiting for Retry-After; prints what it saw
 * as one JSON line: counts by status, Retry-After values of the 503s, connection errors.
 */
const FLOOD = `
import { Agent, request } from 'node:http'
const [port, seconds, connections] = process.argv.slice(1).map(Number)
const agent = new Agent({ keepAlive: true, maxSockets: connections })
const body = JSON.stringify({ productKey: ${JSON.stringify(EXAMPLE.productKey)}, deviceKey: ${JSON.stringify(EXAMPLE.deviceKey)} })
const statuses = {}
const retryAfter = new Set()
let errors = 0
const until = Date.now() + seconds * 1000
function one () {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/sign', agent, headers: { 'content-type': 'application/json' } }, (res) => {
      statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1
      if (res.statusCode === 503) retryAfter.add(String(res.headers['retry-after']))
      res.resume()
      res.on('end', resolve)
      res.on('error', resolve)
    })
    req.on('error', () => { errors++; resolve() })
    req.end(body)
  })
}
async function loop () { while (Date.now() < until) await one() }
await Promise.all(Array.from({ length: connections }, loop))
agent.destroy()
process.stdout.write(JSON.stringify({ statuses, retryAfter: [...retryAfter], errors }) + '\\n')
`

/** Stops the server as a signal would, so that it exits cleanly (and writes its coverage). */
async function stop (server: RunningServer): Promise<void> {
  server.child.kill('SIGTERM')
  await server.exit
}

interface FloodResult { statuses: Record<string, number>, retryAfter: string[], errors: number }

async function flood (t: Teardown, port: number, seconds: number, connections: number): Promise<FloodResult> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', FLOOD, String(port), String(seconds), String(connections)], {
    // Not tap's NODE_OPTIONS (its loader and coverage hooks): this is a plain client.
    env: { PATH: process.env.PATH },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
  await once(child, 'close')
  return JSON.parse(out) as FloodResult
}

t.test('a flood from two processes that ignore Retry-After: some 503 OVERLOADED with Retry-After, no other 5xx, probes answered, then 200s again', async (t) => {
  // A short busy budget, so that the flood overloads the service however fast or slow the machine is.
  const server = await start(t, { OVERLOAD_BUSY_MS: '1', OVERLOAD_QUEUE_MS: '100', RATE_LIMIT_PER_CALLER: '0', RATE_LIMIT_PER_DEVICE: '0' })
  const floods = [flood(t, server.port, 4, 64), flood(t, server.port, 4, 64)]
  // Probes during the flood: each answered 200, however loaded the service is.
  const probes: number[] = []
  const probing = (async () => {
    for (let i = 0; i < 3; i++) probes.push((await fetch(`http://127.0.0.1:${server.port}/healthz`)).status)
  })()
  const results = await Promise.all(floods)
  await probing
  t.same(probes, [200, 200, 200])
  const statuses: Record<string, number> = {}
  for (const result of results) for (const [status, count] of Object.entries(result.statuses)) statuses[status] = (statuses[status] ?? 0) + count
  t.ok((statuses['503'] ?? 0) > 0, `some requests were shed: ${JSON.stringify(statuses)}`)
  t.ok((statuses['200'] ?? 0) > 0, 'some were signed')
  t.same(Object.keys(statuses).sort(), ['200', '503'], 'no status but 200 and 503')
  const retryAfter = results.flatMap((result) => result.retryAfter)
  t.ok(retryAfter.every((value) => /^([1-9]|[12][0-9]|30)$/.test(value)), `every Retry-After within the default 1..30 s: ${retryAfter.join(', ')}`)
  // Recovery: once the flood stops, the next request is signed.
  const after = await sign(server.port, { productKey: EXAMPLE.productKey, deviceKey: EXAMPLE.deviceKey })
  t.equal(after.status, 200)
  const metrics = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text()
  // Shed for a busy loop or for the wait of new connections (the flood's connections are new at first).
  const shed = [...metrics.matchAll(/^enos_signer_requests_shed_total\{reason="(?:busy|queue|in_flight)"\} (\d+)$/mg)].reduce((sum, match) => sum + Number(match[1]), 0)
  // A client may lose an answer to a reset connection (counted in its errors), never the server its count.
  t.ok(shed >= (statuses['503'] ?? 0), `/metrics counted every 503 (${shed}; errors ${results.map((r) => r.errors).join(', ')})`)
  t.match(server.output(), /overloaded: new requests are answered 503 OVERLOADED/)
  t.notMatch(server.output(), /"level":50/, 'no error was logged')
  await stop(server)
})

t.test('LISTEN_BACKLOG reaches the kernel (ss shows it as Send-Q), capped at net.core.somaxconn, which startup warns about', async (t) => {
  let somaxconn: number
  try {
    somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'))
    execFileSync('ss', ['-V'], { stdio: 'ignore' })
  } catch {
    t.comment('skipped: needs Linux and ss (iproute2)')
    return
  }
  // One more than the kernel allows: the kernel's cap, well above Node's own default of 511, and a warning.
  const server = await start(t, { LISTEN_BACKLOG: String(somaxconn + 1) })
  const lines = execFileSync('ss', ['-ltnH', `sport = :${server.port}`], { encoding: 'utf8' }).trim().split('\n')
  t.equal(lines.length, 16, 'LISTEN_SOCKETS (16 by default): the port is listened on 16 times (SO_REUSEPORT)')
  for (const line of lines) {
    // State, Recv-Q, Send-Q (the backlog), local address, peer.
    const [, , backlog] = line.trim().split(/\s+/)
    t.equal(Number(backlog), somaxconn, `ss: ${line.trim()}`)
  }
  t.match(server.output(), `LISTEN_BACKLOG=${somaxconn + 1} but the kernel caps it at net.core.somaxconn=${somaxconn}`)
  // New connections, spread by the kernel over the sockets, are all answered by the one service.
  for (let i = 0; i < 40; i++) t.equal((await fetch(`http://127.0.0.1:${server.port}/healthz`, { headers: { connection: 'close' } })).status, 200)
  await stop(server)
  t.equal(execFileSync('ss', ['-ltnH', `sport = :${server.port}`], { encoding: 'utf8' }).trim(), '', 'stopped: no socket listens any more')

  const single = await start(t, { LISTEN_SOCKETS: '1' })
  t.equal(execFileSync('ss', ['-ltnH', `sport = :${single.port}`], { encoding: 'utf8' }).trim().split('\n').length, 1, 'LISTEN_SOCKETS=1: one socket')
  await stop(single)
})
