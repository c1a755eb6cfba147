// The embedded default store: a JSON or CSV file held in memory, reloaded atomically and cautiously when it changes.
import { setImmediate as yieldToEventLoop, setTimeout as sleep } from 'node:timers/promises'
import type { BaseLogger } from 'pino'
import { DeviceFileError, formatOf, parseDeviceFile } from './device-file.js'
import { readStoreFile, versionOf, type StoreFileRead, type Version } from './file-read.js'
import { watchFile, type FileWatch } from './file-watch.js'
import { deviceId, type Device, type DeviceKeys, type DeviceStore, type StoreHealth } from './store.js'

export type StoreLogger = Pick<BaseLogger, 'info' | 'warn' | 'error'>

export interface FileStoreOptions {
  path: string
  /** Reload by itself when the file changes (it is always reloaded on reload(), i.e. SIGHUP). */
  watch: boolean
  log: StoreLogger
  /** A changed file is reloaded by itself only once its version has stayed the same this long: writers write in pieces. */
  settleMs?: number
  /** How often the file's version is checked besides watching it (the fallback where a watch cannot be kept). */
  pollMs?: number
  /** A reload by itself that would remove more than this share of the devices is held until reload() (SIGHUP). */
  maxShrinkPercent?: number
  /** Called after every reload attempt with its outcome (tests wait on it). */
  onReload?: (outcome: ReloadOutcome, err?: Error) => void
}

/**
 * What one reload attempt did: `reloaded` (new data served), `unchanged` (the same version is
 * served already: not parsed again), `held` (it would remove too many devices; applied only by
 * reload()), `failed` (the file is bad; the old data stays), `changing` (the file changed while
 * it was read; it is tried again once it settles).
 */
export type ReloadOutcome = 'reloaded' | 'unchanged' | 'held' | 'failed' | 'changing'

export interface FileStore extends DeviceStore {
  /** Reloads now, past the settle time and the shrink guard (SIGHUP). Calls made while one runs merge into one more. */
  reload (): Promise<ReloadOutcome>
  /** Looks at the file's version and schedules a reload by itself once a change has settled. */
  check (): Promise<void>
}

/** How often a reload asked for (SIGHUP) reads again a file that keeps changing under it before giving up. */
const READ_ATTEMPTS = 5

/**
 * Loads the file and returns a store serving it from memory.
 * @throws DeviceFileError when the file cannot be read or holds a bad entry: startup must stop.
 */
