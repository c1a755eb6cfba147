import t from 'tap'
import { ConfigError, EXAMPLE_STORE_FILE, loadConfig } from '../../src/config.js'

t.test('an empty environment gives the documented defaults on the bundled example store', async (t) => {
  const config = loadConfig({})
  t.same(config, {
    port: 8080,
    host: '127.0.0.1',
    store: 'file',
    database: { url: undefined, poolMax: 10, migrate: false, timeoutMs: 2000 },
    cache: { maxEntries: 100000, ttlMs: 60000, negativeTtlMs: 5000, negativeMaxEntries: 10000, staleMs: 3600000 },
    unknownLookupsPerCaller: 1000,
    storeFile: EXAMPLE_STORE_FILE,
    isExampleStore: true,
    storeWatch: true,
    storeSettleMs: 1000,
    storePollMs: 2000,
    storeMaxShrinkPercent: 0,
    signMethod: 'hmacsha1',
    mqtt: undefined,
    logLevel: 'info',
    auth: { mode: 'none', exampleOpen: true, tokensFile: undefined, mtlsIdentity: 'productKey/deviceKey' },
    rateLimit: { perCaller: 0, perDevice: 30, batchItemsPerCaller: 2_000_000, verifyPerDevice: 60, verifyPerCaller: 0, redisUrl: undefined },
    tls: undefined,
    maxConnections: undefined,
    listenBacklog: 4096,
    listenSockets: 16,
    overload: { busyMs: 50, queueMs: 100, maxInFlight: 1000, retryAfterMinS: 1, retryAfterMaxS: 30 },
    verify: { maxAgeMs: 0, notOurs: 'ignore', unknownCacheMs: 5000 },
    batchMaxItems: 1000,
    batchStream: { maxItems: 5_000_000, maxMs: 3_600_000, perCaller: 4 },
    bodyLimit: 16384,
    requestTimeoutMs: 10000,
    keepAliveTimeoutMs: 72000,
    shutdownTimeoutMs: 10000,
    metricsEnabled: true
  })
  t.ok(Object.isFrozen(config), 'the config cannot be changed after startup')
  t.match(EXAMPLE_STORE_FILE, /examples[/\\]devices\.json$/)
})

t.test('every variable is read and converted', async (t) => {
  const config = loadConfig({
    PORT: '9000',
    HOST: '0.0.0.0',
    STORE_FILE: '/data/devices.csv',
    STORE_WATCH: 'on',
    STORE_SETTLE_MS: '0',
    STORE_POLL_MS: '500',
    STORE_MAX_SHRINK_PERCENT: '25',
    SIGN_METHOD: ' SHA256 ',
    MQTT_HOST: 'mqtt-cn4.envisioniot.com',
    MQTT_PORT: '18883',
    MQTT_TLS: 'true',
    MQTT_WEBSOCKET_URL: 'wss://mqtt-cn4.envisioniot.com:443/mqtt',
    LOG_LEVEL: 'warn',
    AUTH_MODE: 'none',
    RATE_LIMIT_PER_CALLER: '100',
    RATE_LIMIT_PER_DEVICE: '0',
    RATE_LIMIT_REDIS_URL: 'redis://:pw@cache:6379/2',
    MAX_CONNECTIONS: '500',
    BODY_LIMIT: '4096',
    BATCH_STREAM_MAX_ITEMS: '2000000',
    BATCH_STREAM_MAX_MS: '600000',
    BATCH_STREAMS_PER_CALLER: '0',
    REQUEST_TIMEOUT_MS: '5000',
    KEEP_ALIVE_TIMEOUT_MS: '1000',
    SHUTDOWN_TIMEOUT_MS: '2000',
    METRICS_ENABLED: 'false'
  })
  t.match(config, {
    port: 9000,
    host: '0.0.0.0',
    storeFile: '/data/devices.csv',
    isExampleStore: false,
    storeWatch: true,
    storeSettleMs: 0,
    storePollMs: 500,
    storeMaxShrinkPercent: 25,
    signMethod: 'sha256',
    mqtt: { host: 'mqtt-cn4.envisioniot.com', port: 18883, tls: true, websocketUrl: 'wss://mqtt-cn4.envisioniot.com/mqtt' },
    logLevel: 'warn',
    auth: { mode: 'none', exampleOpen: false, tokensFile: undefined },
    rateLimit: { perCaller: 100, perDevice: 0, batchItemsPerCaller: 2_000_000, verifyPerDevice: 60, verifyPerCaller: 0, redisUrl: 'redis://:pw@cache:6379/2' },
    maxConnections: 500,
    batchStream: { maxItems: 2_000_000, maxMs: 600_000, perCaller: 0 },
    bodyLimit: 4096,
    requestTimeoutMs: 5000,
    keepAliveTimeoutMs: 1000,
    shutdownTimeoutMs: 2000,
    metricsEnabled: false
  })
})

