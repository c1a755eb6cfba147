// STORE=postgres, measured against the file store in the same run: POST /sign with a warm cache and with
// no cache (every request a query), the import rate of BENCH_IMPORT devices, and the memory of a full cache.
// Run with `npm run bench:pg` (it builds first); it starts its own throwaway PostgreSQL (test/pg-helper.ts).
// Figures are compared as ratios to the file store: absolute numbers depend on the machine and its neighbours.
//
// Environment overrides: BENCH_DURATION (s per run, 8), BENCH_WARMUP (s, 3), BENCH_ROUNDS (3), BENCH_CONNECTIONS (50),
// BENCH_DEVICES (10000 signed devices), BENCH_IMPORT (1000000), BENCH_CACHE (100000 cache entries).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import pg from 'pg'
import { runImport } from '../../src/cli/import.js'
import { createCachedStore } from '../../src/store/cached-store.js'
import { migrate } from '../../src/store/migrations.js'
import { createPostgresStore } from '../../src/store/postgres-store.js'
import { startPostgres } from '../pg-helper.js'
import { freePort } from '../free-port.js'
import { envNumber } from './env.js'

interface AcResult { requests: { mean: number, total?: number }, latency: { p50: number, p99: number }, non2xx: number, errors: number }
const autocannon = createRequire(import.meta.url)('autocannon') as (opts: object) => Promise<AcResult>

const DURATION = envNumber('BENCH_DURATION', 8)
const WARMUP = envNumber('BENCH_WARMUP', 3)
const ROUNDS = envNumber('BENCH_ROUNDS', 3)
const CONNECTIONS = envNumber('BENCH_CONNECTIONS', 50)
const DEVICES = envNumber('BENCH_DEVICES', 10_000)
const IMPORT = envNumber('BENCH_IMPORT', 1_000_000)
const CACHE = envNumber('BENCH_CACHE', 100_000)
const SERVICE = fileURLToPath(new URL('../../dist/server.js', import.meta.url))

const teardowns: Array<() => unknown> = []
const children = new Set<ChildProcess>()
const cleanUp = async (): Promise<void> => {
  for (const child of children) child.kill('SIGKILL')
  for (const fn of teardowns.reverse()) await fn()
}
const fmt = (value: number, digits = 0): string => value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
const hasTaskset = spawnSync('taskset', ['--version']).status === 0

/** The built service on core 0 (when taskset exists), the load generator (this process) on core 1. */
async function startService (name: string, env: Record<string, string>): Promise<{ name: string, url: string }> {
  const port = await freePort()
  const args = hasTaskset ? ['-c', '0', process.execPath, SERVICE] : [SERVICE]
  const child = spawn(hasTaskset ? 'taskset' : process.execPath, args, {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', AUTH_MODE: 'none', RATE_LIMIT_PER_CALLER: '0', RATE_LIMIT_PER_DEVICE: '0', ...env },
    stdio: ['ignore', 'ignore', 'inherit']
  })
  children.add(child)
  for (let i = 0; i < 400; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => { socket.destroy(); resolve(true) })
      socket.once('error', () => resolve(false))
    })
    if (up) return { name, url: `http://127.0.0.1:${port}` }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`${name} did not start`)
}

async function load (url: string, bodies: string[], seconds: number): Promise<AcResult> {
  let client = 0
  return autocannon({
    url,
    connections: CONNECTIONS,
    duration: seconds,
    requests: bodies.map((body) => ({ method: 'POST', path: '/sign', headers: { 'content-type': 'application/json' }, body })),
    setupClient (c: { setRequests: (r: object[]) => void }) {
      const offset = Math.floor((client++ * bodies.length) / CONNECTIONS)
      const requests = bodies.map((body) => ({ method: 'POST', path: '/sign', headers: { 'content-type': 'application/json' }, body }))
      c.setRequests([...requests.slice(offset), ...requests.slice(0, offset)])
    }
  })
}

async function writeCsv (path: string, count: number, prefix: string): Promise<void> {
  const out = createWriteStream(path)
  out.write('productKey,deviceKey,deviceSecret,enabled\n')
  for (let i = 0; i < count; i++) {
    if (!out.write(`Prod${i % 1000},${prefix}-${i},${randomBytes(16).toString('hex')},true\n`)) await once(out, 'drain')
  }
  out.end()
  await once(out, 'close')
}

function gc (): void {
  setFlagsFromString('--expose-gc')
  ;(runInNewContext('gc') as () => void)()
}

