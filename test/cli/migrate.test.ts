// `enos-mqtt-signer migrate` against a real PostgreSQL: once, again, twice at once, and a database it cannot reach.
import t from 'tap'
import { runMigrate } from '../../src/cli/migrate.js'
import { startPostgres } from '../pg-helper.js'
import { captureIo, runCli } from './cli-helper.js'

const postgres = await startPostgres(t)

t.test('migrate creates the schema through the command line (DATABASE_URL); run again it has nothing to do', async (t) => {
  const url = await postgres.createDatabase()
  const first = await runCli(t, ['migrate'], { env: { DATABASE_URL: url } })
  t.same({ code: first.code, stdout: first.stdout, stderr: first.stderr }, { code: 0, stdout: 'schema at version 1 (applied 1)\n', stderr: '' })
  const again = await runCli(t, ['migrate', '--database-url', url])
  t.same({ code: again.code, stdout: again.stdout }, { code: 0, stdout: 'schema already at version 1: nothing to do\n' })
  t.same((await postgres.sql(url, 'SELECT count(*)::int AS n FROM devices')).rows, [{ n: 0 }])
})

t.test('two migrate runs at once both succeed, and the schema is applied once', async (t) => {
  const url = await postgres.createDatabase()
  const runs = await Promise.all([captureIo(), captureIo()].map(async (c) => ({ code: await runMigrate({ databaseUrl: url }, c.io), out: c.stdout() })))
  t.same(runs.map((r) => r.code), [0, 0])
  t.same(runs.map((r) => r.out).sort(), ['schema already at version 1: nothing to do\n', 'schema at version 1 (applied 1)\n'])
  t.same((await postgres.sql(url, 'SELECT version FROM schema_migrations')).rows, [{ version: 1 }])
})

t.test('a database it cannot use: exit 1 with what PostgreSQL said, never the password', async (t) => {
  const missing = postgres.url('no_such_db').replace('postgres@', 'postgres:hunter2pw@')
  const { io, stderr } = captureIo()
  t.equal(await runMigrate({ databaseUrl: missing }, io), 1)
  t.equal(stderr(), 'enos-mqtt-signer migrate: PostgreSQL: database "no_such_db" does not exist\n')
  const url = await postgres.createDatabase()
  await runMigrate({ databaseUrl: url }, captureIo().io)
  await postgres.sql(url, "INSERT INTO schema_migrations (version, name) VALUES (5, 'newer')")
  const newer = captureIo()
  t.equal(await runMigrate({ databaseUrl: url }, newer.io), 1)
  t.match(newer.stderr(), /^enos-mqtt-signer migrate: the database schema is at version 5, newer than this release reads/)
})
