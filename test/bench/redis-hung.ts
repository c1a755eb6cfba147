// Throughput of POST /sign while the rate-limit Redis hangs with its connection up (SIGSTOP) against
// while it is gone (killed), the same service process, both limits on: the circuit breaker's goal
// is hung >= 0.8 of down, from the moment of the hang (the first seconds included).
// Run with `npx tsx test/bench/redis-hung.ts`; figures are ratios within one run.
//
// Environment overrides: BENCH_DURATION (s per measurement, 6), BENCH_ROUNDS (2; the order of the
// two modes alternates between rounds), BENCH_CONNECTIONS (50).
import { createRequire } from 'node:module'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { freePort } from '../free-port.js'
import { run } from '../e2e/process-helper.js'
import { startRedis } from '../e2e/redis-helper.js'
import { envNumber } from './env.js'

interface AcResult { requests: { average: number }, latency: { p50: number, p99: number }, non2xx: number, errors: number }
const autocannon = createRequire(import.meta.url)('autocannon') as (opts: object) => Promise<AcResult>

const DURATION = envNumber('BENCH_DURATION', 6)
const ROUNDS = envNumber('BENCH_ROUNDS', 2)
const CONNECTIONS = envNumber('BENCH_CONNECTIONS', 50)
const DEVICES = [{ productKey: '123', deviceKey: 'test' }, { productKey: 'Ab12Cd34', deviceKey: 'boiler-0001' }, { productKey: 'Ab12Cd34', deviceKey: 'boiler-0002' }]

const teardowns: Array<() => unknown> = []
const t = { teardown: (fn: () => unknown) => { teardowns.push(fn) } }

async function until (check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await check().catch(() => false)) return
    await sleep(50)
  }
  throw new Error('timed out waiting for the service')
}

async function load (port: number, duration: number): Promise<AcResult> {
  return autocannon({
    url: `http://127.0.0.1:${port}`,
    connections: CONNECTIONS,
    pipelining: 1,
    duration,
    requests: DEVICES.map((device) => ({ method: 'POST', path: '/sign', headers: { 'content-type': 'application/json' }, body: JSON.stringify(device) }))
  })
}

const show = (name: string, r: AcResult): string =>
  `${name.padEnd(22)} ${Math.round(r.requests.average).toString().padStart(7)} req/s  p50 ${r.latency.p50} ms  p99 ${r.latency.p99} ms  non-2xx ${r.non2xx}  errors ${r.errors}`

async function round (order: Array<'hung' | 'down'>): Promise<Record<'hung' | 'down', number>> {
  const redis = await startRedis(t)
  const port = await freePort()
  const server = run(t, {
    PORT: String(port),
    LOG_LEVEL: 'warn',
    RATE_LIMIT_REDIS_URL: redis.url,
    RATE_LIMIT_PER_CALLER: '1000000',
    RATE_LIMIT_PER_DEVICE: '1000000'
  })
  const shared = async (want: boolean): Promise<boolean> =>
    ((await (await fetch(`http://127.0.0.1:${port}/readyz`)).json()) as { access: { rateLimits: { shared: boolean } } }).access.rateLimits.shared === want
  await until(async () => await shared(true))
  await load(port, 2) // warm-up, counted in Redis
  const admin = new Redis(redis.url)
  const pid = Number(/process_id:(\d+)/.exec(await admin.info('server'))?.[1])
  admin.disconnect()
  const figures = { hung: 0, down: 0 }
  for (const mode of order) {
    if (mode === 'hung') {
      process.kill(pid, 'SIGSTOP')
      // From the moment of the hang: the first 2 s alone, then the rest.
      const first = await load(port, 2)
      const rest = await load(port, DURATION)
      console.log(show('hung, first 2 s', first))
      console.log(show('hung, after', rest))
      figures.hung = (first.requests.average * 2 + rest.requests.average * DURATION) / (2 + DURATION)
      process.kill(pid, 'SIGCONT')
      await until(async () => await shared(true))
    } else {
      await redis.kill()
      await until(async () => await shared(false))
      const down = await load(port, 2 + DURATION)
      console.log(show('down', down))
      figures.down = down.requests.average
    }
  }
  server.child.kill('SIGKILL')
  await server.exit
  return figures
}

try {
  const ratios: number[] = []
  for (let i = 0; i < ROUNDS; i++) {
    // Down kills this round's Redis: a round measures hung first, or down first with a fresh Redis for hung.
    const order: Array<'hung' | 'down'> = i % 2 === 0 ? ['hung', 'down'] : ['down', 'hung']
    if (order[0] === 'down') {
      const down = await round(['down'])
      const hung = await round(['hung'])
      ratios.push(hung.hung / down.down)
    } else {
      const { hung, down } = await round(order)
      ratios.push(hung / down)
    }
    console.log(`round ${i + 1}: hung / down = ${(ratios.at(-1) as number).toFixed(2)} (goal >= 0.8)`)
  }
  const sorted = [...ratios].sort((a, b) => a - b)
  console.log(`median hung / down over ${ROUNDS} rounds: ${(sorted[Math.floor((sorted.length - 1) / 2)] as number).toFixed(2)}`)
} finally {
  for (const fn of teardowns.reverse()) await fn()
}