t.test('an empty variable counts as unset', async (t) => {
  t.equal(loadConfig({ PORT: '', SIGN_METHOD: '' }).port, 8080)
  t.equal(loadConfig({ PORT: '', SIGN_METHOD: '' }).signMethod, 'hmacsha1')
})

t.test('MQTT_TLS=false describes a plain-TCP broker port', async (t) => {
  t.match(loadConfig({ MQTT_HOST: '10.0.0.5', MQTT_PORT: '11883', MQTT_TLS: 'false' }).mqtt, { host: '10.0.0.5', port: 11883, tls: false, websocketUrl: undefined })
})

t.test('every bad variable is named in one ConfigError, without its value', async (t) => {
  const env = {
    PORT: '70000',
    STORE_WATCH: 'sometimes',
    SIGN_METHOD: 'hmacsha512',
    MQTT_HOST: 'bad host!',
    MQTT_PORT: 'x',
    MQTT_TLS: 'maybe',
    MQTT_WEBSOCKET_URL: 'https://example.com/mqtt',
    LOG_LEVEL: 'loud',
    AUTH_MODE: 'apikey',
    BODY_LIMIT: '10',
    BATCH_STREAM_MAX_ITEMS: '0',
    BATCH_STREAM_MAX_MS: '999',
    BATCH_STREAMS_PER_CALLER: '-1',
    REQUEST_TIMEOUT_MS: '-1',
    KEEP_ALIVE_TIMEOUT_MS: '1.5',
    SHUTDOWN_TIMEOUT_MS: 'soon',
    METRICS_ENABLED: 'yes please'
  }
  const err = t.throws(() => loadConfig(env)) as Error
  t.type(err, ConfigError)
  for (const name of Object.keys(env)) t.match(err.message, new RegExp(`^  ${name}: `, 'm'), `names ${name}`)
  t.equal(err.message.split('\n').length, Object.keys(env).length + 1, 'one line per variable')
  t.notMatch(err.message, /sometimes|hmacsha512|bad host!|example\.com|loud|soon|please/, 'values are not echoed')
})

t.test('AUTH_MODE is token, mtls or none', async (t) => {
  t.throws(() => loadConfig({ AUTH_MODE: 'apikey' }), { message: /AUTH_MODE: must be token, mtls, none/ })
})

t.test('with a real store and AUTH_MODE unset, access control is token, and a token file is required: the message names both ways out', async (t) => {
  const err = t.throws(() => loadConfig({ STORE_FILE: '/data/devices.csv' })) as Error
  t.equal(err.message, 'Invalid configuration:\n  AUTH_TOKENS_FILE: is required with AUTH_MODE=token (the default with a real store): ' +
    'create a token file (enos-mqtt-signer token create), or set AUTH_MODE=none to run the API open on purpose')
  t.match(loadConfig({ STORE_FILE: '/data/devices.csv', AUTH_TOKENS_FILE: '/run/secrets/tokens.json' }).auth, { mode: 'token', exampleOpen: false, tokensFile: '/run/secrets/tokens.json' })
  t.match(loadConfig({ STORE_FILE: '/data/devices.csv', AUTH_MODE: 'none' }).auth, { mode: 'none', exampleOpen: false })
  t.throws(() => loadConfig({ AUTH_MODE: 'token' }), { message: /AUTH_TOKENS_FILE: is required with AUTH_MODE=token: / }, 'asked for explicitly, with the example store too')
})

t.test('the bundled example store runs open while AUTH_MODE is unset, and obeys AUTH_MODE when it is set', async (t) => {
  t.same(loadConfig({}).auth, { mode: 'none', exampleOpen: true, tokensFile: undefined, mtlsIdentity: 'productKey/deviceKey' })
  t.same(loadConfig({ AUTH_MODE: 'token', AUTH_TOKENS_FILE: '/t.json' }).auth, { mode: 'token', exampleOpen: false, tokensFile: '/t.json', mtlsIdentity: 'productKey/deviceKey' })
})

