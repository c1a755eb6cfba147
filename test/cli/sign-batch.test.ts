// The CLI as a child process against a listening service: CSV, JSON and NDJSON in, CSV and NDJSON out, failures, stdin/stdout.
import { readFileSync, writeFileSync } from 'node:fs'
import type { IncomingMessage } from 'node:http'
import { join } from 'node:path'
import t from 'tap'
import { CHILD_BUDGET_MS } from '../e2e/process-helper.js'
import { EXAMPLE_PASSWORDS, FIXED_NOW } from '../helper.js'
import { filesIn, listenTestApp, parseCsv, readCsv, runCli } from './cli-helper.js'

// One CLI process per test.
t.setTimeout(6 * CHILD_BUDGET_MS)

const CREDENTIAL_COLUMNS = ['productKey', 'deviceKey', 'reference', 'clientId', 'timestamp', 'signMethod', 'mqttClientId', 'mqttUsername', 'mqttPassword']
const GHOSTS = 25

t.test('a CSV of good, unknown, invalid and disabled devices -> credentials CSV of the signed ones, exit 1, every failure in --errors, at most 20 on stderr', async (t) => {
  const { url } = await listenTestApp(t)
  const ghosts = Array.from({ length: GHOSTS }, (_, i) => `Ab12Cd34,ghost-${i},,,ghost-${i}`)
  const dir = t.testdir({
    'devices.csv': [
      'productKey,deviceKey,clientId,timestamp,reference',
      '123,test,123,1524448722000,worked-example',
      'Ab12Cd34,boiler-0001,,,boiler-1',
      'Ab12Cd34,retired-0003,,,retired',
      'Ab12Cd34,bad key,,,invalid',
      ...ghosts,
      'Ab12Cd34,boiler-0002,,,boiler-2',
      ''
    ].join('\n')
  })
  const result = await runCli(t, ['sign-batch', '--url', url, '--in', join(dir, 'devices.csv'), '--out', join(dir, 'credentials.csv'), '--errors', join(dir, 'failed.csv')])
  t.equal(result.code, 1, 'some devices failed')

  const { header, rows } = readCsv(join(dir, 'credentials.csv'))
  t.same(header, CREDENTIAL_COLUMNS, 'exactly the documented columns')
  t.same(rows.map((row) => row.deviceKey), ['test', 'boiler-0001', 'boiler-0002'], 'every signed device once, in input order')
  t.match(rows[0], { productKey: '123', reference: 'worked-example', clientId: '123', timestamp: '1524448722000', signMethod: 'hmacsha1', mqttUsername: 'test&123', mqttPassword: EXAMPLE_PASSWORDS.hmacsha1 })
  t.match(rows[1], { clientId: 'boiler-0001', timestamp: String(FIXED_NOW), mqttClientId: `boiler-0001|securemode=2,signmethod=hmacsha1,timestamp=${FIXED_NOW}|` })

  const failed = readCsv(join(dir, 'failed.csv'))
  t.same(failed.header, ['line', 'reference', 'code', 'message'])
  t.equal(failed.rows.length, GHOSTS + 2, 'every failure, not only the first 20')
  t.match(failed.rows[0], { line: '4', reference: 'retired', code: 'DEVICE_DISABLED' })
  t.match(failed.rows[1], { line: '5', reference: 'invalid', code: 'VALIDATION_FAILED', message: /deviceKey/ })
  t.match(failed.rows[2], { line: '6', reference: 'ghost-0', code: 'DEVICE_NOT_FOUND', message: /ghost-0/ })
  t.match(failed.rows.at(-1), { line: String(5 + GHOSTS), reference: `ghost-${GHOSTS - 1}` }, 'line numbers are the input file\'s, header = line 1')

  t.match(result.stderr, /3 signed, 27 failed, 30 devices in [\d.]+ s/)
  t.match(result.stderr, /failed devices \(the first 20 of 27\):/)
  t.equal(result.stderr.match(/^ {2}line \d+/gm)?.length, 20, 'at most 20 failures listed')
  t.match(result.stderr, /line 4 \(reference retired\): DEVICE_DISABLED/)
  t.match(result.stderr, /every failure is in .*failed\.csv/)
  for (const row of rows) t.notOk(result.stderr.includes(row.mqttPassword as string), 'no password on stderr')
  t.same(filesIn(dir), ['credentials.csv', 'devices.csv', 'failed.csv'], 'no temporary file left')
})

t.test('a CSV with a BOM, CRLF line ends, quoted fields and its columns in another order is read the same', async (t) => {
  const { url } = await listenTestApp(t)
  const dir = t.testdir({
    'devices.csv': '\uFEFFreference,deviceKey,timestamp,signMethod,clientId,productKey\r\n' +
      '"first, quoted",test,1524448722000,SHA256,123,123\r\n' +
      '\r\n' +
      'second,boiler-0001,,,,Ab12Cd34\r\n'
  })
  const result = await runCli(t, ['sign-batch', '--url', url, '--in', join(dir, 'devices.csv'), '--out', join(dir, 'out.csv'), '--quiet'])
  t.equal(result.code, 0, result.stderr)
  const { rows } = readCsv(join(dir, 'out.csv'))
  t.match(rows, [
    { productKey: '123', deviceKey: 'test', reference: 'first, quoted', signMethod: 'sha256', mqttPassword: EXAMPLE_PASSWORDS.sha256 },
    { productKey: 'Ab12Cd34', deviceKey: 'boiler-0001', reference: 'second', signMethod: 'hmacsha1' }
  ])
  t.equal(rows.length, 2)
  t.notMatch(result.stderr, /progress/, '--quiet: no progress')
  t.match(result.stderr, /2 signed, 0 failed/)
})

