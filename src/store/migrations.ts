// The PostgreSQL schema, as numbered migrations applied in order (enos-mqtt-signer migrate, or STORE_MIGRATE=true).
import type { Pool, PoolClient } from 'pg'

export interface Migration {
  version: number
  name: string
  sql: string
}

/**
 * Never edit a migration once released: add the next one. The checks mirror src/core/fields.ts, so
 * a row the owner's own pipeline writes obeys the rules of a device file: keys 1-64 of
 * `[A-Za-z0-9_.:%-]`, a secret of 1-256 UTF-16 units (a character above U+FFFF counts twice, as in
 * JavaScript) without control characters (PostgreSQL text holds no NUL and no lone surrogate).
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'devices table',
    sql: `
CREATE TABLE devices (
  product_key text COLLATE "C" NOT NULL CONSTRAINT devices_product_key_check CHECK (product_key ~ '^[A-Za-z0-9_.:%-]{1,64}$'),
  device_key text COLLATE "C" NOT NULL CONSTRAINT devices_device_key_check CHECK (device_key ~ '^[A-Za-z0-9_.:%-]{1,64}$'),
  device_secret text NOT NULL CONSTRAINT devices_device_secret_check CHECK (
    char_length(device_secret) >= 1
    AND char_length(device_secret) + char_length(regexp_replace(device_secret, '[\\u0001-\\uffff]', '', 'g')) <= 256
    AND device_secret !~ '[\\u0001-\\u001f\\u007f-\\u009f]'
  ),
  enabled boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (product_key, device_key)
);
COMMENT ON TABLE devices IS 'enos-mqtt-signer: one row per device; the service reads it, owners write it (enos-mqtt-signer import, or their own pipeline)';
CREATE FUNCTION devices_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;
CREATE TRIGGER devices_touch BEFORE UPDATE ON devices
  FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION devices_touch();
`
  }
]

/** The schema version this release reads. */
export const SCHEMA_VERSION = MIGRATIONS.length

/** Any fixed number: replicas starting at once queue on it, so only one of them migrates. */
const MIGRATE_LOCK = 0x656e6f73

const CREATE_MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version integer PRIMARY KEY,
  name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
)`

/** The schema cannot be used by this release; the message says what to do. */
export class SchemaError extends Error {
  override name = 'SchemaError'
}

type Queryable = Pick<Pool | PoolClient, 'query'>

/** The version the database is at: 0 when it has never been migrated. */
export async function readSchemaVersion (db: Queryable): Promise<number> {
  const { rows } = await db.query<{ version: number | null }>(
    "SELECT CASE WHEN to_regclass('schema_migrations') IS NULL THEN 0 END AS version")
  if (rows[0]?.version === 0) return 0
  const result = await db.query<{ version: number | null }>('SELECT max(version) AS version FROM schema_migrations')
  return result.rows[0]?.version ?? 0
}

/**
 * Checks that the database holds the schema this release reads.
 * @throws SchemaError naming the command to run (older or missing) or the upgrade to make (newer).
 */
export async function checkSchema (db: Queryable): Promise<number> {
  const version = await readSchemaVersion(db)
  if (version > SCHEMA_VERSION) {
    throw new SchemaError(`the database schema is at version ${version}, newer than this release reads (${SCHEMA_VERSION}): run a release of enos-mqtt-signer that knows it`)
  }
  if (version < SCHEMA_VERSION) {
    throw new SchemaError(`the database schema is at version ${version} (0: never migrated), this release needs ${SCHEMA_VERSION}: ` +
      'run `enos-mqtt-signer migrate` (or start once with STORE_MIGRATE=true)')
  }
  return version
}

/**
 * Applies the migrations the database lacks, each in its own transaction, under an advisory lock so
 * that replicas (or two `migrate` runs) starting at once take turns; the second finds nothing to do.
 * @returns the versions applied now (empty when the schema was up to date) and the version reached.
 * @throws SchemaError when the database is newer than this release.
 */
export async function migrate (pool: Pool): Promise<{ applied: number[], version: number }> {
  const client = await pool.connect()
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATE_LOCK])
    try {
      await client.query(CREATE_MIGRATIONS_TABLE)
      const current = await readSchemaVersion(client)
      if (current > SCHEMA_VERSION) await checkSchema(client)
      const applied: number[] = []
      for (const migration of MIGRATIONS.filter((m) => m.version > current)) {
        await client.query('BEGIN')
        try {
          await client.query(migration.sql)
          await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name])
          await client.query('COMMIT')
        } catch (err) {
          await client.query('ROLLBACK')
          throw err
        }
        applied.push(migration.version)
      }
      return { applied, version: Math.max(current, SCHEMA_VERSION) }
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATE_LOCK])
    }
  } finally {
    client.release()
  }
}
