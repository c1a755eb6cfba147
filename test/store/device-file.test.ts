// Parsing device files (JSON and CSV): valid files, every problem named by entry or line, no secret in any message.
import t from 'tap'
import { DeviceFileError, formatOf, parseDeviceFile, splitCsvLine } from '../../src/store/device-file.js'

const SECRET = 'TOPSECRET'
const SECRET_RULE = 'a non-empty string of at most 256 characters (well-formed Unicode, no control characters)'
const KEY_RULE = '1-64 characters from A-Z a-z 0-9 _ . : % -'
const CSV_HEADER = 'productKey,deviceKey,deviceSecret\n'

const codePoint = (char: string): string => `U+${char.charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()}`

function json (devices: unknown): string {
  return JSON.stringify({ devices })
}

/** The DeviceFileError that parsing throws; fails the test when it does not throw one. */
async function problemsOf (text: Uint8Array | string, format: 'json' | 'csv'): Promise<DeviceFileError> {
  try {
    await parseDeviceFile(text, format)
  } catch (err) {
    if (err instanceof DeviceFileError) return err
    throw err
  }
  throw new Error('parseDeviceFile did not throw')
}

t.test('formatOf picks CSV for a .csv name in any case and JSON for anything else', async (t) => {
  t.equal(formatOf('/data/devices.csv'), 'csv')
  t.equal(formatOf('/data/DEVICES.CSV'), 'csv')
  t.equal(formatOf('devices.Csv'), 'csv')
  t.equal(formatOf('/data/devices.json'), 'json')
  t.equal(formatOf('/data/devices.txt'), 'json')
  t.equal(formatOf('/data/devices.csv.bak'), 'json')
  t.equal(formatOf('/data/csv'), 'json')
})

t.test('a JSON file gives devices indexed by deviceKey&productKey, enabled defaulting to true', async (t) => {
  const index = (await parseDeviceFile(json([
    { productKey: 'pk1', deviceKey: 'dev1', deviceSecret: 's1' },
    { productKey: 'pk1', deviceKey: 'dev2', deviceSecret: 's2', enabled: false },
    { productKey: 'pk2', deviceKey: 'dev1', deviceSecret: 's3', enabled: true }
  ]), 'json'))
  t.same([...index.entries()], [
    ['dev1&pk1', { productKey: 'pk1', deviceKey: 'dev1', deviceSecret: 's1', enabled: true }],
    ['dev2&pk1', { productKey: 'pk1', deviceKey: 'dev2', deviceSecret: 's2', enabled: false }],
    ['dev1&pk2', { productKey: 'pk2', deviceKey: 'dev1', deviceSecret: 's3', enabled: true }]
  ])
})

t.test('a JSON file may be pretty-printed, use CRLF, start with a BOM and list no devices', async (t) => {
  const pretty = JSON.stringify({ devices: [{ productKey: 'p', deviceKey: '%channel%', deviceSecret: 'x'.repeat(256) }] }, null, 2)
  t.equal((await parseDeviceFile(pretty.replace(/\n/g, '\r\n'), 'json')).get('%channel%&p')?.deviceSecret, 'x'.repeat(256))
  t.equal((await parseDeviceFile('\uFEFF' + pretty, 'json')).size, 1, 'a BOM, as Windows editors write, is skipped')
  t.equal((await parseDeviceFile('{"devices":[]}', 'json')).size, 0)
})

t.test('text that is not JSON is reported with a line and column and without its content', async (t) => {
  const text = `{"devices":[{"productKey":"p","deviceKey":"d","deviceSecret":"${SECRET}" x}]}`
  const err = (await problemsOf(text, 'json'))
  t.equal(err.message, 'the file is not valid JSON (line 1, column 74)')
  t.notMatch(err.message, SECRET)
  t.same(err.problems, [err.message])
})

t.test('the line and column of a JSON error count from 1 across lines', async (t) => {
  const text = `{\n  "devices": [\n    {"deviceSecret": "${SECRET}" oops}\n  ]\n}\n`
  const err = (await problemsOf(text, 'json'))
  t.equal(err.message, 'the file is not valid JSON (line 3, column 34)')
  t.equal(text.split('\n')[2]?.[33], 'o', 'column 34 of line 3 is where the fault starts')
})

