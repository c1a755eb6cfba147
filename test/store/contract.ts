// The behaviour every DeviceStore must have, whatever its backend. Each adapter runs it from a *.test.ts file.
import type { Test } from 'tap'
import { NOT_CACHED, type Device, type DeviceStore } from '../../src/store/store.js'

/** Devices every adapter is loaded with before the contract runs. */
export const CONTRACT_DEVICES: readonly Device[] = [
  { productKey: 'Ab12Cd34', deviceKey: 'boiler-0001', deviceSecret: 's3cret-1', enabled: true },
  { productKey: 'Ab12Cd34', deviceKey: 'retired-0002', deviceSecret: 's3cret-2', enabled: false },
  { productKey: 'Zz99', deviceKey: 'boiler-0001', deviceSecret: 's3cret-3', enabled: true },
  { productKey: 'p.1:x', deviceKey: '%channel%', deviceSecret: 'sécret 😀 with spaces, "quotes"', enabled: true }
]

/** Builds a store of the adapter under test holding `devices`; the contract closes it. */
export type MakeStore = (t: Test, devices: readonly Device[]) => Promise<DeviceStore>

export function runStoreContract (t: Test, name: string, makeStore: MakeStore): void {
  t.test(`${name}: findDevice returns each device with its secret and enabled flag`, async (t) => {
    const store = await makeStore(t, CONTRACT_DEVICES)
    t.teardown(() => store.close())
    for (const device of CONTRACT_DEVICES) t.same(await store.findDevice(device.productKey, device.deviceKey), device, device.deviceKey)
  })

  t.test(`${name}: a device is found only under its own productKey and exact keys`, async (t) => {
    const store = await makeStore(t, CONTRACT_DEVICES)
    t.teardown(() => store.close())
    t.equal(await store.findDevice('Ab12Cd34', 'nobody'), undefined)
    t.equal(await store.findDevice('Zz99', 'retired-0002'), undefined, 'another product')
    t.equal(await store.findDevice('ab12cd34', 'boiler-0001'), undefined, 'keys are case-sensitive')
    t.equal(await store.findDevice('Ab12Cd34', 'BOILER-0001'), undefined, 'keys are case-sensitive')
    t.equal((await store.findDevice('Zz99', 'boiler-0001'))?.deviceSecret, 's3cret-3', 'same deviceKey, other product')
  })

  t.test(`${name}: findDevices answers many keys at once, in their order, undefined where there is none`, async (t) => {
    const store = await makeStore(t, CONTRACT_DEVICES)
    t.teardown(() => store.close())
    const keys = [...CONTRACT_DEVICES].reverse().map(({ productKey, deviceKey }) => ({ productKey, deviceKey }))
    t.same(await store.findDevices([]), [])
    t.same(await store.findDevices(keys), [...CONTRACT_DEVICES].reverse())
    t.same(await store.findDevices([
      { productKey: 'Zz99', deviceKey: 'boiler-0001' },
      { productKey: 'Zz99', deviceKey: 'nobody' },
      { productKey: 'Zz99', deviceKey: 'boiler-0001' }
    ]), [CONTRACT_DEVICES[2], undefined, CONTRACT_DEVICES[2]], 'a key asked twice is answered twice')
  })

  t.test(`${name}: peekDevices, where the store has one (a cache), answers only what it holds, without the backend`, async (t) => {
    const store = await makeStore(t, CONTRACT_DEVICES)
    t.teardown(() => store.close())
    const peek = store.peekDevices
    if (peek === undefined) {
      t.pass('a store without a cache has none: every lookup goes where the devices are')
      return
    }
    const [known, unknown] = [{ productKey: 'Zz99', deviceKey: 'boiler-0001' }, { productKey: 'Zz99', deviceKey: 'nobody' }]
    t.same(peek([known, unknown]), [NOT_CACHED, NOT_CACHED], 'nothing held yet')
    await store.findDevices([known, unknown])
    t.same(peek([known, unknown]), [CONTRACT_DEVICES[2], undefined], 'the device, and the device remembered as unknown')
  })

  t.test(`${name}: a disabled device is still returned; refusing it is the route's business`, async (t) => {
    const store = await makeStore(t, CONTRACT_DEVICES)
    t.teardown(() => store.close())
    t.match(await store.findDevice('Ab12Cd34', 'retired-0002'), { enabled: false })
  })

  t.test(`${name}: checkHealth says ready, what it serves, and never a secret`, async (t) => {
    const store = await makeStore(t, CONTRACT_DEVICES)
    t.teardown(() => store.close())
    const health = await store.checkHealth()
    t.match(health, { ok: true, kind: store.kind, detail: String, devices: CONTRACT_DEVICES.length })
    t.notMatch(JSON.stringify(health), /s3cret|sécret/)
  })

  t.test(`${name}: an empty store answers undefined and reports 0 devices`, async (t) => {
    const store = await makeStore(t, [])
    t.teardown(() => store.close())
    t.equal(await store.findDevice('Ab12Cd34', 'boiler-0001'), undefined)
    t.match(await store.checkHealth(), { ok: true, devices: 0 })
  })

  t.test(`${name}: close() can be called twice`, async (t) => {
    const store = await makeStore(t, CONTRACT_DEVICES)
    await store.close()
    await t.resolves(store.close())
  })
}