t.test('with AUTH_MODE unset, a token file or a client CA asks for access control, on the example store too', async (t) => {
  const tls = { TLS_CERT_FILE: '/tls/cert.pem', TLS_KEY_FILE: '/tls/key.pem' }
  t.same(loadConfig({ AUTH_TOKENS_FILE: '/t.json' }).auth, { mode: 'token', exampleOpen: false, tokensFile: '/t.json', mtlsIdentity: 'productKey/deviceKey' }, 'a token file: token')
  t.match(loadConfig({ ...tls, TLS_CLIENT_CA_FILE: '/tls/ca.pem' }).auth, { mode: 'mtls', exampleOpen: false, tokensFile: undefined }, 'a client CA: mtls')
  t.match(loadConfig({ ...tls, TLS_CLIENT_CA_FILE: '/tls/ca.pem', AUTH_TOKENS_FILE: '/t.json' }).auth, { mode: 'mtls', exampleOpen: false, tokensFile: '/t.json' }, 'both: mtls, which takes tokens too')
  t.match(loadConfig({ STORE_FILE: '/d.csv', ...tls, TLS_CLIENT_CA_FILE: '/tls/ca.pem' }).auth, { mode: 'mtls' }, 'a client CA with a real store: mtls, no token file needed')
  t.throws(() => loadConfig({ TLS_CLIENT_CA_FILE: '/tls/ca.pem' }), {
    message: 'Invalid configuration:\n  TLS_CERT_FILE: is required with AUTH_MODE=mtls (the default with TLS_CLIENT_CA_FILE)\n  TLS_KEY_FILE: is required with AUTH_MODE=mtls (the default with TLS_CLIENT_CA_FILE)'
  })
  t.match(loadConfig({ STORE_FILE: '/d.csv', AUTH_MODE: 'none' }).auth, { mode: 'none', exampleOpen: false }, 'open on purpose is not the example\'s open default')
})

t.test('a setting that has no effect in the mode in force stops startup', async (t) => {
  const tls = { TLS_CERT_FILE: '/tls/cert.pem', TLS_KEY_FILE: '/tls/key.pem' }
  t.throws(() => loadConfig({ AUTH_MODE: 'none', AUTH_TOKENS_FILE: '/t.json', ...tls, TLS_CLIENT_CA_FILE: '/tls/ca.pem', MTLS_IDENTITY: 'deviceKey' }), {
    message: 'Invalid configuration:\n' +
      '  AUTH_TOKENS_FILE: has no effect with AUTH_MODE=none (no token is asked for): unset AUTH_MODE to use it\n' +
      '  MTLS_IDENTITY: has no effect without AUTH_MODE=mtls\n' +
      '  TLS_CLIENT_CA_FILE: has no effect with AUTH_MODE=none (client certificates are checked with AUTH_MODE=mtls)'
  })
  t.throws(() => loadConfig({ AUTH_MODE: 'token', AUTH_TOKENS_FILE: '/t.json', ...tls, TLS_CLIENT_CA_FILE: '/tls/ca.pem' }), {
    message: 'Invalid configuration:\n  TLS_CLIENT_CA_FILE: has no effect with AUTH_MODE=token (client certificates are checked with AUTH_MODE=mtls)'
  })
  t.throws(() => loadConfig({ STORE_WATCH: 'false', STORE_POLL_MS: '500', STORE_MAX_SHRINK_PERCENT: '10', STORE_SETTLE_MS: '100' }), {
    message: 'Invalid configuration:\n  STORE_POLL_MS: has no effect with STORE_WATCH=false (only SIGHUP reloads then)\n  STORE_MAX_SHRINK_PERCENT: has no effect with STORE_WATCH=false (only SIGHUP reloads then)'
  }, 'STORE_SETTLE_MS still rules how long SIGHUP waits out a file being written')
  t.throws(() => loadConfig({ STORE: 'postgres', AUTH_MODE: 'none', STORE_WATCH: 'false', STORE_POLL_MS: '500' }), { message: 'Invalid configuration:\n  STORE_POLL_MS: has no effect with STORE_WATCH=false (only SIGHUP reloads then)' })
  t.equal(loadConfig({ STORE_WATCH: 'true', STORE_POLL_MS: '500' }).storePollMs, 500)
})

