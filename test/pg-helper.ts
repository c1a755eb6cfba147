// A throwaway PostgreSQL cluster for the tests: a temporary directory, a free port, gone at teardown or when the test process dies.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { chownSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { migrate } from '../src/store/migrations.js'
import type { Teardown } from './helper.js'
import { freePort } from './free-port.js'

export interface Postgres {
  port: number
  /** A URL of database `name` on this cluster (user postgres, no password: trust on loopback). */
  url: (name: string) => string
  /** A new empty database, with a name of its own; returns its URL. */
  createDatabase: () => Promise<string>
  /** Runs SQL on database `url` through its own short connection. */
  sql: (url: string, text: string, values?: unknown[]) => Promise<pg.QueryResult>
  /** A fast shutdown (running queries are cancelled, clients disconnected); resolves once it is down. */
  stop: () => Promise<void>
  /** Starts it again on the same port and data (nothing to do while it runs). */
  start: () => Promise<void>
}

/** Debian's layout: /usr/lib/postgresql/<major>/bin, the newest major installed. */
function binDir (): string {
  const root = '/usr/lib/postgresql'
  let majors: string[] = []
  try {
    majors = readdirSync(root).filter((name) => /^\d+$/.test(name)).sort((a, b) => Number(b) - Number(a))
  } catch {}
  const major = majors[0]
  if (major === undefined) throw new Error(`PostgreSQL is not installed (no ${root}/<version>/bin): apt-get install postgresql (.ci/run does)`)
  return join(root, major, 'bin')
}

/** initdb and postgres refuse to run as root: as root, they run as the postgres user. */
function owner (): { uid: number, gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined
  const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' })
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' })
  if (uid.status !== 0 || gid.status !== 0) throw new Error('running as root, but there is no postgres user to run PostgreSQL as: apt-get install postgresql')
  return { uid: Number(uid.stdout), gid: Number(gid.stdout) }
}

let databases = 0

/**
 * Starts a cluster for this test file. Fails loudly, never skips, when PostgreSQL cannot start. A
 * watchdog shell stops the server and removes the directory if the test process dies first.
 */
export async function startPostgres (t: Teardown): Promise<Postgres> {
  const bin = binDir()
  const user = owner()
  const root = mkdtempSync(join(tmpdir(), 'pg-test-'))
  const data = join(root, 'data')
  if (user !== undefined) chownSync(root, user.uid, user.gid)
  const port = await freePort()
  let server: ChildProcess | undefined
  const watchdog = spawn('bash', ['-c', `while kill -0 ${process.pid} 2>/dev/null; do sleep 0.5; done; ` +
    `pid=$(head -n 1 '${data}/postmaster.pid' 2>/dev/null) && kill -QUIT "$pid" 2>/dev/null; sleep 1; rm -rf '${root}'`], { stdio: 'ignore', detached: true })
  watchdog.unref()

  const stop = async (): Promise<void> => {
    const running = server
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return
    const exited = once(running, 'exit')
    running.kill('SIGINT')
    await exited
  }
  t.teardown(async () => {
    await stop()
    watchdog.kill('SIGKILL')
    rmSync(root, { recursive: true, force: true })
  })

  const init = spawnSync(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale', 'C'], { encoding: 'utf8', ...user })
  if (init.status !== 0) throw new Error(`PostgreSQL cannot start: initdb failed:\n${init.stdout}${init.stderr}${init.error?.message ?? ''}`)

  const start = async (): Promise<void> => {
    if (server !== undefined && server.exitCode === null && server.signalCode === null) return
    const child = spawn(join(bin, 'postgres'), ['-D', data, '-p', String(port), '-k', root, '-c', 'listen_addresses=127.0.0.1',
      '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=200'], { stdio: ['ignore', 'pipe', 'pipe'], ...user })
    server = child
    let output = ''
    const append = (chunk: Buffer): void => { output += chunk.toString() }
    child.stdout?.on('data', append)
    child.stderr?.on('data', append)
    await new Promise<void>((resolve, reject) => {
      const check = (): void => { if (/ready to accept connections/.test(output)) resolve() }
      child.stderr?.on('data', check)
      child.once('error', reject)
      child.once('exit', () => reject(new Error(`PostgreSQL cannot start:\n${output}`)))
    })
  }
  await start()

  const url = (name: string): string => `postgres://postgres@127.0.0.1:${port}/${name}`
  const sql = async (target: string, text: string, values?: unknown[]): Promise<pg.QueryResult> => {
    const client = new pg.Client({ connectionString: target })
    await client.connect()
    try {
      return await client.query(text, values)
    } finally {
      await client.end()
    }
  }
  return {
    port,
    url,
    sql,
    async createDatabase () {
      const name = `t${process.pid}_${++databases}`
      await sql(url('postgres'), `CREATE DATABASE ${name}`)
      return url(name)
    },
    stop,
    start
  }
}

/** A new database on `postgres`, migrated and holding `devices`; returns its URL. */
export async function createDeviceDatabase (postgres: Postgres, devices: ReadonlyArray<{ productKey: string, deviceKey: string, deviceSecret: string, enabled: boolean }>): Promise<string> {
  const url = await postgres.createDatabase()
  const pool = new pg.Pool({ connectionString: url, max: 1 })
  try {
    await migrate(pool)
    for (const d of devices) {
      await pool.query('INSERT INTO devices (product_key, device_key, device_secret, enabled) VALUES ($1, $2, $3, $4)', [d.productKey, d.deviceKey, d.deviceSecret, d.enabled])
    }
  } finally {
    await pool.end()
  }
  return url
}
