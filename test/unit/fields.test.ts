// What fields.ts accepts as a deviceSecret: length, well-formed Unicode, no control characters.
import t from 'tap'
import { MAX_SECRET_LENGTH, SECRET_RULE, isValidSecret } from '../../src/core/fields.js'

/** A test name without the raw characters, some of which (U+2028) would break TAP's lines. */
const codePoints = (text: string): string => [...text].map((char) => `U+${char.codePointAt(0)?.toString(16).padStart(4, '0').toUpperCase()}`).join(' ')

t.test('a secret of 1 to 256 UTF-16 units of printable Unicode is valid, spaces and emoji included', async (t) => {
  for (const secret of ['s', 'x'.repeat(MAX_SECRET_LENGTH), ' padded ', 'sécret-😀', '\u00a0', '\u00a0\u2028\uFEFF', '\uFFFD']) {
    t.ok(isValidSecret(secret), codePoints(secret.slice(0, 10)))
  }
})

t.test('an empty or too long secret is invalid', async (t) => {
  t.notOk(isValidSecret(''))
  t.notOk(isValidSecret('x'.repeat(MAX_SECRET_LENGTH + 1)))
  t.notOk(isValidSecret('😀'.repeat(MAX_SECRET_LENGTH / 2) + 'x'), 'the limit counts UTF-16 units')
})

t.test('a secret with a lone surrogate is invalid', async (t) => {
  for (const secret of ['\uD800', 'a\uDC00', 'a\uD83D', '\uDE00\uD83D']) t.notOk(isValidSecret(secret), codePoints(secret))
})

t.test('a secret with any control character (C0, DEL, C1) anywhere is invalid', async (t) => {
  const controls = [...Array.from({ length: 0x20 }, (_, i) => i), ...Array.from({ length: 0x21 }, (_, i) => 0x7f + i)]
  t.equal(controls.length, 65, 'Unicode category Cc has 65 code points')
  for (const control of controls.map((code) => String.fromCharCode(code))) {
    t.notOk(isValidSecret(`${control}secret`) || isValidSecret(`sec${control}ret`) || isValidSecret(`secret${control}`), codePoints(control))
  }
  t.ok(isValidSecret(' ~\u00a0'), 'space, tilde and NBSP, next to the ranges, are fine')
})

t.test('SECRET_RULE states the rule that isValidSecret applies', async (t) => {
  t.equal(SECRET_RULE, 'a non-empty string of at most 256 characters (well-formed Unicode, no control characters)')
})