t.test('TLS needs its certificate and key together; mtls needs all three files; MTLS_IDENTITY needs mtls', async (t) => {
  const tls = { TLS_CERT_FILE: '/tls/cert.pem', TLS_KEY_FILE: '/tls/key.pem' }
  t.same(loadConfig(tls).tls, { certFile: '/tls/cert.pem', keyFile: '/tls/key.pem', clientCaFile: undefined, crlFile: undefined })
  t.throws(() => loadConfig({ TLS_CERT_FILE: '/tls/cert.pem' }), { message: 'Invalid configuration:\n  TLS_KEY_FILE: is required with TLS_CERT_FILE' })
  t.throws(() => loadConfig({ TLS_KEY_FILE: '/tls/key.pem' }), { message: 'Invalid configuration:\n  TLS_CERT_FILE: is required with TLS_KEY_FILE' })
  t.throws(() => loadConfig({ AUTH_MODE: 'token', AUTH_TOKENS_FILE: '/t.json', TLS_CLIENT_CA_FILE: '/tls/ca.pem' }), { message: /TLS_CLIENT_CA_FILE: has no effect with AUTH_MODE=token/ })
  t.throws(() => loadConfig({ AUTH_MODE: 'mtls' }), {
    message: 'Invalid configuration:\n  TLS_CERT_FILE: is required with AUTH_MODE=mtls\n  TLS_KEY_FILE: is required with AUTH_MODE=mtls\n  TLS_CLIENT_CA_FILE: is required with AUTH_MODE=mtls'
  })
  t.throws(() => loadConfig({ MTLS_IDENTITY: 'deviceKey' }), { message: /MTLS_IDENTITY: has no effect without AUTH_MODE=mtls/ })
  t.throws(() => loadConfig({ AUTH_MODE: 'mtls', ...tls, TLS_CLIENT_CA_FILE: '/tls/ca.pem', MTLS_IDENTITY: 'serial' }), { message: /MTLS_IDENTITY: must be deviceKey or productKey\/deviceKey/ })
  t.match(loadConfig({ AUTH_MODE: 'mtls', ...tls, TLS_CLIENT_CA_FILE: '/tls/ca.pem', MTLS_IDENTITY: 'productKey/deviceKey' }), {
    auth: { mode: 'mtls', mtlsIdentity: 'productKey/deviceKey' },
    tls: { clientCaFile: '/tls/ca.pem' }
  })
  t.match(loadConfig({ AUTH_MODE: 'mtls', ...tls, TLS_CLIENT_CA_FILE: '/tls/ca.pem', MTLS_IDENTITY: 'deviceKey' }).auth, { mtlsIdentity: 'deviceKey' }, 'the deviceKey rule only when asked for')
})

t.test('MTLS_IDENTITY defaults to productKey/deviceKey: a bare deviceKey would sign for that deviceKey in every product', async (t) => {
  const mtls = { AUTH_MODE: 'mtls', TLS_CERT_FILE: '/tls/cert.pem', TLS_KEY_FILE: '/tls/key.pem', TLS_CLIENT_CA_FILE: '/tls/ca.pem' }
  t.equal(loadConfig(mtls).auth.mtlsIdentity, 'productKey/deviceKey')
})

t.test('TLS_CRL_FILE checks client certificates, so it needs TLS_CLIENT_CA_FILE', async (t) => {
  const tls = { TLS_CERT_FILE: '/tls/cert.pem', TLS_KEY_FILE: '/tls/key.pem' }
  t.throws(() => loadConfig({ ...tls, TLS_CRL_FILE: '/tls/crl.pem' }), { message: 'Invalid configuration:\n  TLS_CRL_FILE: has no effect without TLS_CLIENT_CA_FILE' })
  t.match(loadConfig({ ...tls, TLS_CLIENT_CA_FILE: '/tls/ca.pem', TLS_CRL_FILE: '/tls/crl.pem' }).tls, { clientCaFile: '/tls/ca.pem', crlFile: '/tls/crl.pem' })
})

