// The identity of a device certificate (mutual TLS): its CN or a DNS/URI SAN, read by the MTLS_IDENTITY rule.
import type { PeerCertificate } from 'node:tls'
import { isValidKey } from '../core/fields.js'
import type { Caller } from './caller.js'

/** `deviceKey`: a name equal to the deviceKey; `productKey/deviceKey`: a name `<productKey>/<deviceKey>`. */
export const MTLS_IDENTITIES = ['deviceKey', 'productKey/deviceKey'] as const
export type MtlsIdentity = (typeof MTLS_IDENTITIES)[number]

/** The CN and the DNS and URI subject alternative names of a certificate. */
export function namesOf (cert: PeerCertificate): string[] {
  const cn = cert.subject?.CN
  const names = (Array.isArray(cn) ? cn : cn === undefined ? [] : [cn]).map(String)
  // subjectaltname: "DNS:a.example, URI:urn:x, IP Address:10.0.0.1"; a value cannot hold ", " (RFC 5280 names have no spaces).
  for (const entry of (cert.subjectaltname ?? '').split(', ')) {
    const match = /^(DNS|URI):(.+)$/.exec(entry)
    if (match !== null) names.push(match[2] as string)
  }
  return names
}

/**
 * The caller a verified client certificate stands for: the devices its names identify under
 * `rule`, with the one scope a device needs (sign). A certificate naming no device is no caller.
 */
export function certificateCaller (cert: PeerCertificate, rule: MtlsIdentity): Caller | undefined {
  const devices = namesOf(cert).flatMap((name): Array<{ productKey: string | undefined, deviceKey: string }> => {
    if (rule === 'deviceKey') return isValidKey(name) ? [{ productKey: undefined, deviceKey: name }] : []
    const [productKey = '', deviceKey = '', ...rest] = name.split('/')
    return rest.length === 0 && isValidKey(productKey) && isValidKey(deviceKey) ? [{ productKey, deviceKey }] : []
  })
  const [first] = devices
  if (first === undefined) return undefined
  const name = first.productKey === undefined ? first.deviceKey : `${first.productKey}/${first.deviceKey}`
  return { name: `cert:${name}`, kind: 'certificate', scopes: new Set(['sign']), products: '*', devices }
}
