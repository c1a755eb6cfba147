// Throughput of POST /sign/batch on the built service (dist/): a 1000-item JSON batch under load, and a
// 1,000,000-line NDJSON stream, each next to a tight in-process loop of the bare hash over the same
// inputs measured in the same run, printed as a ratio; and the server's resident memory around the stream.
// Run with `npm run bench:batch` (it builds first). Never a test: the figures depend on the machine.
//
// Then the shipped configuration: BENCH_DISTINCT distinct devices of a store that size through one stream with a
// bearer token, every limit at its default and the info audit line, its rate, server CPU per device and memory.
// Environment overrides: BENCH_DURATION (s per JSON run, 8), BENCH_ROUNDS (3), BENCH_CONNECTIONS (4),
// BENCH_STREAM_LINES (1000000), BENCH_DISTINCT (1000000; 0 skips that part).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createHash, hash, randomBytes } from 'node:crypto'
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildMqttSignContent } from '../../src/core/credentials.js'
import { freePort } from '../free-port.js'
import { envNumber } from './env.js'

interface AcResult { requests: { mean: number, total?: number }, latency: { p50: number, p99: number }, non2xx: number, errors: number }
interface AcOptions { url: string, connections: number, duration: number, method: string, headers: Record<string, string>, body: string }
const autocannon = createRequire(import.meta.url)('autocannon') as (opts: AcOptions) => Promise<AcResult>

const DURATION = envNumber('BENCH_DURATION', 8)
const ROUNDS = Math.round(envNumber('BENCH_ROUNDS', 3))
const CONNECTIONS = Math.round(envNumber('BENCH_CONNECTIONS', 4))
const STREAM_LINES = Math.round(envNumber('BENCH_STREAM_LINES', 1_000_000))
const DISTINCT = process.env.BENCH_DISTINCT === '0' ? 0 : Math.round(envNumber('BENCH_DISTINCT', 1_000_000))
const ITEMS = 1000
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const TIMESTAMP = '1795594636999'

interface Device { productKey: string, deviceKey: string, deviceSecret: string }

const devices: Device[] = Array.from({ length: ITEMS }, (_, i) => ({
  productKey: `Pk${i % 10}Ab12`,
  deviceKey: `dev-${String(i).padStart(6, '0')}`,
  deviceSecret: randomBytes(16).toString('hex')
}))
/** The items of the batch: each device once, with a clientId and a timestamp, as provisioning tools send them. */
const items = devices.map(({ productKey, deviceKey }, i) => ({ productKey, deviceKey, clientId: `SN-${i}`, timestamp: TIMESTAMP, reference: `ref-${i}` }))
/** What the bare hash hashes: the same content and secret the service hashes for each item. */
const hashInputs = items.map((item, i) => buildMqttSignContent(item.clientId, item.deviceKey, item.productKey, TIMESTAMP) + (devices[i] as Device).deviceSecret)

/**
 * Bare hashes per second: SHA-1 of every input, over and over, for `seconds`, with the service's
 * own digest call (crypto.hash, one shot) or with the classic createHash().update().digest() that
 * the service used before it moved to crypto.hash (about twice as slow per call).
 */
function bareHashRate (seconds: number, classic = false): number {
  let count = 0
  const end = performance.now() + seconds * 1000
  while (performance.now() < end) {
    if (classic) for (const input of hashInputs) createHash('sha1').update(input).digest('hex').toUpperCase()
    else for (const input of hashInputs) hash('sha1', input, 'hex').toUpperCase()
    count += hashInputs.length
  }
  return count / seconds
}

// ---- the server, pinned to its own core where taskset exists ----

const hasTaskset = spawnSync('taskset', ['-V']).status === 0
const children = new Set<ChildProcess>()
let tempDir: string | undefined
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL')
  if (tempDir !== undefined) rmSync(tempDir, { recursive: true, force: true })
})

async function startServer (storeFile: string, shipped?: Record<string, string>): Promise<{ child: ChildProcess, url: string }> {
  const port = await freePort()
  const node = [process.execPath, join(ROOT, 'dist', 'server.js')]
  const [command, ...args] = hasTaskset ? ['taskset', '-c', '1', ...node] : node
  const child = spawn(command as string, args, {
    // The same 1000 devices are signed over and over: their limits counted, as they are by default, but set too high to be reached.
    // `shipped`: the defaults as they are (no AUTH_MODE, no limit, the info level), plus what it names.
    env: shipped !== undefined
      ? { ...process.env, PORT: String(port), HOST: '127.0.0.1', STORE_FILE: storeFile, STORE_WATCH: 'false', ...shipped }
      : { RATE_LIMIT_PER_DEVICE: '1000000', RATE_LIMIT_BATCH_ITEMS_PER_CALLER: '100000000', ...process.env, PORT: String(port), HOST: '127.0.0.1', STORE_FILE: storeFile, STORE_WATCH: 'false', LOG_LEVEL: 'warn', AUTH_MODE: 'none' },
    // The audit lines of the shipped run go to a file, as a deployment's log collector takes them.
    stdio: ['ignore', shipped === undefined ? 'ignore' : openSync(join(tempDir as string, 'audit.log'), 'w'), 'pipe']
  })
  children.add(child)
  child.once('exit', () => children.delete(child))
  for (let i = 0; i < 1200; i++) {
    const res = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined)
    if (res?.ok === true) return { child, url: `http://127.0.0.1:${port}` }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error('the service did not start')
}

