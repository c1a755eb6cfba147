// `enos-mqtt-signer export`: writes the devices of PostgreSQL to a JSON or CSV file, without secrets unless asked.
import { randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { rename, rm } from 'node:fs/promises'
import { once } from 'node:events'
import { finished } from 'node:stream/promises'
import { Command, Option } from 'commander'
import type pg from 'pg'
import { formatOf, type DeviceFileFormat } from '../store/device-file.js'
import { databaseUrlOption, openDatabase, reportFailure } from './database.js'
import type { Io } from './io.js'

export interface ExportOptions {
  out: string
  format?: DeviceFileFormat
  databaseUrl?: string
  withSecrets: boolean
}

/** Rows read per query: the table is walked in key order, a page at a time, from one snapshot. */
const PAGE = 10_000

interface Row { product_key: string, device_key: string, device_secret: string | null, enabled: boolean }

export function exportCommand (io: Io): Command {
  return new Command('export')
    .summary('write the devices of PostgreSQL to a JSON or CSV file')
    .description('Writes every device of the devices table, in key order and as one consistent snapshot, to a file in the file store\'s format. ' +
      'Without --with-secrets the secrets are left out (an inventory: productKey, deviceKey, enabled); with it, the file can be imported or served by the file store. ' +
      'The file appears only once complete.\n\nExit status: 0 written, 1 a database or file error, 2 usage error.')
    .requiredOption('--out <file>', 'where the devices go: .csv or .json (or say which with --format)')
    .addOption(new Option('--format <format>', 'format of --out, instead of its extension').choices(['json', 'csv']))
    .addOption(databaseUrlOption())
    .option('--with-secrets', 'include deviceSecret (keep the file as safe as the database)', false)
    .action(async (options: ExportOptions) => {
      process.exitCode = await runExport(options, io)
    })
}

export async function runExport (options: ExportOptions, io: Io): Promise<number> {
  const format = options.format ?? formatOf(options.out)
  const temporary = `${options.out}.${randomBytes(4).toString('hex')}.tmp`
  const pool = openDatabase(options.databaseUrl)
  const client = await pool.connect().catch((err: unknown) => err as Error)
  if (client instanceof Error) {
    await pool.end()
    return reportFailure(io, 'export', client)
  }
  const status = await exportSnapshot(client, format, temporary, options, io)
  client.release()
  await pool.end()
  return status
}

/** Writes the table, read in one snapshot, to `temporary`, then moves it to --out. */
async function exportSnapshot (client: pg.PoolClient, format: DeviceFileFormat, temporary: string, options: ExportOptions, io: Io): Promise<number> {
  // Secrets are written only to a file that only its owner can read.
  const file = createWriteStream(temporary, { mode: options.withSecrets ? 0o600 : 0o644 })
  // Settles when the file is written and closed, or rejects with its error (a directory that does not
  // exist, a full disk): a write waiting for room fails with it too.
  const done = finished(file)
  done.catch(() => {})
  const write = async (text: string): Promise<void> => {
    if (!file.write(text)) await Promise.race([once(file, 'drain'), done])
  }
  let count = 0
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
    const columns = options.withSecrets ? ['productKey', 'deviceKey', 'deviceSecret', 'enabled'] : ['productKey', 'deviceKey', 'enabled']
    await write(format === 'csv' ? columns.join(',') + '\n' : '{"devices":[')
    let after: [string, string] = ['', '']
    for (;;) {
      const { rows } = await client.query<Row>(
        `SELECT product_key, device_key, ${options.withSecrets ? 'device_secret' : 'NULL AS device_secret'}, enabled FROM devices
          WHERE (product_key, device_key) > ($1, $2) ORDER BY product_key, device_key LIMIT ${PAGE}`, after)
      for (const row of rows) await write(format === 'csv' ? csvLine(row) : (count++ === 0 ? '\n' : ',\n') + jsonEntry(row))
      if (format === 'csv') count += rows.length
      const last = rows.at(-1)
      if (last === undefined) break
      after = [last.product_key, last.device_key]
    }
    await write(format === 'csv' ? '' : '\n]}\n')
    await client.query('COMMIT')
    file.end()
    await done
    await rename(temporary, options.out)
    io.stdout.write(`exported ${count} devices to ${options.out}${options.withSecrets ? ' with their secrets' : ' (without secrets)'}\n`)
    return 0
  } catch (err) {
    file.destroy()
    await done.catch(() => {})
    await rm(temporary, { force: true })
    return reportFailure(io, 'export', err)
  }
}

/** A CSV cell the file store reads back as it was: quoted when it holds a comma or a quote. */
function cell (value: string): string {
  return /[",]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value
}

function csvLine (row: Row): string {
  const secret = row.device_secret === null ? [] : [cell(row.device_secret)]
  return [row.product_key, row.device_key, ...secret, String(row.enabled)].join(',') + '\n'
}

function jsonEntry (row: Row): string {
  return JSON.stringify({ productKey: row.product_key, deviceKey: row.device_key, ...(row.device_secret !== null && { deviceSecret: row.device_secret }), enabled: row.enabled })
}
