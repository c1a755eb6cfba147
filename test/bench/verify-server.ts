// Benchmark target for verify-throughput.ts: the service (from src/) on a STORE_FILE whose lookups are counted.
// Listens on PORT and prints `Server listening at <url>`; answers the IPC message 'lookups' with the count so far.
import { pino } from 'pino'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { createFileStore } from '../../src/store/file-store.js'
import type { DeviceStore } from '../../src/store/store.js'

const config = loadConfig(process.env)
const inner = await createFileStore({ path: config.storeFile, watch: false, log: pino({ level: 'silent' }) })
let lookups = 0
const store: DeviceStore = {
  kind: 'counted-file',
  findDevice: async (productKey, deviceKey) => { lookups++; return await inner.findDevice(productKey, deviceKey) },
  findDevices: async (keys) => { lookups += keys.length; return await inner.findDevices(keys) },
  checkHealth: async () => await inner.checkHealth(),
  close: async () => { await inner.close() }
}
const app = await buildApp(config, { store })
const address = await app.listen({ port: config.port, host: config.host })
process.stdout.write(`Server listening at ${address}\n`)
process.on('message', () => { process.send?.(lookups) })
const stop = (): void => { app.close().then(() => process.exit(0), () => process.exit(1)) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
