// What a valid productKey, deviceKey, clientId, timestamp and deviceSecret look like (ENOS-SIGNING.md, "Inputs and limits").

/** productKey and deviceKey: 1-64 of `[A-Za-z0-9_.:%-]` (`%` for the SDKs' `%channel%` keys). */
export const KEY_PATTERN = /^[A-Za-z0-9_.:%-]{1,64}$/
/** clientId: 1-64 printable ASCII characters, never `|` (it ends the clientId part of mqttClientId). */
export const CLIENT_ID_PATTERN = /^[\x20-\x7b\x7d\x7e]{1,64}$/
/** timestamp: epoch milliseconds as a decimal string, used verbatim in both places it appears. */
export const TIMESTAMP_PATTERN = /^[0-9]{1,20}$/
/** The longest deviceSecret a store may hold; EnOS issues 32-character secrets. */
export const MAX_SECRET_LENGTH = 256

export const KEY_RULE = '1-64 characters from A-Z a-z 0-9 _ . : % -'
export const CLIENT_ID_RULE = '1-64 printable ASCII characters, without |'
export const TIMESTAMP_RULE = 'epoch milliseconds as a string of 1-20 digits'
export const SECRET_RULE = `a non-empty string of at most ${MAX_SECRET_LENGTH} characters (well-formed Unicode, no control characters)`

export function isValidKey (value: string): boolean {
  return KEY_PATTERN.test(value)
}

export function isValidClientId (value: string): boolean {
  return CLIENT_ID_PATTERN.test(value)
}

export function isValidTimestamp (value: string): boolean {
  return TIMESTAMP_PATTERN.test(value)
}

/**
 * Control characters (Unicode Cc: C0 with NUL, TAB, CR and LF; DEL; C1) and, with the u flag,
 * unpaired surrogates only (a pair is read as one code point).
 */
const NOT_IN_SECRET = /[\p{Cc}\p{Surrogate}]/u

/**
 * A secret is 1-MAX_SECRET_LENGTH UTF-16 units of well-formed Unicode without control characters.
 * Lone surrogates are refused because UTF-8 encoding would turn different secrets into the same
 * bytes; control characters because no issued secret has one: a stray CR, TAB or NUL comes from a
 * broken export or a wrong file, and would sign with a secret the device does not hold.
 */
export function isValidSecret (value: string): boolean {
  return value.length > 0 && value.length <= MAX_SECRET_LENGTH && !NOT_IN_SECRET.test(value)
}