t.test('a JSON error whose V8 message quotes the text is reported without the quote', async (t) => {
  for (const text of [`{"devices":[${SECRET}]}`, SECRET, `{"devices":[{"deviceSecret":'${SECRET}'}]}`]) {
    const err = (await problemsOf(text, 'json'))
    t.equal(err.message, 'the file is not valid JSON', text)
    t.notMatch(err.message, SECRET)
  }
  t.equal((await problemsOf('', 'json')).message, 'the file is not valid JSON', 'an empty file')
})

t.test('a JSON document without a devices array is refused', async (t) => {
  for (const text of ['[]', '{}', 'null', '"devices"', '{"devices":{}}', '{"Devices":[]}', '{"devices":null}']) {
    t.same((await problemsOf(text, 'json')).problems, ['the file must be a JSON object with a "devices" array'], text)
  }
})

t.test('an entry that is not an object is named by its index', async (t) => {
  const err = (await problemsOf(json([1, null, [], 'x', { productKey: 'p', deviceKey: 'd', deviceSecret: 's' }]), 'json'))
  t.same(err.problems, ['devices[0]: must be an object', 'devices[1]: must be an object', 'devices[2]: must be an object', 'devices[3]: must be an object'])
})

t.test('an unknown field is named, cut to 40 characters', async (t) => {
  const err = (await problemsOf(json([{ productKey: 'p', deviceKey: 'd', deviceSecret: 's', secret: 's', ['f'.repeat(50)]: 1 }]), 'json'))
  t.same(err.problems, ['devices[0]: unknown field "secret"', `devices[0]: unknown field "${'f'.repeat(40)}"`])
})

t.test('a bad productKey or deviceKey is named without its value', async (t) => {
  for (const bad of [undefined, '', 'has space', 'a&b', 'k'.repeat(65), 42, null]) {
    const err = (await problemsOf(json([{ productKey: bad, deviceKey: bad, deviceSecret: SECRET }]), 'json'))
    t.same(err.problems, [`devices[0]: productKey must be ${KEY_RULE}`, `devices[0]: deviceKey must be ${KEY_RULE}`], String(bad))
    t.notMatch(err.message, SECRET)
  }
})

t.test('a missing, empty, too long or non-string deviceSecret is refused without its value', async (t) => {
  for (const deviceSecret of [undefined, '', SECRET.repeat(29), 12345, true, 'half a pair \uD800 here']) {
    const err = (await problemsOf(json([{ productKey: 'p', deviceKey: 'd', deviceSecret }]), 'json'))
    t.same(err.problems, [`devices[0]: deviceSecret must be ${SECRET_RULE}`], typeof deviceSecret === 'string' ? `length ${deviceSecret.length}` : String(deviceSecret))
    t.notMatch(err.message, SECRET)
  }
})

t.test('enabled must be a JSON boolean', async (t) => {
  for (const enabled of ['true', 'yes', 1, 0, null]) {
    t.same((await problemsOf(json([{ productKey: 'p', deviceKey: 'd', deviceSecret: 's', enabled }]), 'json')).problems,
      ['devices[0]: enabled must be true or false'], JSON.stringify(enabled))
  }
})

t.test('every problem of one entry is listed and the entry is not indexed', async (t) => {
  const err = (await problemsOf(json([
    { productKey: '', deviceKey: 'd', deviceSecret: '', enabled: 'no', extra: 1 },
    { productKey: '', deviceKey: 'd', deviceSecret: 's' }
  ]), 'json'))
  t.same(err.problems, [
    'devices[0]: unknown field "extra"',
    'devices[0]: productKey must be 1-64 characters from A-Z a-z 0-9 _ . : % -',
    `devices[0]: deviceSecret must be ${SECRET_RULE}`,
    'devices[0]: enabled must be true or false',
    'devices[1]: productKey must be 1-64 characters from A-Z a-z 0-9 _ . : % -'
  ], 'no duplicate is reported for two bad entries with the same keys')
})

