// The devices of the bundled example store (examples/devices.json), to tell that store by its content rather than by its path.
import type { Device } from './store.js'

/**
 * The four example devices, written out here because the file itself may be replaced: a volume
 * mounted over examples/devices.json must not be served open as if it were the example.
 */
export const EXAMPLE_DEVICES: readonly Device[] = Object.freeze([
  { productKey: '123', deviceKey: 'test', deviceSecret: 'deviceSecret', enabled: true },
  { productKey: 'Ab12Cd34', deviceKey: 'boiler-0001', deviceSecret: '5eCr3tF0rB0iLer0001aBcDeFgHiJkL', enabled: true },
  { productKey: 'Ab12Cd34', deviceKey: 'boiler-0002', deviceSecret: '5eCr3tF0rB0iLer0002aBcDeFgHiJkL', enabled: true },
  { productKey: 'Ab12Cd34', deviceKey: 'retired-0003', deviceSecret: '5eCr3tF0rB0iLer0003aBcDeFgHiJkL', enabled: false }
])

/** True when `devices` are exactly the example devices, in any order: no other device, no other secret or state. */
export function isExampleDevices (devices: ReadonlyMap<string, Device>): boolean {
  if (devices.size !== EXAMPLE_DEVICES.length) return false
  const served = [...devices.values()]
  return EXAMPLE_DEVICES.every((example) => served.some((device) =>
    device.productKey === example.productKey && device.deviceKey === example.deviceKey &&
    device.deviceSecret === example.deviceSecret && device.enabled === example.enabled))
}