t.test('RATE_LIMIT_PER_CALLER unset: 6000 a minute with tokens or certificates, off when open (a NAT or a proxy makes many devices one address); set, it counts in every mode', async (t) => {
  const tokens = { AUTH_TOKENS_FILE: '/run/tokens.json' }
  const mtls = { AUTH_MODE: 'mtls', TLS_CERT_FILE: '/tls/cert.pem', TLS_KEY_FILE: '/tls/key.pem', TLS_CLIENT_CA_FILE: '/tls/ca.pem' }
  t.equal(loadConfig(tokens).rateLimit.perCaller, 6000)
  t.equal(loadConfig(mtls).rateLimit.perCaller, 6000)
  t.equal(loadConfig({ STORE_FILE: '/data/devices.csv', AUTH_MODE: 'none' }).rateLimit.perCaller, 0)
  t.equal(loadConfig({ STORE_FILE: '/data/devices.csv', AUTH_MODE: 'none', RATE_LIMIT_PER_CALLER: '600' }).rateLimit.perCaller, 600)
  t.equal(loadConfig({ ...tokens, RATE_LIMIT_PER_CALLER: '' }).rateLimit.perCaller, 6000, 'empty is unset')
  t.throws(() => loadConfig({ RATE_LIMIT_PER_CALLER: '1000001' }), { message: /RATE_LIMIT_PER_CALLER: must be a whole number from 0 to 1000000/ })
})

t.test('rate limits: 0 turns one off; the Redis URL must be redis:// or rediss://', async (t) => {
  t.same(loadConfig({ RATE_LIMIT_PER_CALLER: '0', RATE_LIMIT_PER_DEVICE: '0', RATE_LIMIT_BATCH_ITEMS_PER_CALLER: '0', RATE_LIMIT_VERIFY_PER_DEVICE: '0' }).rateLimit,
    { perCaller: 0, perDevice: 0, batchItemsPerCaller: 0, verifyPerDevice: 0, verifyPerCaller: 0, redisUrl: undefined })
  t.same(loadConfig({ RATE_LIMIT_BATCH_ITEMS_PER_CALLER: '50000', RATE_LIMIT_VERIFY_PER_DEVICE: '10', RATE_LIMIT_VERIFY_PER_CALLER: '100000' }).rateLimit,
    { perCaller: 0, perDevice: 30, batchItemsPerCaller: 50_000, verifyPerDevice: 10, verifyPerCaller: 100_000, redisUrl: undefined })
  t.throws(() => loadConfig({ RATE_LIMIT_BATCH_ITEMS_PER_CALLER: '100000001', RATE_LIMIT_VERIFY_PER_DEVICE: 'x' }),
    { message: /RATE_LIMIT_BATCH_ITEMS_PER_CALLER: must be a whole number from 0 to 100000000[\s\S]*RATE_LIMIT_VERIFY_PER_DEVICE: must be a whole number/ })
  t.throws(() => loadConfig({ RATE_LIMIT_REDIS_URL: 'http://cache:6379' }), { message: /RATE_LIMIT_REDIS_URL: must be a redis:\/\/ or rediss:\/\/ URL/ })
  t.throws(() => loadConfig({ RATE_LIMIT_PER_DEVICE: '-1' }), { message: /RATE_LIMIT_PER_DEVICE: must be a whole number from 0 to 1000000/ })
})

t.test('numbers must be plain digits: no hex, exponents or blanks', async (t) => {
  for (const value of [' ', '0x1F90', '1e3', '80.5', '-1', '8080abc']) {
    t.throws(() => loadConfig({ PORT: value }), { message: /PORT: must be a port number from 0 to 65535/ }, JSON.stringify(value))
  }
  t.equal(loadConfig({ PORT: ' 9000 ' }).port, 9000, 'surrounding blanks are trimmed')
  t.throws(() => loadConfig({ BODY_LIMIT: '16k' }), { message: /BODY_LIMIT: must be a whole number of bytes/ })
})

t.test('a broker port of 0 is refused, and the WebSocket URL must be wss://', async (t) => {
  t.throws(() => loadConfig({ MQTT_HOST: 'h', MQTT_PORT: '0' }), { message: /MQTT_PORT: must be a port number from 1 to 65535/ })
  t.throws(() => loadConfig({ MQTT_HOST: 'h', MQTT_WEBSOCKET_URL: 'ws://h/mqtt' }), { message: /MQTT_WEBSOCKET_URL: must be a secure WebSocket URL/ })
})

