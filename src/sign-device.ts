// Signs the request of one device: its secret from the store, the store's rules (known, enabled), then the core.
import { signCredentials, type SignedCredentials } from './core/credentials.js'
import { resolveSignMethod, type SignMethod } from './core/sign-method.js'
import { AppError } from './errors.js'
import type { SignRequest } from './schemas/credentials.js'
import type { Device, DeviceStore } from './store/store.js'

export interface SignDefaults {
  /** Used when the request names no signMethod (SIGN_METHOD). */
  signMethod: SignMethod
  /** Epoch milliseconds as a string, used when the request names no timestamp. */
  timestamp: string
}

/**
 * The one signing path of POST /sign and POST /sign/batch, once the device has been looked up:
 * the same checks and the same error messages for a single request and for each item of a batch.
 * @param device what the store holds under the request's keys (undefined: nothing).
 * @throws AppError UNSUPPORTED_SIGN_METHOD, DEVICE_NOT_FOUND or DEVICE_DISABLED.
 */
export function signFound (device: Device | undefined, request: SignRequest, defaults: SignDefaults): SignedCredentials {
  const { productKey, deviceKey, clientId = deviceKey, timestamp = defaults.timestamp, signMethod } = request
  const method = signMethod === undefined ? defaults.signMethod : resolveSignMethod(signMethod)
  if (device === undefined) {
    throw new AppError('DEVICE_NOT_FOUND', `no device with productKey "${productKey}" and deviceKey "${deviceKey}" in the store`)
  }
  if (!device.enabled) {
    throw new AppError('DEVICE_DISABLED', `device "${deviceKey}" of product "${productKey}" is disabled in the store`)
  }
  return signCredentials({ productKey, deviceKey, deviceSecret: device.deviceSecret, clientId, timestamp, signMethod: method })
}

/**
 * Looks the device up and signs its request ({@link signFound}).
 * @param found called when the store holds the device, before it is signed (the per-device limit);
 *   synchronous, or a promise that is awaited.
 * @throws AppError as signFound does, the store's STORE_UNAVAILABLE, or what `found` throws.
 */
export async function signDevice (store: DeviceStore, request: SignRequest, defaults: SignDefaults, found?: () => void | Promise<void>): Promise<SignedCredentials> {
  // A method that does not exist is refused before the store is asked anything.
  if (request.signMethod !== undefined) resolveSignMethod(request.signMethod)
  const device = await store.findDevice(request.productKey, request.deviceKey)
  if (device !== undefined && found !== undefined) {
    // Awaited only when it is a promise (counting through Redis): local counting answers at once.
    const counting = found()
    if (counting !== undefined) await counting
  }
  return signFound(device, request, defaults)
}
