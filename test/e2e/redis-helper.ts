// A real redis-server for the tests, on a free port, gone with the test: stopped at teardown, or when the test process dies.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import type { Teardown } from '../helper.js'
import { freePort } from '../free-port.js'

export interface RunningRedis {
  url: string
  port: number
  process: ChildProcess
  /** Stops it (SIGKILL: an outage, not a shutdown) and resolves once it is gone. */
  kill: () => Promise<void>
}

/**
 * Starts redis-server (Debian's package; .ci/run installs it) on `port` or a free one. A shell
 * watches this process and kills Redis when it is gone, so a test killed by a timeout leaves
 * nothing running.
 */
export async function startRedis (t: Teardown, port?: number): Promise<RunningRedis> {
  const chosen = port ?? await freePort()
  const watchdog = `redis-server --port ${chosen} --bind 127.0.0.1 --save '' --appendonly no & pid=$!; ` +
    `trap 'kill -9 $pid 2>/dev/null; exit 0' TERM; while kill -0 ${process.pid} 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 0.2; done; kill -9 $pid 2>/dev/null`
  const child = spawn('bash', ['-c', watchdog], { stdio: ['ignore', 'pipe', 'pipe'] })
  child.on('error', () => {})
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exited = once(child, 'exit')
  const kill = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM')
    await exited
  }
  t.teardown(kill)
  await new Promise<void>((resolve, reject) => {
    const check = (): void => {
      if (/Ready to accept connections/.test(output)) resolve()
    }
    child.stdout?.on('data', check)
    exited.then(() => reject(new Error(`redis-server exited:\n${output}`)), reject)
  })
  return { url: `redis://127.0.0.1:${chosen}`, port: chosen, process: child, kill }
}
