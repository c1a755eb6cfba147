import { readFile } from 'node:fs/promises'
import t from 'tap'
import { envSchema } from '../src/config.js'

const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string> }

t.test('the README configuration table lists every variable with its default and description', async (t) => {
  const rows = new Map(readme.split('\n').filter((line) => line.startsWith('| `')).map((line) => {
    const cells = line.split('|').slice(1, -1).map((cell) => cell.trim())
    return [cells[0], cells] as const
  }))
  for (const [name, schema] of Object.entries(envSchema.shape)) {
    const row = rows.get(`\`${name}\``)
    if (row === undefined) {
      t.fail(`README has no row for ${name}`)
      continue
    }
    const parsed = schema.safeParse(undefined)
    const fallback = parsed.success && parsed.data !== undefined ? `\`${String(parsed.data)}\`` : ''
    t.equal(row[1], fallback, `${name} default`)
    t.equal(row[2], schema.description, `${name} description`)
  }
})

t.test('every npm command the README shows exists in package.json', async (t) => {
  const commands = [...readme.matchAll(/npm run ([a-z:]+)/g)].map((m) => m[1] as string)
  t.ok(commands.length > 5)
  for (const name of new Set(commands)) t.ok(pkg.scripts[name], `npm run ${name}`)
  t.ok(pkg.scripts.test && pkg.scripts.start, 'npm test and npm start')
})
