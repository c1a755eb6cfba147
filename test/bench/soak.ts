// Soak test of the built service (dist/): its maximum measured briefly, then mixed traffic at about 70% of it
// for SOAK_SECONDS (60), a store reload in the middle and /metrics scraped as Prometheus would. Loopback only,
// never part of npm test: `npm run soak` (it builds first). Exits 1 when a check fails.
//
// Checks: no 5xx, no connection errors or timeouts, resident memory grows less than 30 MB after the warm-up
// (the first 10 s), no more open file descriptors once the load has stopped than before it started, and the p99
// latency of the last 10 s within 1.5x that of the first 10 s.
//
// Then a storm phase: SOAK_STORM_SECONDS of a boot storm (test/bench/storm-client.ts: 3 load clients on their own
// source addresses, devices opening a new connection for one POST /sign each, retrying on 503 after Retry-After),
// SOAK_STORM_CONCURRENCY devices at a time (default: the keep-alive maximum above x 1 s, at most 5000: a few times
// what the service answers on new connections), then 3 s of rest and SOAK_RECOVERY_SECONDS of the soak's load again.
// Checks: no 5xx in the storm but 503 with Retry-After; the load after it as clean as the soak's (no 5xx, no
// connection errors, p99 within 2x the worse of the soak's first and last windows); resident memory back within
// 50 MB of before the storm; no more open file descriptors than before the soak; no log line at error or fatal
// during the whole run. How the storm itself was answered (timeouts, p99) is printed, not checked here:
// `npm run bench:storm` holds those goals.
//
// Environment overrides: SOAK_SECONDS (60), SOAK_MAX_SECONDS (5, the maximum's measure), SOAK_LOAD (0.7, share of
// the maximum), SOAK_CONNECTIONS (50), SOAK_DEVICES (10000), SOAK_STORM_SECONDS (10), SOAK_STORM_CONCURRENCY,
// SOAK_RECOVERY_SECONDS (5).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { get, request } from 'node:http'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { canConnect, freePort } from '../free-port.js'
import { envNumber } from './env.js'
import { runPhase, split, startStormClients } from './storm-client.js'

// ---- autocannon (CommonJS, no bundled types): the part of its API used here ----

interface AcRequest { method: string, path: string, headers: Record<string, string>, body?: string }
interface AcClient { setRequests (requests: AcRequest[]): void }
interface AcResult { requests: { mean: number, total: number }, errors: number, timeouts: number, non2xx: number, statusCodeStats: Record<string, { count: number }> }
interface AcOptions { url: string, connections: number, duration: number, overallRate?: number, requests: AcRequest[], setupClient?: (client: AcClient) => void }
interface AcInstance {
  on (event: 'response', listener: (client: unknown, statusCode: number, bytes: number, ms: number) => void): void
  on (event: 'reqError', listener: (err: Error) => void): void
}
const autocannon = createRequire(import.meta.url)('autocannon') as (opts: AcOptions, done: (err: Error | null, result: AcResult) => void) => AcInstance

// ---- settings ----

const SECONDS = Math.round(envNumber('SOAK_SECONDS', 60))
const MAX_SECONDS = Math.round(envNumber('SOAK_MAX_SECONDS', 5))
const LOAD = envNumber('SOAK_LOAD', 0.7)
const CONNECTIONS = Math.round(envNumber('SOAK_CONNECTIONS', 50))
const DEVICES = Math.round(envNumber('SOAK_DEVICES', 10_000))
/** The windows compared: the first and the last this many seconds (shorter runs compare their first and last thirds). */
const WINDOW_S = Math.max(1, Math.min(10, Math.floor(SECONDS / 3)))
const MAX_RSS_GROWTH_MB = 30
const MAX_P99_RATIO = 1.5
const STORM_SECONDS = envNumber('SOAK_STORM_SECONDS', 10)
const RECOVERY_SECONDS = Math.round(envNumber('SOAK_RECOVERY_SECONDS', 5))
/**
 * After the storm: resident memory within this much of before it (issue 15's storm goal: growth
 * under 100 MB), and the load's p99 within this ratio of the soak's first window. Since the
 * storm's connections are accepted at once (LISTEN_SOCKETS) rather than left in the kernel's
 * queue, the heap grows in the storm, and V8 keeps much of it after (measured: 74-86 MB after
 * 10 s of rest, from a peak of 110 MB more); 50 MB held only while connections waited in the kernel.
 */
