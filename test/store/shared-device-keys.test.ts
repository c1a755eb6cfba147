// Which deviceKeys are in more than one product, and how a refusal names them: keys only, a few at most.
import t from 'tap'
import { describeSharedDeviceKeys, findSharedDeviceKeys } from '../../src/store/shared-device-keys.js'
import type { Device } from '../../src/store/store.js'

const device = (productKey: string, deviceKey: string): Device => ({ productKey, deviceKey, deviceSecret: `secret-${productKey}-${deviceKey}`, enabled: true })

t.test('every deviceKey under more than one productKey, with all of its products, in the order first met', async (t) => {
  const devices = [device('P1', 'a'), device('P1', 'b'), device('P2', 'a'), device('P3', 'a'), device('P2', 'c'), device('P3', 'c')]
  t.same(await findSharedDeviceKeys(devices), [{ deviceKey: 'a', productKeys: ['P1', 'P2', 'P3'] }, { deviceKey: 'c', productKeys: ['P2', 'P3'] }])
  t.same(await findSharedDeviceKeys([device('P1', 'a'), device('P1', 'b')]), [])
})

t.test('a large store is gone through in slices, and one shared deviceKey among many is found', async (t) => {
  const devices = Array.from({ length: 60_000 }, (_, i) => device('P1', `d-${i}`))
  devices.push(device('P2', 'd-59999'))
  t.same(await findSharedDeviceKeys(devices), [{ deviceKey: 'd-59999', productKeys: ['P1', 'P2'] }])
})

t.test('the message lists five deviceKeys and five products of each, then counts the rest; never a secret', async (t) => {
  const products = ['P1', 'P2', 'P3', 'P4', 'P5', 'P6']
  const shared = ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((deviceKey) => ({ deviceKey, productKeys: products }))
  const message = describeSharedDeviceKeys(shared, 9, 'MTLS_IDENTITY=deviceKey')
  t.equal(message, '9 deviceKeys are in more than one product: ' +
    ['a', 'b', 'c', 'd', 'e'].map((key) => `"${key}" (products "P1", "P2", "P3", "P4", "P5", ...)`).join(', ') + ' and 4 more; ' +
    'MTLS_IDENTITY=deviceKey would let the certificate of one sign for all of them: set MTLS_IDENTITY=productKey/deviceKey (certificates naming productKey/deviceKey), or give each deviceKey one product')
  t.equal(describeSharedDeviceKeys([{ deviceKey: 'a', productKeys: ['P1', 'P2'] }], 1, 'R'), 'a deviceKey is in more than one product: "a" (products "P1", "P2"); ' +
    'R would let the certificate of one sign for all of them: set MTLS_IDENTITY=productKey/deviceKey (certificates naming productKey/deviceKey), or give each deviceKey one product')
})