t.test('a duplicate JSON device names both entries and neither secret', async (t) => {
  const err = (await problemsOf(json([
    { productKey: 'p', deviceKey: 'd', deviceSecret: SECRET + '1' },
    { productKey: 'p', deviceKey: 'other', deviceSecret: 's' },
    { productKey: 'p', deviceKey: 'd', deviceSecret: SECRET + '2' }
  ]), 'json'))
  t.equal(err.message, 'devices[2]: duplicate device productKey=p deviceKey=d (first at devices[0])')
  t.notMatch(err.message, SECRET)
  t.equal(err.name, 'DeviceFileError')
  t.ok(err instanceof Error)
})

t.test('keys differing only in case are different devices', async (t) => {
  t.equal((await parseDeviceFile(json([
    { productKey: 'p', deviceKey: 'd', deviceSecret: 's' },
    { productKey: 'p', deviceKey: 'D', deviceSecret: 's' }
  ]), 'json')).size, 2)
})

t.test('a CSV file without the enabled column gives enabled devices', async (t) => {
  const index = (await parseDeviceFile('productKey,deviceKey,deviceSecret\npk,dev1,s1\npk,dev2,s2\n', 'csv'))
  t.same([...index.entries()], [
    ['dev1&pk', { productKey: 'pk', deviceKey: 'dev1', deviceSecret: 's1', enabled: true }],
    ['dev2&pk', { productKey: 'pk', deviceKey: 'dev2', deviceSecret: 's2', enabled: true }]
  ])
})

t.test('a CSV enabled column takes true/false, yes/no, 1/0 in any case, or empty for true', async (t) => {
  const rows = [['true', true], ['TRUE', true], ['Yes', true], ['1', true], ['', true], [' no ', false], ['False', false], ['0', false], ['NO', false]] as const
  const text = 'productKey,deviceKey,deviceSecret,enabled\n' + rows.map(([value], i) => `pk,dev${i},s,${value}\n`).join('')
  const index = (await parseDeviceFile(text, 'csv'))
  rows.forEach(([value, enabled], i) => t.equal(index.get(`dev${i}&pk`)?.enabled, enabled, JSON.stringify(value)))
})

t.test('a CSV file may have a BOM, CRLF line ends, blank lines and spaces around header names', async (t) => {
  const text = '\uFEFF productKey , deviceKey,deviceSecret ,enabled\r\n\r\npk,dev1,s1,no\r\n   \r\npk,dev2,s2,yes\r\n'
  const index = (await parseDeviceFile(text, 'csv'))
  t.same(index.get('dev1&pk'), { productKey: 'pk', deviceKey: 'dev1', deviceSecret: 's1', enabled: false })
  t.same(index.get('dev2&pk'), { productKey: 'pk', deviceKey: 'dev2', deviceSecret: 's2', enabled: true })
  t.equal(index.size, 2)
})

t.test('quoted CSV fields may hold commas and "" escapes', async (t) => {
  const text = 'productKey,deviceKey,deviceSecret,enabled\n"pk","dev1","se,c""ret","false"\npk,dev2,"",\n'
  const err = (await problemsOf(text, 'csv'))
  t.same(err.problems, [`line 3: deviceSecret must be ${SECRET_RULE}`], 'an empty quoted secret is still empty')
  const index = (await parseDeviceFile(text.replace('pk,dev2,"",', 'pk,dev2,"x",'), 'csv'))
  t.same(index.get('dev1&pk'), { productKey: 'pk', deviceKey: 'dev1', deviceSecret: 'se,c"ret', enabled: false })
  t.same(index.get('dev2&pk'), { productKey: 'pk', deviceKey: 'dev2', deviceSecret: 'x', enabled: true })
})

