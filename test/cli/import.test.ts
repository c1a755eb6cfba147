// `enos-mqtt-signer import` against a real PostgreSQL: CSV and JSON, idempotent, all or nothing, the file store's rules and messages.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { buildApp } from '../../src/app.js'
import { EXAMPLE_STORE_FILE, loadConfig } from '../../src/config.js'
import { runImport, type ImportOptions } from '../../src/cli/import.js'
import { runMigrate } from '../../src/cli/migrate.js'
import { buildTestApp, EXAMPLE_SECRETS, FIXED_NOW } from '../helper.js'
import { startPostgres } from '../pg-helper.js'
import { captureIo, runCli } from './cli-helper.js'

const postgres = await startPostgres(t)

async function migratedDatabase (): Promise<string> {
  const url = await postgres.createDatabase()
  await runMigrate({ databaseUrl: url }, captureIo().io)
  return url
}

async function importFile (url: string, path: string, options: Partial<ImportOptions> = {}) {
  const { io, stdout, stderr, abort } = captureIo()
  if (options.dryRun === undefined && path.includes('ABORT')) abort('SIGINT')
  const code = await runImport({ in: path, databaseUrl: url, dryRun: false, quiet: true, ...options }, io)
  return { code, stdout: stdout(), stderr: stderr() }
}

async function table (url: string): Promise<unknown[]> {
  return (await postgres.sql(url, 'SELECT product_key, device_key, device_secret, enabled, updated_at FROM devices ORDER BY 1, 2')).rows
}

function file (t: Test, name: string, content: string | Buffer): string {
  const dir = t.testdir({ [name]: content })
  return join(dir, name)
}

const CSV = 'productKey,deviceKey,deviceSecret,enabled\n' +
  'P1,d1,s3cret-one,true\n' +
  'P1,d2,"s3cret, with a comma and ""quotes""",false\n' +
  'P2,d1,back\\slash,\n'

t.test('a CSV file is imported in one run; run again, every device is unchanged; a changed file updates and adds', async (t) => {
  const url = await migratedDatabase()
  const path = file(t, 'devices.csv', CSV)
  t.same(await importFile(url, path), { code: 0, stdout: 'imported 3 devices: 3 inserted, 0 updated, 0 unchanged\n', stderr: '' })
  t.match(await table(url), [
    { product_key: 'P1', device_key: 'd1', device_secret: 's3cret-one', enabled: true },
    { product_key: 'P1', device_key: 'd2', device_secret: 's3cret, with a comma and "quotes"', enabled: false },
    { product_key: 'P2', device_key: 'd1', device_secret: 'back\\slash', enabled: true }
  ])
  const before = await table(url)
  t.same(await importFile(url, path), { code: 0, stdout: 'imported 3 devices: 0 inserted, 0 updated, 3 unchanged\n', stderr: '' })
  t.same(await table(url), before, 'an unchanged device keeps its updated_at')
  writeFileSync(path, CSV.replace('s3cret-one', 's3cret-rotated') + 'P3,d9,new-one,\n')
  t.same(await importFile(url, path), { code: 0, stdout: 'imported 4 devices: 1 inserted, 1 updated, 2 unchanged\n', stderr: '' })
})

t.test('the example store imported as JSON signs the same credentials as the file store (import through the command line)', async (t) => {
  const url = await migratedDatabase()
  const run = await runCli(t, ['import', '--in', EXAMPLE_STORE_FILE, '--quiet'], { env: { DATABASE_URL: url } })
  t.same({ code: run.code, stdout: run.stdout }, { code: 0, stdout: 'imported 4 devices: 4 inserted, 0 updated, 0 unchanged\n' })
  const fileApp = await buildTestApp(t)
  const pgApp = await buildApp(loadConfig({ LOG_LEVEL: 'silent', STORE: 'postgres', DATABASE_URL: url, AUTH_MODE: 'none' }), { clock: () => FIXED_NOW })
  t.teardown(() => pgApp.close())
  const devices = (await postgres.sql(url, 'SELECT product_key AS "productKey", device_key AS "deviceKey" FROM devices')).rows
  for (const device of devices) {
    const [fromFile, fromPg] = await Promise.all([fileApp, pgApp].map(async (app) => app.inject({ method: 'POST', url: '/sign', payload: device })))
    t.equal(fromPg?.statusCode, fromFile?.statusCode)
    t.same(fromPg?.json(), fromFile?.json(), `${device.productKey as string}/${device.deviceKey as string}`)
  }
})

t.test('a bad line is named, every other problem listed, no secret shown, and the table stays as it was', async (t) => {
  const url = await migratedDatabase()
  await importFile(url, file(t, 'ok.csv', CSV))
  const before = await table(url)
  const bad = file(t, 'bad.csv', CSV.replace('s3cret-one', 'tab\tinside-secret') + 'P 9,d1,s3cret-x,\nP1,d3,s3cret-y,maybe\n')
  const result = await importFile(url, bad)
  t.equal(result.code, 1)
  t.equal(result.stderr, `enos-mqtt-signer import: ${bad}: line 2: deviceSecret must be a non-empty string of at most 256 characters (well-formed Unicode, no control characters); ` +
    `${bad}: line 5: productKey must be 1-64 characters from A-Z a-z 0-9 _ . : % -; ${bad}: line 6: enabled must be true, false, yes, no, 1, 0 or empty; nothing was imported\n`)
  t.notMatch(result.stderr, /s3cret|inside-secret/)
  t.same(await table(url), before)
})

