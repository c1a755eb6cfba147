// Throughput of POST /sign on the built service (dist/), against bare Fastify baselines measured
// in the same run. Run with `npm run bench` (it builds first). Figures are compared only as ratios
// to the baselines: absolute numbers depend on the machine and its neighbours.
//
// Targets (see bare-server.ts for a and a′), rounds alternating between them:
//   a@warn, a@info       the ceiling: a bare route that parses the body and answers a constant;
//   a′@warn              a bare route doing the real work (lookup and hash);
//   b@warn, b@info       POST /sign of the service, open, rate limits off;
//   verify@warn          (c) POST /verify of the service, with credentials it signed;
//   batch@warn           (c) POST /sign/batch (JSON) of the service, BENCH_BATCH devices a request;
//   pg@warn              (d) POST /sign on STORE=postgres with a warm cache, on a throwaway PostgreSQL
//                        cluster (test/pg-helper.ts); left out, with a message, where PostgreSQL is not installed;
//   token@warn           with bearer tokens (AUTH_MODE=token, 50 callers);
//   token+limits@warn    tokens plus both rate limits (high enough that nothing is refused: all counted);
//   prod                 the defaults as shipped: tokens, both limits at values that admit the load (every
//                        request counted, none refused), LOG_LEVEL=info with the log (audit lines) going to a file.
// With BENCH_BASE_DIST=<another build's dist/> (e.g. main's), b@warn and prod also run on that build, as
// b@warn~base and prod~base, alternating with the rest: before/after figures from one run.
// Each server is pinned to CPU 1 and this load generator to CPU 0 when `taskset` exists (2+ CPUs).
//
// Environment overrides: BENCH_DURATION (s per run, 8), BENCH_WARMUP (s, 2), BENCH_ROUNDS (2),
// BENCH_CONNECTIONS (50), BENCH_DEVICES (10000), BENCH_BODIES (1000 distinct request bodies), BENCH_BATCH (100),
// BENCH_TARGETS (comma-separated names of the targets to run; a@warn always runs), BENCH_BASE_DIST (above),
// BENCH_NODE_ARGS (node options for the service's processes, e.g. `--cpu-prof --cpu-prof-dir=DIR` for profiles).
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { signCredentials } from '../../src/core/credentials.js'
import type { SignMethod } from '../../src/core/sign-method.js'
import { migrate } from '../../src/store/migrations.js'
import { startPostgres, type Postgres } from '../pg-helper.js'
import { canConnect, freePort } from '../free-port.js'
import { envNumber, pinning } from './env.js'

// ---- autocannon (CommonJS, no bundled types): the part of its API used here ----

interface AcRequest { method: string, path: string, headers: Record<string, string>, body: string }
interface AcClient { setRequests (requests: AcRequest[]): void }
interface AcHistogram { mean: number, p50: number, p99: number, total?: number }
interface AcResult {
  requests: AcHistogram & { sent: number }
  latency: AcHistogram
  duration: number
  errors: number
  timeouts: number
  mismatches: number
  non2xx: number
  statusCodeStats: Record<string, { count: number }>
}
interface AcOptions {
  url: string
  connections: number
  pipelining: number
  duration: number
  requests: AcRequest[]
  setupClient?: (client: AcClient) => void
}
const autocannon = createRequire(import.meta.url)('autocannon') as (opts: AcOptions) => Promise<AcResult>

// ---- settings ----

const DURATION = envNumber('BENCH_DURATION', 8)
const WARMUP = envNumber('BENCH_WARMUP', 2)
const ROUNDS = Math.round(envNumber('BENCH_ROUNDS', 2))
const CONNECTIONS = Math.round(envNumber('BENCH_CONNECTIONS', 50))
const DEVICES = Math.round(envNumber('BENCH_DEVICES', 10_000))
const BODIES = Math.round(envNumber('BENCH_BODIES', 1000))
const BATCH = Math.round(envNumber('BENCH_BATCH', 100))

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SERVICE_ENTRY = join(ROOT, 'dist', 'server.js')
const BARE_ENTRY = join(ROOT, 'test', 'bench', 'bare-server.ts')

