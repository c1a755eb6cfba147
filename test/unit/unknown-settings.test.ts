import t from 'tap'
import { envSchema } from '../../src/config.js'
import { editDistance, isServiceLink, unknownSettings } from '../../src/unknown-settings.js'

const KNOWN = [...Object.keys(envSchema.shape), 'ENOS_SIGNER_TOKEN']

t.test('a near miss of a setting is named with the setting it probably meant', async (t) => {
  const misses: Array<[string, string]> = [
    ['STORE_FIEL', 'STORE_FILE'],
    ['STORE_FILES', 'STORE_FILE'],
    ['STOREFILE', 'STORE_FILE'],
    ['store_file', 'STORE_FILE'],
    ['AUTH_TOKEN_FILE', 'AUTH_TOKENS_FILE'],
    ['AUTH_TOKENS', 'AUTH_TOKENS_FILE'],
    ['AUTHMODE', 'AUTH_MODE'],
    ['RATE_LIMIT_PER_CLIENT', 'RATE_LIMIT_PER_CALLER'],
    ['RATE_LIMIT_REDIS', 'RATE_LIMIT_REDIS_URL'],
    ['TLS_CA_FILE', 'TLS_CLIENT_CA_FILE'],
    ['TLS_KEY', 'TLS_KEY_FILE'],
    ['DATABASE', 'DATABASE_URL'],
    ['TLS_CERT', 'TLS_CERT_FILE'],
    ['MTLS_IDENTTIY', 'MTLS_IDENTITY'],
    ['MQTT_HSOT', 'MQTT_HOST'],
    ['DATABASE_URI', 'DATABASE_URL'],
    ['CACHE_TTL', 'CACHE_TTL_MS'],
    ['LOGLEVEL', 'LOG_LEVEL'],
    ['LOG_LVL', 'LOG_LEVEL'],
    ['SHUTDOWN_TIMEOUT', 'SHUTDOWN_TIMEOUT_MS'],
    ['VERIFY_NOT_OUR', 'VERIFY_NOT_OURS'],
    ['BATCH_MAX', 'BATCH_MAX_ITEMS'],
    ['METRICS', 'METRICS_ENABLED'],
    ['SIGNMETHOD', 'SIGN_METHOD'],
    ['PROT', 'PORT'],
    ['HOTS', 'HOST'],
    ['ENOS_SIGNER_TOKN', 'ENOS_SIGNER_TOKEN']
  ]
  for (const [name, meant] of misses) {
    t.same(unknownSettings({ [name]: 'x' }, KNOWN), [`  ${name}: is not a setting of this service; did you mean ${meant}?`], name)
  }
})

t.test('our own, the platform\'s and Kubernetes\' variables pass', async (t) => {
  const env: Record<string, string> = Object.fromEntries(KNOWN.map((name) => [name, 'x']))
  for (const name of ['PATH', 'HOME', 'HOSTNAME', 'TERM', 'USER', 'LANG', 'SHELL', 'PWD', 'SHLVL', 'TZ', 'TMPDIR', 'LC_ALL', 'NODE_ENV', 'NODE_OPTIONS',
    'NODE_EXTRA_CA_CERTS', 'npm_config_cache', 'npm_lifecycle_event', 'PGHOST', 'PGPORT', 'PGUSER', 'PGPASSWORD', 'PGDATABASE', 'PGSSLMODE', 'PGAPPNAME',
    'SSL_CERT_FILE', 'SSL_CERT_DIR', 'HTTP_PROXY', 'https_proxy', 'NO_PROXY', 'TAP', 'TAP_CHILD_ID', '_TAPJS_PROCESSINFO_CWD_', 'TS_NODE_TRANSPILE_ONLY',
    'KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT', 'KUBERNETES_SERVICE_PORT_HTTPS', 'KUBERNETES_PORT', 'KUBERNETES_PORT_443_TCP_ADDR',
    'MQTT_SERVICE_HOST', 'MQTT_SERVICE_PORT', 'MQTT_SERVICE_PORT_MQTTS', 'MQTT_PORT_1883_TCP', 'MQTT_PORT_1883_TCP_PROTO', 'MQTT_PORT_1883_TCP_PORT',
    'MQTT_PORT_1883_TCP_ADDR', 'STORE_SERVICE_HOST', 'STORE_PORT_8080_TCP', 'AUTH_PORT_443_UDP_ADDR', 'ENOS_MQTT_SIGNER_SERVICE_HOST',
    'ENOS_MQTT_SIGNER_PORT_8080_TCP_PORT', 'HOSTTYPE', 'UV_THREADPOOL_SIZE', 'FORCE_COLOR', 'NO_COLOR', 'DEBUG', 'CI', 'REDIS_URL', 'SECRET_KEY',
    'APP_PORT', 'SERVICE_NAME', 'CONTAINER_NAME', 'OTEL_EXPORTER_OTLP_ENDPOINT', 'AWS_REGION', 'EDITOR', 'COLOR', 'NODE', '_']) env[name] = 'x'
  env.STORE_PORT = 'tcp://10.0.0.7:8080'
  env.ENOS_MQTT_SIGNER_PORT = 'tcp://10.0.0.9:8080'
  t.same(unknownSettings(env, KNOWN), [])
  t.same(unknownSettings({ STORE_PORT: '8080' }, KNOWN), ['  STORE_PORT: is not a setting of this service; did you mean STORE_FILE?'], 'not a link: a setting-like name')
})

t.test('service links and the edit distance', async (t) => {
  t.ok(isServiceLink('MQTT_PORT', 'tcp://10.0.0.1:1883'))
  t.ok(isServiceLink('X_PORT', 'UDP://[fd00::1]:53'))
  t.notOk(isServiceLink('MQTT_PORT', '1883'))
  t.notOk(isServiceLink('MQTT_HOST', 'tcp://10.0.0.1:1883'))
  t.notOk(isServiceLink('MQTT_PORT', undefined))
  t.equal(editDistance('STORE_FILE', 'STORE_FIEL', 5), 1, 'a transposition is one edit')
  t.equal(editDistance('abc', 'abc', 0), 0)
  t.equal(editDistance('kitten', 'sitting', 5), 3)
  t.equal(editDistance('a', 'abcd', 2), 3, 'past max: max + 1')
  t.equal(editDistance('abcd', 'wxyz', 1), 2, 'given up early')
})
