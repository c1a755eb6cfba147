// The file store on real temp files: lookups, health, reloads (asked for and by themselves) and how failures are reported.
import { execFileSync } from 'node:child_process'
import { once } from 'node:events'
import * as fs from 'node:fs'
import { mkdtempSync } from 'node:fs'
import { appendFile, mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import t, { type Test } from 'tap'
import { DeviceFileError } from '../../src/store/device-file.js'
import { createFileStore, type FileStore, type FileStoreOptions, type ReloadOutcome } from '../../src/store/file-store.js'

const SECRET = 'TOPSECRET'
const BROKEN_JSON = `{"devices":[{"productKey":"p","deviceKey":"d","deviceSecret":"${SECRET}" x}]}`

function devicesJson (...devices: Array<{ productKey: string, deviceKey: string, deviceSecret: string, enabled?: boolean }>): string {
  return JSON.stringify({ devices })
}

/** A CSV store of `count` devices pk/dev<i> with secret s<i>, every line ended by a newline. */
function devicesCsv (count: number, from = 1): string {
  const rows = Array.from({ length: count }, (_, i) => `pk,dev${from + i},s${from + i}\n`)
  return 'productKey,deviceKey,deviceSecret\n' + rows.join('')
}

const FIRST = devicesJson(
  { productKey: 'pk', deviceKey: 'dev1', deviceSecret: 's1' },
  { productKey: 'pk', deviceKey: 'dev2', deviceSecret: 's2', enabled: false }
)
const SECOND = devicesJson({ productKey: 'pk', deviceKey: 'dev3', deviceSecret: 's3' })
const THIRD = devicesJson({ productKey: 'pk', deviceKey: 'dev4', deviceSecret: 's4' })
/** FIRST plus one device: a change that removes nothing, so it is applied by itself. */
const FIRST_PLUS = devicesJson(
  { productKey: 'pk', deviceKey: 'dev1', deviceSecret: 's1' },
  { productKey: 'pk', deviceKey: 'dev2', deviceSecret: 's2', enabled: false },
  { productKey: 'pk', deviceKey: 'dev5', deviceSecret: 's5' }
)

interface LogCall { level: 'info' | 'warn' | 'error', obj: unknown, msg: string | undefined }

/** A logger that records every call, so tests can read what would have been logged. */
function fakeLogger (): { log: FileStoreOptions['log'], calls: LogCall[] } {
  const calls: LogCall[] = []
  const at = (level: LogCall['level']) => (obj: unknown, msg?: string): void => { calls.push({ level, obj, msg }) }
  return { log: { info: at('info'), warn: at('warn'), error: at('error') }, calls }
}

interface ReloadEvent { outcome: ReloadOutcome, err: Error | undefined }

/** Records every onReload call and lets a test wait, without timers, until a condition holds. */
function reloadRecorder (): { onReload: NonNullable<FileStoreOptions['onReload']>, events: ReloadEvent[], until: (check: () => Promise<boolean>) => Promise<void> } {
  const events: ReloadEvent[] = []
  let wake: (() => void) | undefined
  const onReload = (outcome: ReloadOutcome, err?: Error): void => {
    events.push({ outcome, err })
    wake?.()
  }
  const until = async (check: () => Promise<boolean>): Promise<void> => {
    for (;;) {
      const seen = events.length
      if (await check()) return
      if (events.length === seen) await new Promise<void>((resolve) => { wake = resolve })
    }
  }
  return { onReload, events, until }
}

interface Setup { dir: string, path: string, store: FileStore, calls: LogCall[], reloads: ReturnType<typeof reloadRecorder> }

type SetupOptions = { name?: string, content?: string } & Partial<Omit<FileStoreOptions, 'path' | 'log' | 'onReload'>>

async function setup (t: Test, options: SetupOptions = {}): Promise<Setup> {
  const { name = 'devices.json', content = FIRST, watch = false, ...rest } = options
  const dir = t.testdir({ [name]: content })
  const path = join(dir, name)
  const { log, calls } = fakeLogger()
  const reloads = reloadRecorder()
  const store = await createFileStore({ path, watch, log, settleMs: 20, pollMs: 100, ...rest, onReload: reloads.onReload })
  t.teardown(() => store.close())
  return { dir, path, store, calls, reloads }
}

/** The file store with the reads of its watched file replaced: a file read can be made to look changed mid-read. */
async function withFileRead (t: Test, fileRead: typeof import('../../src/store/file-read.js')): Promise<typeof import('../../src/store/file-store.js')> {
  return t.mockImport<typeof import('../../src/store/file-store.js')>('../../src/store/file-store.js', {
    '../../src/store/watched-file.js': await t.mockImport('../../src/store/watched-file.js', { '../../src/store/file-read.js': fileRead })
  })
}

const hasDevice = (store: FileStore, deviceKey: string) => async (): Promise<boolean> => (await store.findDevice('pk', deviceKey)) !== undefined
const outcomes = (reloads: ReturnType<typeof reloadRecorder>): ReloadOutcome[] => reloads.events.map((event) => event.outcome)

t.test('findDevice returns a loaded device and undefined for an unknown one', async (t) => {
  const { store } = await setup(t)
  t.equal(store.kind, 'file')
  t.same(await store.findDevice('pk', 'dev1'), { productKey: 'pk', deviceKey: 'dev1', deviceSecret: 's1', enabled: true })
  t.same(await store.findDevice('pk', 'dev2'), { productKey: 'pk', deviceKey: 'dev2', deviceSecret: 's2', enabled: false })
  t.equal(await store.findDevice('pk', 'nope'), undefined)
  t.equal(await store.findDevice('dev1', 'pk'), undefined, 'keys swapped')
  t.equal(await store.findDevice('PK', 'dev1'), undefined, 'keys are case-sensitive')
})

t.test('a .csv file is read as CSV', async (t) => {
  const { store } = await setup(t, { name: 'devices.CSV', content: 'productKey,deviceKey,deviceSecret,enabled\npk,dev1,s1,no\n' })
  t.same(await store.findDevice('pk', 'dev1'), { productKey: 'pk', deviceKey: 'dev1', deviceSecret: 's1', enabled: false })
})

t.test('checkHealth reports the file by its variable, the device count and when it was loaded', async (t) => {
  const before = Date.now()
  const { store } = await setup(t)
  const health = await store.checkHealth()
  t.same(health, { ok: true, kind: 'file', detail: '2 devices from STORE_FILE', devices: 2, loadedAt: health.loadedAt })
  t.ok(health.loadedAt !== undefined && Date.parse(health.loadedAt) >= before && Date.parse(health.loadedAt) <= Date.now(), 'loadedAt is the load time')
  t.equal(new Date(health.loadedAt ?? '').toISOString(), health.loadedAt, 'loadedAt is an ISO time')
  t.notOk('lastReloadError' in health, 'no reload has failed')
})

t.test('reload() after rewriting the file serves the new data, even one that removes every device', async (t) => {
  const { path, store, calls, reloads } = await setup(t)
  const loadedBefore = (await store.checkHealth()).loadedAt ?? ''
  await writeFile(path, SECOND)
  t.equal(await store.reload(), 'reloaded')
  t.equal(await store.findDevice('pk', 'dev1'), undefined, 'the old device is gone')
  t.same(await store.findDevice('pk', 'dev3'), { productKey: 'pk', deviceKey: 'dev3', deviceSecret: 's3', enabled: true })
  const health = await store.checkHealth()
  t.match(health, { ok: true, devices: 1, detail: '1 devices from STORE_FILE' })
  t.ok(Date.parse(health.loadedAt ?? '') >= Date.parse(loadedBefore), 'loadedAt moves on')
  t.same(calls, [{ level: 'info', obj: { path, trigger: 'SIGHUP', devices: 1, removed: 2 }, msg: 'device store reloaded' }])
  t.same(outcomes(reloads), ['reloaded'], 'onReload is told the reload worked')
})

t.test('reload() of an unchanged file does not parse it again', async (t) => {
  const { store, calls, reloads } = await setup(t)
  t.equal(await store.reload(), 'unchanged')
  t.same(calls, [], 'no reload logged')
  t.same(outcomes(reloads), ['unchanged'])
})

t.test('a storm of reload() calls while one runs merges into at most one more', async (t) => {
  const { path, store, reloads } = await setup(t)
  await writeFile(path, SECOND)
  const storm = Array.from({ length: 100 }, () => store.reload())
  const results = await Promise.all(storm)
  t.same(outcomes(reloads), ['reloaded', 'unchanged'], 'two attempts for 100 calls, and the second parses nothing')
  t.equal(results[0], 'reloaded')
  t.ok(results.slice(1).every((outcome) => outcome === 'unchanged'), 'every later call shares the merged one')
  t.ok(await store.findDevice('pk', 'dev3'))
})

t.test('a failed reload keeps the old data and shows lastReloadError without the secret', async (t) => {
  const { path, store, reloads } = await setup(t)
  await writeFile(path, BROKEN_JSON)
  t.equal(await store.reload(), 'failed')
  t.same(await store.findDevice('pk', 'dev1'), { productKey: 'pk', deviceKey: 'dev1', deviceSecret: 's1', enabled: true }, 'old data still served')
  const health = await store.checkHealth()
  const message = `${path}: the file is not valid JSON (line 1, column 74)`
  t.match(health, { ok: true, devices: 2, lastReloadError: { message } })
  t.equal(new Date(health.lastReloadError?.at ?? '').toISOString(), health.lastReloadError?.at, 'at is an ISO time')
  t.notMatch(JSON.stringify(health), SECRET)
  t.equal(reloads.events.length, 1)
  t.ok(reloads.events[0]?.err instanceof DeviceFileError, 'onReload gets the error')
})

t.test('a failed reload is logged at error level without the secret', async (t) => {
  const { path, store, calls } = await setup(t)
  await writeFile(path, BROKEN_JSON)
  await store.reload()
  t.same(calls, [{
    level: 'error',
    obj: { path, trigger: 'SIGHUP', problem: `${path}: the file is not valid JSON (line 1, column 74)` },
    msg: 'device store reload failed; still serving the previous version'
  }])
  t.notMatch(JSON.stringify(calls), SECRET)
})

t.test('a reload of a file with a bad entry names it, and a deleted file names the read error', async (t) => {
  const { path, store } = await setup(t)
  await writeFile(path, devicesJson({ productKey: 'p', deviceKey: 'bad key', deviceSecret: SECRET }))
  await store.reload()
  const health = await store.checkHealth()
  t.equal(health.lastReloadError?.message, `${path}: devices[0]: deviceKey must be 1-64 characters from A-Z a-z 0-9 _ . : % -`)
  t.notMatch(JSON.stringify(health), SECRET)
  await rm(path)
  await store.reload()
  t.equal((await store.checkHealth()).lastReloadError?.message, `cannot read ${path}: ENOENT`)
  t.ok(await store.findDevice('pk', 'dev1'), 'old data still served')
})

t.test('a good reload after a failed one clears lastReloadError', async (t) => {
  const { path, store, reloads } = await setup(t)
  await writeFile(path, BROKEN_JSON)
  await store.reload()
  t.ok((await store.checkHealth()).lastReloadError, 'the failure is shown first')
  await writeFile(path, SECOND)
  await store.reload()
  const health = await store.checkHealth()
  t.notOk('lastReloadError' in health)
  t.equal(health.devices, 1)
  t.same(outcomes(reloads), ['failed', 'reloaded'])
})

t.test('a missing file at start rejects with a DeviceFileError naming the path', async (t) => {
  const path = join(t.testdir({}), 'missing.json')
  const err: unknown = await createFileStore({ path, watch: false, log: fakeLogger().log }).catch((err: unknown) => err)
  t.ok(err instanceof DeviceFileError)
  t.match(err, { message: `cannot read ${path}: ENOENT`, problems: [`cannot read ${path}: ENOENT`] })
})

t.test('a directory at start is refused as not a regular file', async (t) => {
  const path = t.testdir({})
  await t.rejects(createFileStore({ path, watch: false, log: fakeLogger().log }), {
    name: 'DeviceFileError',
    message: `${path} is a directory, not a regular file: point STORE_FILE at a .json or .csv file`
  })
})

t.test('a FIFO as the store file is refused at once instead of hanging, at start and on reload', async (t) => {
  const dir = t.testdir({ 'devices.json': FIRST })
  const fifo = join(dir, 'pipe.json')
  execFileSync('mkfifo', [fifo])
  await t.rejects(createFileStore({ path: fifo, watch: false, log: fakeLogger().log }), {
    name: 'DeviceFileError',
    message: `${fifo} is a FIFO, not a regular file: point STORE_FILE at a .json or .csv file`
  })
  const link = join(dir, 'link.json')
  await symlink(join(dir, 'devices.json'), link)
  const store = await createFileStore({ path: link, watch: false, log: fakeLogger().log })
  t.teardown(() => store.close())
  await rm(link)
  await symlink(fifo, link)
  t.equal(await store.reload(), 'failed', 'a link turned to a FIFO is refused, after following the link')
  t.match((await store.checkHealth()).lastReloadError, { message: /is a FIFO, not a regular file/ })
  t.ok(await store.findDevice('pk', 'dev1'), 'old data still served')
})

t.test('a socket or a device as the store file is named as such', async (t) => {
  await t.rejects(createFileStore({ path: '/dev/null', watch: false, log: fakeLogger().log }), { message: '/dev/null is a device, not a regular file: point STORE_FILE at a .json or .csv file' })
  // A Unix socket path must be short (108 bytes): tap's fixture directories are too deep.
  const socketPath = join(mkdtempSync(join(tmpdir(), 'store-')), 'store.sock')
  t.teardown(() => rm(dirname(socketPath), { recursive: true, force: true }))
  const server = createServer().listen(socketPath)
  await once(server, 'listening')
  t.teardown(() => server.close())
  await t.rejects(createFileStore({ path: socketPath, watch: false, log: fakeLogger().log }), { message: `${socketPath} is a socket, not a regular file: point STORE_FILE at a .json or .csv file` })
})

t.test('a FIFO swapped in between the check and the open is refused, not waited on', async (t) => {
  const dir = t.testdir({ 'devices.json': FIRST })
  const fifo = join(dir, 'pipe.json')
  execFileSync('mkfifo', [fifo])
  const realStat = fs.promises.stat
  // The first stat sees the regular file; the path then names the FIFO when it is opened.
  const { readStoreFile } = await t.mockImport<typeof import('../../src/store/file-read.js')>('../../src/store/file-read.js', {
    'node:fs/promises': { ...fs.promises, stat: async (_path: string, options: fs.StatOptions) => realStat(join(dir, 'devices.json'), options) }
  })
  await t.rejects(readStoreFile(fifo), { message: `${fifo} is a FIFO, not a regular file: point STORE_FILE at a .json or .csv file` })
})

t.test('a read error without an errno code names the path but not the error text', async (t) => {
  const { readStoreFile } = await t.mockImport<typeof import('../../src/store/file-read.js')>('../../src/store/file-read.js', {
    'node:fs/promises': { ...fs.promises, stat: async () => { throw new Error(`odd failure near ${SECRET}`) } }
  })
  const path = '/nowhere/devices.json'
  await t.rejects(readStoreFile(path), { name: 'DeviceFileError', message: `cannot read ${path}: error` })
})

t.test('an I/O error while the open file is read names the path and the errno code', async (t) => {
  const { readStoreFile } = await t.mockImport<typeof import('../../src/store/file-read.js')>('../../src/store/file-read.js', {
    'node:fs/promises': {
      ...fs.promises,
      open: async (path: string, flags: number) => {
        const handle = await fs.promises.open(path, flags)
        return Object.assign(Object.create(handle), {
          stat: handle.stat.bind(handle),
          close: handle.close.bind(handle),
          readFile: async () => { throw Object.assign(new Error(`EIO near ${SECRET}`), { code: 'EIO' }) }
        })
      }
    }
  })
  const path = join(t.testdir({ 'devices.json': FIRST }), 'devices.json')
  await t.rejects(readStoreFile(path), { name: 'DeviceFileError', message: `cannot read ${path}: EIO` })
})

t.test('a bad file at start rejects naming the path in every problem and no secret', async (t) => {
  const path = join(t.testdir({
    'devices.json': devicesJson({ productKey: 'p', deviceKey: 'd', deviceSecret: SECRET }, { productKey: 'p', deviceKey: 'd', deviceSecret: SECRET })
  }), 'devices.json')
  const err: unknown = await createFileStore({ path, watch: true, log: fakeLogger().log }).catch((err: unknown) => err)
  t.ok(err instanceof DeviceFileError)
  t.match(err, { problems: [`${path}: devices[1]: duplicate device productKey=p deviceKey=d (first at devices[0])`] })
  t.notMatch((err as Error).message, SECRET)
})

t.test('a file that is not UTF-8 is refused naming the path, the line and the column, not the content', async (t) => {
  const name = 'devices.csv'
  const path = join(t.testdir({ [name]: Buffer.from(`productKey,deviceKey,deviceSecret\npk,dev1,${SECRET}\xe9\n`, 'latin1') }), name)
  const err: unknown = await createFileStore({ path, watch: false, log: fakeLogger().log }).catch((err: unknown) => err)
  t.ok(err instanceof DeviceFileError)
  t.match(err, { problems: [`${path}: line 2: the file is not valid UTF-8 (first bad byte at column 18); save it as UTF-8`] })
  t.notMatch((err as Error).message, SECRET)
})

t.test('a CSV caught with its last line cut short is refused and the old data kept, then the finished file loads', async (t) => {
  // writeFile truncates before it writes: the settle time keeps that empty moment from being read.
  const { path, store, reloads } = await setup(t, { name: 'devices.csv', content: devicesCsv(3), settleMs: 200, maxShrinkPercent: 100 })
  const whole = devicesCsv(3).replace('s3', 's3-rotated')
  // The writer paused after "pk,dev3,s3-ro": longer than any settle time, so the store does read it.
  await writeFile(path, whole.slice(0, whole.indexOf('-ro') + 3))
  await store.check()
  await store.check()
  await reloads.until(async () => outcomes(reloads).includes('failed'))
  t.match((await store.checkHealth()).lastReloadError, { message: /line 4: the file does not end with a newline/ })
  t.equal((await store.findDevice('pk', 'dev3'))?.deviceSecret, 's3', 'the device on the cut line keeps its whole secret')
  await writeFile(path, whole)
  await store.check()
  await store.check()
  await reloads.until(async () => outcomes(reloads).includes('reloaded'))
  t.same(outcomes(reloads).filter((outcome) => outcome !== 'unchanged'), ['failed', 'reloaded'])
  t.equal((await store.findDevice('pk', 'dev3'))?.deviceSecret, 's3-rotated')
})

t.test('close() waits for a reload in progress and for the one queued behind it', async (t) => {
  const { path, store, reloads } = await setup(t)
  await writeFile(path, SECOND)
  const first = store.reload()
  const second = store.reload()
  await store.close()
  t.same(outcomes(reloads), ['reloaded', 'unchanged'], 'both finished before close() resolved')
  await Promise.all([first, second])
})

t.test('close() during a check leaves no reload scheduled behind it', async (t) => {
  const { path, store, reloads } = await setup(t, { settleMs: 1 })
  await writeFile(path, FIRST_PLUS)
  const checking = store.check()
  await store.close()
  await checking
  t.same(reloads.events, [], 'nothing ran, and no timer is left to keep the process alive')
})

t.test('with watch on, a changed file is reloaded without calling reload()', async (t) => {
  const { path, store, reloads, calls } = await setup(t, { watch: true })
  t.match(calls[0], { level: 'info', obj: { path, pollMs: 100, settleMs: 20 }, msg: 'watching the device store for changes' })
  await writeFile(path, FIRST_PLUS)
  await reloads.until(hasDevice(store, 'dev5'))
  t.equal(reloads.events.at(-1)?.outcome, 'reloaded')
  t.match(calls.at(-1), { obj: { trigger: 'change', devices: 3, removed: 0 }, msg: 'device store reloaded' })
})

t.test('with watch on, a file replaced by rename is reloaded, again and again', async (t) => {
  const { path, store, reloads } = await setup(t, { watch: true, maxShrinkPercent: 100 })
  await writeFile(`${path}.tmp`, SECOND)
  await rename(`${path}.tmp`, path)
  await reloads.until(hasDevice(store, 'dev3'))
  await writeFile(`${path}.tmp`, THIRD)
  await rename(`${path}.tmp`, path)
  await reloads.until(hasDevice(store, 'dev4'))
  t.equal(await store.findDevice('pk', 'dev3'), undefined)
  t.notOk('lastReloadError' in await store.checkHealth(), 'no reload read a half-written file')
})

t.test('a change that would remove devices is held, shown in health, and applied only by reload()', async (t) => {
  const { path, store, reloads, calls } = await setup(t, { name: 'devices.csv', content: devicesCsv(10), watch: true })
  // A writer caught between two pieces, exactly at a line boundary: half of the devices are missing.
  await writeFile(path, devicesCsv(5))
  await reloads.until(async () => reloads.events.length > 0)
  t.same(outcomes(reloads), ['held'])
  t.ok(await store.findDevice('pk', 'dev10'), 'every device is still served')
  const health = await store.checkHealth()
  const message = 'the new version would remove 5 of 10 devices (STORE_MAX_SHRINK_PERCENT=0); it may be a file caught mid-write: send SIGHUP to apply it'
  t.match(health, { ok: true, devices: 10, heldReload: { message, devices: 5, removed: 5, at: String } })
  t.match(calls.at(-1), { level: 'warn', obj: { path, devices: 5, removed: 5, previous: 10 }, msg: `device store change held: ${message}` })
  await store.check()
  t.same(outcomes(reloads), ['held'], 'the held version is not tried again by itself')
  t.equal(await store.reload(), 'reloaded', 'reload() (SIGHUP) applies it')
  t.equal(await store.findDevice('pk', 'dev10'), undefined)
  t.notOk('heldReload' in await store.checkHealth())
})

t.test('the removals of a large store are counted exactly, across the slices the count yields between', async (t) => {
  const { path, store, reloads } = await setup(t, { name: 'devices.csv', content: devicesCsv(60_000), watch: true })
  await writeFile(path, devicesCsv(59_997))
  await reloads.until(async () => reloads.events.length > 0)
  t.same(outcomes(reloads), ['held'])
  t.match(await store.checkHealth(), { devices: 60_000, heldReload: { devices: 59_997, removed: 3 } })
})

t.test('a file cut just after its header would empty the store: held', async (t) => {
  const { path, store, reloads } = await setup(t, { name: 'devices.csv', content: devicesCsv(3), watch: true })
  await writeFile(path, devicesCsv(0))
  await reloads.until(async () => reloads.events.length > 0)
  t.same(outcomes(reloads), ['held'])
  t.match(await store.checkHealth(), { devices: 3, heldReload: { devices: 0, removed: 3 } })
})

t.test('STORE_MAX_SHRINK_PERCENT lets smaller removals through by themselves', async (t) => {
  const { path, store, reloads } = await setup(t, { name: 'devices.csv', content: devicesCsv(10), watch: true, maxShrinkPercent: 50 })
  await writeFile(path, devicesCsv(5))
  await reloads.until(async () => reloads.events.length > 0)
  t.same(outcomes(reloads), ['reloaded'], '5 of 10 is not more than 50%')
  t.equal(await store.findDevice('pk', 'dev6'), undefined)
  await writeFile(path, devicesCsv(2))
  await reloads.until(async () => reloads.events.length > 1)
  t.same(outcomes(reloads), ['reloaded', 'held'], '3 of 5 is more than 50%')
})

t.test('a file still being written is reloaded only once it has settled, never in between', async (t) => {
  // settleMs is long so that the two writes below, back to back, always fall within it.
  const { path, store, reloads } = await setup(t, { name: 'devices.csv', content: devicesCsv(2), settleMs: 1500, maxShrinkPercent: 100 })
  await writeFile(path, devicesCsv(1, 3))
  await store.check()
  await store.check()
  t.same(reloads.events, [], 'a version first seen just now is not reloaded')
  await appendFile(path, 'pk,dev4,s4\n')
  await store.check()
  await reloads.until(async () => reloads.events.length > 0)
  t.same(outcomes(reloads), ['reloaded'], 'one reload, of the finished file')
  t.ok(await store.findDevice('pk', 'dev4'))
  t.match(await store.checkHealth(), { devices: 2 })
})

t.test('a file that changes while it is read is not parsed: it is tried again once settled', async (t) => {
  let reads = 0
  const real = await import('../../src/store/file-read.js')
  const { createFileStore: createMocked } = await withFileRead(t, {
    ...real,
    readStoreFile: async (path: string) => {
      const read = await real.readStoreFile(path)
      return ++reads === 2 ? { ...read, stable: false } : read
    }
  })
  const path = join(t.testdir({ 'devices.json': FIRST }), 'devices.json')
  const reloads = reloadRecorder()
  const store = await createMocked({ path, watch: false, log: fakeLogger().log, settleMs: 10, onReload: reloads.onReload })
  t.teardown(() => store.close())
  await writeFile(path, FIRST_PLUS)
  await store.check()
  await reloads.until(hasDevice(store, 'dev5'))
  t.same(outcomes(reloads), ['changing', 'reloaded'])
})

t.test('reload() waits out a file that changes while it is read, then gives up after a few tries', async (t) => {
  let unstable = 2
  const real = await import('../../src/store/file-read.js')
  const { createFileStore: createMocked } = await withFileRead(t, {
    ...real,
    readStoreFile: async (path: string) => ({ ...await real.readStoreFile(path), stable: unstable-- <= 0 })
  })
  const path = join(t.testdir({ 'devices.json': FIRST }), 'devices.json')
  const store = await createMocked({ path, watch: false, log: fakeLogger().log, settleMs: 5 })
  t.teardown(() => store.close())
  t.ok(await store.findDevice('pk', 'dev1'), 'loaded at start after two unstable reads')
  unstable = 100
  await writeFile(path, FIRST_PLUS)
  t.equal(await store.reload(), 'reloaded', 'after five tries the last read is used: SIGHUP means the operator says it is ready')
})

t.test('close() stops watching: a later change reloads only the store still watching', async (t) => {
  const { path, store: closed, reloads: closedReloads } = await setup(t, { watch: true })
  const { log } = fakeLogger()
  const witness = reloadRecorder()
  const open = await createFileStore({ path, watch: true, log, settleMs: 20, pollMs: 100, onReload: witness.onReload })
  t.teardown(() => open.close())
  await closed.close()
  await writeFile(path, FIRST_PLUS)
  await witness.until(hasDevice(open, 'dev5'))
  // The witness polls every 100 ms like the closed store would: wait for two more polls of its own.
  const polls = witness.events.length
  await writeFile(path, FIRST)
  await witness.until(async () => witness.events.length > polls)
  t.same(closedReloads.events, [], 'the closed store did not reload')
  t.notOk(await closed.findDevice('pk', 'dev5'), 'the closed store still holds the old data')
})

t.test('with watch on, a Kubernetes-style symlink swap of the mounted directory is reloaded', async (t) => {
  // What kubelet does for a ConfigMap or Secret volume: devices.json -> ..data/devices.json,
  // ..data -> ..v1, and an update renames a new ..data link (-> ..v2) over the old one.
  const dir = t.testdir({ '..v1': { 'devices.json': FIRST }, '..v2': { 'devices.json': SECOND } })
  await symlink('..v1', join(dir, '..data'))
  await symlink(join('..data', 'devices.json'), join(dir, 'devices.json'))
  const reloads = reloadRecorder()
  const store = await createFileStore({ path: join(dir, 'devices.json'), watch: true, log: fakeLogger().log, settleMs: 20, maxShrinkPercent: 100, onReload: reloads.onReload })
  t.teardown(() => store.close())
  t.ok(await store.findDevice('pk', 'dev1'))
  await symlink('..v2', join(dir, '..data_tmp'))
  await rename(join(dir, '..data_tmp'), join(dir, '..data'))
  await reloads.until(hasDevice(store, 'dev3'))
  t.equal(await store.findDevice('pk', 'dev1'), undefined)
  t.same(outcomes(reloads), ['reloaded'])
})

t.test('with watch on, editing in place the target of a symlink in another directory is reloaded', async (t) => {
  const root = t.testdir({ config: {}, data: { 'real.json': FIRST } })
  const path = join(root, 'config', 'devices.json')
  await symlink(join('..', 'data', 'real.json'), path)
  const reloads = reloadRecorder()
  const store = await createFileStore({ path, watch: true, log: fakeLogger().log, settleMs: 20, pollMs: 60_000, onReload: reloads.onReload })
  t.teardown(() => store.close())
  await writeFile(join(root, 'data', 'real.json'), FIRST_PLUS)
  await reloads.until(hasDevice(store, 'dev5'))
  t.same(outcomes(reloads), ['reloaded'], 'noticed by the watch on the target directory (the poll is a minute away)')
})

t.test('with watch on, the store directory removed and created again is watched again and reloaded', async (t) => {
  const root = t.testdir({ store: { 'devices.json': FIRST } })
  const dir = join(root, 'store')
  const path = join(dir, 'devices.json')
  const { log, calls } = fakeLogger()
  const reloads = reloadRecorder()
  const store = await createFileStore({ path, watch: true, log, settleMs: 20, pollMs: 50, onReload: reloads.onReload })
  t.teardown(() => store.close())
  await rm(dir, { recursive: true })
  await reloads.until(async () => reloads.events.length > 0)
  t.same(outcomes(reloads), ['failed'])
  t.match(await store.checkHealth(), { devices: 2, lastReloadError: { message: `cannot read ${path}: ENOENT` } })
  t.ok(calls.some((call) => call.level === 'warn' && call.msg === `cannot watch ${dir}; checking the device store file every 50 ms instead`), 'the log says the poll took over')
  await mkdir(dir)
  await writeFile(path, FIRST_PLUS)
  await reloads.until(hasDevice(store, 'dev5'))
  t.notOk('lastReloadError' in await store.checkHealth(), 'the old error is gone')
  await reloads.until(async () => calls.some((call) => call.msg === `watching ${dir} again`))
  // Watched again: a change is noticed by the watch as well as the poll.
  await writeFile(path, devicesJson(...JSON.parse(FIRST_PLUS).devices, { productKey: 'pk', deviceKey: 'dev6', deviceSecret: 's6' }))
  await reloads.until(hasDevice(store, 'dev6'))
})

t.test('with watch on, a store directory renamed away and replaced is followed to the new one', async (t) => {
  const root = t.testdir({ store: { 'devices.json': FIRST } })
  const dir = join(root, 'store')
  const path = join(dir, 'devices.json')
  const reloads = reloadRecorder()
  const store = await createFileStore({ path, watch: true, log: fakeLogger().log, settleMs: 20, pollMs: 50, onReload: reloads.onReload })
  t.teardown(() => store.close())
  await rename(dir, `${dir}.old`)
  await mkdir(dir)
  await writeFile(path, FIRST_PLUS)
  await reloads.until(hasDevice(store, 'dev5'))
  await writeFile(join(`${dir}.old`, 'devices.json'), THIRD)
  await writeFile(path, devicesJson(...JSON.parse(FIRST_PLUS).devices, { productKey: 'pk', deviceKey: 'dev6', deviceSecret: 's6' }))
  await reloads.until(hasDevice(store, 'dev6'))
  t.equal(await store.findDevice('pk', 'dev4'), undefined, 'the renamed directory is no longer followed')
})

t.test('an unexpected parse failure is still reported as a DeviceFileError naming the path', async (t) => {
  const real = await import('../../src/store/device-file.js')
  const { createFileStore: createMocked } = await t.mockImport<typeof import('../../src/store/file-store.js')>('../../src/store/file-store.js', {
    '../../src/store/device-file.js': { ...real, parseDeviceFile: async () => { throw new RangeError('Map maximum size exceeded') } }
  })
  const path = join(t.testdir({ 'devices.json': FIRST }), 'devices.json')
  const err = await createMocked({ path, watch: false, log: fakeLogger().log }).catch((e: unknown) => e)
  t.type(err, real.DeviceFileError)
  t.equal((err as Error).message, `${path}: Map maximum size exceeded`)
})
