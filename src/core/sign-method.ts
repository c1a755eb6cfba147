// The EnOS sign-method names and the plain digest each one stands for (ENOS-SIGNING.md, "Sign methods").
import { AppError } from '../errors.js'

/**
 * Method name (as written into mqttClientId) -> node:crypto digest. The `hmac*` names are
 * historical: EnOS hashes `content + secret` with the plain digest, never an HMAC.
 */
export const SIGN_METHODS = {
  hmacsha1: 'sha1',
  sha1: 'sha1',
  sha256: 'sha256',
  hmacsha256: 'sha256',
  md5: 'md5',
  hmacmd5: 'md5'
} as const

export type SignMethod = keyof typeof SIGN_METHODS
export const SIGN_METHOD_NAMES = Object.keys(SIGN_METHODS) as SignMethod[]

/** The method EnOS's MQTT connection guide names; the default unless `SIGN_METHOD` says otherwise. */
export const DEFAULT_SIGN_METHOD: SignMethod = 'hmacsha1'

export function isSignMethod (name: string): name is SignMethod {
  return Object.hasOwn(SIGN_METHODS, name)
}

/**
 * Normalises a caller-supplied method name: trimmed, matched case-insensitively.
 * @returns the canonical (lower-case) name, or `undefined` when it is not one of the six.
 */
export function normalizeSignMethod (name: string): SignMethod | undefined {
  const lower = name.trim().toLowerCase()
  return isSignMethod(lower) ? lower : undefined
}

/**
 * Like {@link normalizeSignMethod}, but an unknown name is an error.
 * @throws AppError UNSUPPORTED_SIGN_METHOD, naming the supported methods.
 */
export function resolveSignMethod (name: string): SignMethod {
  if (isSignMethod(name)) return name
  const method = normalizeSignMethod(name)
  if (method === undefined) {
    throw new AppError('UNSUPPORTED_SIGN_METHOD',
      `signMethod must be one of ${SIGN_METHOD_NAMES.join(', ')} (case-insensitive)`,
      { details: [{ path: 'signMethod', message: 'unsupported sign method' }] })
  }
  return method
}
