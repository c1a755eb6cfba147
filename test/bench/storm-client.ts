// Boot-storm load clients, shared by storm.ts and soak.ts: child processes, each a closed loop of "devices" that
// open a new connection, send one request, read the answer and let the server close; on 503 or 429 a device waits
// its Retry-After (times a scale factor) and tries again, on 200 it is done and the next device boots.
//
// The parent side: startStormClients() forks the clients (this file, through tsx), runPhase() runs one phase of
// them all and collects what each saw. The child side is the bottom of this file. `attempt()` is one request on a
// new connection, also used by the parents for their probes.
import { fork, type ChildProcess } from 'node:child_process'
import { connect } from 'node:net'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'

/** One request on a new connection: what happened and how long it took, from connect() to the full answer. */
export interface Attempt {
  /** The HTTP status, or 0 when there was no answer. */
  status: number
  /** The Retry-After header in seconds (a number or an HTTP date), undefined when absent or unreadable. */
  retryAfterS: number | undefined
  /** Why there was no answer: connect-timeout, answer-timeout, closed-early, or the socket error's code. */
  error: string | undefined
  ms: number
}

export interface Target { host: string, port: number }

/** The bytes of a request that asks the server to close the connection after its answer. */
export function requestBytes (target: Target, method: 'GET' | 'POST', path: string, headers: Record<string, string>, body = ''): Buffer {
  const lines = [`${method} ${path} HTTP/1.1`, `Host: ${target.host}:${target.port}`, 'Connection: close']
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`)
  if (method === 'POST') lines.push(`Content-Length: ${Buffer.byteLength(body)}`)
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n${body}`)
}

const HEADER_END = Buffer.from('\r\n\r\n')

function retryAfterSeconds (value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const seconds = Number(value)
  if (value.trim() !== '' && Number.isFinite(seconds) && seconds >= 0) return seconds
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, (date - Date.now()) / 1000)
}

/**
 * Sends `request` on a new connection (from `localAddress` when given) and reads one answer (headers and a
 * Content-Length body). The server closes the connection (the request says Connection: close), so the
 * TIME_WAIT stays on its side and thousands of connections a second do not use up this side's ports; a
 * connection the server keeps open past 2 s is destroyed.
 */
export function attempt (target: Target, request: Buffer, timeoutMs: number, localAddress?: string): Promise<Attempt> {
  return new Promise((resolve) => {
    const started = performance.now()
    let connected = false
    let settled = false
    let received: Buffer = Buffer.alloc(0)
    let bodyStart = -1
    let bodyLength = 0
    let status = 0
    let retryAfter: string | undefined
    const socket = connect({ host: target.host, port: target.port, ...(localAddress !== undefined && { localAddress }) })
    const finish = (error: string | undefined): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolve({ status: error === undefined ? status : 0, retryAfterS: retryAfterSeconds(retryAfter), error, ms: performance.now() - started })
      // Given up on, or kept open too long: reset, so no TIME_WAIT is left on this side (thousands of them take
      // minutes to clear, and connect() then spends up to a quarter of a second finding a free port).
      if (error !== undefined) socket.resetAndDestroy()
      else setTimeout(() => socket.resetAndDestroy(), 2000).unref()
    }
    const timer = setTimeout(() => finish(connected ? 'answer-timeout' : 'connect-timeout'), timeoutMs)
    socket.setNoDelay(true)
    socket.once('connect', () => {
      connected = true
      socket.write(request)
    })
    socket.on('data', (chunk: Buffer) => {
      if (settled) return
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk])
      if (bodyStart === -1) {
        const end = received.indexOf(HEADER_END)
        if (end === -1) return
        const head = received.subarray(0, end).toString('latin1').split('\r\n')
        status = Number(head[0]?.split(' ')[1])
        for (const line of head) {
          const colon = line.indexOf(':')
          const name = line.slice(0, colon).toLowerCase()
          if (name === 'content-length') bodyLength = Number(line.slice(colon + 1))
          else if (name === 'retry-after') retryAfter = line.slice(colon + 1).trim()
        }
        bodyStart = end + HEADER_END.length
      }
      if (received.length - bodyStart >= bodyLength) finish(undefined)
    })
    socket.on('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message))
    socket.on('close', () => finish('closed-early'))
  })
}

// ---- what a client reports ----

export interface ClientStats {
  client: number
  concurrency: number
  /** Requests sent (every retry is one) and the 200s, both in the phase's window. */
  attempts: number
  ok: number
  /** Every answer and failure, in the window and in the drain after it (attempts under way at its end). */
  statuses: Record<string, number>
  /** Failures without an answer, by kind (see Attempt.error), and 503s without a Retry-After. */
  errors: Record<string, number>
  noRetryAfter: number
  /** Time to an answer (ms) of every attempt; a failure counts with the time it took to fail. */
  latencies: number[]
  windowMs: number
  /** This client's own event-loop delay over the phase (ms): when it is large, the client, not the service, made the times long. */
  loopDelayMaxMs: number
}

// ---- the parent side ----

/** What a load client is given once: where, what, as whom, and the devices it boots, in turn. */
export interface ClientSetup {
  target: Target
  path: string
  /** Sent as `Authorization: Bearer <token>` when set. */
  token?: string
  /** The client's source address (127.0.0.2, ...: a distinct caller for a service that is open). */
  localAddress?: string
  devices: Array<[productKey: string, deviceKey: string]>
  timeoutMs: number
  /** Retry-After is waited this many times over (1: as the service asks). */
  retryScale: number
}

