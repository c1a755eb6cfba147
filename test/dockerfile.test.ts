import { access, readFile } from 'node:fs/promises'
import t from 'tap'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'
import { envSchema, loadConfig } from '../src/config.js'

const dockerfile = await readFile(new URL('../Dockerfile', import.meta.url), 'utf8')
const dockerignore = await readFile(new URL('../.dockerignore', import.meta.url), 'utf8')
const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { main: string, engines: { node: string } }
const composeUrl = new URL('../examples/docker-compose.yml', import.meta.url)

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

t.test('the runtime stage leaves no npm cache, npm logs or compile cache in the image', async (t) => {
  const runtime = dockerfile.slice(dockerfile.lastIndexOf('FROM '))
  t.match(runtime, /npm ci --omit=dev .*&& rm -rf \/root\/\.npm \/tmp\/node-compile-cache$/m)
})

t.test('the build context is an allowlist: only what the Dockerfile copies gets in', async (t) => {
  const patterns = dockerignore.split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#'))
  t.equal(patterns[0], '*', 'everything is left out first')
  const allowed = patterns.filter((pattern) => pattern.startsWith('!')).map((pattern) => pattern.slice(1).replace(/\/$/, ''))
  // COPY sources from the build context (not --from=<stage>): the last word of a COPY line is its destination.
  const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+)$/gm)].flatMap((m) => (m[1] ?? '').split(/\s+/).slice(0, -1))
  t.same([...allowed].sort(), [...new Set(copied)].sort(), 'the allowlist is exactly the COPY sources')
  for (const entry of ['node_modules', 'dist', '.git', '.tap', 'coverage', 'test', '.env', 'devices.csv']) t.notOk(allowed.includes(entry), `${entry} stays out`)
  for (const pattern of ['**/*.log', '**/.env*', '**/*.swp', 'examples/docker-compose.yml']) t.ok(patterns.includes(pattern), `${pattern} stays out, even inside an allowed folder`)
})

// The keys examples/docker-compose.yml must have, with their types (it is checked only statically here: no compose).
const composeSchema = z.object({
  services: z.strictObject({
    signer: z.looseObject({
      build: z.object({ context: z.string(), dockerfile: z.string() }),
      ports: z.array(z.string()),
      environment: z.record(z.string(), z.string()),
      volumes: z.array(z.string()),
      read_only: z.boolean(),
      cap_drop: z.array(z.string()),
      // Timings only: no test of its own (the image's HEALTHCHECK runs), and not disabled.
      healthcheck: z.looseObject({ test: z.never().optional(), disable: z.never().optional() }),
      restart: z.string(),
      stop_grace_period: z.string().regex(/^\d+s$/)
    })
  })
})

t.test('examples/docker-compose.yml builds the repository Dockerfile and runs it locked down with a read-only store', async (t) => {
  const service = composeSchema.parse(parseYaml(await readFile(composeUrl, 'utf8'))).services.signer
  const dockerfileUrl = new URL(service.build.dockerfile, new URL(`${service.build.context}/`, composeUrl))
  t.equal(dockerfileUrl.href, new URL('../Dockerfile', import.meta.url).href, 'build context .. and the repository Dockerfile')
  t.ok(service.ports.includes('8080:8080'), 'port 8080 published')
  t.equal(service.read_only, true)
  t.same(service.cap_drop, ['ALL'])
  t.ok(['always', 'unless-stopped', 'on-failure'].includes(service.restart), `restart: ${service.restart}`)

  // The store: a file of the repository mounted read-only at the path STORE_FILE names.
  const store = service.volumes.map((volume) => volume.split(':')).find((parts) => parts[1] === service.environment.STORE_FILE)
  t.ok(store, `a volume at STORE_FILE (${service.environment.STORE_FILE})`)
  const [source = '', , mode] = store ?? []
  t.equal(mode, 'ro', 'mounted read-only')
  await t.resolves(access(new URL(source, composeUrl)), `${source} exists`)

  // The environment is one the service starts with: a real STORE_FILE needs a token file or AUTH_MODE=none.
  t.doesNotThrow(() => loadConfig(service.environment), 'the service starts with this environment')

  // docker compose stop sends SIGKILL after stop_grace_period: it must outlast the service's own shutdown timeout.
  const shutdownMs = envSchema.shape.SHUTDOWN_TIMEOUT_MS.parse(undefined)
  t.ok(Number.parseInt(service.stop_grace_period, 10) * 1000 > shutdownMs, `stop_grace_period ${service.stop_grace_period} > ${shutdownMs} ms`)
})

t.test('examples/docker-compose.postgres.yml: PostgreSQL, a one-shot migrate + import of the example devices, then the service on STORE=postgres', async (t) => {
  const compose = z.object({
    services: z.strictObject({
      db: z.looseObject({ image: z.string(), environment: z.record(z.string(), z.string()), healthcheck: z.looseObject({ test: z.array(z.string()) }) }),
      setup: z.looseObject({
        build: z.object({ context: z.string(), dockerfile: z.string() }),
        image: z.string(),
        environment: z.record(z.string(), z.string()),
        command: z.array(z.string()),
        depends_on: z.object({ db: z.object({ condition: z.literal('service_healthy') }) })
      }),
      signer: z.looseObject({
        image: z.string(),
        ports: z.array(z.string()),
        environment: z.record(z.string(), z.string()),
        depends_on: z.object({ setup: z.object({ condition: z.literal('service_completed_successfully') }) }),
        read_only: z.literal(true),
        stop_grace_period: z.string()
      })
    })
  }).parse(parseYaml(await readFile(new URL('../examples/docker-compose.postgres.yml', import.meta.url), 'utf8'))).services
  const { db, setup, signer } = compose
  t.equal(new URL(setup.build.dockerfile, new URL(`${setup.build.context}/`, new URL('../examples/', import.meta.url))).href, new URL('../Dockerfile', import.meta.url).href)
  t.equal(signer.image, setup.image, 'the service runs the image the setup built')
  const url = new URL(signer.environment.DATABASE_URL ?? '')
  t.same([url.hostname, url.username, url.password, url.pathname], ['db', db.environment.POSTGRES_USER, db.environment.POSTGRES_PASSWORD, `/${db.environment.POSTGRES_DB}`], 'the URL names the db service and its credentials')
  t.equal(setup.environment.DATABASE_URL, signer.environment.DATABASE_URL)
  t.match(setup.command.join(' '), /node dist\/cli\/main\.js migrate && node dist\/cli\/main\.js import --in examples\/devices\.json/)
  t.match(loadConfig(signer.environment), { store: 'postgres', database: { poolMax: 10 } }, 'the service environment is a valid configuration')
  t.ok(signer.ports.includes('8080:8080'))
})