// ---- test data ----

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'

function randomAlnum (length: number): string {
  const bytes = randomBytes(length)
  let out = ''
  for (const byte of bytes) out += ALNUM[byte % ALNUM.length]
  return out
}

function pick<T> (items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)] as T
}

interface BenchDevice { productKey: string, deviceKey: string, deviceSecret: string }

function makeDevices (count: number): BenchDevice[] {
  const products = Array.from({ length: Math.max(1, Math.ceil(count / 100)) }, () => randomAlnum(8))
  return Array.from({ length: count }, (_, i) => ({
    productKey: products[i % products.length] as string,
    deviceKey: `dev-${String(i + 1).padStart(6, '0')}`,
    deviceSecret: randomAlnum(32)
  }))
}

/** Bodies as devices send them: always the keys, often a clientId and/or timestamp, sometimes a sign method. */
function makeBodies (devices: readonly BenchDevice[], count: number): string[] {
  return Array.from({ length: count }, () => {
    const { productKey, deviceKey } = pick(devices)
    const body: Record<string, string> = { productKey, deviceKey }
    if (Math.random() < 0.5) body.clientId = randomBytes(6).toString('hex').toUpperCase().replace(/(..)(?!$)/g, '$1:')
    if (Math.random() < 0.5) body.timestamp = String(Date.now() - Math.floor(Math.random() * 60_000))
    if (Math.random() < 0.2) body.signMethod = pick(['sha256', 'hmacsha1', 'md5'])
    return JSON.stringify(body)
  })
}

// ---- child processes ----

interface Target {
  name: string
  child: ChildProcess
  url: string
  /** Lines the child wrote to stdout (its log lines), counted and discarded. */
  lines: () => number
  stderr: () => string
}

/** A target whose stdout (its log) goes to this file instead of a pipe, as a deployment's log file would. */
interface LogFile { path: string }

const children = new Set<ChildProcess>()
let tempDir: string | undefined
/** Stops what was started for the run besides the servers (the PostgreSQL cluster). */
const teardowns: Array<() => unknown> = []

function killAll (): void {
  for (const child of children) child.kill('SIGKILL')
  children.clear()
  if (tempDir !== undefined) rmSync(tempDir, { recursive: true, force: true })
  tempDir = undefined
}

process.on('exit', killAll)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    killAll()
    process.exit(130)
  })
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Starts a server on a free port and waits until it accepts connections. The port is picked
 * beforehand (at LOG_LEVEL=warn the service prints no "Server listening at" line); a start that
 * loses the port to someone else is retried on another one.
 */
async function startTarget (name: string, args: string[], env: Record<string, string>, pin: string[], logFile?: LogFile): Promise<Target> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const [command, ...prefix] = [...pin, process.execPath]
    const logFd = logFile === undefined ? undefined : openSync(logFile.path, 'w')
    const child = spawn(command as string, [...prefix, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1' },
      stdio: ['ignore', logFd ?? 'pipe', 'pipe']
    })
    if (logFd !== undefined) closeSync(logFd)
    children.add(child)
    let lines = 0
    // A log file is read from where the last count stopped.
    let readTo = 0
    const countFile = (): number => {
      if (logFile === undefined) return lines
      const fd = openSync(logFile.path, 'r')
      const buffer = Buffer.alloc(1 << 20)
      for (let n; (n = readSync(fd, buffer, 0, buffer.length, readTo)) > 0; readTo += n) {
        for (let i = buffer.indexOf(10); i !== -1 && i < n; i = buffer.indexOf(10, i + 1)) lines++
      }
      closeSync(fd)
      return lines
    }
    let stderr = ''
    let exited: string | undefined
    child.stdout?.on('data', (chunk: Buffer) => {
      for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++
    })
    child.stderr?.on('data', (chunk: Buffer) => { stderr = (stderr + chunk.toString()).slice(-4000) })
    child.once('exit', (code, signal) => {
      children.delete(child)
      exited = `exited (${signal ?? code})`
    })
    const deadline = Date.now() + 20_000
    // `exited` is set by the exit listener while this loop awaits.
    for (;;) {
      if (exited !== undefined || Date.now() > deadline) break
      if (await canConnect(port)) {
        return { name, child, url: `http://127.0.0.1:${port}`, lines: countFile, stderr: () => stderr }
      }
      await sleep(50)
    }
    child.kill('SIGKILL')
    const why = exited ?? 'did not listen within 20 s'
    if (attempt < 3 && /EADDRINUSE/.test(stderr)) continue
    throw new Error(`${name} ${why}${stderr === '' ? '' : `:\n${stderr}`}`)
  }
}

