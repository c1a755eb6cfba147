// Boot storm against the built service (dist/server.js), in the configuration as shipped: a fleet opens new
// connections and calls POST /sign, each device retrying on 503/429 after its Retry-After, at several times what
// the service can serve. Run with `npm run bench:storm` (it builds first). Exits 1 when a goal is not met.
//
// Shipped configuration: AUTH_MODE=token (one token per caller), both rate limits on
// (RATE_LIMIT_PER_DEVICE at its default, every device distinct; RATE_LIMIT_PER_CALLER high enough to admit the
// load), LOG_LEVEL=info with the log (the audit line of each request) going to a file. STORM_OPEN=1: AUTH_MODE=none
// instead, each caller on its own loopback source address (127.0.0.2, .3, ...), all of its load processes sharing it
// (so the storm is at most 6000 devices at a time there: see MAX_STORM_CONCURRENCY).
// RATE_LIMIT_REDIS_URL, when set, is passed on to the service.
//
// Each round: the unloaded maximum (STORM_MAX_CONCURRENCY devices at a time, new connection per request, which
// just saturates the service), then the storm: STORM_CONCURRENCY devices at a time, by default STORM_FACTOR x the
// capacity x 1 s, so that devices trying about once a second (a Retry-After of about 1 s) offer STORM_FACTOR times
// it. The capacity is what the server answers a second on a whole core, from its CPU per 200 in round 1's maximum
// (neighbours on a shared machine take a varying part of the core, and with it the req/s). K load clients (child
// processes, test/bench/storm-client.ts, one per unit of weight); the first has STORM_HEAVY times the devices of each other one, to test fairness: a service that answers in arrival order gives
// each light client 1 / (STORM_HEAVY + K - 1) of the 200s, 3/8 of its fair share (all 200s / K) at the defaults,
// below the goal of 1/2; a fair one gives each at least its share. During the storm GET /healthz is probed every
// 200 ms on a new connection. The server runs on CPU 1 and the load on CPU 0 where taskset exists.
//
// Environment overrides: BENCH_ROUNDS (3), BENCH_DEVICES (200000), STORM_SECONDS (15), STORM_MAX_SECONDS (5),
// STORM_MAX_CONCURRENCY (50), STORM_FACTOR (4), STORM_CONCURRENCY (total devices at a time in the storm; overrides
// STORM_FACTOR), STORM_CLIENTS (K, 3), STORM_HEAVY (6), STORM_TIMEOUT_MS (10000: an attempt with no answer by
// then counts as a timeout), STORM_RETRY_SCALE (1: Retry-After is waited this many times over), STORM_OPEN (0).
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { canConnect, freePort } from '../free-port.js'
import { envNumber, pinning } from './env.js'
import { attempt, requestBytes, runPhase, split, startStormClients, type ClientSetup, type ClientStats, type Target } from './storm-client.js'

// ---- settings ----

const ROUNDS = Math.round(envNumber('BENCH_ROUNDS', 3))
const DEVICES = Math.round(envNumber('BENCH_DEVICES', 200_000))
const STORM_SECONDS = envNumber('STORM_SECONDS', 15)
const MAX_SECONDS = envNumber('STORM_MAX_SECONDS', 5)
const MAX_CONCURRENCY = Math.round(envNumber('STORM_MAX_CONCURRENCY', 50))
const FACTOR = envNumber('STORM_FACTOR', 4)
const CLIENTS = Math.round(envNumber('STORM_CLIENTS', 3))
const HEAVY = Math.round(envNumber('STORM_HEAVY', 6))
const TIMEOUT_MS = Math.round(envNumber('STORM_TIMEOUT_MS', 10_000))
const RETRY_SCALE = envNumber('STORM_RETRY_SCALE', 1)
const OPEN = process.env.STORM_OPEN === '1' || process.env.STORM_OPEN === 'true'
const PROBE_EVERY_MS = 200
/**
 * The most devices at a time the storm may have: the service's open-file limit is 20000 here. Open, the first
 * caller's connections all come from one address, whose ports run short: at 15000 the load stalled for up to 10 s
 * (its event loop, in connect()), at 6000 for 0.3 s (measured).
 */
