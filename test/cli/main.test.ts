// The `enos-mqtt-signer` program as a child process: --version, --help of every sub-command, and usage errors exit 2.
import { readFileSync } from 'node:fs'
import { PassThrough } from 'node:stream'
import t from 'tap'
import { signBatchCommand } from '../../src/cli/sign-batch.js'
import { CHILD_BUDGET_MS } from '../e2e/process-helper.js'
import { runCli } from './cli-helper.js'

// One CLI process per run: 1 + 3 + 4.
t.setTimeout(8 * CHILD_BUDGET_MS)

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
const io = { stdin: new PassThrough(), stdout: new PassThrough(), stderr: new PassThrough(), signal: new AbortController().signal }

t.test('--version prints the package version, and the package names main.ts as its bin', async (t) => {
  const result = await runCli(t, ['--version'])
  t.equal(result.code, 0)
  t.equal(result.stdout, `${version}\n`)
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { bin: Record<string, string> }
  t.same(pkg.bin, { 'enos-mqtt-signer': 'dist/cli/main.js' })
  t.match(readFileSync(new URL('../../src/cli/main.ts', import.meta.url), 'utf8'), /^#!\/usr\/bin\/env node\n/, 'runs as a program')
})

t.test('--help lists the sub-commands; `help sign-batch` and `sign-batch --help` document every option', async (t) => {
  const top = await runCli(t, ['--help'])
  t.equal(top.code, 0)
  t.match(top.stdout, /Usage: enos-mqtt-signer \[options\] \[command\]/)
  t.match(top.stdout, /sign-batch \[options\] +sign MQTT credentials/)
  const options = signBatchCommand(io).options
  t.ok(options.length >= 11)
  for (const args of [['sign-batch', '--help'], ['help', 'sign-batch']]) {
    const help = await runCli(t, args)
    t.equal(help.code, 0)
    const text = help.stdout.replace(/\s+/g, ' ')
    for (const option of options) {
      t.ok(text.includes(option.flags), `${args.join(' ')} shows ${option.flags}`)
      t.ok(text.includes(String(option.description).replace(/\s+/g, ' ')), `and says what ${String(option.long)} does`)
    }
    t.match(text, /Exit status: 0 every device was signed 1 some devices failed/)
    t.match(text, /\(env: ENOS_SIGNER_TOKEN\)/)
  }
})

t.test('usage errors exit 2 and say what is wrong', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['sign-batch', '--in', 'a.csv', '--out', 'b.csv'], /required option '--url <url>' not specified/],
    [['sign-batch', '--url', 'http://x', '--in', 'a.csv', '--out', 'b.csv', '--retries', 'many'], /option '--retries <n>' argument 'many' is invalid\. must be a whole number from 0 to 1000/],
    [['sign-batch', '--url', 'http://x', '--in', 'a.xml', '--out', 'b.csv', '--format', 'xml'], /argument 'xml' is invalid\. Allowed choices are csv, json, ndjson/],
    [['sign-batchh'], /unknown command 'sign-batchh'/]
  ]
  for (const [args, message] of cases) {
    const result = await runCli(t, args)
    t.equal(result.code, 2, args.join(' '))
    t.match(result.stderr, message)
  }
})
