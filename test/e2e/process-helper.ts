// Runs the real service (src/server.ts) as a child process for the process-level e2e tests, tied to
// the test process: a child kills itself when the test process goes away (see fixtures/server-child.ts).
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import type { Teardown } from '../helper.js'

const SERVER_CHILD = fileURLToPath(new URL('./fixtures/server-child.ts', import.meta.url))

/**
 * Time budget per child process a test file starts, for its `t.setTimeout(n * CHILD_BUDGET_MS)`.
 * A child loads src/ through tap's TypeScript loader: about 3 s from spawn to exit on an idle
 * 2-core machine, up to 19 s seen with both cores saturated (load average 9). Files rarely meet
 * the worst case in every test: a 4-child file took at most 51 s of its 120 s there.
 */
export const CHILD_BUDGET_MS = 30_000

export interface ServerProcess {
  child: ChildProcess
  /** Everything the process has written so far, stdout and stderr interleaved as they arrived. */
  output: () => string
  /** Exit code and signal, once the process has exited and its output is complete. */
  exit: Promise<[number | null, NodeJS.Signals | null]>
}

export interface RunningServer extends ServerProcess {
  port: number
}

/** Spawns src/server.ts under this process's loader and coverage, with test defaults overridden by `env`; SIGKILLed at teardown. */
export function run (t: Teardown, env: Record<string, string>, nodeArgs: string[] = []): ServerProcess {
  const child = spawn(process.execPath, [...process.execArgv, ...nodeArgs, SERVER_CHILD], {
    // Admission control off, as in test/helper.ts (a loaded test machine is a real overload): the tests of it turn it on.
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', STORE_WATCH: 'false', LOG_LEVEL: 'info', AUTH_MODE: 'none', OVERLOAD_BUSY_MS: '0', OVERLOAD_QUEUE_MS: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc']
  })
  let out = ''
  const append = (chunk: Buffer): void => { out += chunk.toString() }
  child.stdout?.on('data', append)
  child.stderr?.on('data', append)
  // 'close', not 'exit': it comes after the pipes have delivered the last of the output.
  const exit = once(child, 'close') as ServerProcess['exit']
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  return { child, output: () => out, exit }
}

/** Resolves with the first match of `pattern` in the output, as soon as it appears; rejects if the process exits first. */
export async function waitFor (proc: ServerProcess, pattern: RegExp): Promise<RegExpExecArray> {
  const streams = [proc.child.stdout, proc.child.stderr].filter((stream) => stream !== null)
  return new Promise((resolve, reject) => {
    // run() registered its own 'data' listeners first, so output() already holds each new chunk here.
    const check = (): void => {
      const match = pattern.exec(proc.output())
      if (match === null) return
      for (const stream of streams) stream.off('data', check)
      resolve(match)
    }
    for (const stream of streams) stream.on('data', check)
    check()
    // Once a match has resolved the promise, this later rejection is a no-op.
    proc.exit.then(() => reject(new Error(`server exited before printing ${String(pattern)}:\n${proc.output()}`)), reject)
  })
}

/** Runs the server and resolves once it is listening, with the port it chose. */
export async function start (t: Teardown, env: Record<string, string> = {}, nodeArgs: string[] = []): Promise<RunningServer> {
  const proc = run(t, env, nodeArgs)
  const [, port] = await waitFor(proc, /Server listening at http:\/\/127\.0\.0\.1:(\d+)/)
  return { ...proc, port: Number(port) }
}

/** Sends `body` as JSON to POST /sign on the server at `port`. */
export async function sign (port: number, body: object): Promise<Response> {
  return fetch(`http://127.0.0.1:${port}/sign`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
}

/** Resolves once the port refuses new connections (the server stopped accepting). */
export async function waitUntilRefused (port: number): Promise<void> {
  for (;;) {
    const socket = connect(port, '127.0.0.1')
    const refused = await new Promise<boolean>((resolve) => {
      socket.once('connect', () => { socket.destroy(); resolve(false) })
      socket.once('error', () => resolve(true))
    })
    if (refused) return
  }
}

/** Opens a POST /sign whose headers the server has read (it answered 100 Continue) but whose body is not sent yet. */
export async function openInFlightRequest (port: number, body: string): Promise<Socket> {
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(`POST /sign HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\n\r\n`)
  const [first] = await once(socket, 'data') as [Buffer]
  if (!first.toString().startsWith('HTTP/1.1 100 Continue')) throw new Error(`unexpected: ${first.toString()}`)
  return socket
}