async function stopTarget (target: Target): Promise<void> {
  const { child } = target
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

/** CPU seconds (user + system) a process has used so far, from /proc; undefined elsewhere. */
function cpuSeconds (pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name (which is in parentheses and may hold spaces): utime is the 14th field.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return undefined
  }
}

// ---- measuring ----

interface Run {
  target: string
  round: number
  rps: number
  /** Devices signed a second: rps times the devices a request names (BENCH_BATCH for a batch, else 1). */
  items: number
  completed: number
  p50: number
  p99: number
  non2xx: number
  errors: number
  statusCodes: string
  logLines: number
  /** CPU seconds the server used during the run, and that as a share of one core. */
  serverCpuSeconds: number | undefined
  serverCpu: number | undefined
  clientCpu: number
}

/** The requests of POST /sign; with tokens, each body is sent by one of the callers in turn. */
function requestsFor (bodies: readonly string[], tokens: readonly string[] = []): AcRequest[] {
  return bodies.map((body, i) => ({
    method: 'POST',
    path: '/sign',
    headers: { 'content-type': 'application/json', ...(tokens.length > 0 && { authorization: `Bearer ${tokens[i % tokens.length] as string}` }) },
    body
  }))
}

/** POST /verify as a broker sends it: the CONNECT fields of devices that signed with the service's own rules. */
function verifyRequests (devices: readonly BenchDevice[], count: number): AcRequest[] {
  return Array.from({ length: count }, () => {
    const device = pick(devices)
    const signed = signCredentials({ ...device, clientId: device.deviceKey, timestamp: String(Date.now()), signMethod: 'hmacsha1' })
    const body = JSON.stringify({ clientid: signed.mqttClientId, username: signed.mqttUsername, password: signed.mqttPassword })
    return { method: 'POST', path: '/verify', headers: { 'content-type': 'application/json' }, body }
  })
}

/** POST /sign/batch: BATCH of the single bodies a request, as a provisioning tool sends them. */
function batchRequests (bodies: readonly string[]): AcRequest[] {
  return Array.from({ length: Math.max(1, Math.floor(bodies.length / BATCH)) }, (_, i) => ({
    method: 'POST',
    path: '/sign/batch',
    headers: { 'content-type': 'application/json' },
    body: `{"devices":[${bodies.slice(i * BATCH, (i + 1) * BATCH).join(',')}]}`
  }))
}

/** A throwaway PostgreSQL database holding the devices, migrated; undefined (with why) where PostgreSQL is not installed. */
async function devicesDatabase (devices: readonly BenchDevice[]): Promise<string | undefined> {
  let postgres: Postgres
  try {
    postgres = await startPostgres({ teardown: (fn) => teardowns.push(fn) })
  } catch (err) {
    console.log(`pg@warn left out: ${(err as Error).message}`)
    return undefined
  }
  const url = await postgres.createDatabase()
  const pool = new pg.Pool({ connectionString: url, max: 1 })
  try {
    await migrate(pool)
    await pool.query('INSERT INTO devices (product_key, device_key, device_secret) SELECT * FROM unnest($1::text[], $2::text[], $3::text[])',
      [devices.map((d) => d.productKey), devices.map((d) => d.deviceKey), devices.map((d) => d.deviceSecret)])
  } finally {
    await pool.end()
  }
  return url
}

