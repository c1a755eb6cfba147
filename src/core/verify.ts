// A broker's question "may this CONNECT in?", decided from the presented fields, the device and the time. Pure.
import { parseMqttClientId, parseMqttUsername, verifyCredentials, type PresentedCredentials } from './credentials.js'

/** EMQX's HTTP authentication answers: `ignore` lets the broker ask its next authenticator. */
export type VerifyResult = 'allow' | 'deny' | 'ignore'

/** What to answer and why; the reason is for the log line only, never for the caller. */
export interface VerifyDecision {
  result: VerifyResult
  reason: string
}

/** Before any lookup: the decision already, or the device to look up. */
export type VerifyStart = { decided: VerifyDecision } | { productKey: string, deviceKey: string, clientId: string }

/**
 * Reads what can be read without the store. A username that is not `<deviceKey>&<productKey>`
 * belongs to another scheme (answered `notOurs`); an mqttClientId without the EnOS suffix is a
 * deny, found before the store is asked anything.
 */
export function startVerify (presented: PresentedCredentials, notOurs: 'ignore' | 'deny'): VerifyStart {
  const user = parseMqttUsername(presented.mqttUsername)
  if (!user.ok) return { decided: { result: notOurs, reason: 'username is not <deviceKey>&<productKey>' } }
  const client = parseMqttClientId(presented.mqttClientId)
  if (!client.ok) return { decided: { result: 'deny', reason: client.reason } }
  return { ...user.value, clientId: client.value.clientId }
}

export interface VerifyOptions {
  /** Epoch milliseconds. */
  now: number
  /** MAX_CREDENTIAL_AGE_MS: the most the timestamp may differ from `now`, either way; 0: no check. */
  maxAgeMs: number
}

/**
 * Decides a CONNECT once its device has been looked up (undefined: not in the store). The
 * password is recomputed with the method the mqttClientId names and compared in constant time
 * without regard to case (core/credentials.ts verifyCredentials). A disabled device is denied
 * even with the right password; so are credentials stamped outside MAX_CREDENTIAL_AGE_MS.
 */
export function decideVerify (presented: PresentedCredentials, device: { deviceSecret: string, enabled: boolean } | undefined, options: VerifyOptions): VerifyDecision {
  if (device === undefined) return deny('unknown device')
  if (!device.enabled) return deny('device disabled')
  const checked = verifyCredentials(presented, device.deviceSecret)
  if (!checked.ok) return deny(checked.reason)
  if (options.maxAgeMs > 0) {
    const age = options.now - Number(checked.value.timestamp)
    if (age > options.maxAgeMs) return deny('timestamp older than MAX_CREDENTIAL_AGE_MS')
    if (-age > options.maxAgeMs) return deny('timestamp further in the future than MAX_CREDENTIAL_AGE_MS')
  }
  return { result: 'allow', reason: 'password matches' }
}

function deny (reason: string): VerifyDecision {
  return { result: 'deny', reason }
}
