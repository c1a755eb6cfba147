// Finds keys that appear twice in one object of a JSON text, which JSON.parse accepts silently (the last one wins).
import { setImmediate as yieldToEventLoop } from 'node:timers/promises'

/** A key met a second time in the same object. */
export interface DuplicateKey {
  /** Where the object holding it is, from the top: member names and array indexes; [] for the top level. */
  path: Array<string | number>
  /** The key, escapes decoded. */
  key: string
  /** 1-based line of its second occurrence (its opening quote). */
  line: number
  /** 1-based column in UTF-16 units, as the positions in JSON.parse errors. */
  column: number
}

/** Characters scanned between two yields to the event loop: a few milliseconds of work. */
const SLICE_CHARS = 1_000_000
/** Up to this many keys an object is searched linearly; past it, its keys go into a Set. */
const SMALL_OBJECT = 8

const QUOTE = 0x22
const BACKSLASH = 0x5c
const COMMA = 0x2c
const OPEN_OBJECT = 0x7b
const CLOSE_OBJECT = 0x7d
const OPEN_ARRAY = 0x5b
const CLOSE_ARRAY = 0x5d

/**
 * Lists every key that appears more than once in the same object, anywhere in `text`. Keys are
 * compared after decoding escapes (`"a"` and `"\u0061"` are the same key). The scan yields to the
 * event loop every `sliceChars` characters, so a reload of a large file does not stall requests.
 * @param text valid JSON: JSON.parse it first, the scanner does not check the syntax.
 * @returns the duplicates in the order of the text.
 */
export async function findDuplicateKeys (text: string, sliceChars = SLICE_CHARS): Promise<DuplicateKey[]> {
  const scanner = new KeyScanner(text)
  // The first slice waits a turn too: the caller has just spent one on JSON.parse.
  do {
    await yieldToEventLoop()
  } while (!scanner.scan(sliceChars))
  return scanner.duplicates
}

/** One open object or array. Levels are kept and reused by depth, so a million small objects allocate nothing. */
class Level {
  readonly parent: Level | undefined
  child: Level | undefined
  isObject = false
  /** Where this level's keys start on the scanner's key stack. */
  firstKey = 0
  /** The index of the current element of an array. */
  index = 0
  /** The keys of an object grown past SMALL_OBJECT, so a hostile object cannot make the scan quadratic. */
  names: Set<string> | undefined

  constructor (parent?: Level) {
    this.parent = parent
  }
}

class KeyScanner {
  readonly duplicates: DuplicateKey[] = []
  private readonly text: string
  /** Outside every value; the top-level value is its child. */
  private readonly root = new Level()
  private level = this.root
  private at = 0
  private expectKey = false
  // The keys of the open objects, innermost last: where each stands in the text (inside its quotes)
  // and, only for a key written with escapes, its decoded name. Slots below `keys` are always set.
  private readonly keyFrom: number[] = []
  private readonly keyTo: number[] = []
  private readonly keyName: Array<string | undefined> = []
  private keys = 0
  /** The first backslash at or after the last key checked (text.length if none): found once, not per key. */
  private nextBackslash = -1
  /** Line counting for the (rare) duplicates: the start of the current line and the newline ending it. */
  private line = 1
  private lineStart = 0
  private lineEnd = -1

  constructor (text: string) {
    this.text = text
  }