/** Callers of the token targets: one token each, for every product, as provisioning tools hold them. */
const CALLERS = 50

function makeTokens (): { tokens: string[], file: string } {
  const tokens = Array.from({ length: CALLERS }, () => randomBytes(32).toString('base64url'))
  const entries = tokens.map((token, i) => ({ name: `bench-${i}`, sha256: createHash('sha256').update(token).digest('hex'), scopes: ['sign'], products: '*' }))
  return { tokens, file: JSON.stringify({ tokens: entries }) }
}

async function load (target: Target, requests: AcRequest[], seconds: number): Promise<AcResult> {
  let client = 0
  return autocannon({
    url: target.url,
    connections: CONNECTIONS,
    pipelining: 1,
    duration: seconds,
    requests,
    // Each connection walks the bodies from its own offset, so concurrent requests name different devices.
    setupClient (c) {
      const offset = Math.floor((client++ * requests.length) / CONNECTIONS)
      c.setRequests([...requests.slice(offset), ...requests.slice(0, offset)])
    }
  })
}

async function measure (target: Target, requests: AcRequest[], round: number, itemsPerRequest: number): Promise<Run> {
  const linesBefore = target.lines()
  const serverCpuBefore = cpuSeconds(target.child.pid)
  const clientCpuBefore = process.cpuUsage()
  const wallBefore = process.hrtime.bigint()
  const result = await load(target, requests, DURATION)
  const wall = Number(process.hrtime.bigint() - wallBefore) / 1e9
  const clientCpu = process.cpuUsage(clientCpuBefore)
  const serverCpuAfter = cpuSeconds(target.child.pid)
  await sleep(100) // let the last log lines arrive before counting them
  const statusCodes = Object.entries(result.statusCodeStats).map(([code, { count }]) => `${code}:${count}`).join(' ')
  return {
    target: target.name,
    round,
    rps: result.requests.mean,
    items: result.requests.mean * itemsPerRequest,
    completed: result.requests.total ?? 0,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.mismatches, // errors already include timeouts
    statusCodes,
    logLines: target.lines() - linesBefore,
    serverCpuSeconds: serverCpuBefore === undefined || serverCpuAfter === undefined ? undefined : serverCpuAfter - serverCpuBefore,
    serverCpu: serverCpuBefore === undefined || serverCpuAfter === undefined ? undefined : (serverCpuAfter - serverCpuBefore) / wall,
    clientCpu: (clientCpu.user + clientCpu.system) / 1e6 / wall
  }
}

/** The first request of a target checked, so the benchmark measures correct answers. */
async function checkTarget (target: Target, plan: Plan, device: BenchDevice): Promise<void> {
  if (plan.check === 'none') return
  if (plan.check === 'sign') {
    await checkService(target, device, plan.tokens[0])
    return
  }
  const request = plan.requests[0] as AcRequest
  const response = await fetch(`${target.url}${request.path}`, { method: 'POST', headers: request.headers, body: request.body })
  const body = await response.json() as { result?: string, summary?: { signed: number } }
  const ok = plan.check === 'verify' ? body.result === 'allow' : body.summary?.signed === BATCH
  if (response.status !== 200 || !ok) throw new Error(`${target.name}: unexpected answer to a sanity request: ${response.status} ${JSON.stringify(body).slice(0, 300)}`)
}

/** A target of the run: how its server starts, what it is sent, how its first answer is checked. */
interface Plan {
  name: string
  args: string[]
  env: Record<string, string>
  requests: AcRequest[]
  /** The bearer tokens the requests carry (the first is used by the sanity request). */
  tokens: string[]
  check: 'sign' | 'verify' | 'batch' | 'none'
  /** Devices a request names. */
  items: number
  /** Whether its log goes to a file (in the run's temp dir) instead of a pipe. */
  logToFile?: boolean
}