t.test('broker settings without MQTT_HOST are refused instead of silently ignored', async (t) => {
  const err = t.throws(() => loadConfig({ MQTT_PORT: '11883', MQTT_TLS: 'false', MQTT_WEBSOCKET_URL: 'wss://h/mqtt' })) as Error
  t.equal(err.message, [
    'Invalid configuration:',
    '  MQTT_PORT: has no effect without MQTT_HOST',
    '  MQTT_TLS: has no effect without MQTT_HOST',
    '  MQTT_WEBSOCKET_URL: has no effect without MQTT_HOST'
  ].join('\n'))
  const both = t.throws(() => loadConfig({ PORT: 'x', MQTT_TLS: 'false' })) as Error
  t.match(both.message, /PORT: must be a port number[\s\S]*MQTT_TLS: has no effect without MQTT_HOST/, 'listed together with the other problems')
})

t.test('HOST must be an IP address or a host name: a port or a scheme in it is named as the mistake', async (t) => {
  for (const host of ['0.0.0.0', '::', '::1', '127.0.0.1', 'localhost', 'signer.internal', 'a-b.example.com.']) {
    t.equal(loadConfig({ HOST: host }).host, host, host)
  }
  for (const host of ['localhost:8080', 'http://localhost', '[::1]', 'bad host', '-lead.example', 'x'.repeat(64), 'a..b']) {
    t.throws(() => loadConfig({ HOST: host }), { message: 'Invalid configuration:\n  HOST: must be an IP address or a host name (no port, no scheme)' }, host)
  }
})

t.test('MQTT_WEBSOCKET_URL is returned in normal form, and refused with spaces, quotes, brackets, credentials or no host', async (t) => {
  const url = (value: string): string | undefined => loadConfig({ MQTT_HOST: 'h', MQTT_WEBSOCKET_URL: value }).mqtt?.websocketUrl
  t.equal(url('wss://MQTT.Example.com:443/mqtt'), 'wss://mqtt.example.com/mqtt', 'host lower-cased, default port dropped')
  t.equal(url('wss://mqtt.example.com:8084'), 'wss://mqtt.example.com:8084/')
  t.equal(url(' wss://h/mqtt?x=1 '), 'wss://h/mqtt?x=1')
  for (const bad of ['wss://h/mq tt', 'wss://h/"mqtt"', 'wss://h/<script>', "wss://h/'", 'wss://user:pw@h/mqtt', 'wss:///mqtt', 'wss://', 'mqtt', 'ws://h/mqtt', 'https://h/mqtt', 'wss://h/a\\b', 'wss://h/\u00e9', 'wss://h:99999/mqtt']) {
    t.throws(() => url(bad), { message: /MQTT_WEBSOCKET_URL: must be a secure WebSocket URL \(wss:\/\/host\[:port\]\/path\) without spaces, quotes, angle brackets or credentials/ }, bad)
  }
})

t.test('the store reload settings and MAX_CONNECTIONS have bounds', async (t) => {
  const err = t.throws(() => loadConfig({ STORE_SETTLE_MS: '-1', STORE_POLL_MS: '50', STORE_MAX_SHRINK_PERCENT: '101', MAX_CONNECTIONS: '0' })) as Error
  t.equal(err.message, [
    'Invalid configuration:',
    '  STORE_SETTLE_MS: must be a whole number of milliseconds from 0 to 3600000',
    '  STORE_POLL_MS: must be a whole number of milliseconds from 100 to 3600000',
    '  STORE_MAX_SHRINK_PERCENT: must be a whole number from 0 to 100',
    '  MAX_CONNECTIONS: must be a whole number from 1 to 1000000'
  ].join('\n'))
})

t.test('POST /verify settings: age and cache in ms (0 turns each off), VERIFY_NOT_OURS ignore or deny', async (t) => {
  t.same(loadConfig({ MAX_CREDENTIAL_AGE_MS: '600000', VERIFY_NOT_OURS: 'deny', VERIFY_UNKNOWN_CACHE_MS: '0' }).verify, { maxAgeMs: 600000, notOurs: 'deny', unknownCacheMs: 0 })
  const err = t.throws(() => loadConfig({ MAX_CREDENTIAL_AGE_MS: '700000000', VERIFY_NOT_OURS: 'allow', VERIFY_UNKNOWN_CACHE_MS: '-5' })) as Error
  t.equal(err.message, [
    'Invalid configuration:',
    '  MAX_CREDENTIAL_AGE_MS: must be a whole number of milliseconds from 0 to 604800000 (7 days)',
    '  VERIFY_NOT_OURS: must be ignore or deny',
    '  VERIFY_UNKNOWN_CACHE_MS: must be a whole number of milliseconds from 0 to 3600000'
  ].join('\n'))
})

