// Reading a device's identity off a client certificate: its CN (one or several) and its DNS and URI names.
import type { PeerCertificate } from 'node:tls'
import t from 'tap'
import { certificateCaller, namesOf } from '../../src/auth/certificate.js'

const cert = (subject: Record<string, string | string[]> | undefined, subjectaltname?: string): PeerCertificate =>
  ({ subject, subjectaltname }) as unknown as PeerCertificate

t.test('names are the CN (one or several) and the DNS and URI SANs; IP addresses and e-mails are not names', async (t) => {
  t.same(namesOf(cert({ CN: 'dev-1' })), ['dev-1'])
  t.same(namesOf(cert({ CN: ['dev-1', 'dev-2'] }, 'DNS:a.example, URI:P1/dev-3, IP Address:10.0.0.1, email:x@y')), ['dev-1', 'dev-2', 'a.example', 'P1/dev-3'])
  t.same(namesOf(cert({ O: 'Acme' }, 'DNS:dev-4')), ['dev-4'], 'no CN')
  t.same(namesOf(cert(undefined)), [], 'no subject at all')
})

t.test('the deviceKey rule takes every name that is a valid key; a certificate naming none is no caller', async (t) => {
  t.match(certificateCaller(cert({ CN: 'dev-1' }, 'DNS:dev-2, DNS:not a key'), 'deviceKey'), {
    name: 'cert:dev-1',
    kind: 'certificate',
    devices: [{ productKey: undefined, deviceKey: 'dev-1' }, { productKey: undefined, deviceKey: 'dev-2' }]
  })
  t.equal(certificateCaller(cert({ CN: 'has space' }), 'deviceKey'), undefined)
})

t.test('the productKey/deviceKey rule takes names of exactly two valid keys', async (t) => {
  t.match(certificateCaller(cert({ CN: 'P1/dev-1' }, 'URI:P1/dev-1/extra, URI:/dev-2, DNS:dev-3'), 'productKey/deviceKey'), {
    name: 'cert:P1/dev-1',
    devices: [{ productKey: 'P1', deviceKey: 'dev-1' }]
  })
  t.equal(certificateCaller(cert({ CN: 'dev-1' }), 'productKey/deviceKey'), undefined)
})