const MAX_RSS_AFTER_STORM_MB = 100
const MAX_P99_RATIO_AFTER_STORM = 2
const STORM_CLIENTS = 3

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SERVICE_ENTRY = join(ROOT, 'dist', 'server.js')

// ---- store and requests ----

interface Device { productKey: string, deviceKey: string, deviceSecret: string }

function makeDevices (count: number, offset = 0): Device[] {
  return Array.from({ length: count }, (_, i) => ({
    productKey: `soak${String((i + offset) % 100).padStart(4, '0')}`,
    deviceKey: `dev-${String(i + offset + 1).padStart(7, '0')}`,
    deviceSecret: randomBytes(16).toString('hex')
  }))
}

/** Replaces the store file as a deployment does: a new file renamed over the old one. */
function writeStore (path: string, devices: readonly Device[]): void {
  writeFileSync(`${path}.new`, JSON.stringify({ devices }))
  renameSync(`${path}.new`, path)
}

const JSON_HEADERS = { 'content-type': 'application/json' }

/**
 * The mix of the load, per 100 requests: 85 single signs, 5 batches of 20 devices, 5 unknown devices
 * (404), 5 invalid bodies (400). Shuffled, so each connection sees all kinds. Bodies that are not
 * JSON are sent apart ({@link sendBrokenJson}): their answer closes the connection, and autocannon
 * times the request after a reconnect from before it (about 1 s on every such request, measured).
 */
function mixedRequests (devices: readonly Device[], count: number): AcRequest[] {
  const pick = (): Device => devices[Math.floor(Math.random() * devices.length)] as Device
  const sign = (body: unknown): AcRequest => ({ method: 'POST', path: '/sign', headers: JSON_HEADERS, body: JSON.stringify(body) })
  const requests: AcRequest[] = []
  for (let i = 0; i < count; i++) {
    const kind = i % 20
    if (kind < 16) {
      const { productKey, deviceKey } = pick()
      requests.push(sign({ productKey, deviceKey, ...(i % 3 === 0 && { clientId: `c${i}`, timestamp: String(Date.now()) }), ...(i % 5 === 0 && { signMethod: 'sha256' }) }))
    } else if (kind === 16) {
      const items = Array.from({ length: 20 }, () => { const { productKey, deviceKey } = pick(); return { productKey, deviceKey } })
      requests.push({ method: 'POST', path: '/sign/batch', headers: JSON_HEADERS, body: JSON.stringify({ devices: items }) })
    } else if (kind === 17) {
      requests.push(sign({ productKey: 'soak0000', deviceKey: `nobody-${i}` }))
    } else if (kind === 18) {
      requests.push(sign({ productKey: 'soak0000', deviceKey: 'dev 1', extra: true }))
    } else {
      const { productKey, deviceKey } = pick()
      requests.push(sign({ productKey, deviceKey }))
    }
  }
  for (let i = requests.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[requests[i], requests[j]] = [requests[j] as AcRequest, requests[i] as AcRequest]
  }
  return requests
}

// ---- the service process ----

let child: ChildProcess | undefined
let tempDir: string | undefined
/** The storm's load clients. */
const loadClients = new Set<ChildProcess>()