const MAX_STORM_CONCURRENCY = OPEN ? 6000 : 15_000

const GOALS = { goodput: 0.9, p99Ms: 1000, fairShare: 0.5, rssGrowthMb: 100, probeP99Ms: 1000 }

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SERVICE_ENTRY = join(ROOT, 'dist', 'server.js')

// ---- processes ----

const children = new Set<ChildProcess>()
let tempDir: string | undefined

function killAll (): void {
  for (const child of children) child.kill('SIGKILL')
  children.clear()
  if (tempDir !== undefined) rmSync(tempDir, { recursive: true, force: true })
  tempDir = undefined
}
process.on('exit', killAll)
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => { killAll(); process.exit(130) })

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

interface Service { child: ChildProcess, pid: number, target: Target, stderr: () => string }

/** Starts the service with its log (stdout) going to `logFile`, and waits until it accepts connections. */
async function startService (env: Record<string, string>, logFile: string, pin: string[]): Promise<Service> {
  const port = await freePort()
  const log = openSync(logFile, 'a')
  const [command, ...prefix] = [...pin, process.execPath]
  const child = spawn(command as string, [...prefix, SERVICE_ENTRY], {
    cwd: ROOT,
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', log, 'pipe']
  })
  closeSync(log)
  children.add(child)
  child.once('exit', () => children.delete(child))
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => { stderr = (stderr + chunk.toString()).slice(-4000) })
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline && child.exitCode === null) {
    if (await canConnect(port)) return { child, pid: child.pid as number, target: { host: '127.0.0.1', port }, stderr: () => stderr }
    await sleep(100)
  }
  throw new Error(`the service did not listen within 60 s:\n${stderr}`)
}

/** Resident memory (MB) and CPU seconds (user + system) of a process, from /proc. */
function sampleProcess (pid: number): { rssMb: number, cpuS: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // After the command name (in parentheses, may hold spaces): utime and stime are the 14th and 15th fields.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { rssMb: Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1]) / 1024, cpuS: (Number(fields[11]) + Number(fields[12])) / 100 }
}

/** Waits (at most 20 s) until the server uses under 10% of a core over half a second: the storm's backlog is served. */
async function settle (pid: number): Promise<void> {
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    const before = sampleProcess(pid).cpuS
    await sleep(500)
    if (sampleProcess(pid).cpuS - before < 0.05) return
  }
}

// ---- measuring ----

function percentile (values: number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = Float64Array.from(values).sort()
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((x, y) => x - y)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] as number : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

const add = (into: Record<string, number>, from: Record<string, number>): void => {
  for (const [key, n] of Object.entries(from)) into[key] = (into[key] ?? 0) + n
}

interface Probe { latencies: number[], failures: number }

/** GET /healthz every PROBE_EVERY_MS on a new connection until `stop()`; an answer other than 200 is a failure. */
function probe (target: Target): { stop: () => Promise<Probe> } {
  const result: Probe = { latencies: [], failures: 0 }
  const request = requestBytes(target, 'GET', '/healthz', {})
  const pending: Array<Promise<void>> = []
  const timer = setInterval(() => {
    pending.push(attempt(target, request, TIMEOUT_MS).then((a) => {
      result.latencies.push(a.ms)
      if (a.status !== 200) result.failures++
    }))
  }, PROBE_EVERY_MS)
  return {
    async stop () {
      clearInterval(timer)
      await Promise.all(pending)
      return result
    }
  }
}

interface Round {
  round: number
  maxRps: number
  maxCpuUsPer200: number
  /** Share of one core the server used in the maximum's phase and in the storm's. */
  maxCpuShare: number
  stormCpuShare: number
  /** Share of one core the load clients used together in the storm (above about 90%: the load, not the service, is the limit). */
  loadCpuShare: number
  concurrency: number
  goodput: number
  attemptsPerS: number
  statuses: Record<string, number>
  errors: Record<string, number>
  noRetryAfter: number
  /** Answers other than 200 or 503 with Retry-After, plus failures without an answer. */
  bad: number
  p50: number
  p99: number
  max: number
  /** Each client's 200s over its fair share (all 200s / K). */
  shares: number[]
  rssBefore: number
  rssPeak: number
  rssAfter: number
  cpuUsPer200: number
  probeP99: number
  probeMax: number
  probeFailures: number
  probes: number
  /** The largest event-loop delay of a load client in the storm (ms). */
  loadLoopDelayMs: number
}