t.test('more than ten problems: ten listed, the rest counted', async (t) => {
  const url = await migratedDatabase()
  const bad = file(t, 'bad.csv', 'productKey,deviceKey,deviceSecret\n' + Array.from({ length: 12 }, (_, i) => `P,d${i},\n`).join(''))
  const result = await importFile(url, bad)
  t.equal(result.code, 1)
  t.match(result.stderr, /line 11: deviceSecret must be .*; and 2 more; nothing was imported\n$/)
})

t.test('a device twice in a CSV file is refused, naming both lines, as the file store does', async (t) => {
  const url = await migratedDatabase()
  const result = await importFile(url, file(t, 'dup.csv', CSV + 'P1,d2,other,\n'))
  t.equal(result.code, 1)
  t.match(result.stderr, /line 5: duplicate device productKey=P1 deviceKey=d2 \(first at line 3\); nothing was imported/)
  t.same(await table(url), [])
})

t.test('the file store\'s file rules: the header, the final newline, UTF-8, and JSON entries', async (t) => {
  const url = await migratedDatabase()
  t.match(await importFile(url, file(t, 'h.csv', 'a,b,c\nP,d,s\n')), { code: 1, stderr: /line 1: the header must be productKey,deviceKey,deviceSecret or productKey,deviceKey,deviceSecret,enabled/ })
  t.match(await importFile(url, file(t, 'n.csv', 'productKey,deviceKey,deviceSecret\nP,d,s')), { code: 1, stderr: /line 2: the file does not end with a newline/ })
  t.match(await importFile(url, file(t, 'u.csv', Buffer.from('productKey,deviceKey,deviceSecret\nP,d,s\xe9cret\n', 'latin1'))), { code: 1, stderr: /line 2: the file is not valid UTF-8 \(first bad byte at column 6\); save it as UTF-8/ })
  t.match(await importFile(url, file(t, 'j.json', '{"devices":[{"productKey":"P","deviceKey":"d"}]}')), { code: 1, stderr: /devices\[0\]: deviceSecret must be/ })
  t.match(await importFile(url, file(t, 'j.txt', 'productKey,deviceKey,deviceSecret\nP,d,s\n'), { format: 'csv' }), { code: 0 }, '--format names the format')
  t.match(await importFile(url, join(t.testdirName, 'missing.csv')), { code: 1, stderr: /^enos-mqtt-signer import: ENOENT: no such file or directory, open '.*missing\.csv'\n$/ })
  t.match(await importFile(url, join(t.testdirName, 'missing.json')), { code: 1, stderr: /ENOENT: no such file or directory/ })
  t.match(await importFile(url, file(t, 'crlf.csv', 'productKey,deviceKey,deviceSecret\r\nP,crlf,s\r\n')), { code: 0 }, 'CRLF line ends, as the file store reads them')
  t.same((await table(url)).length, 2)
})

t.test('--dry-run checks the file against the table and says what would change, changing nothing', async (t) => {
  const url = await migratedDatabase()
  await importFile(url, file(t, 'ok.csv', 'productKey,deviceKey,deviceSecret\nP1,d1,s3cret-one\n'))
  const before = await table(url)
  t.same(await importFile(url, file(t, 'all.csv', CSV), { dryRun: true }),
    { code: 0, stdout: 'dry run, nothing changed: 3 devices: 2 would be inserted, 0 would be updated, 1 unchanged\n', stderr: '' })
  t.same(await table(url), before)
})

t.test('a large file goes to PostgreSQL in chunks (CSV and JSON)', async (t) => {
  const url = await migratedDatabase()
  const devices = Array.from({ length: 4500 }, (_, i) => ({ productKey: 'Bulk', deviceKey: `dev-${i}`, deviceSecret: `secret-${i}`, enabled: i % 2 === 0 }))
  const csv = 'productKey,deviceKey,deviceSecret,enabled\n' + devices.map((d) => `${d.productKey},${d.deviceKey},${d.deviceSecret},${d.enabled}\n`).join('')
  t.match(await importFile(url, file(t, 'bulk.csv', csv)), { code: 0, stdout: 'imported 4500 devices: 4500 inserted, 0 updated, 0 unchanged\n' })
  const json = JSON.stringify({ devices: devices.map((d) => ({ ...d, enabled: !d.enabled })) })
  t.match(await importFile(url, file(t, 'bulk.json', json)), { code: 0, stdout: 'imported 4500 devices: 0 inserted, 4500 updated, 0 unchanged\n' })
})

t.test('interrupted (SIGINT, SIGTERM): nothing changed, exit 130 or 143', async (t) => {
  const url = await migratedDatabase()
  for (const [signal, status] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    const { io, stderr, abort } = captureIo()
    abort(signal)
    t.equal(await runImport({ in: file(t, 'i.csv', CSV), databaseUrl: url, dryRun: false, quiet: true }, io), status)
    t.equal(stderr(), `enos-mqtt-signer import: interrupted (${signal}); nothing changed\n`)
  }
  t.same(await table(url), [])
})

t.test('a database it cannot reach: exit 1, no password', async (t) => {
  const result = await importFile(postgres.url('nope').replace('postgres@', 'postgres:hunter2pw@'), file(t, 'x.csv', CSV))
  t.same(result, { code: 1, stdout: '', stderr: 'enos-mqtt-signer import: PostgreSQL: database "nope" does not exist\n' })
  t.notMatch(result.stderr, EXAMPLE_SECRETS[1] as string)
})
