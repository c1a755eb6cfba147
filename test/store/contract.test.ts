// The store contract, run against every adapter: the file store with a JSON file and with a CSV file.
import { join } from 'node:path'
import t from 'tap'
import { createFileStore } from '../../src/store/file-store.js'
import type { Device } from '../../src/store/store.js'
import { runStoreContract } from './contract.js'

const silent = { info () {}, warn () {}, error () {} }

function toCsv (devices: readonly Device[]): string {
  const quote = (value: string): string => `"${value.replaceAll('"', '""')}"`
  const rows = devices.map((d) => [d.productKey, d.deviceKey, quote(d.deviceSecret), String(d.enabled)].join(','))
  return ['productKey,deviceKey,deviceSecret,enabled', ...rows].join('\n') + '\n'
}

runStoreContract(t, 'file store (JSON)', async (t, devices) => {
  const dir = t.testdir({ 'devices.json': JSON.stringify({ devices }) })
  return createFileStore({ path: join(dir, 'devices.json'), watch: false, log: silent })
})

runStoreContract(t, 'file store (CSV)', async (t, devices) => {
  const dir = t.testdir({ 'devices.csv': toCsv(devices) })
  return createFileStore({ path: join(dir, 'devices.csv'), watch: false, log: silent })
})