function cleanUp (): void {
  child?.kill('SIGKILL')
  for (const client of loadClients) client.kill('SIGKILL')
  if (tempDir !== undefined) rmSync(tempDir, { recursive: true, force: true })
  tempDir = undefined
}
process.on('exit', cleanUp)
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => { cleanUp(); process.exit(130) })

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** The server on one core and this process (the load) on the other, where taskset exists: they do not steal each other's CPU. */
function pinned (args: string[]): [string, string[]] {
  try {
    execFileSync('taskset', ['-cp', '0', String(process.pid)], { stdio: 'ignore' })
    return ['taskset', ['-c', '1', process.execPath, ...args]]
  } catch {
    return [process.execPath, args]
  }
}

interface Service { url: string, host: string, port: number, pid: number, stderr: () => string, logErrors: { count: number, first: string[] } }

async function startService (env: Record<string, string>): Promise<Service> {
  const port = await freePort()
  const [command, args] = pinned([SERVICE_ENTRY])
  const started = spawn(command, args, { cwd: ROOT, env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1' }, stdio: ['ignore', 'pipe', 'pipe'] })
  child = started
  let stderr = ''
  // The log lines: read and dropped, as a log shipper would; those at error or fatal are counted (the first 3 kept).
  let partial = ''
  const logErrors = { count: 0, first: [] as string[] }
  started.stdout?.setEncoding('utf8')
  started.stdout?.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) {
      if (!/"level":(50|60)[,}]/.test(line)) continue
      logErrors.count++
      if (logErrors.first.length < 3) logErrors.first.push(line.slice(0, 500))
    }
  })
  started.stderr?.on('data', (chunk: Buffer) => { stderr = (stderr + chunk.toString()).slice(-4000) })
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline && started.exitCode === null) {
    if (await canConnect(port)) return { url: `http://127.0.0.1:${port}`, host: '127.0.0.1', port, pid: started.pid as number, stderr: () => stderr, logErrors }
    await sleep(50)
  }
  throw new Error(`the service did not listen within 30 s:\n${stderr}`)
}

// ---- measuring ----

/** The process's resident memory in MB, its open file descriptors and the CPU seconds it has used, from /proc. */
function sampleProcess (pid: number): { rssMb: number, fds: number, cpuS: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const rssKb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1])
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // After the command name (in parentheses, may hold spaces): utime and stime are the 14th and 15th fields.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { rssMb: rssKb / 1024, fds: readdirSync(`/proc/${pid}/fd`).length, cpuS: (Number(fields[11]) + Number(fields[12])) / 100 }
}

function percentile (values: number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number
}

function run (url: string, requests: AcRequest[], seconds: number, rate: number | undefined, onResponse?: (status: number, ms: number) => void): Promise<{ result: AcResult, reqErrors: string[] }> {
  const reqErrors: string[] = []
  let client = 0
  return new Promise((resolve, reject) => {
    const instance = autocannon({
      url,
      connections: CONNECTIONS,
      duration: seconds,
      ...(rate !== undefined && { overallRate: rate }),
      requests,
      setupClient (c) {
        const offset = Math.floor((client++ * requests.length) / CONNECTIONS)
        c.setRequests([...requests.slice(offset), ...requests.slice(0, offset)])
      }
    }, (err, result) => err === null ? resolve({ result, reqErrors }) : reject(err))
    if (onResponse !== undefined) instance.on('response', (_client, status, _bytes, ms) => onResponse(status, ms))
    instance.on('reqError', (err) => { if (reqErrors.length < 10) reqErrors.push(err.message) })
  })
}

/** GET /metrics on a connection of its own, closed after (a pooled one would count as an fd of the service). */
function scrape (url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(`${url}/metrics`, { agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('end', () => res.statusCode === 200 ? resolve(text) : reject(new Error(`GET /metrics: ${res.statusCode}`)))
    }).on('error', reject)
  })
}

function seriesValue (metrics: string, name: string, labels: string): number {
  const line = metrics.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels))
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1))
}

