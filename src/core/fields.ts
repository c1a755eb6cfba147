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
export const SECRET_RULE = `a non-empty string of at most ${MAX_SECRET_LENGTH} characters (well-formed Unicode)`

export function isValidKey (value: string): boolean {
  return KEY_PATTERN.test(value)
}

export function isValidClientId (value: string): boolean {
  return CLIENT_ID_PATTERN.test(value)
}

export function isValidTimestamp (value: string): boolean {
  return TIMESTAMP_PATTERN.test(value)
}

/** With the u flag only unpaired surrogates match (a pair is read as one code point). */
const LONE_SURROGATE = /\p{Surrogate}/u

/** Lone surrogates are refused: UTF-8 encoding would turn different secrets into the same bytes. */
export function isValidSecret (value: string): boolean {
  return value.length > 0 && value.length <= MAX_SECRET_LENGTH && !LONE_SURROGATE.test(value)
}
