import { readFile } from 'node:fs/promises'
import t from 'tap'
import { renderOpenApi } from '../src/openapi.js'
import { buildTestApp } from './helper.js'

const committedPath = new URL('../openapi/openapi.json', import.meta.url)

t.test('openapi/openapi.json matches the code (run `npm run openapi` after changing a route)', async (t) => {
  t.equal(await renderOpenApi(), await readFile(committedPath, 'utf8'))
})

t.test('the spec documents POST /sign with every status it can return', async (t) => {
  const spec = JSON.parse(await readFile(committedPath, 'utf8'))
  const sign = spec.paths['/sign'].post
  t.equal(sign.operationId, 'sign')
  t.same(Object.keys(sign.responses).sort(), ['200', '400', '403', '404', '408', '413', '415', '500', '503'])
  t.ok(spec.components.schemas.Error, 'errors share one $ref schema')
  t.same(Object.keys(spec.paths).sort(), ['/healthz', '/readyz', '/sign'])
})

t.test('GET /openapi.json serves the same document and /docs is browsable', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'GET', url: '/openapi.json' })
  t.equal(res.statusCode, 200)
  t.same(res.json().paths, JSON.parse(await readFile(committedPath, 'utf8')).paths)
  const docs = await app.inject({ method: 'GET', url: '/docs/' })
  t.equal(docs.statusCode, 200)
  t.match(docs.headers['content-type'], /text\/html/)
  t.match(docs.body, /swagger/i)
})
