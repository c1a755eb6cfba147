// How a failed startup is reported: one line for a known cause, the stack for anything else, exit 1.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { ConfigError } from '../src/config.js'
import { backlogWarning, checkHost, failStartup } from '../src/start.js'
import { AppError } from '../src/errors.js'
import { DeviceFileError } from '../src/store/device-file.js'
import { SchemaError } from '../src/store/migrations.js'
import { SharedDeviceKeyError } from '../src/store/shared-device-keys.js'
import { tempDir } from './helper.js'

/** Runs failStartup with process.exit and stderr captured (the real ones are restored after). */
function report (t: Test, err: unknown): { code: number | undefined, output: string } {
  let output = ''
  let code: number | undefined
  const exit = process.exit
  const write = process.stderr.write
  t.teardown(() => { process.exit = exit; process.stderr.write = write })
  process.exit = ((status?: number) => { code = status; throw new Error('exited') }) as typeof process.exit
  process.stderr.write = ((chunk: string) => { output += chunk; return true }) as typeof process.stderr.write
  try {
    failStartup(err)
  } catch {}
  process.exit = exit
  process.stderr.write = write
  return { code, output }
}

t.test('a configuration or store file error is its own message, on one line each, exit 1', async (t) => {
  t.same(report(t, new ConfigError('Invalid configuration:\n  PORT: bad')), { code: 1, output: 'enos-mqtt-signer: Invalid configuration:\n  PORT: bad\n' })
  t.same(report(t, new DeviceFileError(['/d.csv: line 2: bad'])), { code: 1, output: 'enos-mqtt-signer: /d.csv: line 2: bad\n' })
  t.same(report(t, new SharedDeviceKeyError('STORE=postgres: a deviceKey is in more than one product')), { code: 1, output: 'enos-mqtt-signer: STORE=postgres: a deviceKey is in more than one product\n' })
})

t.test('a database that cannot be used (schema, outage) is its own message, naming STORE=postgres', async (t) => {
  t.same(report(t, new SchemaError('the database schema is at version 0 (0: never migrated), this release needs 1: run `enos-mqtt-signer migrate`')),
    { code: 1, output: 'enos-mqtt-signer: STORE=postgres: the database schema is at version 0 (0: never migrated), this release needs 1: run `enos-mqtt-signer migrate`\n' })
  t.same(report(t, new AppError('STORE_UNAVAILABLE', 'the device database did not answer (connect ECONNREFUSED 127.0.0.1:5432); retry shortly')),
    { code: 1, output: 'enos-mqtt-signer: STORE=postgres: the device database did not answer (connect ECONNREFUSED 127.0.0.1:5432); retry shortly\n' })
  t.match(report(t, new AppError('INTERNAL', 'x')).output, /failed to start: AppError: x/, 'another AppError is a bug')
})

t.test('a listen error names HOST and PORT', async (t) => {
  for (const code of ['EADDRINUSE', 'EACCES', 'EADDRNOTAVAIL']) {
    t.same(report(t, Object.assign(new Error('listen'), { code })), { code: 1, output: `enos-mqtt-signer: cannot listen (${code}); check HOST and PORT\n` })
  }
})

t.test('anything else is a bug: reported with its stack', async (t) => {
  const { code, output } = report(t, new TypeError('undefined is not a function'))
  t.equal(code, 1)
  t.match(output, /^enos-mqtt-signer: failed to start: TypeError: undefined is not a function\n {4}at /)
})

t.test('HOST is checked before the app is built: an address passes, a name must resolve', async (t) => {
  await t.resolves(checkHost('127.0.0.1'))
  await t.resolves(checkHost('localhost'))
  await t.rejects(checkHost('no-such-host.invalid'), { name: 'ConfigError', message: /^Invalid configuration:\n {2}HOST: does not resolve to an address \((ENOTFOUND|EAI_AGAIN)\)$/ })
})

t.test('LISTEN_BACKLOG above net.core.somaxconn is warned about, naming both; at or below it, or unreadable, nothing is said', async (t) => {
  const dir = tempDir(t)
  const limit = join(dir, 'somaxconn')
  writeFileSync(limit, '1024\n')
  t.match(backlogWarning(4096, limit), /^LISTEN_BACKLOG=4096 but the kernel caps it at net\.core\.somaxconn=1024: raise it/)
  t.equal(backlogWarning(1024, limit), undefined)
  t.equal(backlogWarning(4096, join(dir, 'missing')), undefined)
  writeFileSync(limit, 'not a number\n')
  t.equal(backlogWarning(4096, limit), undefined)
})
