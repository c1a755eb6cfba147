// The file store on real temp files: lookups, health, reloads (manual and watched) and how failures are reported.
import { EventEmitter } from 'node:events'
import * as fs from 'node:fs'
import { rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { DeviceFileError } from '../../src/store/device-file.js'
import { createFileStore, type FileStore, type FileStoreOptions } from '../../src/store/file-store.js'

const SECRET = 'TOPSECRET'
const BROKEN_JSON = `{"devices":[{"productKey":"p","deviceKey":"d","deviceSecret":"${SECRET}" x}]}`

function devicesJson (...devices: Array<{ productKey: string, deviceKey: string, deviceSecret: string, enabled?: boolean }>): string {
  return JSON.stringify({ devices })
}

const FIRST = devicesJson(
  { productKey: 'pk', deviceKey: 'dev1', deviceSecret: 's1' },
  { productKey: 'pk', deviceKey: 'dev2', deviceSecret: 's2', enabled: false }
)
const SECOND = devicesJson({ productKey: 'pk', deviceKey: 'dev3', deviceSecret: 's3' })
const THIRD = devicesJson({ productKey: 'pk', deviceKey: 'dev4', deviceSecret: 's4' })

interface LogCall { level: 'info' | 'warn' | 'error', obj: unknown, msg: string | undefined }

/** A logger that records every call, so tests can read what would have been logged. */
function fakeLogger (): { log: FileStoreOptions['log'], calls: LogCall[] } {
  const calls: LogCall[] = []
  const at = (level: LogCall['level']) => (obj: unknown, msg?: string): void => { calls.push({ level, obj, msg }) }
  return { log: { info: at('info'), warn: at('warn'), error: at('error') }, calls }
}

/** Records every onReload call and lets a test wait, without timers, until a condition holds. */
function reloadRecorder (): { onReload: (err?: Error) => void, events: Array<Error | undefined>, until: (check: () => Promise<boolean>) => Promise<void> } {
  const events: Array<Error | undefined> = []
  let wake: (() => void) | undefined
  const onReload = (err?: Error): void => {
    events.push(err)
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

interface Setup { path: string, store: FileStore, calls: LogCall[], reloads: ReturnType<typeof reloadRecorder> }

async function setup (t: Test, options: { name?: string, content?: string, watch?: boolean } = {}): Promise<Setup> {
  const { name = 'devices.json', content = FIRST, watch = false } = options
  const dir = t.testdir({ [name]: content })
  const path = join(dir, name)
  const { log, calls } = fakeLogger()
  const reloads = reloadRecorder()
  const store = await createFileStore({ path, watch, log, debounceMs: 5, onReload: reloads.onReload })
  t.teardown(() => store.close())
  return { path, store, calls, reloads }
}

const hasDevice = (store: FileStore, deviceKey: string) => async (): Promise<boolean> => (await store.findDevice('pk', deviceKey)) !== undefined

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

t.test('checkHealth reports the file, the device count and when it was loaded', async (t) => {
  const before = Date.now()
  const { path, store } = await setup(t)
  const health = await store.checkHealth()
  t.same(health, { ok: true, kind: 'file', detail: `2 devices from ${path}`, devices: 2, loadedAt: health.loadedAt })
  t.ok(health.loadedAt !== undefined && Date.parse(health.loadedAt) >= before && Date.parse(health.loadedAt) <= Date.now(), 'loadedAt is the load time')
  t.equal(new Date(health.loadedAt ?? '').toISOString(), health.loadedAt, 'loadedAt is an ISO time')
  t.notOk('lastReloadError' in health, 'no reload has failed')
})

t.test('reload() after rewriting the file serves the new data and logs the device count', async (t) => {
  const { path, store, calls, reloads } = await setup(t)
  const loadedBefore = (await store.checkHealth()).loadedAt ?? ''
  await writeFile(path, SECOND)
  await store.reload()
  t.equal(await store.findDevice('pk', 'dev1'), undefined, 'the old device is gone')
  t.same(await store.findDevice('pk', 'dev3'), { productKey: 'pk', deviceKey: 'dev3', deviceSecret: 's3', enabled: true })
  const health = await store.checkHealth()
  t.match(health, { ok: true, devices: 1, detail: `1 devices from ${path}` })
  t.ok(Date.parse(health.loadedAt ?? '') >= Date.parse(loadedBefore), 'loadedAt moves on')
  t.same(calls, [{ level: 'info', obj: { path, devices: 1 }, msg: 'device store reloaded' }])
  t.same(reloads.events, [undefined], 'onReload is told the reload worked')
})

t.test('a failed reload keeps the old data and shows lastReloadError without the secret', async (t) => {
  const { path, store, reloads } = await setup(t)
  await writeFile(path, BROKEN_JSON)
  await store.reload()
  t.same(await store.findDevice('pk', 'dev1'), { productKey: 'pk', deviceKey: 'dev1', deviceSecret: 's1', enabled: true }, 'old data still served')
  const health = await store.checkHealth()
  const message = `${path}: the file is not valid JSON (line 1, column 74)`
  t.match(health, { ok: true, devices: 2, lastReloadError: { message } })
  t.equal(new Date(health.lastReloadError?.at ?? '').toISOString(), health.lastReloadError?.at, 'at is an ISO time')
  t.notMatch(JSON.stringify(health), SECRET)
  t.equal(reloads.events.length, 1)
  t.ok(reloads.events[0] instanceof DeviceFileError, 'onReload gets the error')
})

t.test('a failed reload is logged at error level without the secret', async (t) => {
  const { path, store, calls } = await setup(t)
  await writeFile(path, BROKEN_JSON)
  await store.reload()
  t.same(calls, [{
    level: 'error',
    obj: { path, problem: `${path}: the file is not valid JSON (line 1, column 74)` },
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
  t.equal(reloads.events.length, 2)
  t.equal(reloads.events[1], undefined)
})

t.test('a missing file at start rejects with a DeviceFileError naming the path', async (t) => {
  const path = join(t.testdir({}), 'missing.json')
  const err: unknown = await createFileStore({ path, watch: false, log: fakeLogger().log }).catch((err: unknown) => err)
  t.ok(err instanceof DeviceFileError)
  t.match(err, { message: `cannot read ${path}: ENOENT`, problems: [`cannot read ${path}: ENOENT`] })
})

t.test('an unreadable path at start (a directory) rejects with a DeviceFileError naming the path', async (t) => {
  const path = t.testdir({})
  const err: unknown = await createFileStore({ path, watch: false, log: fakeLogger().log }).catch((err: unknown) => err)
  t.ok(err instanceof DeviceFileError)
  t.match(err, { message: `cannot read ${path}: EISDIR` })
})

t.test('a read error without an errno code names the path but not the error text', async (t) => {
  const { createFileStore: createMocked } = await t.mockImport<typeof import('../../src/store/file-store.js')>('../../src/store/file-store.js', {
    'node:fs/promises': { ...fs.promises, readFile: async () => { throw new Error(`odd failure near ${SECRET}`) } }
  })
  const path = '/nowhere/devices.json'
  await t.rejects(createMocked({ path, watch: false, log: fakeLogger().log }), { name: 'DeviceFileError', message: `cannot read ${path}: error` })
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

t.test('close() waits for a reload in progress', async (t) => {
  const { path, store, reloads } = await setup(t)
  await writeFile(path, SECOND)
  const reloaded = store.reload()
  await store.close()
  t.same(reloads.events, [undefined], 'the reload finished before close() resolved')
  await reloaded
})

t.test('with watch on, a rewritten file is reloaded without calling reload()', async (t) => {
  const { path, store, reloads } = await setup(t, { watch: true })
  await writeFile(path, SECOND)
  await reloads.until(hasDevice(store, 'dev3'))
  t.equal(await store.findDevice('pk', 'dev1'), undefined)
  t.equal(reloads.events.at(-1), undefined, 'the last reload worked')
})

t.test('with watch on, a file replaced by rename is reloaded, again and again', async (t) => {
  const { path, store, reloads } = await setup(t, { watch: true })
  await writeFile(`${path}.tmp`, SECOND)
  await rename(`${path}.tmp`, path)
  await reloads.until(hasDevice(store, 'dev3'))
  await writeFile(`${path}.tmp`, THIRD)
  await rename(`${path}.tmp`, path)
  await reloads.until(hasDevice(store, 'dev4'))
  t.equal(await store.findDevice('pk', 'dev3'), undefined)
  t.notOk('lastReloadError' in await store.checkHealth(), 'no reload read a half-written file')
})

t.test('close() stops watching: a later change reloads only the store still watching', async (t) => {
  const { path, store: closed, reloads: closedReloads } = await setup(t, { watch: true })
  const { log } = fakeLogger()
  const witness = reloadRecorder()
  // Same file, same debounce: a change fires both stores' timers in the same turn, so by the time the
  // witness has reloaded, a still-watching `closed` store would have queued its own reload too.
  const open = await createFileStore({ path, watch: true, log, debounceMs: 5, onReload: witness.onReload })
  t.teardown(() => open.close())
  await closed.close()
  await writeFile(path, SECOND)
  await witness.until(hasDevice(open, 'dev3'))
  t.same(closedReloads.events, [], 'the closed store did not reload')
  t.ok(await closed.findDevice('pk', 'dev1'), 'the closed store still holds the old data')
  await closed.reload()
  t.same(closedReloads.events, [undefined], 'only the reload asked for ran')
})

t.test('watch events of any name in the directory are debounced into one check', async (t) => {
  const watcher = Object.assign(new EventEmitter(), { closed: false, close () { watcher.closed = true } })
  let listener: ((event: string, filename: string | null) => void) | undefined
  let watched = ''
  const { createFileStore: createMocked } = await t.mockImport<typeof import('../../src/store/file-store.js')>('../../src/store/file-store.js', {
    'node:fs': {
      ...fs,
      watch: (dir: string, fn: typeof listener) => {
        watched = dir
        listener = fn
        return watcher
      }
    }
  })
  const dir = t.testdir({ 'devices.json': FIRST })
  const path = join(dir, 'devices.json')
  const reloads = reloadRecorder()
  const store = await createMocked({ path, watch: true, log: fakeLogger().log, debounceMs: 5, onReload: reloads.onReload })
  t.teardown(() => store.close())
  t.equal(watched, dir, 'the directory is watched, not the file')
  const fire = (event: string, filename: string | null): void => {
    if (listener === undefined) throw new Error('fs.watch was not called')
    listener(event, filename)
  }
  const timers = (): number => process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length
  const idle = timers()
  fire('rename', '..data')
  fire('change', 'other.json')
  fire('rename', null)
  t.equal(timers(), idle + 1, 'events of any name schedule one check (a ConfigMap swap names ..data, not the file)')
  await writeFile(path, SECOND)
  fire('change', 'devices.json')
  fire('rename', 'devices.json')
  t.equal(timers(), idle + 1, 'a burst of events still schedules only one')
  await reloads.until(hasDevice(store, 'dev3'))
  await store.close()
  t.same(reloads.events, [undefined], 'one reload for the burst')
  t.ok(watcher.closed, 'close() closes the watcher')
})

t.test('reloadIfChanged reloads only when the file is another version than the one loaded', async (t) => {
  const { path, store, reloads } = await setup(t)
  await writeFile(join(path, '..', 'other.json'), SECOND)
  t.equal(await store.reloadIfChanged(), false, 'another file in the directory changed: no reload')
  t.same(reloads.events, [])
  await writeFile(path, SECOND)
  t.equal(await store.reloadIfChanged(), true)
  t.ok(await store.findDevice('pk', 'dev3'))
  t.equal(await store.reloadIfChanged(), false, 'the version just loaded is not reloaded again')
  await rm(path)
  t.equal(await store.reloadIfChanged(), true, 'a deleted file is a change: the reload fails and is reported')
  t.match(await store.checkHealth(), { devices: 1, lastReloadError: { message: /ENOENT/ } })
  t.equal(await store.reloadIfChanged(), false, 'still missing: not retried on every event')
  await writeFile(path, THIRD)
  t.equal(await store.reloadIfChanged(), true, 'back again: reloaded')
  t.ok(await store.findDevice('pk', 'dev4'))
})

t.test('with watch on, a Kubernetes-style symlink swap of the mounted directory is reloaded', async (t) => {
  // What kubelet does for a ConfigMap or Secret volume: devices.json -> ..data/devices.json,
  // ..data -> ..v1, and an update renames a new ..data link (-> ..v2) over the old one.
  const dir = t.testdir({ '..v1': { 'devices.json': FIRST }, '..v2': { 'devices.json': SECOND } })
  await fs.promises.symlink('..v1', join(dir, '..data'))
  await fs.promises.symlink(join('..data', 'devices.json'), join(dir, 'devices.json'))
  const reloads = reloadRecorder()
  const store = await createFileStore({ path: join(dir, 'devices.json'), watch: true, log: fakeLogger().log, debounceMs: 5, onReload: reloads.onReload })
  t.teardown(() => store.close())
  t.ok(await store.findDevice('pk', 'dev1'))
  await fs.promises.symlink('..v2', join(dir, '..data_tmp'))
  await rename(join(dir, '..data_tmp'), join(dir, '..data'))
  await reloads.until(hasDevice(store, 'dev3'))
  t.equal(await store.findDevice('pk', 'dev1'), undefined)
  t.same(reloads.events, [undefined])
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

t.test('a watcher error is logged as a warning and lookups go on', async (t) => {
  const watcher = Object.assign(new EventEmitter(), { close () {} })
  const { createFileStore: createMocked } = await t.mockImport<typeof import('../../src/store/file-store.js')>('../../src/store/file-store.js', {
    'node:fs': { ...fs, watch: () => watcher }
  })
  const path = join(t.testdir({ 'devices.json': FIRST }), 'devices.json')
  const { log, calls } = fakeLogger()
  const store = await createMocked({ path, watch: true, log })
  t.teardown(() => store.close())
  watcher.emit('error', new Error('EMFILE: too many open files, watch'))
  t.same(calls, [{ level: 'warn', obj: { path, problem: 'EMFILE: too many open files, watch' }, msg: 'device store watch stopped; SIGHUP still reloads' }])
  t.ok(await store.findDevice('pk', 'dev1'))
})
