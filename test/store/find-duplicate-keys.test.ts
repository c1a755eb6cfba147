// The duplicate-key scanner: cases by hand, then property tests against an independent walk of generated documents.
import { isDeepStrictEqual } from 'node:util'
import fc from 'fast-check'
import t from 'tap'
import { findDuplicateKeys, type DuplicateKey } from '../../src/store/find-duplicate-keys.js'

/** The duplicates as `path key @line:column`, one string each, for short assertions. */
async function duplicatesIn (text: string, sliceChars?: number): Promise<string[]> {
  JSON.parse(text)
  return (await findDuplicateKeys(text, sliceChars)).map(({ path, key, line, column }) => `${JSON.stringify(path)} ${key} @${line}:${column}`)
}

/** `@1:column` of the last `token` in a one-line text, counted here independently of the scanner. */
const last = (text: string, token: string): string => `@1:${text.lastIndexOf(token) + 1}`

t.test('a document without a repeated key has no duplicates', async (t) => {
  for (const text of ['{}', '[]', '"a"', '1', 'null', '{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]}', '[{"a":1,"b":2},{"a":1,"b":2}]', '{"a":"a","b":"a"}']) {
    t.same(await duplicatesIn(text), [], text)
  }
})

t.test('a repeated key is reported with the path of its object and where it is written the second time', async (t) => {
  t.same(await duplicatesIn('{"a":1,"a":2}'), ['[] a @1:8'])
  t.same(await duplicatesIn('{\n  "devices": [\n    {"k": 1,\n     "k": 2}\n  ],\r\n  "devices": []\n}'), ['["devices",0] k @4:6', '[] devices @6:3'])
  const nested = '[0, {"x": [[], {"y": {"z": 1, "z": 2}}]}]'
  t.same(await duplicatesIn(nested), [`[1,"x",1,"y"] z ${last(nested, '"z"')}`])
  t.same(await duplicatesIn('{"a":1,"a":2,"a":3,"b":{},"b":{"c":1,"c":2}}'), ['[] a @1:8', '[] a @1:14', '[] b @1:27', '["b"] c @1:38'])
})

t.test('keys are compared after decoding escapes', async (t) => {
  t.same(await duplicatesIn('{"a":1,"\\u0061":2}'), ['[] a @1:8'])
  t.same(await duplicatesIn('{"\\u0061":1,"a":2}'), ['[] a @1:13'])
  t.same(await duplicatesIn('{"\\u0061":1,"\\u0061":2}'), ['[] a @1:13'])
  const quoted = '{"x\\"y":1,"x\\u0022y":2,"q\\\\":1,"q\\u005c":3,"\\/":1,"/":2}'
  t.same(await duplicatesIn(quoted), [`[] x"y ${last(quoted, '"x')}`, `[] q\\ ${last(quoted, '"q')}`, `[] / ${last(quoted, '"/"')}`])
  const lengths = '{"\\u0061b":1,"ab":2,"a":3,"\\u0062":4}'
  t.same(await duplicatesIn(lengths), [`[] ab ${last(lengths, '"ab"')}`], 'escaped and plain keys of other lengths differ')
  t.same(await duplicatesIn('{"ab":1,"ac":2,"a\\\\":3}'), [], 'same length, different text')
})

t.test('text inside strings is never taken for structure', async (t) => {
  const tricky = '{"a":"\\",\\"a\\":{","b":"\\\\","a":2}'
  t.same(await duplicatesIn(tricky), [`[] a ${last(tricky, '"a"')}`])
  t.same(await duplicatesIn('{"a":["{\\"a\\":1,\\"a\\":2}", "]"],"b":"}"}'), [])
})

t.test('an object past 8 keys switches to a Set and still finds plain and escaped repeats', async (t) => {
  const keys = Array.from({ length: 12 }, (_, i) => `"k${i}":${i}`).join(',')
  const big = `{${keys},"k3":0,"\\u006b5":0,"k12":0,"k12":1,"\\u006b12":2}`
  t.same(await duplicatesIn(big), [`[] k3 ${last(big, '"k3"')}`, `[] k5 ${last(big, '"\\u006b5"')}`, `[] k12 ${last(big, '"k12"')}`, `[] k12 ${last(big, '"\\u006b12"')}`])
  const member = `{${keys},"o":{"x":1,"x":2}}`
  t.same(await duplicatesIn(member), [`["o"] x ${last(member, '"x"')}`], 'a member of a big object is still named in the path')
  const next = `[{${keys}},{"k1":1,"k1":2}]`
  t.same(await duplicatesIn(next), [`[1] k1 ${last(next, '"k1"')}`], 'the next object at that depth starts with no Set')
})

