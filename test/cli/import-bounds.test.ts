// `enos-mqtt-signer import` holds at most a bounded piece of a CSV line: a huge line (a quote left open) is refused naming it, in little memory.
import { closeSync, openSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { runImport } from '../../src/cli/import.js'
import { runMigrate } from '../../src/cli/migrate.js'
import { tempDir } from '../helper.js'
import { startPostgres } from '../pg-helper.js'
import { captureIo } from './cli-helper.js'

const postgres = await startPostgres(t)
const MiB = 1024 * 1024

/** Writes `head`, then `size` bytes of `a` with no newline, a piece at a time (so writing it costs this process no memory). */
function writeOpenQuote (path: string, head: string, size: number): void {
  const fd = openSync(path, 'w')
  writeSync(fd, head)
  const piece = Buffer.alloc(64 * 1024, 'a')
  for (let written = 0; written < size; written += piece.length) writeSync(fd, piece)
  closeSync(fd)
}

t.test('a 32 MB quote left open is refused naming its line, without holding it in memory; nothing is imported', async (t) => {
  const url = await postgres.createDatabase()
  await runMigrate({ databaseUrl: url }, captureIo().io)
  const path = join(tempDir(t, 'import-'), 'devices.csv')
  writeOpenQuote(path, 'productKey,deviceKey,deviceSecret\nP1,d1,s3cret-one\nP1,d2,"', 32 * MiB)
  const { io, stdout, stderr } = captureIo()
  // maxRSS is this process's peak so far: the import may raise it by little more than a chunk or two.
  const before = process.resourceUsage().maxRSS * 1024
  const code = await runImport({ in: path, databaseUrl: url, dryRun: false, quiet: true }, io)
  const grown = process.resourceUsage().maxRSS * 1024 - before
  t.equal(code, 1)
  t.equal(stdout(), '')
  t.equal(stderr(), `enos-mqtt-signer import: ${path}: line 3: is longer than 8192 characters, which no device line is (a quote left open?); nothing was imported\n`)
  t.ok(grown < 24 * MiB, `peak memory grew by ${(grown / MiB).toFixed(1)} MiB reading a 32 MiB line`)
  t.same((await postgres.sql(url, 'SELECT count(*)::int AS n FROM devices')).rows, [{ n: 0 }])
})

t.test('a long line that ends (within one read) is refused by the same rule, and the rest of the file is still checked', async (t) => {
  const url = await postgres.createDatabase()
  await runMigrate({ databaseUrl: url }, captureIo().io)
  const path = join(tempDir(t, 'import-'), 'devices.csv')
  const fd = openSync(path, 'w')
  writeSync(fd, `productKey,deviceKey,deviceSecret\nP1,d1,"${'x'.repeat(9000)}"\nP1,d2,\n`)
  closeSync(fd)
  const { io, stderr } = captureIo()
  t.equal(await runImport({ in: path, databaseUrl: url, dryRun: false, quiet: true }, io), 1)
  t.equal(stderr(), `enos-mqtt-signer import: ${path}: line 2: is longer than 8192 characters, which no device line is (a quote left open?); ` +
    `${path}: line 3: deviceSecret must be a non-empty string of at most 256 characters (well-formed Unicode, no control characters); nothing was imported\n`)
})