/** One request checked against the signing core. */
async function checkService (target: Target, device: BenchDevice, token: string | undefined): Promise<void> {
  const request = { productKey: device.productKey, deviceKey: device.deviceKey, clientId: 'bench-check', timestamp: '1524448722000', signMethod: 'sha256' as SignMethod }
  const response = await fetch(`${target.url}/sign`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token !== undefined && { authorization: `Bearer ${token}` }) },
    body: JSON.stringify(request)
  })
  const body = await response.json() as Record<string, unknown>
  const expected = signCredentials({ ...request, deviceSecret: device.deviceSecret })
  if (response.status !== 200 || body.mqttPassword !== expected.mqttPassword || body.mqttClientId !== expected.mqttClientId) {
    throw new Error(`${target.name}: unexpected answer to a sanity request: ${response.status} ${JSON.stringify(body)}`)
  }
}

// ---- report ----

const mean = (values: number[]): number => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length)
const fmt = (value: number, digits = 0): string => value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
const pct = (value: number | undefined): string => value === undefined ? '-' : `${Math.round(value * 100)}%`

/** Server CPU microseconds per completed request: unlike req/s, barely moved by neighbours taking CPU away. */
function cpuPerRequest (runs: Run[], itemsPerRequest = 1): number | undefined {
  if (runs.some((run) => run.serverCpuSeconds === undefined)) return undefined
  const completed = runs.reduce((n, run) => n + run.completed, 0) * itemsPerRequest
  return completed === 0 ? undefined : runs.reduce((n, run) => n + (run.serverCpuSeconds ?? 0), 0) * 1e6 / completed
}
const micros = (value: number | undefined): string => value === undefined ? '-' : fmt(value, 1)

function table (header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((cell, i) => i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)).join('  ')
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

function runRow (run: Run): string[] {
  return [`${run.target} #${run.round}`, fmt(run.rps), fmt(run.items), `${run.p50}`, `${run.p99}`, `${run.non2xx}`, `${run.errors}`,
    fmt(run.logLines / Math.max(1, run.completed), 2), pct(run.serverCpu), pct(run.clientCpu), micros(cpuPerRequest([run]))]
}

function summaryRows (runs: Run[], names: string[]): string[][] {
  const baseline = runs.filter((run) => run.target === names[0])
  const baselineRps = mean(baseline.map((run) => run.rps))
  const baselineCpu = cpuPerRequest(baseline)
  return names.map((name) => {
    const mine = runs.filter((run) => run.target === name)
    const rps = mean(mine.map((run) => run.rps))
    // Paired ratios: each run against the baseline run of the same round.
    const paired = mine.map((run) => run.rps / (baseline.find((b) => b.round === run.round)?.rps ?? Number.NaN))
    const spread = paired.length > 1 ? ` (${fmt(Math.min(...paired), 2)}-${fmt(Math.max(...paired), 2)})` : ''
    const cpu = cpuPerRequest(mine)
    return [
      name,
      fmt(rps),
      fmt(mean(mine.map((run) => run.items))),
      fmt(mean(mine.map((run) => run.p50)), 1),
      `${Math.max(...mine.map((run) => run.p99))}`,
      `${mine.reduce((n, run) => n + run.non2xx, 0)}`,
      `${mine.reduce((n, run) => n + run.errors, 0)}`,
      fmt(mine.reduce((n, run) => n + run.logLines, 0) / Math.max(1, mine.reduce((n, run) => n + run.completed, 0)), 2),
      `${fmt(rps / baselineRps, 2)}${spread}`,
      micros(cpu),
      cpu === undefined || baselineCpu === undefined ? '-' : fmt(baselineCpu / cpu, 2)
    ]
  })
}