t.test('STORE=postgres reads the database and cache settings; the file store is not the example then', async (t) => {
  const config = loadConfig({
    STORE: 'postgres',
    DATABASE_URL: 'postgresql://signer:pw@db:5432/devices?sslmode=require',
    DATABASE_POOL_MAX: '4',
    STORE_MIGRATE: 'true',
    STORE_TIMEOUT_MS: '500',
    CACHE_MAX_ENTRIES: '0',
    CACHE_TTL_MS: '1000',
    CACHE_NEGATIVE_TTL_MS: '0',
    CACHE_NEGATIVE_MAX_ENTRIES: '7',
    CACHE_STALE_MS: '0',
    RATE_LIMIT_UNKNOWN_PER_CALLER: '0',
    AUTH_MODE: 'none'
  })
  t.match(config, {
    store: 'postgres',
    isExampleStore: false,
    database: { url: 'postgresql://signer:pw@db:5432/devices?sslmode=require', poolMax: 4, migrate: true, timeoutMs: 500 },
    cache: { maxEntries: 0, ttlMs: 1000, negativeTtlMs: 0, negativeMaxEntries: 7, staleMs: 0 },
    unknownLookupsPerCaller: 0,
    auth: { mode: 'none', exampleOpen: false }
  })
  t.equal(loadConfig({ STORE: 'postgres', AUTH_MODE: 'none' }).database.url, undefined, 'unset: the PG* variables')
})

t.test('STORE=postgres with AUTH_MODE unset is a real store: token mode, which needs a token file', async (t) => {
  t.throws(() => loadConfig({ STORE: 'postgres' }), { message: /AUTH_TOKENS_FILE: is required with AUTH_MODE=token \(the default with a real store\)/ })
  t.match(loadConfig({ STORE: 'postgres', AUTH_TOKENS_FILE: '/t.json' }).auth, { mode: 'token' })
})

t.test('bad database settings are named, without the URL and its password; settings of the store not in use are refused', async (t) => {
  const err = t.throws(() => loadConfig({
    STORE: 'redis',
    DATABASE_URL: 'mysql://u:hunter2pw@db/x',
    DATABASE_POOL_MAX: '0',
    STORE_MIGRATE: 'maybe',
    STORE_TIMEOUT_MS: '5',
    CACHE_MAX_ENTRIES: '-1',
    CACHE_TTL_MS: '0',
    CACHE_NEGATIVE_TTL_MS: 'x',
    CACHE_NEGATIVE_MAX_ENTRIES: '-3',
    CACHE_STALE_MS: '3600001'
  })) as Error
  for (const name of ['STORE: must be file or postgres', 'DATABASE_URL: must be a postgres:// or postgresql:// URL', 'DATABASE_POOL_MAX', 'STORE_MIGRATE: must be true or false',
    'STORE_TIMEOUT_MS', 'CACHE_MAX_ENTRIES', 'CACHE_TTL_MS', 'CACHE_NEGATIVE_TTL_MS', 'CACHE_NEGATIVE_MAX_ENTRIES', 'CACHE_STALE_MS']) t.match(err.message, name)
  t.notMatch(err.message, /hunter2pw/)
  t.throws(() => loadConfig({ DATABASE_URL: 'postgres://db/x', CACHE_TTL_MS: '10' }), {
    message: 'Invalid configuration:\n  DATABASE_URL: has no effect with STORE=file\n  CACHE_TTL_MS: has no effect with STORE=file'
  })
  t.throws(() => loadConfig({ RATE_LIMIT_UNKNOWN_PER_CALLER: '5' }), {
    message: 'Invalid configuration:\n  RATE_LIMIT_UNKNOWN_PER_CALLER: has no effect with STORE=file'
  }, 'the file store answers every lookup from memory: there is no database to protect')
  t.throws(() => loadConfig({ STORE: 'postgres', AUTH_MODE: 'none', STORE_FILE: '/d.csv', STORE_MAX_SHRINK_PERCENT: '5' }), {
    message: 'Invalid configuration:\n  STORE_FILE: has no effect with STORE=postgres\n  STORE_MAX_SHRINK_PERCENT: has no effect with STORE=postgres'
  })
})

