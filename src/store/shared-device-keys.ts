// Finds deviceKeys held by more than one product: a certificate that names only a deviceKey could sign for each of them.
import { SLICE, yieldToEventLoop } from './watched-file.js'
import type { Device } from './store.js'

/** A deviceKey held by several products, with (some of) their productKeys. */
export interface SharedDeviceKey {
  deviceKey: string
  productKeys: string[]
}

/** How many shared deviceKeys, and products of each, a message lists. */
export const LISTED_SHARED = 5

/**
 * The deviceKeys that appear under more than one productKey, in the order first met; yields to the
 * event loop now and then (a million devices take a few hundred milliseconds).
 */
export async function findSharedDeviceKeys (devices: Iterable<Device>): Promise<SharedDeviceKey[]> {
  const products = new Map<string, string | string[]>()
  let seen = 0
  for (const { productKey, deviceKey } of devices) {
    const held = products.get(deviceKey)
    if (held === undefined) products.set(deviceKey, productKey)
    else if (typeof held === 'string') products.set(deviceKey, [held, productKey])
    else held.push(productKey)
    if (++seen % SLICE === 0) await yieldToEventLoop()
  }
  const shared: SharedDeviceKey[] = []
  for (const [deviceKey, held] of products) if (typeof held !== 'string') shared.push({ deviceKey, productKeys: held })
  return shared
}

/**
 * One line naming the first few shared deviceKeys and their products (keys only, never a secret),
 * for the refusal of a store under `rule`.
 */
export function describeSharedDeviceKeys (shared: readonly SharedDeviceKey[], total: number, rule: string): string {
  const listed = shared.slice(0, LISTED_SHARED).map(({ deviceKey, productKeys }) => {
    const names = productKeys.slice(0, LISTED_SHARED).map((key) => `"${key}"`).join(', ')
    return `"${deviceKey}" (products ${names}${productKeys.length > LISTED_SHARED ? ', ...' : ''})`
  })
  const more = total - listed.length
  return `${total === 1 ? 'a deviceKey is' : `${total} deviceKeys are`} in more than one product: ${listed.join(', ')}${more > 0 ? ` and ${more} more` : ''}; ` +
    `${rule} would let the certificate of one sign for all of them: set MTLS_IDENTITY=productKey/deviceKey (certificates naming productKey/deviceKey), or give each deviceKey one product`
}

/** The store holds a deviceKey in more than one product while the rule needs one: startup stops. The message names keys, never a secret. */
export class SharedDeviceKeyError extends Error {
  override name = 'SharedDeviceKeyError'
}
