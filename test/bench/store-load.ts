// Load time and memory of the file store on a large device file, JSON and CSV. Run with
// `npm run bench:store`. Each format is measured in a fresh child process (this same file, run
// with `node --expose-gc --import tsx ... child <file>`) so its memory figures start clean.
//
// Environment overrides: BENCH_STORE_DEVICES (1000000), BENCH_STORE_PRODUCTS (100).
import { spawn, type ChildProcess } from 'node:child_process'
import { randomFillSync } from 'node:crypto'
import { closeSync, mkdtempSync, openSync, rmSync, statSync, utimesSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { pino } from 'pino'
import { createFileStore } from '../../src/store/file-store.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SELF = fileURLToPath(import.meta.url)
const MB = 1024 * 1024

function envCount (name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive whole number, got ${raw}`)
  return value
}

interface Sample { productKey: string, deviceKey: string, deviceSecret: string }

/** What a child reports, as one JSON line on stdout. */
interface ChildReport {
  devices: number
  loadMs: number
  heapBefore: number
  rssBefore: number
  heapAfterLoad: number
  rssAfterLoad: number
  peakRssAfterLoad: number
  lookupsOk: number
  lookupsChecked: number
  lookupNs: number
  reloadMs: number
  reloadMaxStallMs: number
  lookupsDuringReload: number
  heapAfterReload: number
  rssAfterReload: number
  peakRssAfterReload: number
}

// ---- child: measure one file ----

async function child (path: string): Promise<void> {
  const gc = globalThis.gc
  if (gc === undefined) throw new Error('run the child with node --expose-gc')
  const samples = JSON.parse(process.env.BENCH_STORE_SAMPLES ?? '[]') as Sample[]
  const fullGc = (): void => { gc(); gc() }
  const log = pino({ level: 'silent' })

  fullGc()
  const before = process.memoryUsage()
  const t0 = performance.now()
  const store = await createFileStore({ path, watch: false, log })
  const loadMs = performance.now() - t0
  fullGc()
  const afterLoad = process.memoryUsage()
  const peakRssAfterLoad = process.resourceUsage().maxRSS * 1024

  // Sanity: every sample is found with its secret, and a device that is not in the file is not.
  let lookupsOk = 0
  for (const sample of samples) {
    const device = await store.findDevice(sample.productKey, sample.deviceKey)
    if (device?.deviceSecret === sample.deviceSecret && device.enabled) lookupsOk++
  }
  if (await store.findDevice('NoSuchPr', 'no-such-device') === undefined) lookupsOk++
  const health = await store.checkHealth()

  // Raw lookup cost (the Map behind findDevice), on the sample keys.
  const rounds = 200_000
  const t1 = performance.now()
  for (let i = 0; i < rounds; i++) {
    const sample = samples[i % samples.length] as Sample
    await store.findDevice(sample.productKey, sample.deviceKey)
  }
  const lookupNs = ((performance.now() - t1) * 1e6) / rounds

  // reload() while serving: lookups keep running on the event loop; the longest gap between two
  // of them is how long the service could not answer anybody.
  const delay = monitorEventLoopDelay({ resolution: 5 })
  const state = { serving: true }
  let lookupsDuringReload = 0
  let badDuringReload = 0
  let lastTick = performance.now()
  let maxGap = 0
  const serve = async (): Promise<void> => {
    while (state.serving) {
      const sample = samples[lookupsDuringReload % samples.length] as Sample
      const device = await store.findDevice(sample.productKey, sample.deviceKey)
      if (device?.deviceSecret !== sample.deviceSecret) badDuringReload++
      lookupsDuringReload++
      await new Promise<void>((resolve) => setImmediate(resolve))
      const now = performance.now()
      maxGap = Math.max(maxGap, now - lastTick)
      lastTick = now
    }
  }
  // A new mtime makes it another version of the file: an unchanged one would not be parsed again.
  const later = new Date(Date.now() + 1000)
  utimesSync(path, later, later)
  delay.enable()
  const servingDone = serve()
  const t2 = performance.now()
  const outcome = await store.reload()
  const reloadMs = performance.now() - t2
  if (outcome !== 'reloaded') throw new Error(`reload() did not reload: ${outcome}`)
  state.serving = false
  await servingDone
  delay.disable()
  if (badDuringReload > 0) throw new Error(`${badDuringReload} lookups failed during reload`)
  const healthAfter = await store.checkHealth()
  if (healthAfter.lastReloadError !== undefined) throw new Error(`reload failed: ${healthAfter.lastReloadError.message}`)

  fullGc()
  const afterReload = process.memoryUsage()
  const report: ChildReport = {
    devices: health.devices ?? 0,
    loadMs,
    heapBefore: before.heapUsed,
    rssBefore: before.rss,
    heapAfterLoad: afterLoad.heapUsed,
    rssAfterLoad: afterLoad.rss,
    peakRssAfterLoad,
    lookupsOk,
    lookupsChecked: samples.length + 1,
    lookupNs,
    reloadMs,
    reloadMaxStallMs: Math.max(maxGap, delay.max / 1e6),
    lookupsDuringReload,
    heapAfterReload: afterReload.heapUsed,
    rssAfterReload: afterReload.rss,
    peakRssAfterReload: process.resourceUsage().maxRSS * 1024
  }
  await store.close()
  process.stdout.write(`BENCH_STORE_REPORT ${JSON.stringify(report)}\n`)
}

// ---- parent: generate the files, run one child per format, print the table ----

const ALNUM = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789', 'latin1')

/** `count` random alphanumeric strings of `length` characters, made in bulk (32M characters in well under a second). */
function randomAlnums (count: number, length: number): string[] {
  const buffer = randomFillSync(Buffer.alloc(count * length))
  for (let i = 0; i < buffer.length; i++) buffer[i] = ALNUM[(buffer[i] as number) % ALNUM.length] as number
  return Array.from({ length: count }, (_, i) => buffer.toString('latin1', i * length, (i + 1) * length))
}

function generate (dir: string, count: number, productCount: number): { json: string, csv: string, samples: Sample[], ms: number } {
  const started = performance.now()
  const products = randomAlnums(productCount, 8)
  const productOf = randomFillSync(new Uint32Array(count))
  const width = Math.max(6, String(count - 1).length)
  const sampleAt = new Set([0, 1, Math.floor(count / 3), Math.floor(count / 2), Math.floor((count * 7) / 9), count - 1])
  const samples: Sample[] = []

  const json = join(dir, 'devices.json')
  const csv = join(dir, 'devices.csv')
  const jsonFd = openSync(json, 'w')
  const csvFd = openSync(csv, 'w')
  try {
    writeSync(jsonFd, '{\n  "devices": [\n')
    writeSync(csvFd, 'productKey,deviceKey,deviceSecret\n')
    const batch = 20_000
    for (let start = 0; start < count; start += batch) {
      const end = Math.min(count, start + batch)
      const secrets = randomAlnums(end - start, 32)
      const jsonLines: string[] = []
      const csvLines: string[] = []
      for (let i = start; i < end; i++) {
        const productKey = products[(productOf[i] as number) % productCount] as string
        const deviceKey = `dev-${String(i).padStart(width, '0')}`
        const deviceSecret = secrets[i - start] as string
        if (sampleAt.has(i)) samples.push({ productKey, deviceKey, deviceSecret })
        jsonLines.push(`    { "productKey": "${productKey}", "deviceKey": "${deviceKey}", "deviceSecret": "${deviceSecret}" }${i === count - 1 ? '' : ','}\n`)
        csvLines.push(`${productKey},${deviceKey},${deviceSecret}\n`)
      }
      writeSync(jsonFd, jsonLines.join(''))
      writeSync(csvFd, csvLines.join(''))
    }
    writeSync(jsonFd, '  ]\n}\n')
  } finally {
    closeSync(jsonFd)
    closeSync(csvFd)
  }
  return { json, csv, samples, ms: performance.now() - started }
}

const running = new Set<ChildProcess>()
let tempDir: string | undefined

function cleanUp (): void {
  for (const proc of running) proc.kill('SIGKILL')
  running.clear()
  if (tempDir !== undefined) rmSync(tempDir, { recursive: true, force: true })
  tempDir = undefined
}

function measureInChild (path: string, samples: Sample[]): Promise<ChildReport & { wallMs: number }> {
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', SELF, 'child', path], {
      cwd: ROOT,
      env: { ...process.env, BENCH_STORE_SAMPLES: JSON.stringify(samples) },
      stdio: ['ignore', 'pipe', 'inherit']
    })
    running.add(proc)
    let stdout = ''
    proc.stdout?.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
    const timer = setTimeout(() => proc.kill('SIGKILL'), 180_000)
    proc.once('error', reject)
    proc.once('exit', (code, signal) => {
      clearTimeout(timer)
      running.delete(proc)
      const line = stdout.split('\n').find((l) => l.startsWith('BENCH_STORE_REPORT '))
      if (code !== 0 || line === undefined) {
        reject(new Error(`child for ${path} exited (${signal ?? code}) without a report:\n${stdout.slice(-2000)}`))
        return
      }
      resolve({ ...JSON.parse(line.slice('BENCH_STORE_REPORT '.length)) as ChildReport, wallMs: performance.now() - started })
    })
  })
}

const mb = (bytes: number): string => (bytes / MB).toFixed(1)
const ms = (value: number): string => value.toFixed(0)

async function parent (): Promise<void> {
  const started = performance.now()
  const count = envCount('BENCH_STORE_DEVICES', 1_000_000)
  const productCount = envCount('BENCH_STORE_PRODUCTS', 100)
  tempDir = mkdtempSync(join(tmpdir(), 'store-bench-'))
  const files = generate(tempDir, count, productCount)
  console.log(`node ${process.version}; ${count.toLocaleString('en-US')} devices over ${productCount} products; files written in ${ms(files.ms)} ms`)

  const results: Array<{ format: string, size: number, report: ChildReport & { wallMs: number } }> = []
  for (const [format, path] of [['JSON', files.json], ['CSV', files.csv]] as const) {
    const report = await measureInChild(path, files.samples)
    if (report.devices !== count || report.lookupsOk !== report.lookupsChecked) {
      throw new Error(`${format}: loaded ${report.devices} devices, ${report.lookupsOk}/${report.lookupsChecked} sanity lookups right`)
    }
    results.push({ format, size: statSync(path).size, report })
    console.log(`  ${format} measured (child ran ${ms(report.wallMs)} ms)`)
  }

  const rows: Array<[string, (r: typeof results[number]) => string]> = [
    ['file size (MB)', (r) => mb(r.size)],
    ['createFileStore until resolved (ms)', (r) => ms(r.report.loadMs)],
    ['heap used after load+GC, minus before (MB)', (r) => mb(r.report.heapAfterLoad - r.report.heapBefore)],
    ['  per device (bytes)', (r) => ((r.report.heapAfterLoad - r.report.heapBefore) / count).toFixed(0)],
    ['RSS after load+GC, minus before (MB)', (r) => mb(r.report.rssAfterLoad - r.report.rssBefore)],
    ['peak RSS during load (maxRSS, MB)', (r) => mb(r.report.peakRssAfterLoad)],
    ['  before load: heap / RSS (MB)', (r) => `${mb(r.report.heapBefore)} / ${mb(r.report.rssBefore)}`],
    ['sanity lookups right', (r) => `${r.report.lookupsOk}/${r.report.lookupsChecked}`],
    ['findDevice (ns per lookup)', (r) => r.report.lookupNs.toFixed(0)],
    ['reload() while serving (ms)', (r) => ms(r.report.reloadMs)],
    ['  longest event-loop stall during reload (ms)', (r) => ms(r.report.reloadMaxStallMs)],
    ['  lookups answered during reload', (r) => r.report.lookupsDuringReload.toLocaleString('en-US')],
    ['heap used after reload+GC, minus before (MB)', (r) => mb(r.report.heapAfterReload - r.report.heapBefore)],
    ['RSS after reload+GC, minus before (MB)', (r) => mb(r.report.rssAfterReload - r.report.rssBefore)],
    ['peak RSS incl. reload (maxRSS, MB)', (r) => mb(r.report.peakRssAfterReload)]
  ]
  const header = ['', ...results.map((r) => r.format)]
  const body = rows.map(([label, value]) => [label, ...results.map(value)])
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => (row[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((cell, i) => i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)).join('  ')
  console.log('')
  console.log(line(header))
  console.log(widths.map((w) => '-'.repeat(w)).join('  '))
  for (const row of body) console.log(line(row))
  console.log(`\ntotal ${((performance.now() - started) / 1000).toFixed(1)} s`)
}

if (process.argv[2] === 'child') {
  const path = process.argv[3]
  if (path === undefined) throw new Error('usage: store-load.ts child <device file>')
  await child(path)
} else {
  process.on('exit', cleanUp)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      cleanUp()
      process.exit(130)
    })
  }
  try {
    await parent()
  } catch (err) {
    console.error(err)
    process.exitCode = 1
  } finally {
    cleanUp()
  }
}