function rssMb (pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]) / 1024
}

/** The process's user + system CPU time so far, in ms (/proc/PID/stat, clock ticks of 10 ms). */
function cpuMs (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
  return (Number(fields[11]) + Number(fields[12])) * 10
}

// ---- the workloads ----

async function jsonBatchRate (url: string): Promise<{ signaturesPerSecond: number, p50: number, p99: number }> {
  const result = await autocannon({
    url: `${url}/sign/batch`,
    connections: CONNECTIONS,
    duration: DURATION,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ devices: items })
  })
  if (result.non2xx + result.errors > 0) throw new Error(`JSON batch: ${result.non2xx} non-2xx, ${result.errors} errors`)
  return { signaturesPerSecond: result.requests.mean * ITEMS, p50: result.latency.p50, p99: result.latency.p99 }
}

interface StreamRun { signaturesPerSecond: number, rssBefore: number, rssPeak: number, rssAfter: number, lines: number, malformedAnswered: boolean }

/** Streams STREAM_LINES devices (one malformed line in the middle) and reads every result line. */
async function streamRun (url: string, pid: number, total = STREAM_LINES, itemOf = (n: number): object => items[(n - 1) % ITEMS] as object, headers: Record<string, string> = {}): Promise<StreamRun & { cpuMsPerDevice: number }> {
  const rssBefore = rssMb(pid)
  let rssPeak = rssBefore
  const sampler = setInterval(() => { rssPeak = Math.max(rssPeak, rssMb(pid)) }, 100)
  const malformedAt = Math.floor(total / 2)
  const lineOf = (n: number): string => n === malformedAt ? '{"productKey": oops\n' : JSON.stringify(itemOf(n)) + '\n'
  const cpuBefore = cpuMs(pid)
  const started = performance.now()
  const { lines, malformedAnswered } = await new Promise<{ lines: number, malformedAnswered: boolean }>((resolve, reject) => {
    const req = request(`${url}/sign/batch`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson', ...headers } }, (res) => {
      let lines = 0
      let tail = ''
      let malformed = false
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        const text = tail + chunk
        const last = text.lastIndexOf('\n')
        for (let i = text.indexOf('\n'); i !== -1 && i <= last; i = text.indexOf('\n', i + 1)) lines++
        if (!malformed && text.includes(`{"line":${malformedAt},"ok":false,"error":{"code":"MALFORMED_JSON"`)) malformed = true
        tail = text.slice(last + 1)
      })
      res.on('end', () => resolve({ lines, malformedAnswered: malformed }))
      res.on('error', reject)
    })
    req.on('error', reject)
    let n = 1
    const write = (): void => {
      while (n <= total) {
        let chunk = ''
        for (let i = 0; i < 500 && n <= total; i++) chunk += lineOf(n++)
        if (!req.write(chunk)) {
          req.once('drain', write)
          return
        }
      }
      req.end()
    }
    write()
  })
  const seconds = (performance.now() - started) / 1000
  const cpuMsPerDevice = (cpuMs(pid) - cpuBefore) / total
  clearInterval(sampler)
  await new Promise((resolve) => setTimeout(resolve, 500))
  return { signaturesPerSecond: (total - 1) / seconds, rssBefore, rssPeak, rssAfter: rssMb(pid), lines, malformedAnswered, cpuMsPerDevice }
}

// ---- main ----

const fmt = (value: number, digits = 0): string => value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number