t.test('a CSV line longer than 8192 characters (a quote left open) is refused by its number, in bounded memory', async (t) => {
  const open = `productKey,deviceKey,deviceSecret\npk,d1,${SECRET}\npk,d2,"${'a'.repeat(16 * 1024 * 1024)}\npk,d3,${SECRET}\n`
  const before = process.resourceUsage().maxRSS * 1024
  const err = await problemsOf(open, 'csv')
  const grown = process.resourceUsage().maxRSS * 1024 - before
  t.same(err.problems, ['line 3: is longer than 8192 characters, which no device line is (a quote left open?)'])
  t.ok(grown < 64 * 1024 * 1024, `peak memory grew by ${(grown / 1024 / 1024).toFixed(1)} MiB for a 16 MiB line`)
  t.equal((await parseDeviceFile(`productKey,deviceKey,deviceSecret\npk,d1,"${'b'.repeat(8000)}"\n`, 'csv').catch((e: DeviceFileError) => e.problems)).toString(),
    `line 2: deviceSecret must be ${SECRET_RULE}`, 'a line of 8192 characters or fewer is read by the field rules')
  const header = await problemsOf(`"${'p'.repeat(9000)}\npk,d1,${SECRET}\n`, 'csv')
  t.same(header.problems, ['line 1: the header must be productKey,deviceKey,deviceSecret or productKey,deviceKey,deviceSecret,enabled'], 'a header that long is no header')
})

t.test('a CSV file with only a header lists no devices', async (t) => {
  t.equal((await parseDeviceFile(CSV_HEADER, 'csv')).size, 0)
  t.equal((await parseDeviceFile('productKey,deviceKey,deviceSecret\r\n', 'csv')).size, 0, 'CRLF')
})

t.test('a CSV file with another header is refused at line 1', async (t) => {
  const expected = ['line 1: the header must be productKey,deviceKey,deviceSecret or productKey,deviceKey,deviceSecret,enabled']
  for (const header of ['', 'productKey,deviceSecret,deviceKey', 'productkey,devicekey,devicesecret', 'productKey,deviceKey', 'productKey,deviceKey,deviceSecret,enabled,extra', '"productKey,deviceKey,deviceSecret', `pk,d,${SECRET}`]) {
    const err = (await problemsOf(`${header}\npk,d,s\n`, 'csv'))
    t.same(err.problems, expected, JSON.stringify(header))
    t.notMatch(err.message, SECRET)
  }
})

t.test('a CSV line with the wrong number of fields is named by its line number, blank lines counted', async (t) => {
  const err = (await problemsOf(`productKey,deviceKey,deviceSecret\n\npk,d\npk,d,${SECRET},true\npk,d2,${SECRET},\n`, 'csv'))
  t.same(err.problems, [
    'line 3: expected 3 comma-separated fields',
    'line 4: expected 3 comma-separated fields',
    'line 5: expected 3 comma-separated fields'
  ])
  t.notMatch(err.message, SECRET)
  t.same((await problemsOf('productKey,deviceKey,deviceSecret,enabled\r\npk,d,s\r\n', 'csv')).problems, ['line 2: expected 4 comma-separated fields'])
})

t.test('a CSV line with an unterminated quote or text after a closing quote is refused', async (t) => {
  const err = (await problemsOf(`productKey,deviceKey,deviceSecret\npk,d1,"${SECRET}\npk,d2,"${SECRET}"x\n`, 'csv'))
  t.same(err.problems, ['line 2: expected 3 comma-separated fields', 'line 3: expected 3 comma-separated fields'])
  t.notMatch(err.message, SECRET)
})

t.test('a bad CSV enabled value, key or secret is named by its line without the secret', async (t) => {
  const err = (await problemsOf(`productKey,deviceKey,deviceSecret,enabled\npk,d1,${SECRET},maybe\n pk,d2,${SECRET},\npk,d3,${'s'.repeat(257)},\n`, 'csv'))
  t.same(err.problems, [
    'line 2: enabled must be true, false, yes, no, 1, 0 or empty',
    'line 3: productKey must be 1-64 characters from A-Z a-z 0-9 _ . : % -',
    `line 4: deviceSecret must be ${SECRET_RULE}`
  ])
  t.notMatch(err.message, SECRET)
})

