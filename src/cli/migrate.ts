// `enos-mqtt-signer migrate`: brings the database schema to the version this release reads.
import { Command } from 'commander'
import type { Pool } from 'pg'
import { migrate } from '../store/migrations.js'
import { databaseUrlOption, openDatabase, reportFailure } from './database.js'
import type { Io } from './io.js'

export interface MigrateOptions {
  databaseUrl?: string
}

export function migrateCommand (io: Io): Command {
  return new Command('migrate')
    .summary('create or update the PostgreSQL schema (STORE=postgres)')
    .description('Creates the devices table, or brings it to the version this release reads. Safe to run again and from several places at once ' +
      '(an advisory lock makes them take turns). Exit status: 0 done or nothing to do, 1 failed (the database said why).')
    .addOption(databaseUrlOption())
    .action(async (options: MigrateOptions) => {
      process.exitCode = await runMigrate(options, io)
    })
}

export async function runMigrate (options: MigrateOptions, io: Io): Promise<number> {
  const pool = openDatabase(options.databaseUrl)
  const status = await migrateWith(pool, io)
  await pool.end()
  return status
}

async function migrateWith (pool: Pool, io: Io): Promise<number> {
  try {
    const { applied, version } = await migrate(pool)
    io.stdout.write(applied.length === 0
      ? `schema already at version ${version}: nothing to do\n`
      : `schema at version ${version} (applied ${applied.join(', ')})\n`)
    return 0
  } catch (err) {
    return reportFailure(io, 'migrate', err)
  }
}