/** The ratios the goals are about: the median of per-round paired req/s ratios, and the CPU-per-request ratio. */
const RATIOS: ReadonlyArray<{ label: string, of: string, to: string, goal?: number }> = [
  { label: 'b/a at warn', of: 'b@warn', to: 'a@warn', goal: 0.75 },
  { label: 'b/a at info', of: 'b@info', to: 'a@info', goal: 0.65 },
  { label: 'b/a′ at warn (the service around the work)', of: 'b@warn', to: 'a′@warn' },
  { label: 'a′/a at warn (the work itself)', of: 'a′@warn', to: 'a@warn' },
  { label: 'c/a: verify/a at warn', of: 'verify@warn', to: 'a@warn' },
  { label: 'c/a: batch devices/s / a req/s at warn', of: 'batch@warn', to: 'a@warn' },
  { label: 'd/b: postgres, warm cache / file store', of: 'pg@warn', to: 'b@warn' },
  { label: 'token/b (checking tokens)', of: 'token@warn', to: 'b@warn' },
  { label: 'token+limits/b (tokens and rate limits)', of: 'token+limits@warn', to: 'b@warn' },
  { label: 'prod/a (the shipped defaults)', of: 'prod', to: 'a@warn' },
  { label: 'b~base/a at warn (BENCH_BASE_DIST)', of: 'b@warn~base', to: 'a@warn' },
  { label: 'prod~base/a (BENCH_BASE_DIST)', of: 'prod~base', to: 'a@warn' },
  { label: 'b/b~base (this build / the base build)', of: 'b@warn', to: 'b@warn~base' },
  { label: 'prod/prod~base (this build / the base build)', of: 'prod', to: 'prod~base' }
]

/** The goals of server CPU per request against a@warn in the same run (issue 15). */
const CPU_GOALS: ReadonlyArray<{ of: string, goal: number }> = [
  { of: 'b@warn', goal: 0.75 },
  { of: 'prod', goal: 0.55 }
]

const median = (values: number[]): number => {
  const sorted = [...values].sort((x, y) => x - y)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] as number : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

function ratioRows (runs: Run[]): string[][] {
  return RATIOS.flatMap(({ label, of, to, goal }) => {
    const mine = runs.filter((run) => run.target === of)
    const theirs = runs.filter((run) => run.target === to)
    if (mine.length === 0 || theirs.length === 0) return []
    // Devices a second: a batch signs BENCH_BATCH a request, every other target one.
    const paired = mine.map((run) => run.items / (theirs.find((other) => other.round === run.round)?.items ?? Number.NaN))
    const value = median(paired)
    const cpuOf = cpuPerRequest(mine, of === 'batch@warn' ? BATCH : 1)
    const cpuTo = cpuPerRequest(theirs)
    return [[
      label,
      fmt(value, 2),
      `${fmt(Math.min(...paired), 2)}-${fmt(Math.max(...paired), 2)}`,
      cpuOf === undefined || cpuTo === undefined ? '-' : fmt(cpuTo / cpuOf, 2),
      goal === undefined ? '' : `>= ${goal}: ${value >= goal ? 'met' : 'NOT met'}`
    ]]
  })
}

// ---- main ----