t.test('a variable close to a setting stops startup, naming the setting it probably meant; the value is not echoed', async (t) => {
  t.throws(() => loadConfig({ STORE_FIEL: '/data/devices.csv', PGHOST: 'db', NODE_ENV: 'production', HOSTNAME: 'pod-1' }), {
    message: 'Invalid configuration:\n  STORE_FIEL: is not a setting of this service; did you mean STORE_FILE?'
  })
  const err = t.throws(() => loadConfig({ PORT: 'x', AUTH_TOKEN_FILE: '/secret/tokens.json' })) as Error
  t.match(err.message, /PORT: must be a port number[\s\S]*AUTH_TOKEN_FILE: is not a setting of this service; did you mean AUTH_TOKENS_FILE\?/, 'listed with the other problems')
  t.notMatch(err.message, /secret/)
  t.equal(loadConfig({ MQTT_CA_FILE: 'ca.pem', SIGNER_URL: 'http://127.0.0.1:8080', ENOS_SIGNER_TOKEN: 't' }).port, 8080, 'the variables of the CLI and the device examples pass')
})

t.test('MQTT_PORT holding a Kubernetes service link (a Service named mqtt) is named as one, with the way out', async (t) => {
  const links = { MQTT_PORT: 'tcp://10.0.0.1:1883', MQTT_SERVICE_HOST: '10.0.0.1', MQTT_SERVICE_PORT: '1883', MQTT_PORT_1883_TCP: 'tcp://10.0.0.1:1883', MQTT_PORT_1883_TCP_ADDR: '10.0.0.1' }
  const message = 'Invalid configuration:\n  MQTT_PORT: holds a Kubernetes service link (tcp://address:port of a Service named mqtt), not a port: set enableServiceLinks: false in the pod spec'
  t.throws(() => loadConfig(links), { message }, 'without MQTT_HOST')
  t.throws(() => loadConfig({ ...links, MQTT_HOST: 'mqtt-cn4.envisioniot.com' }), { message }, 'and with it')
  t.equal(loadConfig({ MQTT_HOST: 'h', MQTT_SERVICE_HOST: '10.0.0.1', MQTT_PORT_1883_TCP: 'tcp://10.0.0.1:1883' }).mqtt?.port, 8883, 'the other link variables are left alone')
})

t.test('admission control and the listen backlog: whole numbers in range, 0 turns a bound off, the Retry-After range in order', async (t) => {
  t.match(loadConfig({ LISTEN_BACKLOG: '511', LISTEN_SOCKETS: '1', OVERLOAD_BUSY_MS: '0', OVERLOAD_QUEUE_MS: '0', OVERLOAD_MAX_IN_FLIGHT: '0', OVERLOAD_RETRY_AFTER_MIN_S: '5', OVERLOAD_RETRY_AFTER_MAX_S: '5' }), {
    listenBacklog: 511,
    listenSockets: 1,
    overload: { busyMs: 0, queueMs: 0, maxInFlight: 0, retryAfterMinS: 5, retryAfterMaxS: 5 }
  })
  t.throws(() => loadConfig({ LISTEN_BACKLOG: '0', LISTEN_SOCKETS: '65', OVERLOAD_BUSY_MS: '60001', OVERLOAD_QUEUE_MS: 'x', OVERLOAD_MAX_IN_FLIGHT: '-1', OVERLOAD_RETRY_AFTER_MIN_S: '0', OVERLOAD_RETRY_AFTER_MAX_S: '3601' }), {
    message: /LISTEN_BACKLOG: must be a whole number from 1 to 65535\n.*LISTEN_SOCKETS: must be a whole number from 1 to 64\n.*OVERLOAD_BUSY_MS: .*\n.*OVERLOAD_QUEUE_MS: .*\n.*OVERLOAD_MAX_IN_FLIGHT: .*\n.*OVERLOAD_RETRY_AFTER_MIN_S: .*\n.*OVERLOAD_RETRY_AFTER_MAX_S: /
  })
  t.throws(() => loadConfig({ OVERLOAD_RETRY_AFTER_MIN_S: '40' }), { name: 'ConfigError', message: /OVERLOAD_RETRY_AFTER_MIN_S: must not be more than OVERLOAD_RETRY_AFTER_MAX_S/ })
})
