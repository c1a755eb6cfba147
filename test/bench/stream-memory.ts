// Memory of the built service (dist/) holding NDJSON streams whose clients never read their answers:
// BENCH_STREAMS streams (100) of the shortest lines (`{}`, each answered by a result 80 times its size),
// each written until its writes stall for good, then the server's resident memory (/proc/<pid>/status).
// Run with `npm run build && tsx test/bench/stream-memory.ts`. Never a test: the figures depend on the machine.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { request, type ClientRequest, type IncomingMessage } from 'node:http'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from '../free-port.js'
import { envNumber } from './env.js'

const STREAMS = Math.round(envNumber('BENCH_STREAMS', 100))
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const TINY_LINES = '{}\n'.repeat(Math.floor(65536 / 3))
const STALL_MS = 5000

const children = new Set<ChildProcess>()
process.on('exit', () => { for (const child of children) child.kill('SIGKILL') })

function rssMb (pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024
}

async function startServer (): Promise<{ child: ChildProcess, port: number }> {
  const port = await freePort()
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'server.js')], {
    // Many streams from one address: the per-caller limit of streams off, so that all of them are held at once.
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', STORE_WATCH: 'false', LOG_LEVEL: 'warn', AUTH_MODE: 'none', BATCH_STREAMS_PER_CALLER: '0', REQUEST_TIMEOUT_MS: '600000' },
    stdio: ['ignore', 'ignore', 'inherit']
  })
  children.add(child)
  for (let i = 0; i < 1200; i++) {
    const res = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined)
    if (res?.ok === true) return { child, port }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error('the service did not start')
}

/** Opens a stream, never reads its answer, and writes until no 'drain' comes for STALL_MS: resolves with the bytes written. */
async function stalledStream (port: number, opened: ClientRequest[]): Promise<number> {
  const req = request({ port, host: '127.0.0.1', method: 'POST', path: '/sign/batch', headers: { 'content-type': 'application/x-ndjson' } })
  opened.push(req)
  req.on('error', () => {})
  req.flushHeaders()
  const [res] = await once(req, 'response') as [IncomingMessage]
  res.on('error', () => {})
  res.pause()
  let written = 0
  for (;;) {
    written += TINY_LINES.length
    if (req.write(TINY_LINES)) continue
    const drained = await Promise.race([once(req, 'drain').then(() => true), new Promise<boolean>((resolve) => setTimeout(resolve, STALL_MS, false))])
    if (!drained) return written
  }
}

const { child, port } = await startServer()
const pid = child.pid as number
const before = rssMb(pid)
let peak = before
const sampler = setInterval(() => { peak = Math.max(peak, rssMb(pid)) }, 100)
const opened: ClientRequest[] = []
const written = await Promise.all(Array.from({ length: STREAMS }, async () => stalledStream(port, opened)))
const held = rssMb(pid)
clearInterval(sampler)
peak = Math.max(peak, held)
const total = written.reduce((a, b) => a + b, 0)
console.log(`${STREAMS} streams that never read, all stalled (${(total / 2 ** 20).toFixed(0)} MiB written by the clients before their writes stalled)`)
console.log(`  server RSS: before ${before.toFixed(1)} MB, held ${held.toFixed(1)} MB, peak ${peak.toFixed(1)} MB; bound 256 MB`)
for (const req of opened) req.destroy()
child.kill('SIGTERM')
if (peak >= 256) process.exitCode = 1
