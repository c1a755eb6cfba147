// Throughput of POST /sign/batch on the built service (dist/): a 1000-item JSON batch under load, and a
// 1,000,000-line NDJSON stream, each next to a tight in-process loop of the bare hash over the same
// inputs measured in the same run, printed as a ratio; and the server's resident memory around the stream.
// Run with `npm run bench:batch` (it builds first). Never a test: the figures depend on the machine.
//
// Environment overrides: BENCH_DURATION (s per JSON run, 8), BENCH_ROUNDS (3), BENCH_CONNECTIONS (4),
// BENCH_STREAM_LINES (1000000).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createHash, hash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
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

async function startServer (storeFile: string): Promise<{ child: ChildProcess, url: string }> {
  const port = await freePort()
  const node = [process.execPath, join(ROOT, 'dist', 'server.js')]
  const [command, ...args] = hasTaskset ? ['taskset', '-c', '1', ...node] : node
  const child = spawn(command as string, args, {
    // The same 1000 devices are signed over and over: their limits counted, as they are by default, but set too high to be reached.
    env: { RATE_LIMIT_PER_DEVICE: '1000000', RATE_LIMIT_BATCH_ITEMS_PER_CALLER: '100000000', ...process.env, PORT: String(port), HOST: '127.0.0.1', STORE_FILE: storeFile, STORE_WATCH: 'false', LOG_LEVEL: 'warn', AUTH_MODE: 'none' },
    stdio: ['ignore', 'ignore', 'pipe']
  })
  children.add(child)
  child.once('exit', () => children.delete(child))
  for (let i = 0; i < 200; i++) {
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

// ---- the two workloads ----

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
async function streamRun (url: string, pid: number): Promise<StreamRun> {
  const rssBefore = rssMb(pid)
  let rssPeak = rssBefore
  const sampler = setInterval(() => { rssPeak = Math.max(rssPeak, rssMb(pid)) }, 100)
  const malformedAt = Math.floor(STREAM_LINES / 2)
  const lineOf = (n: number): string => n === malformedAt ? '{"productKey": oops\n' : JSON.stringify(items[(n - 1) % ITEMS]) + '\n'
  const started = performance.now()
  const { lines, malformedAnswered } = await new Promise<{ lines: number, malformedAnswered: boolean }>((resolve, reject) => {
    const req = request(`${url}/sign/batch`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' } }, (res) => {
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
      while (n <= STREAM_LINES) {
        let chunk = ''
        for (let i = 0; i < 500 && n <= STREAM_LINES; i++) chunk += lineOf(n++)
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
  clearInterval(sampler)
  await new Promise((resolve) => setTimeout(resolve, 500))
  return { signaturesPerSecond: (STREAM_LINES - 1) / seconds, rssBefore, rssPeak, rssAfter: rssMb(pid), lines, malformedAnswered }
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
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
})