async function main (): Promise<void> {
  if (hasTaskset) spawnSync('taskset', ['-cp', '0', String(process.pid)])
  tempDir = mkdtempSync(join(tmpdir(), 'batch-bench-'))
  const storeFile = join(tempDir, 'devices.json')
  writeFileSync(storeFile, JSON.stringify({ devices }))
  console.log(`node ${process.version}; ${ITEMS}-item JSON batch, ${CONNECTIONS} connections, ${ROUNDS} rounds of ${DURATION} s; ` +
    `NDJSON stream of ${fmt(STREAM_LINES)} lines; ${hasTaskset ? 'server on core 1, load and bare hash on core 0' : 'no taskset: not pinned'}`)

  const server = await startServer(storeFile)
  await jsonBatchRate(server.url) // warm-up
  const ratios: number[] = []
  const classicRatios: number[] = []
  for (let round = 1; round <= ROUNDS; round++) {
    const before = bareHashRate(1)
    const classicBefore = bareHashRate(1, true)
    const batch = await jsonBatchRate(server.url)
    const bare = (before + bareHashRate(1)) / 2
    const classic = (classicBefore + bareHashRate(1, true)) / 2
    ratios.push(batch.signaturesPerSecond / bare)
    classicRatios.push(batch.signaturesPerSecond / classic)
    console.log(`  round ${round}: JSON batch ${fmt(batch.signaturesPerSecond)} signatures/s (p50 ${batch.p50} ms, p99 ${batch.p99} ms); ` +
      `bare hash ${fmt(bare)}/s (createHash ${fmt(classic)}/s); ratio ${fmt(batch.signaturesPerSecond / bare, 3)} (${fmt(batch.signaturesPerSecond / classic, 3)})`)
  }
  server.child.kill('SIGTERM')

  // A fresh server for the stream, so its memory figures are the stream's own.
  const streamServer = await startServer(storeFile)
  const pid = streamServer.child.pid as number
  const bareBefore = bareHashRate(1)
  const classicBefore = bareHashRate(1, true)
  const stream = await streamRun(streamServer.url, pid)
  const streamRatio = stream.signaturesPerSecond / ((bareBefore + bareHashRate(1)) / 2)
  const streamClassicRatio = stream.signaturesPerSecond / ((classicBefore + bareHashRate(1, true)) / 2)
  streamServer.child.kill('SIGTERM')

  console.log(`\nJSON batch: ratio to the bare hash ${fmt(median(ratios), 3)} (median of ${ROUNDS}; range ${fmt(Math.min(...ratios), 3)}-${fmt(Math.max(...ratios), 3)}); ` +
    `to the bare createHash ${fmt(median(classicRatios), 3)}; goal 0.30`)
  console.log(`NDJSON stream: ${fmt(stream.signaturesPerSecond)} signatures/s; ratio to the bare hash ${fmt(streamRatio, 3)}; to the bare createHash ${fmt(streamClassicRatio, 3)}; goal 0.25`)
  console.log(`  ${fmt(stream.lines)} result lines for ${fmt(STREAM_LINES)} input lines (+1 summary); malformed line answered: ${String(stream.malformedAnswered)}`)
  console.log(`  server RSS: before ${fmt(stream.rssBefore, 1)} MB, peak ${fmt(stream.rssPeak, 1)} MB (+${fmt(stream.rssPeak - stream.rssBefore, 1)}), after ${fmt(stream.rssAfter, 1)} MB; bound +100 MB`)
  if (stream.lines !== STREAM_LINES + 1 || !stream.malformedAnswered || stream.rssPeak - stream.rssBefore >= 100) process.exitCode = 1
  if (DISTINCT > 0) await shippedStream(stream)
}

/** DISTINCT devices, each once, through one stream of the service as shipped: a token, every limit at its default, info audit lines. */
async function shippedStream (open: StreamRun & { cpuMsPerDevice: number }): Promise<void> {
  const dir = tempDir as string
  const keyOf = (n: number): { productKey: string, deviceKey: string } => ({ productKey: `Pk${n % 10}Ab12`, deviceKey: `fleet-${String(n).padStart(7, '0')}` })
  const storeFile = join(dir, 'fleet.csv')
  const rows = ['productKey,deviceKey,deviceSecret']
  for (let n = 1; n <= DISTINCT; n++) {
    const { productKey, deviceKey } = keyOf(n)
    rows.push(`${productKey},${deviceKey},${randomBytes(12).toString('hex')}`)
  }
  writeFileSync(storeFile, rows.join('\n') + '\n')
  const token = randomBytes(32).toString('base64url')
  const tokensFile = join(dir, 'tokens.json')
  writeFileSync(tokensFile, JSON.stringify({ tokens: [{ name: 'provisioning', sha256: createHash('sha256').update(token).digest('hex'), scopes: ['sign:batch'], products: '*' }] }))
  const server = await startServer(storeFile, { AUTH_TOKENS_FILE: tokensFile })
  const pid = server.child.pid as number
  const run = await streamRun(server.url, pid, DISTINCT, (n) => ({ ...keyOf(n), clientId: `SN-${n}`, timestamp: TIMESTAMP }), { authorization: `Bearer ${token}` })
  server.child.kill('SIGTERM')
  const audit = readFileSync(join(dir, 'audit.log'), 'utf8').split('\n').filter((line) => line.includes('"route":"/sign/batch"'))
  const signed = audit.length === 1 ? (JSON.parse(audit[0] as string) as { batch: { signed: number } }).batch.signed : -1
  console.log(`\nShipped configuration (token, default limits, info audit line): ${fmt(DISTINCT)} distinct devices of a ${fmt(DISTINCT)}-device store in one stream`)
  console.log(`  ${fmt(run.signaturesPerSecond)} devices/s (${fmt(run.signaturesPerSecond / open.signaturesPerSecond, 2)} of the open stream above), ` +
    `server CPU ${fmt(run.cpuMsPerDevice * 1000, 1)} µs per device (open: ${fmt(open.cpuMsPerDevice * 1000, 1)})`)
  console.log(`  server RSS: before ${fmt(run.rssBefore, 1)} MB (the store loaded), peak ${fmt(run.rssPeak, 1)} MB (+${fmt(run.rssPeak - run.rssBefore, 1)}); ` +
    `audit line: ${fmt(signed)} signed of ${fmt(DISTINCT - 1)} valid lines`)
  if (run.lines !== DISTINCT + 1 || signed !== DISTINCT - 1) process.exitCode = 1
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
})
