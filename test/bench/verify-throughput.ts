// POST /verify against POST /sign in the same run and the same process, and an unknown-device storm on
// POST /verify with and without the negative cache (store lookups a second). Run with `npm run bench:verify`.
// Ratios only: absolute figures move with the machine. Rounds alternate the routes so that load on the
// machine hits both alike. Environment: BENCH_DURATION (s per run, 5), BENCH_ROUNDS (3), BENCH_CONNECTIONS (50).
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { signCredentials } from '../../src/core/credentials.js'

interface AcRequest { method: string, path: string, headers: Record<string, string>, body: string }
interface AcResult { requests: { mean: number, total?: number }, latency: { p99: number }, non2xx: number, errors: number }
interface AcClient { setRequests (requests: AcRequest[]): void }
const autocannon = createRequire(import.meta.url)('autocannon') as (opts: { url: string, connections: number, duration: number, requests: AcRequest[], setupClient: (client: AcClient) => void }) => Promise<AcResult>

const DURATION = Number(process.env.BENCH_DURATION ?? 5)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50)
const DEVICES = 10_000
const ROOT = fileURLToPath(new URL('../../', import.meta.url))

const dir = mkdtempSync(join(tmpdir(), 'verify-bench-'))
const children = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL')
  rmSync(dir, { recursive: true, force: true })
})

const devices = Array.from({ length: DEVICES }, (_, i) => ({ productKey: 'Bench001', deviceKey: `dev-${i}`, deviceSecret: randomBytes(16).toString('hex') }))
const storeFile = join(dir, 'devices.json')
writeFileSync(storeFile, JSON.stringify({ devices }))

const json = (path: string, body: object): AcRequest => ({ method: 'POST', path, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
const sample = devices.filter((_, i) => i % 10 === 0)
const signRequests = sample.map((d) => json('/sign', { productKey: d.productKey, deviceKey: d.deviceKey }))
const verifyRequests = sample.map((d) => {
  const c = signCredentials({ ...d, clientId: d.deviceKey, timestamp: String(Date.now()), signMethod: 'hmacsha1' })
  return json('/verify', { clientid: c.mqttClientId, username: c.mqttUsername, password: c.mqttPassword })
})
// A storm: 1000 devices that are not in the store (a fleet flashed with the wrong productKey) reconnecting in a loop.
const stormRequests = Array.from({ length: 1000 }, (_, i) => json('/verify', { clientid: `x${i}|securemode=2,signmethod=sha256,timestamp=1|`, username: `ghost-${i}&Bench001`, password: 'AB'.repeat(32) }))

interface Target { name: string, url: string, lookups: () => Promise<number> }

async function start (name: string, env: Record<string, string>): Promise<Target> {
  // The server on core 1 when taskset exists; the load generator (this process) stays where it is.
  const args = ['--import', 'tsx', join(ROOT, 'test/bench/verify-server.ts')]
  const child = spawn('taskset', ['-c', '1', process.execPath, ...args], {
    cwd: ROOT,
    env: { ...process.env, STORE_FILE: storeFile, AUTH_MODE: 'none', LOG_LEVEL: 'warn', RATE_LIMIT_PER_CALLER: '0', RATE_LIMIT_PER_DEVICE: '0', RATE_LIMIT_VERIFY_PER_DEVICE: '1000000', PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc']
  })
  children.add(child)
  const url = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${name} exited ${code}`)))
    child.stdout?.on('data', (chunk: Buffer) => {
      const match = /Server listening at (\S+)/.exec(chunk.toString())
      if (match?.[1] !== undefined) resolve(match[1])
    })
  })
  const lookups = async (): Promise<number> => await new Promise((resolve) => {
    child.once('message', (count) => resolve(Number(count)))
    child.send('lookups')
  })
  return { name, url, lookups }
}

async function run (target: Target, requests: AcRequest[], duration = DURATION): Promise<{ rps: number, p99: number, lookupsPerSecond: number, lookupsPerRequest: number }> {
  const before = await target.lookups()
  let client = 0
  const result = await autocannon({
    url: target.url,
    connections: CONNECTIONS,
    duration,
    requests,
    // Each connection walks the requests from its own offset, so that together they cover all of them at once.
    setupClient (c) {
      const offset = Math.floor((client++ * requests.length) / CONNECTIONS)
      c.setRequests([...requests.slice(offset), ...requests.slice(0, offset)])
    }
  })
  if (result.non2xx + result.errors > 0) throw new Error(`${target.name}: ${result.non2xx} non-2xx, ${result.errors} errors`)
  const lookups = (await target.lookups()) - before
  return { rps: result.requests.mean, p99: result.latency.p99, lookupsPerSecond: lookups / duration, lookupsPerRequest: lookups / Math.max(1, result.requests.total ?? 0) }
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN
const fmt = (value: number, digits = 0): string => value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

const cached = await start('cache 5 s', { VERIFY_UNKNOWN_CACHE_MS: '5000' })
const uncached = await start('cache off', { VERIFY_UNKNOWN_CACHE_MS: '0' })
console.log(`node ${process.version}; ${DEVICES} devices; ${CONNECTIONS} connections; ${ROUNDS} rounds of ${DURATION} s per run`)
await run(cached, signRequests)
await run(cached, verifyRequests)

const ratios: number[] = []
for (let round = 1; round <= ROUNDS; round++) {
  const sign = await run(cached, signRequests)
  const verify = await run(cached, verifyRequests)
  ratios.push(verify.rps / sign.rps)
  console.log(`round ${round}: POST /sign ${fmt(sign.rps)} req/s (p99 ${sign.p99} ms), POST /verify ${fmt(verify.rps)} req/s (p99 ${verify.p99} ms), ratio ${fmt(verify.rps / sign.rps, 2)}`)
}
console.log(`POST /verify / POST /sign, median of per-round ratios: ${fmt(median(ratios), 2)} (range ${fmt(Math.min(...ratios), 2)}-${fmt(Math.max(...ratios), 2)})`)

// Twice the cache's 5 s, so that every unknown device is looked up again once its entry has expired.
const STORM_SECONDS = Math.max(DURATION, 10)
console.log(`\nUnknown-device storm (1000 unknown devices reconnecting in a loop, every request a deny; ${STORM_SECONDS} s):`)
for (const target of [uncached, cached]) {
  const storm = await run(target, stormRequests, STORM_SECONDS)
  console.log(`  ${target.name}: ${fmt(storm.rps)} req/s, store lookups ${fmt(storm.lookupsPerSecond)}/s (${fmt(storm.lookupsPerRequest, 3)} per request)`)
}
process.exit(0)
