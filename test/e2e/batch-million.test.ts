// A 1,000,000-line NDJSON stream through the real service process: every line answered, the summary last, memory flat.
import { readFileSync } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import t from 'tap'
import { CHILD_BUDGET_MS, start } from './process-helper.js'

const LINES = 1_000_000
const DEVICES = 1000
const MALFORMED_AT = LINES / 2
/** The bound of the issue: the server's resident memory may grow by less than this while it streams. */
const MAX_GROWTH_MB = 100

// One child, plus the stream itself: about 15 s on an idle machine, several times that on a busy one.
t.setTimeout(CHILD_BUDGET_MS + 240_000)

function rssMb (pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024
}

t.test('NDJSON – 1,000,000 lines with a malformed one in the middle: all answered, summary last, memory bound held', async (t) => {
  const devices = Array.from({ length: DEVICES }, (_, i) => ({ productKey: 'P1', deviceKey: `dev-${i}`, deviceSecret: `secret-${i}` }))
  const dir = t.testdir({ 'devices.json': JSON.stringify({ devices }) })
  // The old space capped as a container's memory limit would: V8 collects in time instead of
  // growing its heap lazily on a busy machine, so RSS shows what the stream needs, not leftovers.
  // Each of the 1000 devices is sent 1000 times: the per-device limit off, as the stream is what is measured.
  const server = await start(t, { STORE_FILE: join(dir, 'devices.json'), RATE_LIMIT_PER_DEVICE: '0' }, ['--max-old-space-size=384'])
  // A million audit lines follow: read them, but do not keep them.
  server.child.stdout?.removeAllListeners('data').resume()
  const pid = server.child.pid as number
  const before = rssMb(pid)
  let peak = before
  const sampler = setInterval(() => { peak = Math.max(peak, rssMb(pid)) }, 100)
  t.teardown(() => clearInterval(sampler))

  const lines = ['']
  for (let i = 0; i < DEVICES; i++) lines[i] = JSON.stringify({ productKey: 'P1', deviceKey: `dev-${i}`, reference: `r${i}` }) + '\n'
  const summary = await new Promise<{ answered: number, malformed: string, last: string }>((resolve, reject) => {
    const req = request({ port: server.port, host: '127.0.0.1', method: 'POST', path: '/sign/batch', headers: { 'content-type': 'application/x-ndjson' } }, (res) => {
      let answered = 0
      let malformed = ''
      let tail = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        const text = tail + chunk
        const end = text.lastIndexOf('\n')
        for (let at = text.indexOf('\n'); at !== -1 && at <= end; at = text.indexOf('\n', at + 1)) answered++
        const found = text.indexOf(`{"line":${MALFORMED_AT},`)
        if (found !== -1) malformed = text.slice(found, text.indexOf('\n', found))
        tail = text.slice(end + 1)
        // Keep the last complete line for the summary check.
        if (end !== -1) lastLine = text.slice(text.lastIndexOf('\n', end - 1) + 1, end)
      })
      let lastLine = ''
      res.on('end', () => resolve({ answered, malformed, last: lastLine }))
      res.on('error', reject)
    })
    req.on('error', reject)
    let n = 1
    const write = (): void => {
      while (n <= LINES) {
        let chunk = ''
        for (let i = 0; i < 1000 && n <= LINES; i++, n++) chunk += n === MALFORMED_AT ? '{"productKey":"P1", oops\n' : lines[n % DEVICES]
        if (!req.write(chunk)) {
          req.once('drain', write)
          return
        }
      }
      req.end()
    }
    write()
  })
  clearInterval(sampler)
  t.equal(summary.answered, LINES + 1, 'one result per line, and the summary')
  t.same(JSON.parse(summary.malformed), { line: MALFORMED_AT, ok: false, error: { code: 'MALFORMED_JSON', message: `line ${MALFORMED_AT} is not valid JSON` } })
  t.same(JSON.parse(summary.last), { summary: { total: LINES, signed: LINES - 1, failed: 1 } }, 'the summary is the last line')
  t.ok(peak - before < MAX_GROWTH_MB, `resident memory grew by ${(peak - before).toFixed(1)} MB (${before.toFixed(0)} -> peak ${peak.toFixed(0)} MB)`)
  server.child.kill('SIGTERM')
  t.same(await server.exit, [0, null])
})