t.test('a CSV secret is kept verbatim, spaces inside it included', async (t) => {
  t.equal((await parseDeviceFile('productKey,deviceKey,deviceSecret\npk,d,s p  q\n', 'csv')).get('d&pk')?.deviceSecret, 's p  q')
})

t.test('a duplicate CSV device names both lines and neither secret', async (t) => {
  const err = (await problemsOf(`productKey,deviceKey,deviceSecret\npk,d,${SECRET}1\n\npk,d,${SECRET}2\n`, 'csv'))
  t.same(err.problems, ['line 4: duplicate device productKey=pk deviceKey=d (first at line 2)'])
  t.notMatch(err.message, SECRET)
})

t.test('the message lists the first 10 problems and counts the rest', async (t) => {
  const bad = (n: number): string => json(Array.from({ length: n }, () => 7))
  const twelve = (await problemsOf(bad(12), 'json'))
  t.equal(twelve.problems.length, 12)
  t.equal(twelve.message, Array.from({ length: 10 }, (_, i) => `devices[${i}]: must be an object`).join('; ') + '; and 2 more')
  const ten = (await problemsOf(bad(10), 'json'))
  t.equal(ten.message, Array.from({ length: 10 }, (_, i) => `devices[${i}]: must be an object`).join('; '))
  t.same(new DeviceFileError(['a', 'b']).message, 'a; b')
})

t.test('splitCsvLine follows RFC 4180 quoting within one line', async (t) => {
  const cases: Array<[string, string[] | undefined]> = [
    ['', ['']],
    ['a', ['a']],
    ['a,b,c', ['a', 'b', 'c']],
    [',', ['', '']],
    ['a,', ['a', '']],
    [',a', ['', 'a']],
    ['"a,b",c', ['a,b', 'c']],
    ['"a""b"', ['a"b']],
    ['""', ['']],
    ['""""', ['"']],
    ['"",""', ['', '']],
    ['"a",', ['a', '']],
    ['a"b,c', ['a"b', 'c']],
    [' "a",b', [' "a"', 'b']],
    ['"a"', ['a']],
    ['"a', undefined],
    ['"a""', undefined],
    ['"', undefined],
    ['"a"b', undefined],
    ['"a" ,b', undefined],
    ['x,"a', undefined]
  ]
  for (const [line, expected] of cases) t.same(splitCsvLine(line), expected, JSON.stringify(line))
})

t.test('a secret with a full surrogate pair (an emoji) is accepted', async (t) => {
  const index = (await parseDeviceFile(json([{ productKey: 'p', deviceKey: 'd', deviceSecret: 'sécret-😀' }]), 'json'))
  t.equal(index.get('d&p')?.deviceSecret, 'sécret-😀')
})

t.test('a large file is indexed in slices, so the event loop keeps serving while it loads', async (t) => {
  const rows = Array.from({ length: 25_000 }, (_, i) => `pk,dev-${i},secret-${i}`)
  let turns = 0
  let done = false
  const spin = (): void => {
    turns++
    if (!done) setImmediate(spin)
  }
  setImmediate(spin)
  const index = await parseDeviceFile(['productKey,deviceKey,deviceSecret', ...rows, ''].join('\n'), 'csv')
  done = true
  t.equal(index.size, 25_000)
  t.ok(turns >= 2, `the event loop ran ${turns} times during the load`)
})

// Bytes: the file must be UTF-8.

t.test('the bytes of a UTF-8 file give the same devices as its text, BOM skipped', async (t) => {
  const text = json([{ productKey: 'p', deviceKey: 'd', deviceSecret: 'sécret-😀' }])
  const index = await parseDeviceFile(Buffer.from('\uFEFF' + text), 'json')
  t.same([...index.entries()], [...(await parseDeviceFile(text, 'json')).entries()])
  t.equal(index.get('d&p')?.deviceSecret, 'sécret-😀')
  const csv = new TextEncoder().encode(`\uFEFF${CSV_HEADER}pk,d,sécret\n`)
  t.equal((await parseDeviceFile(csv, 'csv')).get('d&pk')?.deviceSecret, 'sécret', 'a Uint8Array that is not a Buffer')
  t.equal((await parseDeviceFile(new Uint8Array(), 'json').catch((err: unknown) => err) as Error).message, 'the file is not valid JSON')
})

