import t from 'tap'
import { ConfigError, EXAMPLE_STORE_FILE, loadConfig } from '../../src/config.js'

t.test('an empty environment gives the documented defaults on the bundled example store', async (t) => {
  const config = loadConfig({})
  t.same(config, {
    port: 8080,
    host: '127.0.0.1',
    storeFile: EXAMPLE_STORE_FILE,
    isExampleStore: true,
    storeWatch: true,
    signMethod: 'hmacsha1',
    mqtt: undefined,
    logLevel: 'info',
    authMode: 'none',
    bodyLimit: 16384,
    requestTimeoutMs: 10000,
    keepAliveTimeoutMs: 72000,
    shutdownTimeoutMs: 10000
  })
  t.ok(Object.isFrozen(config), 'the config cannot be changed after startup')
  t.match(EXAMPLE_STORE_FILE, /examples[/\\]devices\.json$/)
})

t.test('every variable is read and converted', async (t) => {
  const config = loadConfig({
    PORT: '9000',
    HOST: '0.0.0.0',
    STORE_FILE: '/data/devices.csv',
    STORE_WATCH: 'false',
    SIGN_METHOD: ' SHA256 ',
    MQTT_HOST: 'mqtt-cn4.envisioniot.com',
    MQTT_PORT: '18883',
    MQTT_TLS: 'true',
    MQTT_WEBSOCKET_URL: 'wss://mqtt-cn4.envisioniot.com:443/mqtt',
    LOG_LEVEL: 'warn',
    AUTH_MODE: 'none',
    BODY_LIMIT: '4096',
    REQUEST_TIMEOUT_MS: '5000',
    KEEP_ALIVE_TIMEOUT_MS: '1000',
    SHUTDOWN_TIMEOUT_MS: '2000'
  })
  t.match(config, {
    port: 9000,
    host: '0.0.0.0',
    storeFile: '/data/devices.csv',
    isExampleStore: false,
    storeWatch: false,
    signMethod: 'sha256',
    mqtt: { host: 'mqtt-cn4.envisioniot.com', port: 18883, tls: true, websocketUrl: 'wss://mqtt-cn4.envisioniot.com:443/mqtt' },
    logLevel: 'warn',
    bodyLimit: 4096,
    requestTimeoutMs: 5000,
    keepAliveTimeoutMs: 1000,
    shutdownTimeoutMs: 2000
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
    AUTH_MODE: 'token',
    BODY_LIMIT: '10',
    REQUEST_TIMEOUT_MS: '-1',
    KEEP_ALIVE_TIMEOUT_MS: '1.5',
    SHUTDOWN_TIMEOUT_MS: 'soon'
  }
  const err = t.throws(() => loadConfig(env)) as Error
  t.type(err, ConfigError)
  for (const name of Object.keys(env)) t.match(err.message, new RegExp(`^  ${name}: `, 'm'), `names ${name}`)
  t.equal(err.message.split('\n').length, Object.keys(env).length + 1, 'one line per variable')
  t.notMatch(err.message, /sometimes|hmacsha512|bad host!|example\.com|loud|soon/, 'values are not echoed')
})

t.test('AUTH_MODE accepts only none for now, with a reason', async (t) => {
  t.throws(() => loadConfig({ AUTH_MODE: 'apikey' }), { message: /AUTH_MODE: must be none/ })
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
