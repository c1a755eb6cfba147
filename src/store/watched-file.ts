// A file held in memory and reloaded when it changes: settled, atomic, merged SIGHUPs, a bad version keeping the old one.
import { setImmediate as yieldToEventLoop, setTimeout as sleep } from 'node:timers/promises'
import type { BaseLogger } from 'pino'
import { readStoreFile, versionOf, type StoreFileRead, type Version } from './file-read.js'
import { watchFile, type FileWatch } from './file-watch.js'

export type WatchedFileLogger = Pick<BaseLogger, 'info' | 'warn' | 'error'>

/**
 * What one reload attempt did: `reloaded` (new data served), `unchanged` (the same version is
 * served already: not parsed again), `held` (refused by the `hold` rule; applied only by
 * reload()), `failed` (the file is bad; the old data stays), `changing` (the file changed while
 * it was read; it is tried again once it settles).
 */
export type ReloadOutcome = 'reloaded' | 'unchanged' | 'held' | 'failed' | 'changing'

export interface WatchedFileOptions<T> {
  path: string
  /** What the file is, for log messages: `device store`, `token file`. */
  label: string
  /** Reload by itself when the file changes (it is always reloaded on reload(), i.e. SIGHUP). */
  watch: boolean
  log: WatchedFileLogger
  /** Turns a read of the file into its data; throws (naming the path, never the content) when it is bad. */
  parse: (read: StoreFileRead) => Promise<T>
  /**
   * Asked before a version read by itself replaces the current one: a reason to hold it (the
   * old data stays until reload()), or undefined to apply it.
   */
  hold?: (current: T, next: T) => Promise<{ message: string, fields: Record<string, unknown> } | undefined>
  /** Log fields of a version just applied, e.g. its device count. */
  describe?: (current: T, previous: T) => Promise<Record<string, unknown>>
  /** A changed file is reloaded by itself only once its version has stayed the same this long: writers write in pieces. */
  settleMs?: number
  /** How often the file's version is checked besides watching it (the fallback where a watch cannot be kept). */
  pollMs?: number
  /** Called after every reload attempt with its outcome (tests wait on it). */
  onReload?: (outcome: ReloadOutcome, err?: Error) => void
}

export interface WatchedFile<T> {
  /** The data now served. */
  current (): T
  loadedAt (): Date
  /** The last reload that failed after the data now served was loaded. */
  lastReloadError (): { message: string, at: string } | undefined
  /** The version held by the `hold` rule, with the rule's message. */
  held (): { message: string, at: string, fields: Record<string, unknown> } | undefined
  /** Reloads now, past the settle time and the hold rule (SIGHUP). Calls made while one runs merge into one more. */
  reload (): Promise<ReloadOutcome>
  /** Looks at the file's version and schedules a reload by itself once a change has settled. */
  check (): Promise<void>
  close (): Promise<void>
}

/** How often a reload asked for (SIGHUP) reads again a file that keeps changing under it before giving up. */
const READ_ATTEMPTS = 5

/**
 * Loads the file and keeps it loaded.
 * @throws whatever `parse` throws for the first version: startup must stop.
 */
export async function watchedFile<T> (options: WatchedFileOptions<T>): Promise<WatchedFile<T>> {
  const { path, label, log, parse, hold, describe, settleMs = 1000, pollMs = 2000, onReload } = options
  const first = await readSettled()
  let data: T = await parse(first)
  let loaded: { version: Version, at: Date } = { version: first.version, at: new Date() }
  let lastReloadError: { message: string, at: string } | undefined
  let held: { message: string, at: string, fields: Record<string, unknown> } | undefined
  /** The last version that failed or was held: not tried again by itself until the file changes once more. */
  let refused: Version | undefined
  let candidate: { version: Version, since: number } | undefined
  let settleTimer: NodeJS.Timeout | undefined
  let running: Promise<ReloadOutcome> | undefined
  let queued: { force: boolean, promise: Promise<ReloadOutcome> } | undefined
  let closed = false
  let lastError: Error | undefined

  /** Reads until two stats around the read agree, so a file that changed mid-read is never parsed. */
  async function readSettled (): Promise<StoreFileRead> {
    let read = await readStoreFile(path)
    for (let attempt = 1; !read.stable && attempt < READ_ATTEMPTS; attempt++) {
      await sleep(settleMs)
      read = await readStoreFile(path)
    }
    return read
  }

  function fail (err: Error, trigger: string): ReloadOutcome {
    lastError = err
    lastReloadError = { message: err.message, at: new Date().toISOString() }
    log.error({ path, trigger, problem: err.message }, `${label} reload failed; still serving the previous version`)
    return 'failed'
  }

  /** One reload attempt. `force` (SIGHUP) skips the hold rule and waits out a file that is being written. */
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
    let next: T
    try {
      next = await parse(read)
    } catch (err) {
      refused = read.version
      return fail(err as Error, trigger)
    }
    const holding = force || hold === undefined ? undefined : await hold(data, next)
    if (holding !== undefined) {
      refused = read.version
      held = { message: holding.message, at: new Date().toISOString(), fields: holding.fields }
      log.warn({ path, ...holding.fields }, `${label} change held: ${holding.message}`)
      return 'held'
    }
    const fields = await describe?.(next, data)
    // The whole new version was parsed above: swapping the reference is atomic for readers.
    data = next
    loaded = { version: read.version, at: new Date() }
    lastReloadError = undefined
    held = undefined
    refused = undefined
    log.info({ path, trigger, ...fields }, `${label} reloaded`)
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
    log.info({ path, watching: watcher.watching(), pollMs, settleMs }, `watching the ${label} for changes`)
  }

  return {
    current: () => data,
    loadedAt: () => loaded.at,
    lastReloadError: () => lastReloadError,
    held: () => held,
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

/** Work between two yields to the event loop while going through a large collection: about 10 ms. */
export const SLICE = 25_000

export { yieldToEventLoop }
