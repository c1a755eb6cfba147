// Splits a byte stream into NDJSON lines with bounded memory: a line too long is reported, not buffered, and an idle stream ends.

/** One line of the input: its 1-based number and its text, or `tooLong` (its bytes were not kept). */
export type Line = { number: number, text: string } | { number: number, tooLong: true }

/** Thrown when no bytes arrived for the idle time. */
export class IdleStreamError extends Error {
  override name = 'IdleStreamError'
}

/**
 * Yields the chunks of `stream`, but throws IdleStreamError when the next one takes longer than
 * `idleMs`, and `stop.reason` once `stop` is aborted: at once while waiting for input, else
 * before the next chunk is read. The timer runs only while waiting for input: while the consumer
 * is busy (or its own output is held up by a slow reader) nothing is read and nothing is timed.
 */
export async function * withIdleLimit (stream: AsyncIterable<Buffer>, idleMs: number, stop?: AbortSignal): AsyncGenerator<Buffer> {
  // No `finally` that ends the input: on an idle stream the answer must still go out, and
  // ending the request would end the socket under it. The connection closes with the answer.
  const iterator = stream[Symbol.asyncIterator]()
  for (;;) {
    stop?.throwIfAborted()
    let timer: NodeJS.Timeout | undefined
    let onStop: (() => void) | undefined
    const idle = new Promise<'idle' | 'stop'>((resolve) => {
      timer = setTimeout(resolve, idleMs, 'idle')
      onStop = () => resolve('stop')
      stop?.addEventListener('abort', onStop, { once: true })
    })
    const next = iterator.next()
    // If the idle timer wins, this read may still fail later (the connection closes): nobody waits on it then.
    next.catch(() => {})
    const result = await Promise.race([next, idle])
    clearTimeout(timer)
    stop?.removeEventListener('abort', onStop as () => void)
    if (result === 'idle') throw new IdleStreamError(`no input for ${idleMs} ms`)
    if (result === 'stop') throw (stop as AbortSignal).reason
    if (result.done === true) return
    yield result.value
  }
}

const NEWLINE = 0x0a
const CR = 0x0d

/**
 * Cuts chunks into lines at LF (a CR before it is dropped), yielding the lines of each chunk
 * together, at most `maxLines` at a time (a chunk of many short lines is yielded in groups, the
 * next cut only once the consumer asks for it, so the work and memory per step stay bounded). Blank lines are not yielded but keep their number. A line longer than `maxBytes` is
 * yielded as `tooLong` and its bytes are dropped as they arrive, so memory stays bounded by
 * `maxBytes` whatever the input. A last line without a newline is a line too.
 */
export async function * splitLines (chunks: AsyncIterable<Buffer>, maxBytes: number, maxLines = Infinity): AsyncGenerator<Line[]> {
  let number = 0
  let pending: Buffer[] = []
  let pendingBytes = 0
  let tooLong = false

  function finish (tail: Buffer, out: Line[]): void {
    number++
    const length = pendingBytes + tail.length
    if (tooLong || length > maxBytes) {
      out.push({ number, tooLong: true })
    } else {
      let bytes = pending.length === 0 ? tail : Buffer.concat([...pending, tail], length)
      if (bytes.length > 0 && bytes[bytes.length - 1] === CR) bytes = bytes.subarray(0, bytes.length - 1)
      const text = bytes.toString('utf8')
      if (text.trim() !== '') out.push({ number, text })
    }
    pending = []
    pendingBytes = 0
    tooLong = false
  }

  for await (const chunk of chunks) {
    let out: Line[] = []
    let start = 0
    for (let end = chunk.indexOf(NEWLINE); end !== -1; end = chunk.indexOf(NEWLINE, start)) {
      finish(chunk.subarray(start, end), out)
      start = end + 1
      if (out.length >= maxLines) {
        yield out
        out = []
      }
    }
    const rest = chunk.subarray(start)
    if (!tooLong && pendingBytes + rest.length > maxBytes) {
      tooLong = true
      pending = []
      pendingBytes = 0
    }
    if (tooLong) pendingBytes += rest.length
    else if (rest.length > 0) {
      pending.push(rest)
      pendingBytes += rest.length
    }
    if (out.length > 0) yield out
  }
  if (pendingBytes > 0 || tooLong) {
    const out: Line[] = []
    finish(Buffer.alloc(0), out)
    if (out.length > 0) yield out
  }
}
