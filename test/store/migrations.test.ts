// The schema against a real PostgreSQL: migrate once, twice, twice at once; versions that do not fit; the field rules as constraints.
import pg from 'pg'
import type { Test } from 'tap'
import t from 'tap'
import { MIGRATIONS, SCHEMA_VERSION, SchemaError, checkSchema, migrate, readSchemaVersion } from '../../src/store/migrations.js'
import { startPostgres } from '../pg-helper.js'

const postgres = await startPostgres(t)

async function openPool (t: Test, url: string): Promise<pg.Pool> {
  const pool = new pg.Pool({ connectionString: url, max: 2 })
  t.teardown(() => pool.end())
  return pool
}

t.test('migrate applies every migration once; a second run finds nothing to do', async (t) => {
  const pool = await openPool(t, await postgres.createDatabase())
  t.equal(await readSchemaVersion(pool), 0)
  await t.rejects(checkSchema(pool), { name: 'SchemaError', message: /at version 0 \(0: never migrated\), this release needs 1: run `enos-mqtt-signer migrate` \(or start once with STORE_MIGRATE=true\)/ })
  t.same(await migrate(pool), { applied: MIGRATIONS.map((m) => m.version), version: SCHEMA_VERSION })
  t.same(await migrate(pool), { applied: [], version: SCHEMA_VERSION })
  t.equal(await checkSchema(pool), SCHEMA_VERSION)
  const { rows } = await pool.query('SELECT version, name FROM schema_migrations')
  t.same(rows, [{ version: 1, name: 'devices table' }])
})

t.test('two migrate runs at once (two replicas starting) take turns: one applies, the other finds it done', async (t) => {
  const url = await postgres.createDatabase()
  const [a, b] = await Promise.all([openPool(t, url), openPool(t, url)])
  const results = await Promise.all([migrate(a), migrate(b)])
  t.same(results.map((r) => r.applied.length).sort(), [0, 1])
  t.same(results.map((r) => r.version), [1, 1])
})

t.test('a schema newer than this release stops both the check and migrate, naming the way out', async (t) => {
  const pool = await openPool(t, await postgres.createDatabase())
  await migrate(pool)
  await pool.query("INSERT INTO schema_migrations (version, name) VALUES (99, 'from the future')")
  await t.rejects(checkSchema(pool), { name: 'SchemaError', message: 'the database schema is at version 99, newer than this release reads (1): run a release of enos-mqtt-signer that knows it' })
  await t.rejects(migrate(pool), SchemaError)
})

t.test('a migration that fails is rolled back and reported; the lock is let go', async (t) => {
  const pool = await openPool(t, await postgres.createDatabase())
  await pool.query('CREATE TABLE devices (x int)')
  await t.rejects(migrate(pool), { message: /relation "devices" already exists/ })
  t.equal(await readSchemaVersion(pool), 0, 'nothing recorded')
  await pool.query('DROP TABLE devices')
  t.same((await migrate(pool)).applied, [1], 'a later run can take the lock and succeed')
})

t.test('the devices table enforces the field rules of a device file', async (t) => {
  const pool = await openPool(t, await postgres.createDatabase())
  await migrate(pool)
  const insert = async (productKey: string, deviceKey: string, secret: string): Promise<unknown> =>
    pool.query('INSERT INTO devices (product_key, device_key, device_secret) VALUES ($1, $2, $3)', [productKey, deviceKey, secret])
  await insert('p.1:x', '%channel%', 'sécret 😀 with spaces, "quotes"')
  await insert('P', 'max', '😀'.repeat(128))
  await insert('P', 'k'.repeat(64), 's'.repeat(256))
  for (const [productKey, deviceKey, secret, constraint] of [
    ['P', 'a b', 's', 'devices_device_key_check'],
    ['P', 'k'.repeat(65), 's', 'devices_device_key_check'],
    ['', 'd', 's', 'devices_product_key_check'],
    ['P/1', 'd', 's', 'devices_product_key_check'],
    ['P', 'd', '', 'devices_device_secret_check'],
    ['P', 'd', 's'.repeat(257), 'devices_device_secret_check'],
    ['P', 'd', '😀'.repeat(128) + 's', 'devices_device_secret_check'],
    ['P', 'd', 'tab\there', 'devices_device_secret_check'],
    ['P', 'd', 'cr\r', 'devices_device_secret_check'],
    ['P', 'd', 'del\x7f', 'devices_device_secret_check'],
    ['P', 'd', 'c1\u0085', 'devices_device_secret_check']
  ] as const) {
    const err = await insert(productKey, deviceKey, secret).then(() => undefined, (e: unknown) => e)
    t.match(err, { constraint }, `${productKey.slice(0, 10)} ${deviceKey.slice(0, 10)} ${JSON.stringify(secret.slice(0, 10))} breaks ${constraint}`)
  }
  await t.rejects(insert('P', 'max', 'again'), { code: '23505' }, 'one row per productKey and deviceKey')
})

t.test('updated_at follows changes to a row, created_at stays', async (t) => {
  const pool = await openPool(t, await postgres.createDatabase())
  await migrate(pool)
  await pool.query("INSERT INTO devices (product_key, device_key, device_secret, created_at, updated_at) VALUES ('P', 'd', 's', now() - interval '1 day', now() - interval '1 day')")
  await pool.query("UPDATE devices SET device_secret = 'rotated'")
  const { rows } = await pool.query<{ fresh: boolean, old: boolean }>("SELECT updated_at > now() - interval '1 hour' AS fresh, created_at < now() - interval '1 hour' AS old FROM devices")
  t.same(rows, [{ fresh: true, old: true }])
})