type ToChild = { type: 'setup', setup: ClientSetup, client: number } | { type: 'phase', concurrency: number, durationMs: number }
type ToParent = { type: 'ready' } | { type: 'done', stats: ClientStats }

export interface StormClient { child: ChildProcess, run: (concurrency: number, durationMs: number) => Promise<ClientStats> }

const CLIENT_ENTRY = fileURLToPath(import.meta.url)

/** Forks one load client per setup (they inherit this process's CPU affinity) and waits until each is ready. */
export async function startStormClients (setups: ClientSetup[], children: Set<ChildProcess>): Promise<StormClient[]> {
  return await Promise.all(setups.map(async (setup, client) => {
    const child = fork(CLIENT_ENTRY, ['--storm-client'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    children.add(child)
    child.once('exit', () => children.delete(child))
    const next = (): Promise<ToParent> => new Promise((resolve, reject) => {
      const onExit = (code: number | null): void => reject(new Error(`load client ${client} exited (${code})`))
      child.once('exit', onExit)
      child.once('message', (message: ToParent) => {
        child.off('exit', onExit)
        resolve(message)
      })
    })
    const ready = next()
    child.send({ type: 'setup', setup, client } satisfies ToChild)
    await ready
    return {
      child,
      async run (concurrency, durationMs) {
        const done = next()
        child.send({ type: 'phase', concurrency, durationMs } satisfies ToChild)
        const message = await done
        if (message.type !== 'done') throw new Error(`load client ${client}: unexpected message ${message.type}`)
        return message.stats
      }
    }
  }))
}

/** Runs one phase on every client at once, `concurrency[i]` devices at a time on client i. */
export async function runPhase (clients: StormClient[], concurrency: number[], durationMs: number): Promise<ClientStats[]> {
  return await Promise.all(clients.map((client, i) => client.run(concurrency[i] ?? 0, durationMs)))
}

/** Splits `total` devices at a time over the clients in proportion to `weights` (each gets at least 1). */
export function split (total: number, weights: number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0)
  return weights.map((w) => Math.max(1, Math.round((total * w) / sum)))
}

// ---- the child side ----

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** How long a device waits after a failure without an answer, before its jitter: as firmware backs off. */
const ERROR_BACKOFF_MS = 1000
const RAMP_MS = 1000

async function runClient (): Promise<void> {
  let setup: ClientSetup | undefined
  let client = 0
  let cursor = 0
  let requests: Buffer[] = []
  process.on('message', (message: ToChild) => {
    if (message.type === 'setup') {
      setup = message.setup
      client = message.client
      const { target, path, token } = setup
      const headers = { 'Content-Type': 'application/json', ...(token !== undefined && { Authorization: `Bearer ${token}` }) }
      requests = setup.devices.map(([productKey, deviceKey]) => requestBytes(target, 'POST', path, headers, JSON.stringify({ productKey, deviceKey })))
      process.send?.({ type: 'ready' } satisfies ToParent)
      return
    }
    if (setup === undefined) throw new Error('phase before setup')
    const given = setup
    phase(given, message.concurrency, message.durationMs).then((stats) => process.send?.({ type: 'done', stats } satisfies ToParent))
  })

  async function phase (given: ClientSetup, concurrency: number, durationMs: number): Promise<ClientStats> {
    const stats: ClientStats = { client, concurrency, attempts: 0, ok: 0, statuses: {}, errors: {}, noRetryAfter: 0, latencies: [], windowMs: durationMs, loopDelayMaxMs: 0 }
    const loopDelay = monitorEventLoopDelay({ resolution: 10 })
    loopDelay.enable()
    const started = performance.now()
    const endsAt = started + durationMs
    const wait = async (ms: number): Promise<void> => sleep(Math.max(0, Math.min(ms, endsAt - performance.now())))
    async function device (): Promise<void> {
      while (performance.now() < endsAt) {
        const request = requests[cursor++ % requests.length] as Buffer
        for (;;) {
          const inWindow = performance.now() < endsAt
          if (!inWindow) return
          stats.attempts++
          const result = await attempt(given.target, request, given.timeoutMs, given.localAddress)
          stats.latencies.push(Math.round(result.ms * 100) / 100)
          if (result.error !== undefined) {
            stats.errors[result.error] = (stats.errors[result.error] ?? 0) + 1
            await wait(ERROR_BACKOFF_MS * given.retryScale * (0.5 + Math.random()))
            continue
          }
          stats.statuses[result.status] = (stats.statuses[result.status] ?? 0) + 1
          if (result.status === 200) {
            if (performance.now() <= endsAt) stats.ok++
            break
          }
          if (result.status === 503 && result.retryAfterS === undefined) stats.noRetryAfter++
          if (result.status === 503 || result.status === 429) {
            await wait((result.retryAfterS ?? 1) * 1000 * given.retryScale)
            continue
          }
          break // any other answer: the device gives up, the next one boots
        }
      }
    }
    // The devices boot over the first RAMP_MS (at most a tenth of the phase), not in one synchronous burst of
    // connect() calls that would stall this client before its first answer.
    const ramp = Math.min(RAMP_MS, durationMs / 10)
    await Promise.all(Array.from({ length: concurrency }, async (_, i) => {
      await sleep((i / concurrency) * ramp)
      await device()
    }))
    loopDelay.disable()
    stats.loopDelayMaxMs = loopDelay.max / 1e6
    return stats
  }
}

if (process.argv.includes('--storm-client')) {
  runClient().catch((err: unknown) => {
    console.error(err)
    process.exit(1)
  })
  process.on('disconnect', () => process.exit(0))
}
