// The CLI against the real service as a process, stopped (SIGTERM) and started again on the same port mid-run:
// it retries, resumes after the last result, and the output holds each of 100,000 devices exactly once.
import { createHash } from 'node:crypto'
import { watch, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { CHILD_BUDGET_MS, start } from '../e2e/process-helper.js'
import { filesIn, readCsv, spawnCli, type CliProcess } from './cli-helper.js'

// Two service processes and one CLI, and 100,000 devices through them.
t.setTimeout(4 * CHILD_BUDGET_MS)

const COUNT = 100_000

interface StoreDevice { productKey: string, deviceKey: string, deviceSecret: string }

/** The password as the EnOS contract defines it, written here from the README, not with src/core. */
function expectedPassword (device: StoreDevice, clientId: string, timestamp: string): string {
  const content = `clientId${clientId}deviceKey${device.deviceKey}productKey${device.productKey}timestamp${timestamp}`
  return createHash('sha1').update(content + device.deviceSecret).digest('hex').toUpperCase()
}

/** The CLI's resident memory in kB, read from /proc (Linux). */
function rssOf (pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(match?.[1] ?? 0)
}

/**
 * Watches `dir` while the CLI runs: resolves `reached` once its temporary output holds `bytes`,
 * and samples the CLI's memory at each change of the directory until it exits.
 */
function watchRun (dir: string, cli: CliProcess, bytes: number): { reached: Promise<void>, rss: number[] } {
  const rss: number[] = []
  let resolveReached: () => void = () => {}
  const reached = new Promise<void>((resolve, reject) => {
    resolveReached = resolve
    cli.exit.then(() => reject(new Error(`the CLI ended before writing ${bytes} bytes:\n${cli.stderr()}`)), reject)
  })
  const watcher = watch(dir, () => {
    const pid = cli.child.pid as number
    if (cli.child.exitCode !== null) return
    try {
      rss.push(rssOf(pid))
      const temp = filesIn(dir).find((name) => name.endsWith('.tmp'))
      if (temp !== undefined && statSync(join(dir, temp)).size >= bytes) resolveReached()
    } catch {
      // The process or the file went away between two lines: the next change tells.
    }
  })
  cli.exit.finally(() => watcher.close())
  return { reached, rss }
}

t.test('the service stopped and started again mid-run: retries, resumes, exit 0, every device exactly once', async (t) => {
  const dir = t.testdir({})
  const devices: StoreDevice[] = Array.from({ length: COUNT }, (_, i) => ({
    productKey: `Pk${i % 10}Ab12`,
    deviceKey: `dev-${String(i).padStart(6, '0')}`,
    deviceSecret: `secret-${i}-${(i * 7919).toString(36)}`
  }))
  const storeFile = join(dir, 'store.csv')
  writeFileSync(storeFile, 'productKey,deviceKey,deviceSecret\n' + devices.map((d) => `${d.productKey},${d.deviceKey},${d.deviceSecret}\n`).join(''))
  const input = join(dir, 'devices.csv')
  writeFileSync(input, 'productKey,deviceKey,reference\n' + devices.map((d, i) => `${d.productKey},${d.deviceKey},ref-${i}\n`).join(''))
  const out = join(dir, 'credentials.csv')
  const env = { STORE_FILE: storeFile, SHUTDOWN_TIMEOUT_MS: '200', LOG_LEVEL: 'info' }

  const first = await start(t, env)
  const cli = spawnCli(t, ['sign-batch', '--url', `http://127.0.0.1:${first.port}`, '--in', input, '--out', out, '--retries', '300', '--max-delay', '1'])
  const run = watchRun(dir, cli, 3_000_000)
  await run.reached
  first.child.kill('SIGTERM')
  t.same(await first.exit, [0, null], 'the first service stopped')
  const second = await start(t, { ...env, PORT: String(first.port) })
  const [code] = await cli.exit
  second.child.kill('SIGTERM')
  await second.exit

  t.equal(code, 0, cli.stderr())
  // The stream ends with SHUTTING_DOWN when the CLI reads its answer within SHUTDOWN_TIMEOUT_MS, or is cut when it does not: both are retried.
  t.match(cli.stderr(), /(connection failed|cannot reach the service|answer was cut|ended the answer: SHUTTING_DOWN).*; retry 1 of 300/, 'the end was noticed and retried')
  t.match(cli.stderr(), /100000 signed, 0 failed, 100000 devices/)
  const { rows } = readCsv(out)
  t.equal(rows.length, COUNT, 'one row per device')
  const seen = new Set(rows.map((row) => row.reference))
  t.equal(seen.size, COUNT, 'no device twice')
  let wrong = 0
  for (const row of rows) {
    const i = Number(row.reference?.slice(4))
    const device = devices[i] as StoreDevice
    if (row.deviceKey !== device.deviceKey || row.mqttPassword !== expectedPassword(device, row.clientId as string, row.timestamp as string)) wrong++
  }
  t.equal(wrong, 0, 'every password checks out against the store')
  t.same(filesIn(dir), ['credentials.csv', 'devices.csv', 'store.csv'], 'no temporary file left')
  t.notMatch(cli.stderr(), /[0-9A-F]{40}/, 'no password on stderr')

  // Under the test's TypeScript loader the process starts larger than the built CLI (see the README for that one);
  // what matters here is that it does not grow with the devices: compare the first and the last quarter of the run.
  const quarter = Math.max(1, Math.floor(run.rss.length / 4))
  const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number
  const early = median(run.rss.slice(0, quarter))
  const late = median(run.rss.slice(-quarter))
  t.comment(`CLI resident memory (under the test loader): ${Math.round(early / 1024)} MB in the first quarter, ${Math.round(late / 1024)} MB in the last, peak ${Math.round(Math.max(...run.rss) / 1024)} MB`)
  t.ok(late - early < 64 * 1024, 'memory stays flat: it does not grow with the number of devices')
})
