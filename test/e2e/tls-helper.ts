// A little PKI made with openssl for the TLS tests: a CA, a server certificate, device certificates (also expired, also from another CA), revocations and CRLs.
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export interface Pem { cert: string, key: string, certFile: string, keyFile: string }

function openssl (dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
}

function pem (dir: string, name: string): Pem {
  const certFile = join(dir, `${name}.pem`)
  const keyFile = join(dir, `${name}.key`)
  return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), certFile, keyFile }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

export interface Pki {
  dir: string
  ca: Pem
  /** A certificate signed by this CA; `san` is an extension line such as `subjectAltName=DNS:localhost`. */
  issue: (name: string, cn: string, options?: { san?: string, expired?: boolean }) => Pem
  /** Revokes the certificate issued as `name` (openssl ca -revoke): it is in every CRL made from now on. */
  revoke: (name: string) => void
  /** A PEM CRL of every certificate revoked so far, valid for 30 days, or one whose nextUpdate has passed. */
  crl: (options?: { expired?: boolean }) => string
}

/** A new CA in `dir` (files <name>.pem and <name>.key), able to issue certificates, expired ones included. */
export function makePki (dir: string, caName = 'ca'): Pki {
  openssl(dir, 'req', '-x509', ...EC, '-keyout', `${caName}.key`, '-out', `${caName}.pem`, '-days', '30', '-subj', `/CN=${caName}`)
  // `openssl ca` is the one that can back-date a certificate: it needs a tiny database.
  writeFileSync(join(dir, `${caName}.index`), '')
  writeFileSync(join(dir, `${caName}.serial`), '1000\n')
  writeFileSync(join(dir, `${caName}.cnf`), [
    '[ ca ]', 'default_ca = ca_default', '[ ca_default ]', `database = ${caName}.index`, 'new_certs_dir = .', `serial = ${caName}.serial`,
    'default_md = sha256', 'policy = any', 'copy_extensions = copy', 'unique_subject = no', '[ any ]', 'commonName = supplied'
  ].join('\n'))
  return {
    dir,
    ca: pem(dir, caName),
    issue (name, cn, { san, expired = false } = {}) {
      const ext = join(dir, `${name}.ext`)
      writeFileSync(ext, san === undefined ? '' : `${san}\n`)
      openssl(dir, 'req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn.replaceAll('/', '\\/')}`, ...(san === undefined ? [] : ['-addext', san]))
      const dates = expired ? ['-startdate', '200101000000Z', '-enddate', '200102000000Z'] : ['-days', '30']
      openssl(dir, 'ca', '-batch', '-notext', '-config', `${caName}.cnf`, '-cert', `${caName}.pem`, '-keyfile', `${caName}.key`, '-in', `${name}.csr`, '-out', `${name}.pem`, ...dates)
      return pem(dir, name)
    },
    revoke (name) {
      openssl(dir, 'ca', '-config', `${caName}.cnf`, '-cert', `${caName}.pem`, '-keyfile', `${caName}.key`, '-revoke', `${name}.pem`)
    },
    crl ({ expired = false } = {}) {
      const out = join(dir, `${caName}-crl.pem`)
      const dates = expired ? ['-crl_lastupdate', '200101000000Z', '-crl_nextupdate', '200102000000Z'] : ['-crldays', '30']
      openssl(dir, 'ca', '-config', `${caName}.cnf`, '-cert', `${caName}.pem`, '-keyfile', `${caName}.key`, '-gencrl', '-out', out, ...dates)
      return readFileSync(out, 'utf8')
    }
  }
}
