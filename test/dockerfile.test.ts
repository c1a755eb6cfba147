import { readFile } from 'node:fs/promises'
import t from 'tap'

const dockerfile = await readFile(new URL('../Dockerfile', import.meta.url), 'utf8')
const dockerignore = await readFile(new URL('../.dockerignore', import.meta.url), 'utf8')
const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { main: string, engines: { node: string } }

t.test('the Dockerfile builds in two stages on the same fully pinned Node slim tag', async (t) => {
  const bases = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1])
  t.equal(bases.length, 2)
  t.ok(bases.every((base) => /^node:\d+\.\d+\.\d+-[a-z]+-slim$/.test(base ?? '')), 'fully pinned node:<major>.<minor>.<patch>-<distro>-slim tags')
  t.equal(bases[0], bases[1])
})

t.test('the image runs the newest Node LTS line that package.json engines supports', async (t) => {
  const major = Number(/^FROM node:(\d+)\./m.exec(dockerfile)?.[1])
  // engines.node lists each supported LTS line ("^22.12.0 || ^24.0.0 || >=26.0.0"): the image gets the newest.
  const supported = pkg.engines.node.split('||').map((range) => Number(/(\d+)\./.exec(range)?.[1]))
  t.ok(supported.length > 1 && supported.every((line) => line % 2 === 0), `engines.node names even (LTS) lines only: ${pkg.engines.node}`)
  t.equal(major, Math.max(...supported), `Dockerfile node:${major}, engines.node ${pkg.engines.node}`)
})

t.test('the runtime stage runs the built entrypoint as non-root with production settings', async (t) => {
  const runtime = dockerfile.slice(dockerfile.lastIndexOf('FROM '))
  t.match(runtime, /^USER node$/m)
  t.match(runtime, /npm ci --omit=dev/)
  t.match(runtime, /NODE_ENV=production/)
  t.match(runtime, /HOST=0\.0\.0\.0/)
  t.match(runtime, /^EXPOSE 8080$/m)
  t.match(runtime, /^HEALTHCHECK .*\n?.*\/readyz/m)
  t.match(runtime, /^CMD \["node", "dist\/server\.js"\]$/m, 'exec form, node itself (signals reach the service)')
  t.equal(pkg.main, 'dist/server.js')
  for (const dir of ['dist', 'openapi', 'examples']) t.match(runtime, new RegExp(`^COPY .*\\b${dir}\\b`, 'm'), `copies ${dir}/`)
})

t.test('the build context leaves out local artefacts', async (t) => {
  for (const entry of ['node_modules', 'dist', '.git', 'test']) t.match(dockerignore, new RegExp(`^${entry}$`, 'm'), entry)
})