t.test('a file saved in Windows-1252 is refused naming the line and column of the first bad byte, not its content', async (t) => {
  const bytes = Buffer.from(`${CSV_HEADER}pk,d1,${SECRET}\npk,d2,s\xe9cret-${SECRET}\npk,d3,s\xe8cret\n`, 'latin1')
  const err = await problemsOf(bytes, 'csv')
  t.same(err.problems, ['line 3: the file is not valid UTF-8 (first bad byte at column 8); save it as UTF-8'])
  t.notMatch(err.message, SECRET)
  t.notMatch(err.message, 'cret')
})

t.test('two secrets that only a replacement character would make equal are refused, not loaded as one', async (t) => {
  // \xe9 and \xe8 both decode to U+FFFD with replacement: "s\uFFFDcret" twice.
  const bytes = Buffer.from('{"devices":[\n{"productKey":"p","deviceKey":"a","deviceSecret":"s\xe9cret"},\n{"productKey":"p","deviceKey":"b","deviceSecret":"s\xe8cret"}]}\n', 'latin1')
  t.same((await problemsOf(bytes, 'json')).problems, ['line 2: the file is not valid UTF-8 (first bad byte at column 52); save it as UTF-8'])
})

t.test('the column of a bad byte counts characters, not bytes, and not the BOM', async (t) => {
  const bytes = Buffer.concat([Buffer.from('\uFEFF{"devices":[{"deviceSecret":"é😀'), Buffer.from([0xc3, 0x28]), Buffer.from('"}]}')])
  t.same((await problemsOf(bytes, 'json')).problems, ['line 1: the file is not valid UTF-8 (first bad byte at column 32); save it as UTF-8'])
})

// JSON: a key twice in one object.

t.test('a key twice in a JSON entry is refused naming the entry, the key, the line and the column', async (t) => {
  const text = `{
  "devices": [
    { "productKey": "p", "deviceKey": "d0", "deviceSecret": "${SECRET}" },
    { "productKey": "p", "deviceKey": "d1", "deviceSecret": "${SECRET}" },
    { "productKey": "p", "deviceKey": "d2", "deviceSecret": "${SECRET}" },
    { "productKey": "p", "deviceKey": "d3", "deviceSecret": "${SECRET}",
      "enabled": false,
      "enabled": true }
  ]
}
`
  const err = await problemsOf(text, 'json')
  t.same(err.problems, ['devices[3]: the key "enabled" appears twice (line 8, column 7)'])
  t.notMatch(err.message, SECRET)
})

t.test('a second "devices" at the top level is refused, not taken as an empty store', async (t) => {
  const text = '{\n  "devices": [{ "productKey": "p", "deviceKey": "d", "deviceSecret": "s" }],\n  "devices": []\n}\n'
  t.same((await problemsOf(text, 'json')).problems, ['the key "devices" appears twice at the top level (line 3, column 3)'])
})

t.test('keys are compared after decoding escapes, and every duplicate is listed before the other problems', async (t) => {
  const text = '{"devices":[{"productKey":"p","deviceKey":"d","deviceSecret":"s","\\u0065nabled":false,"enabled":true},' +
    '{"productKey":"p","deviceKey":"e","deviceSecret":"s","deviceSecret":"t","x":1}]}'
  t.same((await problemsOf(text, 'json')).problems, [
    'devices[0]: the key "enabled" appears twice (line 1, column 87)',
    'devices[1]: the key "deviceSecret" appears twice (line 1, column 156)',
    'devices[1]: unknown field "x"'
  ])
})

