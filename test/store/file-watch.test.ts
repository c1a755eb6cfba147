// Watching a store file's path: which directories are watched, and how a lost or impossible watch falls back to the poll.
import { EventEmitter } from 'node:events'
import * as fs from 'node:fs'
import { symlink } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { directoriesOf, type FileWatchOptions } from '../../src/store/file-watch.js'

interface LogCall { level: string, obj: unknown, msg: string }

function recorder (): { log: FileWatchOptions['log'], calls: LogCall[] } {
  const calls: LogCall[] = []
  const at = (level: string) => (obj: unknown, msg: string): void => { calls.push({ level, obj, msg }) }
  return { log: { info: at('info'), warn: at('warn') } as FileWatchOptions['log'], calls }
}

t.test('directoriesOf follows a chain of symlinks across directories to the file', async (t) => {
  const root = t.testdir({ a: {}, b: {}, c: { 'real.json': '{}' } })
  await symlink(join(root, 'b', 'hop.json'), join(root, 'a', 'devices.json'))
  await symlink(join('..', 'c', 'real.json'), join(root, 'b', 'hop.json'))
  t.same(await directoriesOf(join(root, 'a', 'devices.json')), [join(root, 'a'), join(root, 'b'), join(root, 'c')])
})

t.test('directoriesOf of a missing path is its own directory', async (t) => {
  const root = t.testdir({})
  t.same(await directoriesOf(join(root, 'gone', 'devices.json')), [join(root, 'gone')])
})

/** watchFile with node:fs's watch replaced by `watch`. */
async function mockedWatch (t: Test, watch: (...args: unknown[]) => unknown): Promise<typeof import('../../src/store/file-watch.js')> {
  return t.mockImport<typeof import('../../src/store/file-watch.js')>('../../src/store/file-watch.js', { 'node:fs': { ...fs, watch } })
}

t.test('a watch that fails to start is logged once, with the poll that takes over, and retried', async (t) => {
  let attempts = 0
  const { watchFile } = await mockedWatch(t, () => {
    attempts++
    throw Object.assign(new Error('inotify limit'), { code: 'ENOSPC' })
  })
  const dir = t.testdir({ 'devices.json': '{}' })
  const { log, calls } = recorder()
  const watch = watchFile({ path: join(dir, 'devices.json'), pollMs: 60_000, log, onCheck () {} })
  t.teardown(() => watch.close())
  await watch.refresh()
  await watch.refresh()
  t.equal(attempts, 2, 'tried again on every refresh')
  t.same(calls, [{ level: 'warn', obj: { path: join(dir, 'devices.json'), dir, problem: 'ENOSPC', pollMs: 60_000 }, msg: `cannot watch ${dir}; checking the device store file every 60000 ms instead` }])
  t.same(watch.watching(), [])
})

t.test('a watcher error drops that watch, says so, and the next refresh watches again', async (t) => {
  const watchers: Array<EventEmitter & { close: () => void }> = []
  const { watchFile } = await mockedWatch(t, () => {
    const watcher = Object.assign(new EventEmitter(), { close () {} })
    watchers.push(watcher)
    return watcher
  })
  const dir = t.testdir({ 'devices.json': '{}' })
  const { log, calls } = recorder()
  const watch = watchFile({ path: join(dir, 'devices.json'), pollMs: 60_000, log, onCheck () {} })
  t.teardown(() => watch.close())
  await watch.refresh()
  t.same(watch.watching(), [dir])
  watchers[0]?.emit('error', Object.assign(new Error('EMFILE: too many open files, watch'), { code: 'EMFILE' }))
  t.same(watch.watching(), [], 'the broken watch is dropped')
  watchers[0]?.emit('error', new Error('no code'))
  t.equal(calls.filter((call) => call.level === 'warn').length, 1, 'one warning while it stays broken')
  await watch.refresh()
  t.same(watch.watching(), [dir])
  t.match(calls.at(-1), { level: 'info', msg: `watching ${dir} again` })
})

t.test('a directory that leaves the symlink chain is no longer watched', async (t) => {
  const root = t.testdir({ a: { 'one.json': '{}' }, b: { 'two.json': '{}' } })
  const path = join(root, 'devices.json')
  await symlink(join(root, 'a', 'one.json'), path)
  const { watchFile } = await import('../../src/store/file-watch.js')
  const watch = watchFile({ path, pollMs: 60_000, log: recorder().log, onCheck () {} })
  t.teardown(() => watch.close())
  await watch.refresh()
  t.same(watch.watching().sort(), [root, join(root, 'a')])
  await fs.promises.rm(path)
  await symlink(join(root, 'b', 'two.json'), path)
  await watch.refresh()
  t.same(watch.watching().sort(), [root, join(root, 'b')])
  await fs.promises.rm(path)
  await symlink(join(root, 'missing', 'three.json'), path)
  await watch.refresh()
  t.same(watch.watching(), [root], 'a directory that does not exist cannot be watched')
  await fs.promises.rm(path)
  await symlink(join(root, 'a', 'one.json'), path)
  await watch.refresh()
  t.same(watch.watching().sort(), [root, join(root, 'a')], 'the missing one is forgotten once the chain leaves it')
})
