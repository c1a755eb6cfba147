// Runs the command line (src/cli/main.ts) as a child process, tied to the test process; and a listening service for it.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readdirSync, readFileSync } from 'node:fs'
import { createServer as createHttpServer } from 'node:http'
import { createServer } from 'node:net'
import { Readable, Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, type Teardown } from '../helper.js'

const CLI_CHILD = fileURLToPath(new URL('./fixtures/cli-child.ts', import.meta.url))

export interface CliProcess {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  /** Exit code and signal, once the process has exited and its output is complete. */
  exit: Promise<[number | null, NodeJS.Signals | null]>
}

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export interface CliOptions {
  /** Added to the environment (ENOS_SIGNER_TOKEN is removed from it unless given here). */
  env?: Record<string, string>
  /** Written to standard input, which is then closed; without it standard input stays open and empty. */
  stdin?: string
}

/** Spawns the CLI under this process's loader and coverage; SIGKILLed at teardown if still running. */
export function spawnCli (t: Teardown, args: readonly string[], options: CliOptions = {}): CliProcess {
  const { ENOS_SIGNER_TOKEN: _token, ...env } = process.env
  const child = spawn(process.execPath, [...process.execArgv, CLI_CHILD, ...args], {
    env: { ...env, ...options.env },
    stdio: ['pipe', 'pipe', 'pipe', 'ipc']
  })
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  if (options.stdin !== undefined) child.stdin?.end(options.stdin)
  const exit = once(child, 'close') as CliProcess['exit']
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  return { child, stdout: () => stdout, stderr: () => stderr, exit }
}

/** Runs the CLI to its end. */
export async function runCli (t: Teardown, args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  const cli = spawnCli(t, args, options)
  const [code, signal] = await cli.exit
  return { code, signal, stdout: cli.stdout(), stderr: cli.stderr() }
}

/** The example-store app listening on a free loopback port, closed at teardown. */
export async function listenTestApp (t: Teardown, env: Record<string, string> = {}): Promise<{ app: FastifyInstance, url: string }> {
  const app = await buildTestApp(t, env)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  return { app, url: `http://127.0.0.1:${port}` }
}

/** A loopback port that nothing listens on (it was free a moment ago). */
export async function closedPort (): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

/** Parses CSV text without quoted newlines (what the CLI writes here): the header and one object per row. */
export function parseCsv (text: string): { header: string[], rows: Array<Record<string, string>> } {
  const lines = text.split('\n').filter((line) => line !== '')
  const split = (line: string): string[] => {
    const fields: string[] = []
    for (const match of line.matchAll(/("(?:[^"]|"")*"|[^,]*)(,|$)/g)) {
      const raw = match[1] as string
      fields.push(raw.startsWith('"') ? raw.slice(1, -1).replaceAll('""', '"') : raw)
      if (match[2] === '') break
    }
    return fields
  }
  const header = split(lines[0] ?? '')
  const rows = lines.slice(1).map((line) => Object.fromEntries(split(line).map((value, i) => [header[i], value])))
  return { header, rows }
}

export function readCsv (path: string): { header: string[], rows: Array<Record<string, string>> } {
  return parseCsv(readFileSync(path, 'utf8'))
}

/** Files in `dir`, hidden ones included: a temporary output left behind would show here. */
export function filesIn (dir: string): string[] {
  return readdirSync(dir).sort()
}

export interface FakeRequest {
  lines: string[]
  authorization: string | undefined
}

/** How the fake service answers one request. */
export interface FakePlan {
  /** Answer only this many lines (default: all). */
  answer?: number
  /** What follows the results once the whole request has been read (default: the summary line). */
  ending?: 'summary' | 'none' | 'error'
  /** Add this to every line number (a service that numbers wrongly). */
  lineOffset?: number
  broker?: Record<string, unknown>
}

/**
 * A stand-in for POST /sign/batch over real HTTP, for the endings the real service does not produce
 * on demand: it signs the lines it reads (password `PW-<deviceKey>`) and ends each answer as
 * `plan(requestNumber)` says, once it has read the whole request (so that closing the connection
 * never resets it, which would lose results already written). Records what each request sent.
 */
export async function listenFakeBatch (t: Teardown, plan: (request: number) => FakePlan = () => ({})): Promise<{ url: string, requests: FakeRequest[] }> {
  const requests: FakeRequest[] = []
  const server = createHttpServer((req, res) => {
    const request: FakeRequest = { lines: [], authorization: req.headers.authorization }
    requests.push(request)
    const { answer = Infinity, ending = 'summary', lineOffset = 0, broker } = plan(requests.length)
    res.writeHead(200, { 'content-type': 'application/x-ndjson', connection: 'close' })
    let rest = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n')
      rest = lines.pop() as string
      for (const line of lines) {
        request.lines.push(line)
        const n = request.lines.length
        if (n > answer) continue
        const { deviceKey } = JSON.parse(line) as { deviceKey: string }
        res.write(JSON.stringify({ line: n + lineOffset, ok: true, mqttClientId: `${deviceKey}|securemode=2,signmethod=hmacsha1,timestamp=1|`, mqttUsername: `${deviceKey}&P`, mqttPassword: `PW-${deviceKey}`, clientId: deviceKey, timestamp: '1', signMethod: 'hmacsha1', secureMode: 2 }) + '\n')
      }
    })
    req.on('end', () => {
      const answered = Math.min(answer, request.lines.length)
      if (ending === 'summary') res.end(JSON.stringify({ summary: { total: answered, signed: answered, failed: 0 }, ...(broker !== undefined && { broker }) }) + '\n')
      else if (ending === 'error') res.end(JSON.stringify({ error: { code: 'REQUEST_TIMEOUT', message: 'the stream sent nothing' } }) + '\n')
      else res.end()
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, requests }
}

/** An Io for running a sub-command in this process: what it writes is kept; `abort` sends it a signal. */
export function captureIo (): { io: import('../../src/cli/io.js').Io, stdout: () => string, stderr: () => string, abort: (name: string) => void } {
  const out: string[] = []
  const err: string[] = []
  const controller = new AbortController()
  const sink = (chunks: string[]) => new Writable({ write (chunk: Buffer, _encoding, done) { chunks.push(chunk.toString()); done() } })
  const io = { stdin: Readable.from([]), stdout: sink(out), stderr: sink(err), signal: controller.signal }
  return { io, stdout: () => out.join(''), stderr: () => err.join(''), abort: (name) => controller.abort(name) }
}