  /** Scans about `chars` more characters. @returns true once the whole text is scanned. */
  scan (chars: number): boolean {
    const text = this.text
    const end = Math.min(text.length, this.at + chars)
    let level = this.level
    let expectKey = this.expectKey
    let i = this.at
    for (; i < end; i++) {
      const c = text.charCodeAt(i)
      if (c === QUOTE) {
        const close = closingQuote(text, i)
        if (expectKey) {
          this.level = level
          this.addKey(i, close)
          expectKey = false
        }
        i = close
      } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
        level = level.child ??= new Level(level)
        level.isObject = c === OPEN_OBJECT
        level.firstKey = this.keys
        level.index = 0
        expectKey = level.isObject
      } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
        this.keys = level.firstKey
        level.names = undefined
        // Valid JSON closes only what it opened, so a closing bracket is never met at the root.
        level = level.parent as Level
        expectKey = false
      } else if (c === COMMA) {
        if (level.isObject) expectKey = true
        else level.index++
      }
    }
    this.at = i
    this.level = level
    this.expectKey = expectKey
    return i >= text.length
  }

  /** Records the key whose quotes are at `open` and `close`, after checking the keys already in its object. */
  private addKey (open: number, close: number): void {
    const text = this.text
    const level = this.level
    const from = open + 1
    // Only a key with an escape needs decoding; the raw text of any other key is its name.
    const name = this.hasBackslash(from, close) ? JSON.parse(text.slice(open, close + 1)) as string : undefined
    let duplicate: boolean
    if (level.names !== undefined) {
      const key = name ?? text.slice(from, close)
      duplicate = level.names.has(key)
      level.names.add(key)
    } else {
      duplicate = this.isInObject(level.firstKey, from, close, name)
    }
    if (duplicate) this.report(open, name ?? text.slice(from, close))
    this.keyFrom[this.keys] = from
    this.keyTo[this.keys] = close
    this.keyName[this.keys] = name
    this.keys++
    if (level.names === undefined && this.keys - level.firstKey > SMALL_OBJECT) {
      level.names = new Set()
      for (let k = level.firstKey; k < this.keys; k++) level.names.add(this.nameOf(k))
    }
  }

  /** Whether the key at [from, to) (decoded `name` when it has escapes) is among the keys from `first` on. */
  private isInObject (first: number, from: number, to: number, name: string | undefined): boolean {
    for (let k = first; k < this.keys; k++) {
      const other = this.keyName[k]
      if (name === undefined && other === undefined) {
        if (isSameText(this.text, from, to, this.keyFrom[k] as number, this.keyTo[k] as number)) return true
      } else if ((name ?? this.text.slice(from, to)) === this.nameOf(k)) {
        return true
      }
    }
    return false
  }

  private nameOf (k: number): string {
    return this.keyName[k] ?? this.text.slice(this.keyFrom[k], this.keyTo[k])
  }

  private hasBackslash (from: number, to: number): boolean {
    if (this.nextBackslash < from) {
      const found = this.text.indexOf('\\', from)
      this.nextBackslash = found === -1 ? this.text.length : found
    }
    return this.nextBackslash < to
  }

  private report (open: number, key: string): void {
    const path: Array<string | number> = []
    let child = this.level
    for (let up = child.parent; up !== undefined && up !== this.root; child = up, up = up.parent) {
      // An object's current member is its last key, just below the first key of the level inside it.
      path.push(up.isObject ? this.nameOf(child.firstKey - 1) : up.index)
    }
    this.duplicates.push({ path: path.reverse(), key, ...this.lineAndColumn(open) })
  }

  /** Duplicates are met in text order, so each newline is searched for once over the whole scan. */
  private lineAndColumn (position: number): { line: number, column: number } {
    for (;;) {
      if (this.lineEnd < this.lineStart) {
        const found = this.text.indexOf('\n', this.lineStart)
        this.lineEnd = found === -1 ? this.text.length : found
      }
      if (this.lineEnd >= position) break
      this.line++
      this.lineStart = this.lineEnd + 1
    }
    return { line: this.line, column: position - this.lineStart + 1 }
  }
}

/** The quote closing the string that opens at `open`: the first one after an even run of backslashes. */
function closingQuote (text: string, open: number): number {
  let close = text.indexOf('"', open + 1)
  while (text.charCodeAt(close - 1) === BACKSLASH) {
    let before = close - 2
    while (text.charCodeAt(before) === BACKSLASH) before--
    if ((close - 1 - before) % 2 === 0) break
    close = text.indexOf('"', close + 1)
  }
  return close
}

function isSameText (text: string, from: number, to: number, otherFrom: number, otherTo: number): boolean {
  if (to - from !== otherTo - otherFrom) return false
  for (let k = 0; k < to - from; k++) {
    if (text.charCodeAt(from + k) !== text.charCodeAt(otherFrom + k)) return false
  }
  return true
}