t.test('a duplicate key deeper down is named by its JSON path, names cut to 40 characters', async (t) => {
  const long = 'k'.repeat(50)
  const text = JSON.stringify({ devices: [] }).slice(0, -1) + `,"meta":{"a b":[1,{"${long}":{"x":1,"x":2}}],"${long}":0,"${long}":1}}`
  t.same((await problemsOf(text, 'json')).problems, [
    `meta["a b"][1].${'k'.repeat(40)}: the key "x" appears twice (line 1, column 93)`,
    `meta: the key "${'k'.repeat(40)}" appears twice (line 1, column 157)`
  ])
})

// Secrets: no control characters anywhere, no padding in CSV.

t.test('a secret with a control character is refused in JSON and CSV without its value', async (t) => {
  for (const control of ['\u0000', '\t', '\r', '\n', '\u001f', '\u007f', '\u0085', '\u009f']) {
    const secret = `${SECRET}${control}x`
    const err = await problemsOf(json([{ productKey: 'p', deviceKey: 'd', deviceSecret: secret }]), 'json')
    t.same(err.problems, [`devices[0]: deviceSecret must be ${SECRET_RULE}`], codePoint(control))
    t.notMatch(err.message, SECRET)
  }
  for (const control of ['\u0000', '\t', '\r', '\u007f', '\u0085']) {
    const err = await problemsOf(`${CSV_HEADER}pk,d,"${SECRET}${control}x"\npk,e,${control}${SECRET}\n`, 'csv')
    t.same(err.problems, [`line 2: deviceSecret must be ${SECRET_RULE}`, `line 3: deviceSecret must be ${SECRET_RULE}`], codePoint(control))
    t.notMatch(err.message, SECRET)
  }
})

t.test('a CSV secret with leading or trailing spaces is refused, saying why and not quoting it', async (t) => {
  const err = await problemsOf(`${CSV_HEADER}pk,d1, ${SECRET}\npk,d2,${SECRET} \npk,d3,"  ${SECRET}"\npk,d4,${SECRET}\u00a0\npk,d5,s p\n`, 'csv')
  const why = 'deviceSecret has leading or trailing spaces, almost always an export mistake (use the JSON format if they really belong to the secret)'
  t.same(err.problems, [`line 2: ${why}`, `line 3: ${why}`, `line 4: ${why}`, `line 5: ${why}`])
  t.notMatch(err.message, SECRET)
})

t.test('a JSON secret keeps its leading and trailing spaces: they are quoted there', async (t) => {
  t.equal((await parseDeviceFile(json([{ productKey: 'p', deviceKey: 'd', deviceSecret: ' s p ' }]), 'json')).get('d&p')?.deviceSecret, ' s p ')
})

// CSV: a file must end with a newline.

t.test('a CSV file whose last line has no newline is refused naming that line, as it may be cut short', async (t) => {
  const why = 'the file does not end with a newline, so its last line may have been cut short while being written; end the file with a newline'
  t.same((await problemsOf(`${CSV_HEADER}pk,d1,s1\npk,d2,${SECRET.slice(0, 3)}`, 'csv')).problems, [`line 3: ${why}`])
  t.same((await problemsOf(`${CSV_HEADER}pk,d1,s1\r\npk,d2,s2\r`, 'csv')).problems, [`line 3: ${why}`, `line 3: deviceSecret must be ${SECRET_RULE}`], 'a CR alone is not a line end')
  t.same((await problemsOf(`${CSV_HEADER}pk,d1,s1\n\n  `, 'csv')).problems, [`line 4: ${why}`], 'a last line of spaces')
  t.same((await problemsOf('productKey,deviceKey,deviceSecret', 'csv')).problems, [`line 1: ${why}`], 'a header alone')
  t.same((await problemsOf(`${CSV_HEADER}pk,d1,s1\npk,d1,s1`, 'csv')).problems, [
    `line 3: ${why}`,
    'line 3: duplicate device productKey=pk deviceKey=d1 (first at line 2)'
  ], 'listed first: a cut line explains the problems found in it')
  t.same((await problemsOf('', 'csv')).problems, ['line 1: the header must be productKey,deviceKey,deviceSecret or productKey,deviceKey,deviceSecret,enabled'], 'an empty file has no header')
})