async function main (): Promise<void> {
  const started = Date.now()
  tempDir = mkdtempSync(join(tmpdir(), 'sign-bench-'))
  const storeFile = join(tempDir, 'devices.json')
  const devices = makeDevices(DEVICES)
  writeFileSync(storeFile, JSON.stringify({ devices }))
  const bodies = makeBodies(devices, BODIES)
  const { tokens, file: tokenFile } = makeTokens()
  const tokensPath = join(tempDir, 'tokens.json')
  writeFileSync(tokensPath, tokenFile)
  console.log(`node ${process.version}; ${DEVICES} devices, ${BODIES} distinct bodies; ${CONNECTIONS} connections, pipelining 1; ` +
    `${ROUNDS} round(s) of ${DURATION} s per target after ${WARMUP} s warm-up`)

  const open = { STORE_FILE: storeFile, STORE_WATCH: 'false', AUTH_MODE: 'none', RATE_LIMIT_PER_CALLER: '0', RATE_LIMIT_PER_DEVICE: '0' }
  const withTokens = { ...open, AUTH_MODE: 'token', AUTH_TOKENS_FILE: tokensPath, LOG_LEVEL: 'warn' }
  const bare = ['--import', 'tsx', BARE_ENTRY]
  // BENCH_NODE_ARGS: node options for the service's processes only, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`.
  const service = [...(process.env.BENCH_NODE_ARGS?.split(' ').filter((arg) => arg !== '') ?? []), SERVICE_ENTRY]
  const signing = requestsFor(bodies)
  const only = process.env.BENCH_TARGETS?.split(',').map((name) => name.trim())
  const wanted = (name: string): boolean => name === 'a@warn' || only === undefined || only.includes(name.replace(/~base$/, ''))
  const databaseUrl = wanted('pg@warn') ? await devicesDatabase(devices) : undefined
  const given: Array<Omit<Plan, 'tokens' | 'check' | 'items'> & Partial<Plan>> = [
    { name: 'a@warn', args: bare, env: { LOG_LEVEL: 'warn' }, requests: signing, check: 'none' },
    { name: 'a′@warn', args: bare, env: { LOG_LEVEL: 'warn', BARE_WORK: '1', STORE_FILE: storeFile }, requests: signing, check: 'none' },
    { name: 'b@warn', args: service, env: { ...open, LOG_LEVEL: 'warn' }, requests: signing },
    { name: 'a@info', args: bare, env: { LOG_LEVEL: 'info' }, requests: signing, check: 'none' },
    { name: 'b@info', args: service, env: { ...open, LOG_LEVEL: 'info' }, requests: signing },
    { name: 'verify@warn', args: service, env: { ...open, LOG_LEVEL: 'warn' }, requests: verifyRequests(devices, BODIES), check: 'verify' },
    { name: 'batch@warn', args: service, env: { ...open, LOG_LEVEL: 'warn' }, requests: batchRequests(bodies), check: 'batch', items: BATCH },
    ...(databaseUrl === undefined
      ? []
      // A cache as large as the store and entries that outlive the run: after the warm-up every lookup is a hit.
      : [{ name: 'pg@warn', args: service, env: { AUTH_MODE: 'none', RATE_LIMIT_PER_CALLER: '0', RATE_LIMIT_PER_DEVICE: '0', LOG_LEVEL: 'warn', STORE: 'postgres', DATABASE_URL: databaseUrl, CACHE_MAX_ENTRIES: String(DEVICES), CACHE_TTL_MS: '3600000' }, requests: signing }]),
    { name: 'token@warn', args: service, env: withTokens, requests: requestsFor(bodies, tokens), tokens },
    // The highest limits config takes: every request is counted, none refused at these rates.
    { name: 'token+limits@warn', args: service, env: { ...withTokens, RATE_LIMIT_PER_CALLER: '1000000', RATE_LIMIT_PER_DEVICE: '1000000' }, requests: requestsFor(bodies, tokens), tokens },
    // The shipped defaults: LOG_LEVEL=info (the audit line of every request) to a file, tokens, both limits counted.
    { name: 'prod', args: service, env: { ...withTokens, LOG_LEVEL: 'info', RATE_LIMIT_PER_CALLER: '1000000', RATE_LIMIT_PER_DEVICE: '1000000' }, requests: requestsFor(bodies, tokens), tokens, logToFile: true }
  ]
  const baseDist = process.env.BENCH_BASE_DIST
  // The same plans on another build, for before/after in one run.
  if (baseDist !== undefined) {
    for (const plan of given.filter((p) => p.name === 'b@warn' || p.name === 'prod')) {
      given.push({ ...plan, name: `${plan.name}~base`, args: [...service.slice(0, -1), join(baseDist, 'server.js')] })
    }
  }
  const plans = given.map((plan): Plan => ({ tokens: [], check: 'sign', items: 1, ...plan }))
  const chosen = plans.filter((plan) => wanted(plan.name))
  const pin = pinning()
  const targets = await Promise.all(chosen.map((plan) => startTarget(plan.name, plan.args, plan.env, pin,
    plan.logToFile === true ? { path: join(tempDir as string, `${plan.name}.log`) } : undefined)))
  const planOf = new Map(chosen.map((plan) => [plan.name, plan]))
  const of = (target: Target): Plan => planOf.get(target.name) as Plan
  const requestsOfTarget = (target: Target): AcRequest[] => of(target).requests
  for (const target of targets) await checkTarget(target, of(target), pick(devices))

  for (const target of targets) {
    const warm = await load(target, requestsOfTarget(target), WARMUP)
    // A cold process (nothing compiled yet) may shed its first burst with 503 OVERLOADED, as it
    // should; the warm-up is not measured. Any other failure is a broken target.
    const shed = warm.statusCodeStats['503']?.count ?? 0
    if (shed > 0) console.log(`${target.name}: ${shed} requests of the warm-up shed (503 OVERLOADED) while the process was cold`)
    if (warm.non2xx - shed + warm.errors > 0) {
      throw new Error(`${target.name}: warm-up got ${warm.non2xx} non-2xx and ${warm.errors} errors ` +
        `(${JSON.stringify(warm.statusCodeStats)})${target.stderr() === '' ? '' : `\n${target.stderr()}`}`)
    }
  }

  const runs: Run[] = []
  for (let round = 1; round <= ROUNDS; round++) {
    for (const target of targets) {
      const run = await measure(target, requestsOfTarget(target), round, of(target).items)
      runs.push(run)
      console.log(`  ${run.target} #${round}: ${fmt(run.rps)} req/s, p50 ${run.p50} ms, p99 ${run.p99} ms, status ${run.statusCodes || 'none'}`)
    }
  }
  await Promise.all(targets.map(stopTarget))
  for (const target of targets) {
    if (target.stderr() !== '') console.log(`\n${target.name} wrote to stderr:\n${target.stderr()}`)
  }

  console.log('\nPer run (latency in ms; CPU = share of one core over the run):')
  console.log(table(['run', 'req/s', 'devices/s', 'p50', 'p99', 'non-2xx', 'errors', 'log lines/req', 'server CPU', 'client CPU', 'server µs CPU/req'], runs.map(runRow)))
  console.log('\nSummary (req/s: mean of runs; p50: mean; p99: worst run; ratio: mean req/s / baseline mean req/s, with the range of')
  console.log('per-round paired ratios; CPU ratio: baseline server CPU per request / this one, the steadier figure on a busy machine):')
  console.log(table(['target', 'req/s', 'devices/s', 'p50', 'p99', 'non-2xx', 'errors', 'log lines/req', 'ratio to baseline', 'µs CPU/req', 'CPU ratio'],
    summaryRows(runs, targets.map((t) => t.name))))
  console.log('\nRatios (req/s: median of the per-round paired ratios, and their range; CPU: the other\'s server CPU per request / this one\'s):')
  console.log(table(['ratio', 'req/s', 'range', 'CPU', 'goal'], ratioRows(runs)))
  const baselineCpu = cpuPerRequest(runs.filter((run) => run.target === 'a@warn'))
  for (const { of, goal } of CPU_GOALS) {
    const cpu = cpuPerRequest(runs.filter((run) => run.target === of))
    if (cpu === undefined || baselineCpu === undefined) continue
    const ratio = baselineCpu / cpu
    console.log(`CPU ratio ${of}/a@warn: ${fmt(ratio, 2)} (${micros(cpu)} vs ${micros(baselineCpu)} µs a request), goal >= ${goal}: ${ratio >= goal ? 'PASS' : 'FAIL'}`)
  }
  const p99 = runs.filter((run) => run.target.startsWith('b@')).map((run) => run.p99)
  if (p99.length > 0) console.log(`\nPOST /sign p99, worst run: ${Math.max(...p99)} ms (goal: under 10 ms at ${CONNECTIONS} connections)`)
  console.log(`\ntotal ${((Date.now() - started) / 1000).toFixed(1)} s`)

  const bad = runs.filter((run) => run.non2xx > 0 || run.errors > 0)
  if (bad.length > 0) {
    console.error(`FAIL: non-2xx responses or errors in ${bad.map((run) => `${run.target} #${run.round} (${run.statusCodes}, ${run.errors} errors)`).join(', ')}`)
    process.exitCode = 1
  }
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
}).finally(async () => {
  killAll()
  for (const teardown of teardowns.reverse()) await teardown()
})