/** Sends a body that is not JSON on a connection of its own; resolves with the status, or the error's code. */
function sendBrokenJson (url: string): Promise<number | string> {
  return new Promise((resolve) => {
    const req = request(`${url}/sign`, { method: 'POST', agent: false, headers: JSON_HEADERS }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
    req.end('{"productKey": ')
  })
}

// ---- the storm phase ----

interface StormOutcome {
  concurrency: number
  okPerS: number
  statuses: Record<string, number>
  failures: Record<string, number>
  /** 5xx other than 503 with a Retry-After (the answer of a service shedding load). */
  unexpected5xx: number
  p99: number
  rssBefore: number
  rssPeak: number
  rssAfter: number
  fdsAfter: number
  recovery: AcResult
  recoveryErrors: string[]
  recovery5xx: number
  recoveryP99: number
}

/** The storm, a rest, then the soak's load again for RECOVERY_SECONDS: see the file's header. */
async function stormPhase (service: Service, devices: readonly Device[], maxRps: number, requests: AcRequest[], rate: number): Promise<StormOutcome> {
  const concurrency = Math.min(5000, Math.round(envNumber('SOAK_STORM_CONCURRENCY', Math.max(STORM_CLIENTS, maxRps))))
  const clients = await startStormClients(Array.from({ length: STORM_CLIENTS }, (_, i) => ({
    target: { host: service.host, port: service.port },
    path: '/sign',
    // A caller of its own each, should the service tell callers apart by address.
    localAddress: `127.0.0.${i + 2}`,
    devices: devices.filter((_, d) => d % STORM_CLIENTS === i).map((d): [string, string] => [d.productKey, d.deviceKey]),
    timeoutMs: 10_000,
    retryScale: 1
  })), loadClients)
  const before = sampleProcess(service.pid)
  let peak = before.rssMb
  const sampler = setInterval(() => { peak = Math.max(peak, sampleProcess(service.pid).rssMb) }, 200)
  console.log(`\nstorm: ${concurrency} devices at a time for ${STORM_SECONDS} s, a new connection per request`)
  const stats = await runPhase(clients, split(concurrency, clients.map(() => 1)), STORM_SECONDS * 1000)
  clearInterval(sampler)
  for (const client of clients) client.child.disconnect()
  const statuses: Record<string, number> = {}
  const failures: Record<string, number> = {}
  for (const s of stats) {
    for (const [k, n] of Object.entries(s.statuses)) statuses[k] = (statuses[k] ?? 0) + n
    for (const [k, n] of Object.entries(s.errors)) failures[k] = (failures[k] ?? 0) + n
  }
  const noRetryAfter = stats.reduce((n, s) => n + s.noRetryAfter, 0)
  const unexpected5xx = Object.entries(statuses).filter(([status]) => Number(status) >= 500 && status !== '503').reduce((n, [, count]) => n + count, 0) + noRetryAfter
  await sleep(3000)

  const recoveryLatencies: number[] = []
  let recovery5xx = 0
  const recovery = await run(service.url, requests, RECOVERY_SECONDS, rate, (status, ms) => {
    if (status >= 500) recovery5xx++
    recoveryLatencies.push(ms)
  })
  // Memory comes back once the service is idle (V8 gives pages back when it is not busy): up to 10 s of rest.
  let after = sampleProcess(service.pid)
  for (let waited = 0; waited < 10_000 && after.rssMb - before.rssMb >= MAX_RSS_AFTER_STORM_MB; waited += 500) {
    await sleep(500)
    after = sampleProcess(service.pid)
  }
  return {
    concurrency,
    okPerS: stats.reduce((n, s) => n + s.ok, 0) / STORM_SECONDS,
    statuses,
    failures,
    unexpected5xx,
    p99: percentile(stats.flatMap((s) => s.latencies), 99),
    rssBefore: before.rssMb,
    rssPeak: peak,
    rssAfter: after.rssMb,
    fdsAfter: after.fds,
    recovery: recovery.result,
    recoveryErrors: recovery.reqErrors,
    recovery5xx,
    recoveryP99: percentile(recoveryLatencies, 99)
  }
}

// ---- main ----

async function main (): Promise<void> {
  tempDir = mkdtempSync(join(tmpdir(), 'soak-'))
  const storeFile = join(tempDir, 'devices.json')
  const devices = makeDevices(DEVICES)
  writeStore(storeFile, devices)
  const service = await startService({
    STORE_FILE: storeFile,
    AUTH_MODE: 'none',
    LOG_LEVEL: 'info',
    // The load repeats devices far faster than a device reconnects: the limits would answer 429 to most of it.
    RATE_LIMIT_PER_DEVICE: '0',
    RATE_LIMIT_PER_CALLER: '0'
  })
  const requests = mixedRequests(devices, 200)
  console.log(`node ${process.version}; ${DEVICES} devices; ${CONNECTIONS} connections; service pid ${service.pid}`)

  const max = await run(service.url, requests, MAX_SECONDS, undefined)
  const maxRps = max.result.requests.mean
  const rate = Math.max(1, Math.round(maxRps * LOAD))
  console.log(`maximum: ${Math.round(maxRps)} req/s over ${MAX_SECONDS} s (statuses ${JSON.stringify(max.result.statusCodeStats)}); soak at ${rate} req/s for ${SECONDS} s`)
  await sleep(1000)
  const idleBefore = sampleProcess(service.pid)

  const latencies: number[][] = Array.from({ length: SECONDS + 2 }, () => [])
  const statuses = new Map<number, number>()
  const samples: Array<{ at: number, rssMb: number, fds: number, cpuS: number }> = []
  let started = 0
  const brokenJsonErrors: string[] = []
  const timers: NodeJS.Timeout[] = []
  /** The clock, the samples, the scrapes and the reload start with the first answer: autocannon takes a while to set up. */
  function begin (): void {
    started = Date.now()
    timers.push(setInterval(() => { samples.push({ at: (Date.now() - started) / 1000, ...sampleProcess(service.pid) }) }, 1000))
    // Prometheus scrapes every few seconds; the store is replaced halfway through and SIGHUP sent, as a deployment does.
    timers.push(setInterval(() => { scrape(service.url).catch((err: unknown) => { console.error(`scrape failed: ${String(err)}`) }) }, 5000))
    // Bad input that closes its connection: 2% of the rate, beside the load.
    timers.push(setInterval(() => {
      for (let i = 0; i < Math.max(1, Math.round(rate / 500)); i++) {
        sendBrokenJson(service.url).then((status) => {
          if (typeof status === 'number') statuses.set(status, (statuses.get(status) ?? 0) + 1)
          else brokenJsonErrors.push(status)
        }).catch(() => {})
      }
    }, 100))
    timers.push(setTimeout(() => {
      writeStore(storeFile, [...devices, ...makeDevices(1000, DEVICES)])
      process.kill(service.pid, 'SIGHUP')
      console.log(`  ${((Date.now() - started) / 1000).toFixed(1)} s: store replaced (+1000 devices) and SIGHUP sent`)
    }, SECONDS * 500))
  }
  const soak = await run(service.url, requests, SECONDS, rate, (status, ms) => {
    if (started === 0) begin()
    statuses.set(status, (statuses.get(status) ?? 0) + 1)
    latencies[Math.floor((Date.now() - started) / 1000)]?.push(ms)
  })
  for (const timer of timers) clearTimeout(timer)
  await sleep(2000)
  const idleAfter = sampleProcess(service.pid)
  const metrics = await scrape(service.url)
  const storm = await stormPhase(service, devices, maxRps, requests, rate)

  // ---- report ----
  const windows = Array.from({ length: Math.ceil(SECONDS / WINDOW_S) }, (_, w) => latencies.slice(w * WINDOW_S, (w + 1) * WINDOW_S).flat())
  const first = windows[0] ?? []
  const last = windows.at(-1) ?? []
  // Server CPU per window: a service that slows down spends more CPU per request; one starved by its neighbours on a
  // busy machine gets less than a core while its latency grows.
  console.log('\nwindow  requests  req/s     p50 ms  p99 ms  RSS MB  fds  server CPU  µs CPU/req')
  windows.forEach((values, w) => {
    const sample = samples.filter((s) => s.at <= (w + 1) * WINDOW_S).at(-1)
    const before = samples.filter((s) => s.at <= w * WINDOW_S).at(-1) ?? { at: 0, cpuS: idleBefore.cpuS }
    const cpuS = sample === undefined ? Number.NaN : sample.cpuS - before.cpuS
    const share = sample === undefined ? Number.NaN : cpuS / (sample.at - before.at)
    console.log(`${String(w * WINDOW_S).padStart(3)}-${String((w + 1) * WINDOW_S).padEnd(3)} ${String(values.length).padStart(8)}  ${String(Math.round(values.length / WINDOW_S)).padStart(6)}  ` +
      `${percentile(values, 50).toFixed(2).padStart(8)}  ${percentile(values, 99).toFixed(2).padStart(6)}  ${(sample?.rssMb ?? Number.NaN).toFixed(1).padStart(6)}  ${String(sample?.fds ?? '-').padStart(3)}  ` +
      `${`${Math.round(share * 100)}%`.padStart(10)}  ${(cpuS * 1e6 / Math.max(1, values.length)).toFixed(0).padStart(10)}`)
  })
  const rssAfterWarmup = samples.filter((s) => s.at <= WINDOW_S).at(-1)?.rssMb ?? Number.NaN
  const rssEnd = samples.at(-1)?.rssMb ?? Number.NaN
  const rssPeak = Math.max(...samples.map((s) => s.rssMb))
  const p99First = percentile(first, 99)
  const p99Last = percentile(last, 99)
  const p99Soak = Math.max(p99First, p99Last)
  const fiveXx = [...statuses].filter(([status]) => status >= 500).reduce((n, [, count]) => n + count, 0)
  const reloads = seriesValue(metrics, 'enos_signer_store_reloads_total', 'outcome="reloaded"')
  const storeDevices = seriesValue(metrics, 'enos_signer_store_devices', 'store="file"')
  console.log(`\nstatuses: ${JSON.stringify(Object.fromEntries([...statuses].sort()))}; total ${soak.result.requests.total}, mean ${Math.round(soak.result.requests.mean)} req/s`)
  console.log(`RSS: ${idleBefore.rssMb.toFixed(1)} MB before, ${rssAfterWarmup.toFixed(1)} MB after the warm-up, ${rssEnd.toFixed(1)} MB at the end, peak ${rssPeak.toFixed(1)} MB`)
  console.log(`open fds: ${idleBefore.fds} idle before, ${idleAfter.fds} idle after, at most ${Math.max(...samples.map((s) => s.fds))} under load`)
  console.log(`/metrics after: store reloads ${reloads}, devices ${storeDevices}`)
  console.log(`storm: ${storm.concurrency} devices at a time, ${Math.round(storm.okPerS)} 200s/s; statuses ${JSON.stringify(storm.statuses)}; ` +
    `no answer ${JSON.stringify(storm.failures)}; p99 time to an answer ${Math.round(storm.p99)} ms; ` +
    `RSS ${storm.rssBefore.toFixed(1)} MB before, peak ${storm.rssPeak.toFixed(1)} MB, ${storm.rssAfter.toFixed(1)} MB after the recovery load and a rest`)
  console.log(`after the storm: ${Math.round(storm.recovery.requests.mean)} req/s for ${RECOVERY_SECONDS} s, statuses ${JSON.stringify(storm.recovery.statusCodeStats)}, p99 ${storm.recoveryP99.toFixed(2)} ms`)

  const checks: Array<[string, boolean]> = [
    [`no 5xx (${fiveXx})`, fiveXx === 0],
    [`no connection errors or timeouts (${soak.result.errors} errors, ${soak.result.timeouts} timeouts${soak.reqErrors.length > 0 ? `: ${soak.reqErrors.join('; ')}` : ''})`,
      soak.result.errors === 0 && soak.result.timeouts === 0],
    [`no errors on the connections of the broken JSON (${brokenJsonErrors.length}${brokenJsonErrors.length > 0 ? `: ${[...new Set(brokenJsonErrors)].join(', ')}` : ''})`,
      brokenJsonErrors.length === 0],
    [`RSS growth after the warm-up < ${MAX_RSS_GROWTH_MB} MB (${(rssEnd - rssAfterWarmup).toFixed(1)} MB)`, rssEnd - rssAfterWarmup < MAX_RSS_GROWTH_MB],
    [`no fd growth (${idleBefore.fds} -> ${idleAfter.fds})`, idleAfter.fds <= idleBefore.fds],
    [`p99 of the last ${WINDOW_S} s within ${MAX_P99_RATIO}x the first ${WINDOW_S} s (${p99Last.toFixed(2)} vs ${p99First.toFixed(2)} ms: ${(p99Last / p99First).toFixed(2)}x)`,
      p99Last <= MAX_P99_RATIO * p99First],
    [`the store was reloaded mid-run (${reloads} reload, ${storeDevices} devices)`, reloads >= 1 && storeDevices === DEVICES + 1000],
    [`storm: no 5xx but 503 with Retry-After (${storm.unexpected5xx})`, storm.unexpected5xx === 0],
    [`after the storm: no 5xx, no connection errors or timeouts (${storm.recovery5xx} 5xx, ${storm.recovery.errors} errors, ${storm.recovery.timeouts} timeouts` +
      `${storm.recoveryErrors.length > 0 ? `: ${storm.recoveryErrors.join('; ')}` : ''})`,
    storm.recovery5xx === 0 && storm.recovery.errors === 0 && storm.recovery.timeouts === 0],
    [`after the storm: p99 within ${MAX_P99_RATIO_AFTER_STORM}x the soak's worse of its first and last ${WINDOW_S} s (${storm.recoveryP99.toFixed(2)} vs ${p99Soak.toFixed(2)} ms: ` +
      `${(storm.recoveryP99 / p99Soak).toFixed(2)}x)`, storm.recoveryP99 <= MAX_P99_RATIO_AFTER_STORM * p99Soak],
    [`after the storm: RSS back within ${MAX_RSS_AFTER_STORM_MB} MB of before it, within 10 s of rest (${(storm.rssAfter - storm.rssBefore).toFixed(1)} MB)`,
      storm.rssAfter - storm.rssBefore < MAX_RSS_AFTER_STORM_MB],
    [`after the storm: no fd growth (${idleBefore.fds} before the soak -> ${storm.fdsAfter})`, storm.fdsAfter <= idleBefore.fds],
    [`no log line at error or fatal (${service.logErrors.count}${service.logErrors.count > 0 ? `: ${service.logErrors.first.join(' | ')}` : ''})`, service.logErrors.count === 0],
    ['the service is still running', child?.exitCode === null]
  ]
  console.log('')
  for (const [what, ok] of checks) console.log(`${ok ? 'PASS' : 'FAIL'}  ${what}`)
  if (service.stderr() !== '') console.log(`\nthe service wrote to stderr:\n${service.stderr()}`)
  const failed = checks.filter(([, ok]) => !ok).length
  console.log(`\nsoak: ${failed === 0 ? 'PASS' : `FAIL (${failed} check(s))`}`)
  if (failed > 0) process.exitCode = 1
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
}).finally(cleanUp)
