// `enos-mqtt-signer export` against a real PostgreSQL: CSV and JSON, without secrets unless asked, read back by import and the file store.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { runExport, type ExportOptions } from '../../src/cli/export.js'
import { runImport } from '../../src/cli/import.js'
import { runMigrate } from '../../src/cli/migrate.js'
import { parseDeviceFile } from '../../src/store/device-file.js'
import { startPostgres } from '../pg-helper.js'
import { captureIo, runCli } from './cli-helper.js'

const postgres = await startPostgres(t)
const DEVICES = [
  { productKey: 'P1', deviceKey: 'd1', deviceSecret: 's3cret-one', enabled: true },
  { productKey: 'P1', deviceKey: 'd2', deviceSecret: 's3cret, "quoted"', enabled: false },
  { productKey: 'P2', deviceKey: '%channel%', deviceSecret: 'sécret 😀 back\\slash', enabled: true }
]

const url = await postgres.createDatabase()
await runMigrate({ databaseUrl: url }, captureIo().io)
const source = join(t.testdir({ 'devices.json': JSON.stringify({ devices: DEVICES }) }), 'devices.json')
await runImport({ in: source, databaseUrl: url, dryRun: false, quiet: true }, captureIo().io)

async function exportTo (out: string, options: Partial<ExportOptions> = {}) {
  const { io, stdout, stderr } = captureIo()
  const code = await runExport({ out, databaseUrl: url, withSecrets: false, ...options }, io)
  return { code, stdout: stdout(), stderr: stderr() }
}

t.test('without --with-secrets: an inventory, CSV or JSON, with no secret in it', async (t) => {
  const dir = t.testdir()
  t.same(await exportTo(join(dir, 'd.csv')), { code: 0, stdout: `exported 3 devices to ${join(dir, 'd.csv')} (without secrets)\n`, stderr: '' })
  t.equal(readFileSync(join(dir, 'd.csv'), 'utf8'), 'productKey,deviceKey,enabled\nP1,d1,true\nP1,d2,false\nP2,%channel%,true\n')
  t.same(await exportTo(join(dir, 'd.json')), { code: 0, stdout: `exported 3 devices to ${join(dir, 'd.json')} (without secrets)\n`, stderr: '' })
  t.same(JSON.parse(readFileSync(join(dir, 'd.json'), 'utf8')), { devices: DEVICES.map(({ deviceSecret: _s, ...rest }) => rest) })
  t.notMatch(readFileSync(join(dir, 'd.csv'), 'utf8') + readFileSync(join(dir, 'd.json'), 'utf8'), /s3cret|sécret/)
  t.same(readdirSync(dir).sort(), ['d.csv', 'd.json'], 'no temporary file left')
})

t.test('with --with-secrets: files only their owner can read, that the file store and import read back unchanged', async (t) => {
  const dir = t.testdir()
  for (const name of ['s.csv', 's.json']) {
    const out = join(dir, name)
    t.match(await exportTo(out, { withSecrets: true }), { code: 0, stdout: /with their secrets\n$/ })
    t.equal(statSync(out).mode & 0o777, 0o600)
    const read = await parseDeviceFile(readFileSync(out), name.endsWith('.csv') ? 'csv' : 'json')
    t.same([...read.values()], DEVICES, `${name} reads back`)
    const again = captureIo()
    t.equal(await runImport({ in: out, databaseUrl: url, dryRun: true, quiet: true }, again.io), 0)
    t.equal(again.stdout(), 'dry run, nothing changed: 3 devices: 0 would be inserted, 0 would be updated, 3 unchanged\n')
  }
})

t.test('through the command line, with --format; an empty table gives an empty file', async (t) => {
  const dir = t.testdir()
  const empty = await postgres.createDatabase()
  await runMigrate({ databaseUrl: empty }, captureIo().io)
  const run = await runCli(t, ['export', '--out', join(dir, 'devices.txt'), '--format', 'json'], { env: { DATABASE_URL: empty } })
  t.same({ code: run.code, stdout: run.stdout }, { code: 0, stdout: `exported 0 devices to ${join(dir, 'devices.txt')} (without secrets)\n` })
  t.same(JSON.parse(readFileSync(join(dir, 'devices.txt'), 'utf8')), { devices: [] })
})

t.test('a database it cannot use: exit 1, no file, no temporary file, no password', async (t) => {
  const dir = t.testdir()
  const unmigrated = await postgres.createDatabase()
  const { io, stderr } = captureIo()
  t.equal(await runExport({ out: join(dir, 'x.csv'), databaseUrl: unmigrated, withSecrets: true }, io), 1)
  t.equal(stderr(), 'enos-mqtt-signer export: PostgreSQL: relation "devices" does not exist\n')
  t.same(readdirSync(dir), [])
  const down = captureIo()
  t.equal(await runExport({ out: join(dir, 'x.csv'), databaseUrl: postgres.url('nope').replace('postgres@', 'postgres:hunter2pw@'), withSecrets: false }, down.io), 1)
  t.equal(down.stderr(), 'enos-mqtt-signer export: PostgreSQL: database "nope" does not exist\n')
  t.notOk(existsSync(join(dir, 'x.csv')))
})

t.test('a file it cannot write: exit 1 with the file error, nothing left behind', async (t) => {
  const dir = t.testdir()
  const { io, stderr } = captureIo()
  t.equal(await runExport({ out: join(dir, 'missing', 'x.json'), databaseUrl: url, withSecrets: true }, io), 1)
  t.match(stderr(), /^enos-mqtt-signer export: ENOENT: no such file or directory, open '.*missing\/x\.json\.[0-9a-f]+\.tmp'\n$/)
  t.same(readdirSync(dir), [])
})

t.test('a large table is written as fast as the file takes it, every device once', async (t) => {
  const dir = t.testdir({ 'bulk.csv': 'productKey,deviceKey,deviceSecret\n' + Array.from({ length: 3000 }, (_, i) => `Bulk,dev-${i},secret-${i}\n`).join('') })
  const bulk = await postgres.createDatabase()
  await runMigrate({ databaseUrl: bulk }, captureIo().io)
  await runImport({ in: join(dir, 'bulk.csv'), databaseUrl: bulk, dryRun: false, quiet: true }, captureIo().io)
  const { io } = captureIo()
  t.equal(await runExport({ out: join(dir, 'out.json'), databaseUrl: bulk, withSecrets: true }, io), 0)
  t.equal((await parseDeviceFile(readFileSync(join(dir, 'out.json')), 'json')).size, 3000)
})
