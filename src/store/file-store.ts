// The embedded default store: a JSON or CSV file held in memory, reloaded atomically when it changes.
import { watch, type FSWatcher } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { BaseLogger } from 'pino'
import { DeviceFileError, formatOf, parseDeviceFile } from './device-file.js'
import { deviceId, type Device, type DeviceStore, type StoreHealth } from './store.js'

export type StoreLogger = Pick<BaseLogger, 'info' | 'warn' | 'error'>

export interface FileStoreOptions {
  path: string
  /** Reload when the file changes on disk. */
  watch: boolean
  log: StoreLogger
  /** Quiet time after the last change event before reloading (editors write in bursts). */
  debounceMs?: number
  /** Called after every reload attempt, with the error when it failed (tests wait on it). */
  onReload?: (err?: Error) => void
}

export interface FileStore extends DeviceStore {
  reload (): Promise<void>
  /** Reloads only if the file (after following symlinks) is not the one loaded last: another inode, size or time. */
  reloadIfChanged (): Promise<boolean>
}

/** What identifies a version of the file; `fs.stat` follows symlinks, so a swapped link target counts as a change. */
type Version = string | undefined

async function versionOf (path: string): Promise<Version> {
  try {
    const { ino, size, mtimeNs, ctimeNs } = await stat(path, { bigint: true })
    return `${ino}:${size}:${mtimeNs}:${ctimeNs}`
  } catch {
    return undefined
  }
}

/**
 * Loads the file and returns a store serving it from memory.
 * @throws DeviceFileError when the file cannot be read or holds a bad entry: startup must stop.
 */
export async function createFileStore (options: FileStoreOptions): Promise<FileStore> {
  const { path, log, debounceMs = 100, onReload } = options
  let version = await versionOf(path)
  let index = await loadIndex(path)
  let loadedAt = new Date()
  let lastReloadError: StoreHealth['lastReloadError']
  let reloading: Promise<void> = Promise.resolve()
  let timer: NodeJS.Timeout | undefined
  let watcher: FSWatcher | undefined

  async function reloadNow (): Promise<void> {
    // Taken before reading: a change made while the file is read is seen by the next check.
    version = await versionOf(path)
    try {
      // Parse the whole new version first and swap only on success: readers never see a half-loaded file.
      index = await loadIndex(path)
      loadedAt = new Date()
      lastReloadError = undefined
      log.info({ path, devices: index.size }, 'device store reloaded')
    } catch (err) {
      const error = err as Error
      lastReloadError = { message: error.message, at: new Date().toISOString() }
      log.error({ path, problem: error.message }, 'device store reload failed; still serving the previous version')
      onReload?.(error)
      return
    }
    onReload?.()
  }

  function reload (): Promise<void> {
    reloading = reloading.then(reloadNow)
    return reloading
  }

  async function reloadIfChanged (): Promise<boolean> {
    if (await versionOf(path) === version) return false
    await reload()
    return true
  }

  if (options.watch) {
    // Watch the directory, not the file: editors and `mv` replace the file, which ends a file watch.
    // Any event there is checked, whatever its name: Kubernetes swaps a `..data` symlink under a
    // mounted ConfigMap or Secret, and no event names the file itself.
    watcher = watch(dirname(path), () => {
      clearTimeout(timer)
      timer = setTimeout(reloadIfChanged, debounceMs)
    })
    watcher.on('error', (err) => log.warn({ path, problem: err.message }, 'device store watch stopped; SIGHUP still reloads'))
  }

  return {
    kind: 'file',
    async findDevice (productKey: string, deviceKey: string): Promise<Device | undefined> {
      return index.get(deviceId(productKey, deviceKey))
    },
    async checkHealth (): Promise<StoreHealth> {
      return {
        ok: true,
        kind: 'file',
        detail: `${index.size} devices from ${path}`,
        devices: index.size,
        loadedAt: loadedAt.toISOString(),
        ...(lastReloadError && { lastReloadError })
      }
    },
    reload,
    reloadIfChanged,
    async close (): Promise<void> {
      clearTimeout(timer)
      watcher?.close()
      await reloading
    }
  }
}

async function loadIndex (path: string): Promise<Map<string, Device>> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new DeviceFileError([`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`])
  }
  try {
    return await parseDeviceFile(text, formatOf(path))
  } catch (err) {
    // Anything but a DeviceFileError (V8's Map size limit at ~16.7M devices, a bug) keeps its own message.
    const problems = err instanceof DeviceFileError ? err.problems : [String((err as Error).message)]
    throw new DeviceFileError(problems.map((problem) => `${path}: ${problem}`))
  }
}
