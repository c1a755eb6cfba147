// Finding the first byte that is not UTF-8: each kind of ill-formed sequence, lines and columns, and agreement with buffer.isUtf8.
import { isUtf8 } from 'node:buffer'
import fc from 'fast-check'
import t from 'tap'
import { findInvalidUtf8 } from '../../src/store/find-invalid-utf8.js'

const bytes = (...parts: Array<string | number[]>): Uint8Array =>
  Buffer.concat(parts.map((part) => typeof part === 'string' ? Buffer.from(part) : Buffer.from(part)))

t.test('well-formed UTF-8 has no invalid byte', async (t) => {
  for (const text of ['', 'plain ASCII\n', 'é ü ß', '€ 中文', '😀 U+10FFFF: \u{10FFFF}', '\uFEFFBOM first', 'U+D7FF \uD7FF, U+E000 \uE000']) {
    t.equal(findInvalidUtf8(bytes(text)), undefined, text)
  }
})

t.test('each kind of ill-formed sequence is found at its first byte', async (t) => {
  const cases: Array<[string, number[]]> = [
    ['a lone continuation byte', [0x80]],
    ['a lead byte C0 or C1 (overlong ASCII)', [0xc0, 0x80]],
    ['C1', [0xc1, 0xbf]],
    ['F5 and above', [0xf5, 0x80, 0x80, 0x80]],
    ['FF', [0xff]],
    ['an overlong 3-byte form', [0xe0, 0x9f, 0xbf]],
    ['a UTF-16 surrogate (U+D800)', [0xed, 0xa0, 0x80]],
    ['an overlong 4-byte form', [0xf0, 0x8f, 0xbf, 0xbf]],
    ['above U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
    ['a 2-byte lead then ASCII', [0xc3, 0x28]],
    ['a 3-byte lead then a bad third byte', [0xe2, 0x82, 0x28]],
    ['a 4-byte lead then a bad fourth byte', [0xf0, 0x9f, 0x98, 0x28]],
    ['a Windows-1252 é before ASCII', [0xe9, 0x63]],
    ['a sequence cut short by the end', [0xe2, 0x82]],
    ['a lead byte last', [0xf0]]
  ]
  for (const [name, bad] of cases) {
    t.same(findInvalidUtf8(bytes('ok é ', bad, ' tail')), { offset: 6, line: 1, column: 6 }, name)
  }
  t.same(findInvalidUtf8(bytes('ok ', [0xe2, 0x82])), { offset: 3, line: 1, column: 4 }, 'cut short at the very end')
})

t.test('the line counts LFs and the column counts characters from the start of the line', async (t) => {
  t.same(findInvalidUtf8(bytes('one\r\ntwo\nthré😀', [0xff], '\nfour')), { offset: 18, line: 3, column: 6 })
  t.same(findInvalidUtf8(bytes('\n', [0xff])), { offset: 1, line: 2, column: 1 })
  t.same(findInvalidUtf8(bytes([0xff], '\n\n')), { offset: 0, line: 1, column: 1 })
})

t.test('a BOM is not counted as a column of the first line only', async (t) => {
  t.same(findInvalidUtf8(bytes('\uFEFFab', [0xff])), { offset: 5, line: 1, column: 3 })
  t.same(findInvalidUtf8(bytes('\uFEFFab\nab', [0xff])), { offset: 8, line: 2, column: 3 })
  t.same(findInvalidUtf8(bytes([0xef, 0xbb], 'x')), { offset: 0, line: 1, column: 1 }, 'a BOM cut short is itself the bad sequence')
  t.same(findInvalidUtf8(bytes('\uF000', [0xff])), { offset: 3, line: 1, column: 2 }, 'another character with the same lead byte counts')
  t.same(findInvalidUtf8(bytes('\uFEFE', [0xff])), { offset: 3, line: 1, column: 2 }, 'so does one sharing two bytes with the BOM')
})

// Byte strings that are mostly UTF-8 with some damage, so that ill-formed sequences sit after good ones.
const damagedArb = fc.array(fc.oneof(
  fc.string({ unit: 'binary', maxLength: 4 }).map((text) => [...Buffer.from(text)]),
  fc.array(fc.integer({ min: 0x80, max: 0xff }), { maxLength: 3 }),
  fc.constantFrom([0x0a], [0xe0, 0xa0], [0xed, 0x9f, 0xbf], [0xed, 0xa0, 0x80], [0xf4, 0x8f, 0xbf, 0xbf], [0xf4, 0x90], [0xef, 0xbb, 0xbf])
), { maxLength: 8 }).map((parts) => Uint8Array.from(parts.flat()))

t.test('property: it finds nothing exactly when buffer.isUtf8 says yes, and then the first byte that starts no character', async (t) => {
  t.doesNotThrow(() => fc.assert(fc.property(damagedArb, (input) => {
    const found = findInvalidUtf8(input)
    if (found === undefined) return isUtf8(input)
    // Everything before is UTF-8, and no character (1 to 4 bytes) starts at the offset.
    const extended = [1, 2, 3, 4].filter((n) => found.offset + n <= input.length)
    return !isUtf8(input) && isUtf8(input.subarray(0, found.offset)) && extended.every((n) => !isUtf8(input.subarray(0, found.offset + n)))
  }), { numRuns: 2000 }))
})