function summarize (stats: ClientStats[]): { ok: number, attempts: number, statuses: Record<string, number>, errors: Record<string, number>, noRetryAfter: number, latencies: number[] } {
  const statuses: Record<string, number> = {}
  const errors: Record<string, number> = {}
  for (const s of stats) { add(statuses, s.statuses); add(errors, s.errors) }
  return {
    ok: stats.reduce((n, s) => n + s.ok, 0),
    attempts: stats.reduce((n, s) => n + s.attempts, 0),
    statuses,
    errors,
    noRetryAfter: stats.reduce((n, s) => n + s.noRetryAfter, 0),
    latencies: stats.flatMap((s) => s.latencies)
  }
}

const fmt = (value: number, digits = 0): string => Number.isFinite(value)
  ? value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
  : '-'
const pct = (value: number): string => `${Math.round(value * 100)}%`
const counts = (record: Record<string, number>): string => Object.entries(record).map(([k, n]) => `${k}:${n}`).join(' ') || '-'

function table (header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((cell, i) => i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)).join('  ')
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

// ---- main ----

async function main (): Promise<void> {
  const started = Date.now()
  tempDir = mkdtempSync(join(tmpdir(), 'storm-bench-'))
  const storeFile = join(tempDir, 'devices.json')
  const logFile = join(tempDir, 'service.log')
  const names = Array.from({ length: DEVICES }, (_, i): [string, string] => [`storm${String(i % 100).padStart(3, '0')}`, `dev-${String(i + 1).padStart(7, '0')}`])
  writeFileSync(storeFile, JSON.stringify({ devices: names.map(([productKey, deviceKey]) => ({ productKey, deviceKey, deviceSecret: randomBytes(16).toString('hex') })) }))
  const tokens = Array.from({ length: CLIENTS }, () => randomBytes(32).toString('base64url'))
  const tokensFile = join(tempDir, 'tokens.json')
  writeFileSync(tokensFile, JSON.stringify({
    tokens: tokens.map((token, i) => ({ name: `storm-${i}`, sha256: createHash('sha256').update(token).digest('hex'), scopes: ['sign'], products: '*' }))
  }))

  const env: Record<string, string> = {
    STORE_FILE: storeFile,
    STORE_WATCH: 'false',
    LOG_LEVEL: 'info',
    // Every device is distinct and boots once (a retry is the same device): the default per-device limit admits it.
    RATE_LIMIT_PER_DEVICE: '30',
    // Each load client is one caller sending thousands a second: the highest per-caller limit config takes.
    RATE_LIMIT_PER_CALLER: '1000000',
    ...(OPEN ? { AUTH_MODE: 'none' } : { AUTH_MODE: 'token', AUTH_TOKENS_FILE: tokensFile })
  }
  const pin = pinning()
  const service = await startService(env, logFile, pin)
  const weights = Array.from({ length: CLIENTS }, (_, i) => i === 0 ? HEAVY : 1)
  // One process per unit of weight, each with the same number of devices, all of a client (a caller) sharing its
  // token or source address: the load's CPU is shared by process, so one process with six times the devices
  // would send fewer than six times the requests.
  const callerOf = weights.flatMap((weight, caller) => Array.from({ length: weight }, () => caller))
  const setups: ClientSetup[] = callerOf.map((caller, p) => ({
    target: service.target,
    path: '/sign',
    // Open, a caller is its address. With tokens, each process has an address of its own all the same: an address
    // has ~28,000 ports, and with thousands of connections from one connect() spends up to 250 ms finding a free one.
    ...(OPEN ? { localAddress: `127.0.0.${caller + 2}` } : { token: tokens[caller], localAddress: `127.0.1.${p + 1}` }),
    devices: names.filter((_, d) => d % callerOf.length === p),
    timeoutMs: TIMEOUT_MS,
    retryScale: RETRY_SCALE
  }))
  const clients = await startStormClients(setups, children)
  const even = callerOf.map(() => 1)
  const loadCpu = (): number => clients.reduce((n, c) => n + (c.child.pid === undefined ? 0 : sampleProcess(c.child.pid).cpuS), 0) + process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6
  console.log(`node ${process.version}; ${DEVICES} devices; ${OPEN ? 'AUTH_MODE=none, each caller on an address of its own (127.0.0.2, ...)' : 'AUTH_MODE=token, one token per caller'}; ` +
    `both rate limits on; LOG_LEVEL=info to a file${process.env.RATE_LIMIT_REDIS_URL !== undefined ? '; RATE_LIMIT_REDIS_URL set' : ''}`)
  console.log(`${CLIENTS} callers (weights ${weights.join(':')}, ${callerOf.length} load processes); ${ROUNDS} round(s) of ${MAX_SECONDS} s unloaded maximum at ${MAX_CONCURRENCY} devices at a time, ` +
    `then ${STORM_SECONDS} s of storm; attempt timeout ${TIMEOUT_MS} ms; Retry-After waited x${RETRY_SCALE}${RETRY_SCALE === 1 ? '' : ' (SHORTENED: not what devices do)'}`)

  // Warm-up: the JIT and the service's caches, at the concurrency of the maximum.
  await runPhase(clients, split(MAX_CONCURRENCY, even), 2000)

  const rounds: Round[] = []
  let stormConcurrency = 0
  for (let round = 1; round <= ROUNDS; round++) {
    // The unloaded maximum: same shape (a new connection per request), enough devices at a time to saturate.
    const cpuMax0 = sampleProcess(service.pid).cpuS
    const maxStats = await runPhase(clients, split(MAX_CONCURRENCY, even), MAX_SECONDS * 1000)
    const cpuMax = sampleProcess(service.pid).cpuS - cpuMax0
    const maxSummary = summarize(maxStats)
    const maxRps = maxSummary.ok / MAX_SECONDS
    if (stormConcurrency === 0) {
      // The capacity the storm is sized on: what the server answers a second on a whole core, from its CPU per 200
      // (the req/s of one phase depends on how much of its core the neighbours leave it: 20-90% here).
      const capacity = Math.max(maxRps, maxSummary.ok / Math.max(cpuMax, 0.01))
      stormConcurrency = Math.min(MAX_STORM_CONCURRENCY, Math.round(envNumber('STORM_CONCURRENCY', Math.max(callerOf.length, FACTOR * capacity))))
      console.log(`storm: ${stormConcurrency} devices at a time (${process.env.STORM_CONCURRENCY !== undefined
        ? 'STORM_CONCURRENCY'
        : `${FACTOR} x ${fmt(capacity)}/s x 1 s; ${fmt(capacity)}/s = 1 s / ${fmt(cpuMax * 1e6 / Math.max(1, maxSummary.ok))} µs of server CPU per 200 ` +
          `in round 1's maximum, which answered ${fmt(maxRps)}/s on ${Math.round((cpuMax / MAX_SECONDS) * 100)}% of a core`})`)
    }
    await sleep(1000)

    const before = sampleProcess(service.pid)
    const loadBefore = loadCpu()
    const stormStarted = performance.now()
    let peak = before.rssMb
    const sampler = setInterval(() => { peak = Math.max(peak, sampleProcess(service.pid).rssMb) }, 100)
    const probes = probe(service.target)
    const stormStats = await runPhase(clients, split(stormConcurrency, even), STORM_SECONDS * 1000)
    const probed = await probes.stop()
    const end = sampleProcess(service.pid)
    const stormSeconds = (performance.now() - stormStarted) / 1000
    const loadCpuS = loadCpu() - loadBefore
    clearInterval(sampler)
    peak = Math.max(peak, end.rssMb)
    // Connections the clients gave up on may still sit in the listen queue: the next round starts once they are served.
    await settle(service.pid)
    await sleep(1000)
    const after = sampleProcess(service.pid)

    const storm = summarize(stormStats)
    const answered = (storm.statuses['200'] ?? 0) + (storm.statuses['503'] ?? 0) - storm.noRetryAfter
    const total = Object.values(storm.statuses).reduce((a, b) => a + b, 0) + Object.values(storm.errors).reduce((a, b) => a + b, 0)
    const fair = storm.ok / CLIENTS
    const run: Round = {
      round,
      maxRps,
      maxCpuUsPer200: cpuMax * 1e6 / Math.max(1, maxSummary.ok),
      maxCpuShare: cpuMax / MAX_SECONDS,
      stormCpuShare: (end.cpuS - before.cpuS) / stormSeconds,
      loadCpuShare: loadCpuS / stormSeconds,
      concurrency: stormConcurrency,
      goodput: storm.ok / STORM_SECONDS,
      attemptsPerS: storm.attempts / STORM_SECONDS,
      statuses: storm.statuses,
      errors: storm.errors,
      noRetryAfter: storm.noRetryAfter,
      bad: total - answered,
      p50: percentile(storm.latencies, 50),
      p99: percentile(storm.latencies, 99),
      max: storm.latencies.reduce((a, b) => Math.max(a, b), 0),
      shares: weights.map((_, caller) => fair === 0 ? 0 : stormStats.filter((_, p) => callerOf[p] === caller).reduce((n, c) => n + c.ok, 0) / fair),
      rssBefore: before.rssMb,
      rssPeak: peak,
      rssAfter: after.rssMb,
      cpuUsPer200: (end.cpuS - before.cpuS) * 1e6 / Math.max(1, storm.statuses['200'] ?? 0),
      probeP99: percentile(probed.latencies, 99),
      probeMax: probed.latencies.reduce((a, b) => Math.max(a, b), 0),
      probeFailures: probed.failures,
      probes: probed.latencies.length,
      loadLoopDelayMs: Math.max(...stormStats.map((c) => c.loopDelayMaxMs))
    }
    rounds.push(run)
    console.log(`  round ${round}: max ${fmt(maxRps)} 200s/s; storm ${fmt(run.goodput)} 200s/s (${fmt(run.goodput / maxRps, 2)}), ` +
      `${fmt(run.attemptsPerS)} attempts/s; statuses ${counts(run.statuses)}; failures ${counts(run.errors)}; p99 ${fmt(run.p99)} ms, max ${fmt(run.max)} ms; ` +
      `shares ${run.shares.map((s) => fmt(s, 2)).join('/')}; probe p99 ${fmt(run.probeP99)} ms`)
  }
  const lines = readFileSync(logFile, 'utf8').split('\n').filter((line) => line !== '')
  const errorLines = lines.filter((line) => /"level":(50|60)/.test(line))
  const serviceAlive = service.child.exitCode === null
  for (const client of clients) client.child.disconnect()

  console.log('\nPer round (times in ms, from connect() to the full answer; RSS in MB; CPU: server µs per 200):')
  console.log(table(
    ['round', 'max 200/s', 'CPU', 'µs/200 max', 'devices', 'storm 200/s', 'ratio', 'attempts/s', 'x max', 'statuses', 'no answer', 'bad', 'p50', 'p99', 'max',
      'share min', 'shares', 'RSS before', 'peak', 'after', 'CPU', 'µs/200 storm', 'load CPU', 'load delay', 'probe p99', 'probe max', 'probe fail'],
    rounds.map((r) => [`#${r.round}`, fmt(r.maxRps), pct(r.maxCpuShare), fmt(r.maxCpuUsPer200), `${r.concurrency}`, fmt(r.goodput), fmt(r.goodput / r.maxRps, 2), fmt(r.attemptsPerS),
      fmt(r.attemptsPerS / r.maxRps, 1), counts(r.statuses), counts(r.errors), `${r.bad}`, fmt(r.p50), fmt(r.p99), fmt(r.max),
      fmt(Math.min(...r.shares), 2), r.shares.map((s) => fmt(s, 2)).join('/'), fmt(r.rssBefore), fmt(r.rssPeak), fmt(r.rssAfter), pct(r.stormCpuShare), fmt(r.cpuUsPer200), pct(r.loadCpuShare), fmt(r.loadLoopDelayMs),
      fmt(r.probeP99), fmt(r.probeMax), `${r.probeFailures}/${r.probes}`])))

  const m = (pick: (r: Round) => number): number => median(rounds.map(pick))
  const goodputRatio = m((r) => r.goodput / r.maxRps)
  const bad = rounds.reduce((n, r) => n + r.bad, 0)
  const p99 = m((r) => r.p99)
  const share = m((r) => Math.min(...r.shares))
  // Memory against a limit: the worst round counts.
  const growth = Math.max(...rounds.map((r) => r.rssPeak - r.rssBefore))
  const probeP99 = m((r) => r.probeP99)
  const probeFailures = rounds.reduce((n, r) => n + r.probeFailures, 0)
  console.log(`\nMedians over ${rounds.length} round(s): max ${fmt(m((r) => r.maxRps))} 200s/s (${fmt(m((r) => r.maxCpuUsPer200))} µs CPU/200), ` +
    `storm ${fmt(m((r) => r.goodput))} 200s/s (${fmt(m((r) => r.cpuUsPer200))} µs CPU/200; CPU ratio max/storm ${fmt(m((r) => r.maxCpuUsPer200 / r.cpuUsPer200), 2)}, ` +
    `the steadier figure where neighbours take the server's core away), p50 ${fmt(m((r) => r.p50))} ms, max ${fmt(m((r) => r.max))} ms; ` +
    `RSS after the storm ${fmt(m((r) => r.rssAfter - r.rssBefore), 1)} MB over before`)
  const stall = Math.max(...rounds.map((r) => r.loadLoopDelayMs))
  if (stall > 1000) {
    console.log(`NOTE: a load client stalled for up to ${fmt(stall)} ms (its event loop): times and shares are inflated by the load generator ` +
      'that much; rerun on a quieter machine or with a lower STORM_CONCURRENCY')
  }
  console.log(`service log: ${lines.length} lines, ${errorLines.length} at error or fatal${errorLines.length > 0 ? `; the first:\n${errorLines[0]?.slice(0, 3000)}` : ''}`)
  const goals: Array<[string, boolean]> = [
    [`every request answered (200, or 503 with Retry-After): ${bad} not`, bad === 0],
    [`p99 time to an answer <= ${GOALS.p99Ms} ms: ${fmt(p99)} ms`, p99 <= GOALS.p99Ms],
    [`no load client starved (each >= ${GOALS.fairShare} of its fair share of 200s, all 200s / ${CLIENTS}): least ${fmt(share, 2)}`, share >= GOALS.fairShare],
    [`RSS growth (peak - before) < ${GOALS.rssGrowthMb} MB in every round: at most ${fmt(growth, 1)} MB`, growth < GOALS.rssGrowthMb],
    [`200s/s >= ${GOALS.goodput} of the unloaded maximum: ${fmt(goodputRatio, 2)}`, goodputRatio >= GOALS.goodput],
    [`probes keep answering (GET /healthz p99 <= ${GOALS.probeP99Ms} ms, none failed): p99 ${fmt(probeP99)} ms, ${probeFailures} failed`, probeP99 <= GOALS.probeP99Ms && probeFailures === 0],
    [`no error lines in the log, service still running: ${errorLines.length}, ${serviceAlive ? 'running' : 'exited'}`, errorLines.length === 0 && serviceAlive]
  ]
  console.log('\nGoals (medians over the rounds; counts over all of them; memory in the worst round):')
  for (const [what, ok] of goals) console.log(`${ok ? 'PASS' : 'FAIL'}  ${what}`)
  if (service.stderr() !== '') console.log(`\nthe service wrote to stderr:\n${service.stderr()}`)
  console.log(`\ntotal ${((Date.now() - started) / 1000).toFixed(1)} s`)
  if (goals.some(([, ok]) => !ok)) process.exitCode = 1
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
}).finally(killAll)
