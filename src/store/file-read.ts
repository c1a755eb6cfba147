// Reads a store file whole, refusing anything but a regular file, and tells whether it changed while being read.
import { constants, type BigIntStats } from 'node:fs'
import { open, stat, type FileHandle } from 'node:fs/promises'
import { DeviceFileError } from './device-file.js'

/** Identifies one version of a file: inode, size and times in ns, or why there is no file to read. */
export type Version = string

function versionOfStats ({ ino, size, mtimeNs, ctimeNs }: BigIntStats): Version {
  return `${ino}:${size}:${mtimeNs}:${ctimeNs}`
}

/** The version of what `path` resolves to now (symlinks followed); a missing file has a version too. */
export async function versionOf (path: string): Promise<Version> {
  try {
    return versionOfStats(await stat(path, { bigint: true }))
  } catch (err) {
    return `unreadable:${String((err as NodeJS.ErrnoException).code)}`
  }
}

function kindOf (stats: BigIntStats): string {
  if (stats.isDirectory()) return 'a directory'
  if (stats.isFIFO()) return 'a FIFO'
  if (stats.isSocket()) return 'a socket'
  // stat follows links, so a character or block device is all that is left.
  return 'a device'
}

function notAFile (path: string, stats: BigIntStats): DeviceFileError {
  return new DeviceFileError([`${path} is ${kindOf(stats)}, not a regular file: point STORE_FILE at a .json or .csv file`])
}

export interface StoreFileRead {
  bytes: Buffer
  version: Version
  /** False when the file changed while it was read: the bytes may mix two versions. */
  stable: boolean
}

/**
 * Reads the whole file. Anything but a regular file is refused before it is read: reading a FIFO
 * would wait forever for a writer. It is opened non-blocking, so a FIFO swapped in after the
 * check cannot block either.
 * @throws DeviceFileError naming the path and the reason (an errno code, never file content).
 */
export async function readStoreFile (path: string): Promise<StoreFileRead> {
  const found = await stat(path, { bigint: true }).catch((err: unknown) => { throw cannotRead(path, err) })
  if (!found.isFile()) throw notAFile(path, found)
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK).catch((err: unknown) => { throw cannotRead(path, err) })
  let read: StoreFileRead
  try {
    read = await readOpen(path, handle)
  } catch (err) {
    await handle.close()
    throw err instanceof DeviceFileError ? err : cannotRead(path, err)
  }
  await handle.close()
  return read
}

async function readOpen (path: string, handle: FileHandle): Promise<StoreFileRead> {
  const before = await handle.stat({ bigint: true })
  if (!before.isFile()) throw notAFile(path, before)
  const bytes = await handle.readFile()
  const after = await handle.stat({ bigint: true })
  const version = versionOfStats(before)
  return { bytes, version, stable: version === versionOfStats(after) && BigInt(bytes.length) === before.size }
}

/** A read that failed, named by its errno code only: the error's own text may quote the path's content. */
function cannotRead (path: string, err: unknown): DeviceFileError {
  return new DeviceFileError([`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`])
}
