// `npm run openapi`: regenerates openapi/openapi.json from the code.
import { writeFile } from 'node:fs/promises'
import { renderOpenApi } from '../openapi.js'

const target = new URL('../../openapi/openapi.json', import.meta.url)
await writeFile(target, await renderOpenApi())
process.stdout.write(`wrote ${target.pathname}\n`)
