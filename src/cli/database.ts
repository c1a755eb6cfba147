// What the database sub-commands share: the --database-url option, one connection, and failures told without secrets.
import { Option } from 'commander'
import pg from 'pg'
import { SchemaError } from '../store/migrations.js'
import { describePgError } from '../store/postgres-store.js'
import type { Io } from './io.js'

/** `--database-url`, or DATABASE_URL; neither: pg's PG* variables (PGHOST, PGUSER, PGPASSWORD, ...). */
export function databaseUrlOption (): Option {
  return new Option('--database-url <url>', 'PostgreSQL to use, e.g. postgres://signer@db:5432/devices?sslmode=require (default: DATABASE_URL, else the PG* variables); prefer the environment variable, since a command line is visible to other users')
    .env('DATABASE_URL')
}

/** A pool of one connection for a command: the commands run their statements one after another. */
export function openDatabase (url: string | undefined): pg.Pool {
  const pool = new pg.Pool({ ...(url !== undefined && { connectionString: url }), max: 1, application_name: 'enos-mqtt-signer-cli' })
  // A connection lost while idle is reported by the next statement instead.
  pool.on('error', () => {})
  return pool
}

/**
 * Tells a command's failure on stderr: a schema problem, a bad file or a file error by its own message,
 * anything from PostgreSQL or the network by its first line with passwords removed (never a value it quotes).
 * @returns the exit status: 1.
 */
export function reportFailure (io: Io, command: string, err: unknown): number {
  // A file error (ENOENT) carries its path; a network error (ECONNREFUSED) does not.
  const isOwn = err instanceof SchemaError || (err as Error).name === 'DeviceFileError' || typeof (err as NodeJS.ErrnoException).path === 'string'
  const message = isOwn ? (err as Error).message : `PostgreSQL: ${describePgError(err).message}`
  io.stderr.write(`enos-mqtt-signer ${command}: ${message}\n`)
  return 1
}