t.test('an object with 100,000 keys is scanned once, with its one repeat found', async (t) => {
  const keys = Array.from({ length: 100_000 }, (_, i) => `"key-${i}":${i}`).join(',')
  const found = await findDuplicateKeys(`{"devices":[],"big":{${keys},"key-99999":0}}`)
  t.same(found.map(({ path, key }) => [path, key]), [[['big'], 'key-99999']])
})

t.test('many duplicates on one long line get their columns', async (t) => {
  const text = `{"a":0${',"a":0'.repeat(1000)}}`
  const found = await findDuplicateKeys(text)
  t.equal(found.length, 1000)
  t.same(found.at(-1), { path: [], key: 'a', line: 1, column: text.lastIndexOf('"a"') + 1 })
})

t.test('the scan yields to the event loop between slices and gives the same answer', async (t) => {
  const text = JSON.stringify({ devices: Array.from({ length: 2000 }, (_, i) => ({ productKey: 'p', deviceKey: `d${i}`, deviceSecret: 's' })) }).replace('"s"}', '"s","deviceKey":"x"}')
  let turns = 0
  let done = false
  const spin = (): void => {
    turns++
    if (!done) setImmediate(spin)
  }
  setImmediate(spin)
  const sliced = await duplicatesIn(text, 1000)
  done = true
  t.same(sliced, [`["devices",0] deviceKey @1:${text.indexOf('"deviceKey":"x"') + 1}`])
  t.same(await duplicatesIn(text), sliced)
  t.ok(turns >= 10, `the event loop ran ${turns} times during the scan`)
})

// Property tests: documents generated as trees whose objects may repeat keys, written out with
// random escapes and spacing; an independent walk of the tree says what the scanner must find.

type Value = number | string | Value[] | Pair[] & { object: true }
interface Pair { key: string, escaped: boolean, space: string, value: Value }

const textArb = fc.string({ unit: fc.constantFrom('a', 'b', '"', '\\', ':', ',', '{', ']', 'é', '😀', '\n', '\u0000'), maxLength: 3 })
const spaceArb = fc.constantFrom('', ' ', '\n', '\r\n  ', '\t')
const { value: valueArb } = fc.letrec<{ value: Value, array: Value[], object: Value }>((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, fc.integer(), textArb, tie('array'), tie('object')),
  array: fc.array(tie('value'), { maxLength: 4 }),
  object: fc.array(fc.record({ key: textArb, escaped: fc.boolean(), space: spaceArb, value: tie('value') }), { maxLength: 12 })
    .map((pairs) => Object.assign(pairs, { object: true as const }))
}))

function isObject (value: Value): value is Pair[] & { object: true } {
  return Array.isArray(value) && 'object' in value
}

/** Writes every UTF-16 unit of the key as \uXXXX, or the key as JSON.stringify writes it. */
function writeKey ({ key, escaped }: Pair): string {
  if (!escaped) return JSON.stringify(key)
  let text = ''
  for (let i = 0; i < key.length; i++) text += `\\u${key.charCodeAt(i).toString(16).padStart(4, '0')}`
  return `"${text}"`
}

function write (value: Value): string {
  if (isObject(value)) return `{${value.map((pair) => `${pair.space}${writeKey(pair)}${pair.space}:${write(pair.value)}`).join(',')}}`
  if (Array.isArray(value)) return `[${value.map(write).join(', ')}]`
  return JSON.stringify(value)
}

/** What the scanner must report, in text order: a repeat is met before anything inside its value. */
function expected (value: Value, path: Array<string | number> = [], out: Array<Pick<DuplicateKey, 'path' | 'key'>> = []): typeof out {
  if (isObject(value)) {
    const seen = new Set<string>()
    for (const pair of value) {
      if (seen.has(pair.key)) out.push({ path, key: pair.key })
      seen.add(pair.key)
      expected(pair.value, [...path, pair.key], out)
    }
  } else if (Array.isArray(value)) {
    value.forEach((item, i) => expected(item, [...path, i], out))
  }
  return out
}

/** The key written at a reported line and column, decoded. */
function keyAt (text: string, line: number, column: number): unknown {
  const offset = text.split('\n').slice(0, line - 1).reduce((sum, l) => sum + l.length + 1, 0) + column - 1
  const token = /"(?:[^"\\]|\\.)*"/y
  token.lastIndex = offset
  const match = token.exec(text)
  return match === null ? undefined : JSON.parse(match[0])
}

t.test('property: the scanner finds exactly the repeated keys of a generated document, each where it is written', async (t) => {
  await t.resolves(fc.assert(fc.asyncProperty(valueArb, fc.integer({ min: 1, max: 40 }), async (value, sliceChars) => {
    const text = write(value)
    const found = await findDuplicateKeys(text, sliceChars)
    return isDeepStrictEqual(found.map(({ path, key }) => ({ path, key })), expected(value)) &&
      found.every(({ key, line, column }) => keyAt(text, line, column) === key)
  }), { numRuns: 300 }))
})