export async function createFileStore (options: FileStoreOptions): Promise<FileStore> {
  const { path, log, settleMs = 1000, pollMs = 2000, maxShrinkPercent = 0, onReload } = options
  const first = await readSettled()
  let index = await parse(path, first)
  let loaded: { version: Version, at: Date } = { version: first.version, at: new Date() }
  let lastReloadError: StoreHealth['lastReloadError']
  let held: StoreHealth['heldReload']
  /** The last version that failed or was held: not tried again by itself until the file changes once more. */
  let refused: Version | undefined
  let candidate: { version: Version, since: number } | undefined
  let settleTimer: NodeJS.Timeout | undefined
  let running: Promise<ReloadOutcome> | undefined
  let queued: { force: boolean, promise: Promise<ReloadOutcome> } | undefined
  let closed = false

  /** Reads until two stats around the read agree, so a file that changed mid-read is never parsed. */
  async function readSettled (): Promise<StoreFileRead> {
    let read = await readStoreFile(path)
    for (let attempt = 1; !read.stable && attempt < READ_ATTEMPTS; attempt++) {
      await sleep(settleMs)
      read = await readStoreFile(path)
    }
    return read
  }

  let lastError: Error | undefined

  function fail (err: Error, trigger: string): ReloadOutcome {
    lastError = err
    lastReloadError = { message: err.message, at: new Date().toISOString() }
    log.error({ path, trigger, problem: err.message }, 'device store reload failed; still serving the previous version')
    return 'failed'
  }

  /** One reload attempt. `force` (SIGHUP) skips the shrink guard and waits out a file that is being written. */
  async function attempt (force: boolean): Promise<ReloadOutcome> {
    const trigger = force ? 'SIGHUP' : 'change'
    // Already served, or (by itself) already refused: a request merged late finds nothing new to do.
    const current = await versionOf(path)
    if (current === loaded.version || (!force && current === refused)) return 'unchanged'
    let read: StoreFileRead
    try {
      read = force ? { ...await readSettled(), stable: true } : await readStoreFile(path)
    } catch (err) {
      refused = await versionOf(path)
      return fail(err as Error, trigger)
    }
    if (!read.stable) {
      candidate = undefined
      schedule()
      return 'changing'
    }
    let next: Map<string, Device>
    try {
      next = await parse(path, read)
    } catch (err) {
      refused = read.version
      return fail(err as Error, trigger)
    }
    const removed = await countRemoved(index, next)
    if (!force && removed * 100 > maxShrinkPercent * index.size) {
      refused = read.version
      const message = `the new version would remove ${removed} of ${index.size} devices (STORE_MAX_SHRINK_PERCENT=${maxShrinkPercent}); ` +
        'it may be a file caught mid-write: send SIGHUP to apply it'
      held = { message, devices: next.size, removed, at: new Date().toISOString() }
      log.warn({ path, devices: next.size, removed, previous: index.size }, `device store change held: ${message}`)
      return 'held'
    }
    // The whole new version was parsed above: swapping the reference is atomic for readers.
    index = next
    loaded = { version: read.version, at: new Date() }
    lastReloadError = undefined
    held = undefined
    refused = undefined
    log.info({ path, trigger, devices: index.size, removed }, 'device store reloaded')
    return 'reloaded'
  }

  function start (force: boolean): Promise<ReloadOutcome> {
    const run = attempt(force).then((outcome) => {
      onReload?.(outcome, outcome === 'failed' ? lastError : undefined)
      return outcome
    })
    running = run.finally(() => { running = undefined })
    return running
  }

  /**
   * Serialises reloads: at most one runs and at most one more waits. Requests made meanwhile
   * join the waiting one (a storm of SIGHUPs costs at most two parses); a forced request makes
   * the waiting one forced.
   */
  function request (force: boolean): Promise<ReloadOutcome> {
    if (queued !== undefined) {
      queued.force ||= force
      return queued.promise
    }
    if (running === undefined) return start(force)
    const entry = { force, promise: Promise.resolve<ReloadOutcome>('unchanged') }
    entry.promise = running.then(() => {
      queued = undefined
      return start(entry.force)
    })
    queued = entry
    return entry.promise
  }

  function schedule (delay = settleMs): void {
    if (closed) return
    clearTimeout(settleTimer)
    settleTimer = setTimeout(() => { check().catch(() => {}) }, delay)
  }

  /** A change is reloaded only once the file has kept one version for settleMs. */
  async function check (): Promise<void> {
    await watcher?.refresh()
    const version = await versionOf(path)
    if (version === loaded.version || version === refused) {
      candidate = undefined
      return
    }
    const now = Date.now()
    if (candidate?.version !== version) {
      candidate = { version, since: now }
      schedule()
    } else if (now - candidate.since >= settleMs) {
      candidate = undefined
      await request(false)
    } else {
      schedule(candidate.since + settleMs - now)
    }
  }

  const watcher: FileWatch | undefined = options.watch
    ? watchFile({ path, pollMs, log, onCheck: () => { check().catch(() => {}) } })
    : undefined
  if (watcher !== undefined) {
    await watcher.refresh()
    log.info({ path, watching: watcher.watching(), pollMs, settleMs }, 'watching the device store for changes')
  }

  return {
    kind: 'file',
    async findDevice (productKey: string, deviceKey: string): Promise<Device | undefined> {
      return index.get(deviceId(productKey, deviceKey))
    },
    async findDevices (keys: readonly DeviceKeys[]): Promise<Array<Device | undefined>> {
      return keys.map(({ productKey, deviceKey }) => index.get(deviceId(productKey, deviceKey)))
    },
    async checkHealth (): Promise<StoreHealth> {
      return {
        ok: true,
        kind: 'file',
        detail: `${index.size} devices from ${path}`,
        devices: index.size,
        loadedAt: loaded.at.toISOString(),
        ...(lastReloadError && { lastReloadError }),
        ...(held && { heldReload: held })
      }
    },
    reload: () => request(true),
    check,
    async close (): Promise<void> {
      closed = true
      clearTimeout(settleTimer)
      watcher?.close()
      await queued?.promise
      await running
    }
  }
}

const NO_BYTES = Buffer.alloc(0)

/**
 * Parses a version of the file; every problem names the path. Once the parse has started (and
 * decoded the bytes to text), `read` lets go of the bytes: a large file is not held twice, as
 * bytes and as text, through the whole parse.
 */
async function parse (path: string, read: StoreFileRead): Promise<Map<string, Device>> {
  const parsing = parseDeviceFile(read.bytes, formatOf(path))
  read.bytes = NO_BYTES
  try {
    return await parsing
  } catch (err) {
    // Anything but a DeviceFileError (V8's Map size limit at ~16.7M devices, a bug) keeps its own message.
    const problems = err instanceof DeviceFileError ? err.problems : [String((err as Error).message)]
    throw new DeviceFileError(problems.map((problem) => `${path}: ${problem}`))
  }
}

/** Lookups between two yields to the event loop while counting: about 10 ms of work. */
const COUNT_SLICE = 25_000

/** How many devices of `before` are missing from `after`; yields now and then (1M lookups take ~0.4 s). */
async function countRemoved (before: ReadonlyMap<string, Device>, after: ReadonlyMap<string, Device>): Promise<number> {
  let removed = 0
  let seen = 0
  for (const id of before.keys()) {
    if (!after.has(id)) removed++
    if (++seen % COUNT_SLICE === 0) await yieldToEventLoop()
  }
  return removed
}