async function main (): Promise<void> {
  if (hasTaskset) spawnSync('taskset', ['-p', '-c', '1', String(process.pid)])
  const dir = mkdtempSync(join(tmpdir(), 'pg-bench-'))
  teardowns.push(() => rmSync(dir, { recursive: true, force: true }))
  const postgres = await startPostgres({ teardown: (fn) => teardowns.push(fn) })
  console.log(`node ${process.version}; PostgreSQL on a throwaway cluster (fsync off); taskset ${hasTaskset ? 'on (service core 0, load core 1)' : 'not available'}`)

  // 1. Import rate.
  const importDb = await postgres.createDatabase()
  const pool = new pg.Pool({ connectionString: importDb, max: 1 })
  await migrate(pool)
  await pool.end()
  const bigCsv = join(dir, 'import.csv')
  await writeCsv(bigCsv, IMPORT, 'dev')
  const quietIo = { stdin: process.stdin, stdout: process.stdout, stderr: Object.assign(process.stderr, { isTTY: false }), signal: new AbortController().signal }
  let peakRss = 0
  const sampler = setInterval(() => { peakRss = Math.max(peakRss, process.memoryUsage().rss) }, 100)
  const importStart = Date.now()
  await runImport({ in: bigCsv, databaseUrl: importDb, dryRun: false, quiet: true }, quietIo)
  const importSeconds = (Date.now() - importStart) / 1000
  const againStart = Date.now()
  await runImport({ in: bigCsv, databaseUrl: importDb, dryRun: false, quiet: true }, quietIo)
  const againSeconds = (Date.now() - againStart) / 1000
  clearInterval(sampler)
  console.log(`import: ${fmt(IMPORT)} devices (${fmt(statSync(bigCsv).size / 1e6, 1)} MB CSV) in ${importSeconds.toFixed(1)} s = ${fmt(IMPORT / importSeconds)} devices/s; ` +
    `again (all unchanged) ${againSeconds.toFixed(1)} s; peak RSS of this process ${fmt(peakRss / 1e6)} MB`)
  rmSync(bigCsv)

  // 2. Memory of a full cache.
  const cacheStore = createCachedStore(await createPostgresStore({ url: importDb, poolMax: 2, timeoutMs: 60_000, log: { warn () {} } }),
    { maxEntries: CACHE, ttlMs: 3_600_000, negativeTtlMs: 5000, negativeMaxEntries: 10_000, staleMs: 3_600_000 })
  const keys = Array.from({ length: CACHE }, (_, i) => ({ productKey: `Prod${i % 1000}`, deviceKey: `dev-${i}` }))
  gc()
  const heapBefore = process.memoryUsage().heapUsed
  for (let i = 0; i < keys.length; i += 5000) await cacheStore.findDevices(keys.slice(i, i + 5000))
  gc()
  const heapAfter = process.memoryUsage().heapUsed
  const health = await cacheStore.checkHealth()
  console.log(`cache: ${fmt(health.cache?.size ?? 0)} entries hold ${fmt((heapAfter - heapBefore) / 1e6, 1)} MB of heap (${fmt((heapAfter - heapBefore) / CACHE)} bytes each, keys ~20 chars, secrets 32)`)
  await cacheStore.close()

  // 3. POST /sign: file store, PostgreSQL with a warm cache, PostgreSQL with no cache.
  const signDb = await postgres.createDatabase()
  const signPool = new pg.Pool({ connectionString: signDb, max: 1 })
  await migrate(signPool)
  await signPool.end()
  const csv = join(dir, 'devices.csv')
  await writeCsv(csv, DEVICES, 'sign')
  await runImport({ in: csv, databaseUrl: signDb, dryRun: false, quiet: true }, quietIo)
  const bodies = Array.from({ length: DEVICES }, (_, i) => JSON.stringify({ productKey: `Prod${i % 1000}`, deviceKey: `sign-${i}` })).sort(() => Math.random() - 0.5)
  const targets = [
    await startService('file store', { STORE_FILE: csv, STORE_WATCH: 'false' }),
    // A TTL longer than the run: every request a hit, the steady state between two refreshes of a device.
    await startService('postgres, warm cache', { STORE: 'postgres', DATABASE_URL: signDb, CACHE_TTL_MS: '3600000' }),
    await startService('postgres, no cache', { STORE: 'postgres', DATABASE_URL: signDb, CACHE_MAX_ENTRIES: '0' })
  ]
  for (const target of targets) {
    // Every device once (a warm cache holds them all), then load for WARMUP seconds.
    let next = 0
    await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
      while (next < bodies.length) {
        const body = bodies[next++] as string
        const res = await fetch(`${target.url}/sign`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
        if (res.status !== 200) throw new Error(`${target.name}: warm-up got ${res.status}`)
        await res.arrayBuffer()
      }
    }))
    const warm = await load(target.url, bodies, WARMUP)
    if (warm.non2xx > 0) throw new Error(`${target.name}: warm-up got ${warm.non2xx} non-2xx answers`)
  }
  const rps = new Map(targets.map((t) => [t.name, [] as number[]]))
  const ratios = new Map(targets.map((t) => [t.name, [] as number[]]))
  for (let round = 1; round <= ROUNDS; round++) {
    let fileRps = 0
    for (const target of targets) {
      const result = await load(target.url, bodies, DURATION)
      if (result.non2xx > 0) throw new Error(`${target.name}: ${result.non2xx} non-2xx answers`)
      if (target === targets[0]) fileRps = result.requests.mean
      rps.get(target.name)?.push(result.requests.mean)
      ratios.get(target.name)?.push(result.requests.mean / fileRps)
      console.log(`  ${target.name} #${round}: ${fmt(result.requests.mean)} req/s, p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, ${result.errors} errors`)
    }
  }
  const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0
  console.log('\nPOST /sign (LOG_LEVEL=warn, open, no rate limits; ratio: median of per-round ratios to the file store of the same round):')
  for (const target of targets) {
    const r = ratios.get(target.name) ?? []
    console.log(`  ${target.name.padEnd(22)} ${fmt(median(rps.get(target.name) ?? [])).padStart(7)} req/s   ratio ${median(r).toFixed(2)} (rounds ${r.map((x) => x.toFixed(2)).join(', ')})`)
  }
  for (const target of targets.slice(1)) {
    const ready = await (await fetch(`${target.url}/readyz`)).json() as { store: { cache?: object, database?: object } }
    console.log(`  ${target.name}: cache ${JSON.stringify(ready.store.cache ?? 'off')}, pool ${JSON.stringify(ready.store.database)}`)
  }
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
}).finally(cleanUp)
