// The embedded default store: a JSON or CSV file held in memory, reloaded atomically and cautiously when it changes.
import { DeviceFileError, formatOf, parseDeviceFile } from './device-file.js'
import type { StoreFileRead } from './file-read.js'
import { describeSharedDeviceKeys, findSharedDeviceKeys } from './shared-device-keys.js'
import { SLICE, watchedFile, yieldToEventLoop, type ReloadOutcome, type WatchedFileLogger } from './watched-file.js'
import { deviceId, type Device, type DeviceKeys, type DeviceStore, type StoreHealth } from './store.js'

export type { ReloadOutcome } from './watched-file.js'
export type StoreLogger = WatchedFileLogger

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
  /** A rule every version must pass, at startup and on each reload: a problem it returns refuses that version. */
  accept?: (devices: ReadonlyMap<string, Device>) => string | undefined
  /** Called after every reload attempt with its outcome (tests wait on it). */
  onReload?: (outcome: ReloadOutcome, err?: Error) => void
  /**
   * The rule that needs each deviceKey in one product only (`MTLS_IDENTITY=deviceKey`): a version
   * with a deviceKey in two products is refused, at startup and on every reload, naming this rule.
   */
  oneProductPerDeviceKey?: string
}

export interface FileStore extends DeviceStore {
  /** Reloads now, past the settle time and the shrink guard (SIGHUP). Calls made while one runs merge into one more. */
  reload (): Promise<ReloadOutcome>
  /** Looks at the file's version and schedules a reload by itself once a change has settled. */
  check (): Promise<void>
}

type Index = Map<string, Device>

/**
 * Loads the file and returns a store serving it from memory.
 * @throws DeviceFileError when the file cannot be read or holds a bad entry: startup must stop.
 */
export async function createFileStore (options: FileStoreOptions): Promise<FileStore> {
  const { path, maxShrinkPercent = 0, accept, oneProductPerDeviceKey: rule } = options
  const file = await watchedFile<Index>({
    ...options,
    label: 'device store',
    parse: async (read) => {
      const index = await parse(path, read, accept)
      if (rule !== undefined) {
        const shared = await findSharedDeviceKeys(index.values())
        if (shared.length > 0) throw new DeviceFileError([`${path}: ${describeSharedDeviceKeys(shared, shared.length, rule)}`])
      }
      return index
    },
    // The shrink guard: a file caught mid-write at a line end is valid, only shorter.
    async hold (current, next) {
      const removed = await countRemoved(current, next)
      if (removed * 100 <= maxShrinkPercent * current.size) return undefined
      return {
        message: `the new version would remove ${removed} of ${current.size} devices (STORE_MAX_SHRINK_PERCENT=${maxShrinkPercent}); ` +
          'it may be a file caught mid-write: send SIGHUP to apply it',
        fields: { devices: next.size, removed, previous: current.size }
      }
    },
    describe: async (next, previous) => ({ devices: next.size, removed: await countRemoved(previous, next) })
  })

  return {
    kind: 'file',
    async findDevice (productKey: string, deviceKey: string): Promise<Device | undefined> {
      return file.current().get(deviceId(productKey, deviceKey))
    },
    async findDevices (keys: readonly DeviceKeys[]): Promise<Array<Device | undefined>> {
      const index = file.current()
      return keys.map(({ productKey, deviceKey }) => index.get(deviceId(productKey, deviceKey)))
    },
    async checkHealth (): Promise<StoreHealth> {
      const index = file.current()
      const lastReloadError = file.lastReloadError()
      const held = file.held()
      return {
        ok: true,
        kind: 'file',
        detail: `${index.size} devices from STORE_FILE`,
        devices: index.size,
        loadedAt: file.loadedAt().toISOString(),
        ...(lastReloadError && { lastReloadError }),
        ...(held && { heldReload: { message: held.message, devices: held.fields.devices as number, removed: held.fields.removed as number, at: held.at } })
      }
    },
    reload: file.reload,
    check: file.check,
    close: file.close
  }
}

const NO_BYTES = Buffer.alloc(0)

/**
 * Parses a version of the file; every problem names the path. Once the parse has started (and
 * decoded the bytes to text), `read` lets go of the bytes: a large file is not held twice, as
 * bytes and as text, through the whole parse.
 */
async function parse (path: string, read: StoreFileRead, accept: FileStoreOptions['accept']): Promise<Index> {
  const parsing = parseDeviceFile(read.bytes, formatOf(path))
  read.bytes = NO_BYTES
  try {
    const index = await parsing
    const problem = accept?.(index)
    if (problem !== undefined) throw new DeviceFileError([problem])
    return index
  } catch (err) {
    // Anything but a DeviceFileError (V8's Map size limit at ~16.7M devices, a bug) keeps its own message.
    const problems = err instanceof DeviceFileError ? err.problems : [String((err as Error).message)]
    throw new DeviceFileError(problems.map((problem) => `${path}: ${problem}`))
  }
}

/** How many devices of `before` are missing from `after`; yields now and then (1M lookups take ~0.4 s). */
async function countRemoved (before: ReadonlyMap<string, Device>, after: ReadonlyMap<string, Device>): Promise<number> {
  let removed = 0
  let seen = 0
  for (const id of before.keys()) {
    if (!after.has(id)) removed++
    if (++seen % SLICE === 0) await yieldToEventLoop()
  }
  return removed
}
