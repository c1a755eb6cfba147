// HTTPS for the service itself: the certificate, key and client CA files, and a new secure context whenever they change.
import type { Server as HttpsServer } from 'node:https'
import { createSecureContext, type SecureContextOptions } from 'node:tls'
import type { Config } from './config.js'
import { readStoreFile } from './store/file-read.js'
import { watchedFile, type WatchedFile, type WatchedFileLogger } from './store/watched-file.js'

export type TlsFiles = NonNullable<Config['tls']>

/** Why the TLS files cannot be used, naming the file; never the key. */
export class TlsFileError extends Error {
  override name = 'TlsFileError'
}

/** The TLS options of the listener: client certificates asked for (not required: tools come with tokens) when there is a client CA. */
export function tlsOptions (material: SecureContextOptions, files: TlsFiles): SecureContextOptions & { requestCert: boolean, rejectUnauthorized: boolean } {
  // rejectUnauthorized false: a certificate that does not verify is refused with 401 by the auth plugin, which can say why.
  return { ...material, requestCert: files.clientCaFile !== undefined, rejectUnauthorized: false }
}

async function readPem (path: string): Promise<Buffer> {
  return (await readStoreFile(path)).bytes
}

/**
 * Reads the TLS files and checks that they make a secure context (the key matches the
 * certificate, the PEM parses).
 * @throws TlsFileError naming the file or the mismatch.
 */
export async function readTlsFiles (files: TlsFiles): Promise<SecureContextOptions> {
  const material: SecureContextOptions = {
    cert: await readPem(files.certFile),
    key: await readPem(files.keyFile),
    ...(files.clientCaFile !== undefined && { ca: await readPem(files.clientCaFile) })
  }
  try {
    createSecureContext(material)
  } catch (err) {
    throw new TlsFileError(`TLS_CERT_FILE, TLS_KEY_FILE and TLS_CLIENT_CA_FILE do not make a TLS context: ${(err as Error).message}`)
  }
  return material
}

export interface TlsReloader {
  lastReloadError (): { message: string, at: string } | undefined
  close (): Promise<void>
}

/**
 * Watches the TLS files; when one changes (a renewed certificate), reads all of them again and
 * gives the listener a new secure context: new connections get it, open ones keep theirs. A set
 * that does not fit together (a certificate renewed before its key) keeps the old context and is
 * logged, until the other file follows.
 */
export async function watchTlsFiles (server: HttpsServer, files: TlsFiles, log: WatchedFileLogger): Promise<TlsReloader> {
  let lastReloadError: { message: string, at: string } | undefined
  const watched: Array<WatchedFile<unknown>> = []
  const apply = async (): Promise<void> => {
    try {
      server.setSecureContext(await readTlsFiles(files))
      lastReloadError = undefined
      log.info({ certFile: files.certFile }, 'TLS certificate reloaded')
    } catch (err) {
      lastReloadError = { message: (err as Error).message, at: new Date().toISOString() }
      log.error({ problem: (err as Error).message }, 'TLS reload failed; new connections still get the previous certificate')
    }
  }
  const paths = [files.certFile, files.keyFile, ...(files.clientCaFile === undefined ? [] : [files.clientCaFile])]
  for (const path of paths) {
    watched.push(await watchedFile({
      path,
      label: 'TLS file',
      watch: true,
      log,
      parse: async () => undefined,
      onReload: (outcome) => { if (outcome === 'reloaded') apply().catch(() => {}) }
    }))
  }
  return {
    lastReloadError: () => lastReloadError,
    async close () {
      await Promise.all(watched.map((file) => file.close()))
    }
  }
}