t.test('JSON { "devices": [...] } in, NDJSON out: every result, placed by its index, naming its device', async (t) => {
  const { url } = await listenTestApp(t)
  const dir = t.testdir({
    'devices.json': JSON.stringify({
      devices: [
        { productKey: '123', deviceKey: 'test', clientId: '123', timestamp: '1524448722000', reference: 'a' },
        'not a device',
        { productKey: 'Ab12Cd34', deviceKey: 'nobody' },
        { productKey: 'Ab12Cd34', deviceKey: 'boiler-0001', signMethod: 'md5' }
      ]
    }, null, 2)
  })
  const result = await runCli(t, ['sign-batch', '--url', url, '--in', join(dir, 'devices.json'), '--out', join(dir, 'out.ndjson')])
  t.equal(result.code, 1)
  const lines = readFileSync(join(dir, 'out.ndjson'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
  t.equal(lines.length, 4, 'one line per device, failures included')
  t.match(lines[0], { index: 0, reference: 'a', productKey: '123', deviceKey: 'test', ok: true, mqttPassword: EXAMPLE_PASSWORDS.hmacsha1, secureMode: 2 })
  t.notOk('line' in (lines[0] as object), 'the request\'s line number is not passed on')
  t.match(lines[1], { index: 1, ok: false, error: { code: 'VALIDATION_FAILED' } })
  t.match(lines[2], { index: 2, productKey: 'Ab12Cd34', deviceKey: 'nobody', ok: false, error: { code: 'DEVICE_NOT_FOUND' } })
  t.match(lines[3], { index: 3, ok: true, signMethod: 'md5' })
  t.match(result.stderr, /devices\[1\]: VALIDATION_FAILED/)
  t.match(result.stderr, /devices\[2\]: DEVICE_NOT_FOUND/)
})

t.test('NDJSON in (blank and malformed lines), .jsonl out: failures name the input line', async (t) => {
  const { url } = await listenTestApp(t)
  const dir = t.testdir({
    'devices.ndjson': [
      '{"productKey":"123","deviceKey":"test","reference":"r1"}',
      '',
      '{"productKey":"123",',
      '{"productKey":"Ab12Cd34","deviceKey":"boiler-0002","reference":"r4"}',
      ''
    ].join('\n')
  })
  const result = await runCli(t, ['sign-batch', '--url', url, '--in', join(dir, 'devices.ndjson'), '--out', join(dir, 'out.jsonl'), '--errors', join(dir, 'errors.csv')])
  t.equal(result.code, 1)
  const lines = readFileSync(join(dir, 'out.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
  t.match(lines, [
    { line: 1, reference: 'r1', ok: true },
    { line: 3, ok: false, error: { code: 'MALFORMED_JSON', message: 'line 3 is not valid JSON' } },
    { line: 4, reference: 'r4', deviceKey: 'boiler-0002', ok: true }
  ])
  t.equal(lines.length, 3)
  t.same(readCsv(join(dir, 'errors.csv')).rows, [{ line: '3', reference: '', code: 'MALFORMED_JSON', message: 'line 3 is not valid JSON' }])
  t.match(result.stderr, /line 3: MALFORMED_JSON/)
})

t.test('standard input to standard output, with the token sent and never shown', async (t) => {
  let authorization: string | undefined
  const { app, url } = await listenTestApp(t)
  app.server.on('request', (request: IncomingMessage) => { authorization = request.headers.authorization })
  const input = [
    '{"productKey":"123","deviceKey":"test","clientId":"123","timestamp":"1524448722000"}',
    '{"productKey":"Ab12Cd34","deviceKey":"boiler-0001"}'
  ].join('\n') + '\n'
  const result = await runCli(t, ['sign-batch', '--url', url, '--in', '-', '--format', 'ndjson', '--out', '-', '--out-format', 'csv'], { stdin: input, env: { ENOS_SIGNER_TOKEN: 's3cr3t-t0ken' } })
  t.equal(result.code, 0, result.stderr)
  const { header, rows } = parseCsv(result.stdout)
  t.same(header, CREDENTIAL_COLUMNS)
  t.same(rows.map((row) => row.deviceKey), ['test', 'boiler-0001'])
  t.equal(rows[0]?.mqttPassword, EXAMPLE_PASSWORDS.hmacsha1)
  t.equal(authorization, 'Bearer s3cr3t-t0ken', 'ENOS_SIGNER_TOKEN is sent as a bearer token')
  t.notMatch(result.stderr, /s3cr3t-t0ken/, 'the token is never printed')
  t.notMatch(result.stderr, new RegExp(EXAMPLE_PASSWORDS.hmacsha1), 'no password on stderr')
  t.match(result.stderr, /credentials in standard output/)
})

t.test('a bad CSV header is a usage error: exit 2, and no output file at all', async (t) => {
  const { url } = await listenTestApp(t)
  const dir = t.testdir({ 'devices.csv': 'productKey,deviceKey,deviceSecret\n123,test,oops\n' })
  writeFileSync(join(dir, 'keep.txt'), '')
  const result = await runCli(t, ['sign-batch', '--url', url, '--in', join(dir, 'devices.csv'), '--out', join(dir, 'out.csv')])
  t.equal(result.code, 2)
  t.match(result.stderr, /devices\.csv: line 1: bad CSV header: unknown column "deviceSecret"/)
  t.notMatch(result.stderr, /oops/)
  t.same(filesIn(dir), ['devices.csv', 'keep.txt'], 'nothing created')
})
