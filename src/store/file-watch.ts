// Notices changes to whatever a path resolves to: fs.watch on every directory of its symlink chain, plus a periodic check.
import { watch, type FSWatcher } from 'node:fs'
import { readlink, realpath, stat } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import type { BaseLogger } from 'pino'

export type WatchLogger = Pick<BaseLogger, 'info' | 'warn'>

export interface FileWatchOptions {
  path: string
  /** How often `onCheck` runs whatever the watches report: the fallback when a directory cannot be watched. */
  pollMs: number
  log: WatchLogger
  /** Called on every directory event and every poll; it decides whether anything changed (by the file's version). */
  onCheck: () => void
}

export interface FileWatch {
  /** Re-resolves the symlink chain and watches its directories again where they changed, vanished or came back. */
  refresh (): Promise<void>
  /** The directories watched now. */
  watching (): string[]
  close (): void
}

/** Linux's own limit on symlinks followed while resolving one path. */
const MAX_LINK_HOPS = 40

/**
 * The directories whose entries decide what `path` resolves to: the directory of the path and
 * of each symlink target along the chain, and of the final file. An edit in place of a link
 * target in another directory, a Kubernetes `..data` swap and an `mv` over the file each show
 * up as an event in one of them.
 */
export async function directoriesOf (path: string): Promise<string[]> {
  const dirs = new Set<string>()
  let current = resolve(path)
  for (let hop = 0; hop < MAX_LINK_HOPS; hop++) {
    dirs.add(dirname(current))
    let target: string
    try {
      target = await readlink(current)
    } catch {
      break // not a link (EINVAL), or not there: the chain ends here
    }
    current = resolve(dirname(current), target)
  }
  try {
    dirs.add(dirname(await realpath(path)))
  } catch {}
  return [...dirs]
}

/** A watched directory and its identity (inode and birth time: an inode number alone can be reused). */
interface Watched { watcher: FSWatcher, id: string }

/**
 * Watches the directories of `path` and polls every `pollMs`. A directory that is removed,
 * renamed or replaced loses its watch silently on Linux; every check re-resolves the chain and
 * compares each directory's inode, so a watch is set up again as soon as the directory is back.
 * Until then the poll notices changes, and the log says which of the two is in force.
 */
export function watchFile (options: FileWatchOptions): FileWatch {
  const { path, pollMs, log, onCheck } = options
  const watched = new Map<string, Watched>()
  const failing = new Set<string>()
  let closed = false
  const poll = setInterval(onCheck, pollMs)

  function unwatch (dir: string): void {
    watched.get(dir)?.watcher.close()
    watched.delete(dir)
  }

  function fail (dir: string, problem: string): void {
    unwatch(dir)
    if (failing.has(dir)) return
    failing.add(dir)
    log.warn({ path, dir, problem, pollMs }, `cannot watch ${dir}; checking the device store file every ${pollMs} ms instead`)
  }

  async function watchDir (dir: string): Promise<void> {
    let id: string
    try {
      const { ino, birthtimeNs } = await stat(dir, { bigint: true })
      id = `${ino}:${birthtimeNs}`
    } catch (err) {
      fail(dir, String((err as NodeJS.ErrnoException).code))
      return
    }
    if (closed || watched.get(dir)?.id === id) return
    unwatch(dir)
    try {
      const watcher = watch(dir, onCheck)
      watcher.on('error', (err: NodeJS.ErrnoException) => fail(dir, err.code ?? err.message))
      watched.set(dir, { watcher, id })
    } catch (err) {
      fail(dir, String((err as NodeJS.ErrnoException).code))
      return
    }
    if (failing.delete(dir)) log.info({ path, dir }, `watching ${dir} again`)
  }

  async function refresh (): Promise<void> {
    const dirs = await directoriesOf(path)
    for (const dir of [...watched.keys()]) if (!dirs.includes(dir)) unwatch(dir)
    for (const dir of [...failing]) if (!dirs.includes(dir)) failing.delete(dir)
    await Promise.all(dirs.map(watchDir))
  }

  return {
    refresh,
    watching: () => [...watched.keys()],
    close () {
      closed = true
      clearInterval(poll)
      for (const dir of [...watched.keys()]) unwatch(dir)
    }
  }
}
