// Finds where a file stops being UTF-8, so the error can send its owner to the right line.

/** Where the first ill-formed byte sequence starts. */
export interface InvalidUtf8 {
  /** Byte offset in the whole input. */
  offset: number
  /** 1-based line (lines end at LF). */
  line: number
  /** 1-based column in characters (code points) of that line; a leading BOM is not counted. */
  column: number
}

/**
 * The lead bytes of multi-byte sequences, with the sequence length and the range the second byte
 * must be in (Unicode 15, Table 3-7). The narrower ranges refuse overlong forms, UTF-16 surrogates
 * (after 0xED) and code points above U+10FFFF (after 0xF4), as `buffer.isUtf8` does.
 */
const LEAD_BYTES = [
  [0xc2, 0xdf, 2, 0x80, 0xbf],
  [0xe0, 0xe0, 3, 0xa0, 0xbf],
  [0xe1, 0xec, 3, 0x80, 0xbf],
  [0xed, 0xed, 3, 0x80, 0x9f],
  [0xee, 0xef, 3, 0x80, 0xbf],
  [0xf0, 0xf0, 4, 0x90, 0xbf],
  [0xf1, 0xf3, 4, 0x80, 0xbf],
  [0xf4, 0xf4, 4, 0x80, 0x8f]
] as const

/**
 * Finds the first byte that does not start a well-formed UTF-8 sequence (a sequence cut short by
 * the end of the input counts as ill-formed). A plain loop, far slower than `buffer.isUtf8`: call
 * it only once that has said the bytes are not UTF-8.
 * @returns undefined when all of `bytes` is well-formed UTF-8.
 */
export function findInvalidUtf8 (bytes: Uint8Array): InvalidUtf8 | undefined {
  let offset = 0
  while (offset < bytes.length) {
    const length = sequenceLength(bytes, offset)
    if (length === 0) return { offset, ...lineAndColumn(bytes, offset) }
    offset += length
  }
  return undefined
}

/** Past the end reads as -1, which no rule accepts: a sequence cut short is ill-formed. */
function byteAt (bytes: Uint8Array, offset: number): number {
  return bytes[offset] ?? -1
}

/** Length of the well-formed sequence starting at `offset`, or 0 when there is none. */
function sequenceLength (bytes: Uint8Array, offset: number): number {
  const lead = byteAt(bytes, offset)
  if (lead < 0x80) return 1
  const rule = LEAD_BYTES.find(([first, last]) => lead >= first && lead <= last)
  if (rule === undefined) return 0
  const [, , length, low, high] = rule
  const second = byteAt(bytes, offset + 1)
  if (second < low || second > high) return 0
  for (let k = 2; k < length; k++) {
    if ((byteAt(bytes, offset + k) & 0xc0) !== 0x80) return 0
  }
  return length
}

/** The bytes before `offset` are well-formed, so each byte that is not a continuation byte starts a character. */
function lineAndColumn (bytes: Uint8Array, offset: number): { line: number, column: number } {
  let line = 1
  let lineStart = 0
  for (let lf = bytes.indexOf(0x0a); lf !== -1 && lf < offset; lf = bytes.indexOf(0x0a, lf + 1)) {
    line++
    lineStart = lf + 1
  }
  let column = 1
  for (const byte of bytes.subarray(lineStart, offset)) {
    if ((byte & 0xc0) !== 0x80) column++
  }
  const hasBom = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf
  if (lineStart === 0 && hasBom) column--
  return { line, column }
}
