// HTTPS for the service itself: the certificate, key, client CA and CRL files, and a new secure context whenever they change.
import { constants } from 'node:fs'
import { open } from 'node:fs/promises'
import type { Server as HttpsServer } from 'node:https'
import { Socket } from 'node:net'
import { createSecureContext, type SecureContextOptions, type TLSSocket } from 'node:tls'
import type { Config } from './config.js'
import { watchedFile, type WatchedFile, type WatchedFileLogger } from './store/watched-file.js'

export type TlsFiles = NonNullable<Config['tls']>

/**
 * Why the TLS files cannot be used, naming the file by its variable (TLS_KEY_FILE), never by its
 * path: the message is shown in the open /readyz. Never the key.
 */
export class TlsFileError extends Error {
  override name = 'TlsFileError'
}

/** The TLS options of the listener: client certificates asked for (not required: tools come with tokens) when there is a client CA. */
export function tlsOptions (material: SecureContextOptions, files: TlsFiles): SecureContextOptions & { requestCert: boolean, rejectUnauthorized: boolean } {
  // rejectUnauthorized false: a certificate that does not verify is refused with 401 by the auth plugin, which can say why.
  return { ...material, requestCert: files.clientCaFile !== undefined, rejectUnauthorized: false }
}

type TlsFileVariable = 'TLS_CERT_FILE' | 'TLS_KEY_FILE' | 'TLS_CLIENT_CA_FILE' | 'TLS_CRL_FILE'

/**
 * The whole file. Opened non-blocking and refused unless it is a regular file: reading a FIFO
 * would wait forever for a writer.
 * @throws TlsFileError naming the variable and the errno code.
 */
async function readPem (name: TlsFileVariable, path: string): Promise<Buffer> {
  const cannotRead = (err: unknown): TlsFileError => new TlsFileError(`${name} cannot be read (${String((err as NodeJS.ErrnoException).code)})`)
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK).catch((err: unknown) => { throw cannotRead(err) })
  try {
    if (!(await handle.stat()).isFile()) throw new TlsFileError(`${name} is not a regular file`)
    /* c8 ignore next -- an I/O error (EIO) on an open regular file cannot be made in a test */
    return await handle.readFile().catch((err: unknown) => { throw cannotRead(err) })
  } finally {
    await handle.close()
  }
}

const PEM_CRL = /-----BEGIN X509 CRL-----[^-]+-----END X509 CRL-----/g

/**
 * The CRLs of TLS_CRL_FILE, one PEM block each: Node's `crl` option reads one CRL per entry, so a
 * file of several (one per CA) is split, or all but the first would be silently ignored.
 * @throws TlsFileError naming the file when it holds no CRL or one that does not parse.
 */
async function readCrls (path: string): Promise<string[]> {
  const crls = (await readPem('TLS_CRL_FILE', path)).toString('latin1').match(PEM_CRL) ?? []
  if (crls.length === 0) throw new TlsFileError('TLS_CRL_FILE holds no PEM certificate revocation list (-----BEGIN X509 CRL-----)')
  try {
    createSecureContext({ crl: crls })
  } catch (err) {
    throw new TlsFileError(`TLS_CRL_FILE holds a revocation list that does not parse: ${(err as Error).message}`)
  }
  return crls
}

/**
 * Reads the TLS files and checks that they make a secure context (the key matches the
 * certificate, the PEM parses).
 * @throws TlsFileError naming the variable of the file, or the mismatch.
 */
export async function readTlsFiles (files: TlsFiles): Promise<SecureContextOptions> {
  const material: SecureContextOptions = {
    cert: await readPem('TLS_CERT_FILE', files.certFile),
    key: await readPem('TLS_KEY_FILE', files.keyFile),
    ...(files.clientCaFile !== undefined && { ca: await readPem('TLS_CLIENT_CA_FILE', files.clientCaFile) }),
    // With a CRL, OpenSSL checks every certificate of a client's chain below the trust anchor (CRL_CHECK_ALL).
    ...(files.crlFile !== undefined && { crl: await readCrls(files.crlFile) })
  }
  try {
    createSecureContext(material)
  } catch (err) {
    throw new TlsFileError(`TLS_CERT_FILE, TLS_KEY_FILE and TLS_CLIENT_CA_FILE do not make a TLS context: ${(err as Error).message}`)
  }
  return material
}

/** What client certificates are checked against: the client CA and CRL files' contents. */
function trustOf (material: SecureContextOptions): string {
  return `${String(material.ca)}\n${String(material.crl)}`
}

export interface TlsReloader {
  lastReloadError (): { message: string, at: string } | undefined
  /**
   * Whether the connection was accepted under the client CA and CRL now in force. One accepted
   * before they changed was checked against the old ones, even if its handshake ended after the
   * change: its certificate may be revoked since.
   */
  isCurrent (socket: TLSSocket): boolean
  /**
   * Reads the files again now (SIGHUP); a bad set keeps the context in force, as a change does.
   * Resolves once a read that started after this call has been applied (or refused).
   */
  reload (): Promise<void>
  close (): Promise<void>
}

/**
 * The TCP socket a server-side TLS socket runs on. Node keeps it as `_parent` (lib/_tls_wrap.js)
 * and has no public accessor; without it, the TLS socket itself is answered, which is never
 * tagged, so every certificate connection counts as not current (fails closed).
 */
function tcpSocketOf (socket: TLSSocket): Socket {
  // `as`: `_parent` is not in Node's types; it is checked before use.
  const parent: unknown = (socket as TLSSocket & { _parent?: unknown })._parent
  /* c8 ignore next -- always a Socket on the Node this runs on; the fallback is for a Node that drops it */
  return parent instanceof Socket ? parent : socket
}

/**
 * Watches the TLS files; when one changes (a renewed certificate), reads all of them again and
 * gives the listener a new secure context: new connections get it, open ones keep theirs. A set
 * that does not fit together (a certificate renewed before its key) keeps the old context and is
 * logged, until the other file follows.
 */
export async function watchTlsFiles (server: HttpsServer, files: TlsFiles, log: WatchedFileLogger, initial: SecureContextOptions): Promise<TlsReloader> {
  let lastReloadError: { message: string, at: string } | undefined
  const watched: Array<WatchedFile<unknown>> = []
  // Each connection is tagged with the client trust (CA and CRL) it is checked under: the number of
  // changes to it so far. A renewed server certificate alone leaves open connections as they are.
  let trust = trustOf(initial)
  let trustChanges = 0
  // Node gives a connection its secure context when the TCP connection is accepted (its
  // 'connection' listener makes the TLSSocket with the server's context of that moment), not when
  // the handshake ends: a handshake held back past a reload is still checked against the old CRL.
  // So the tag is taken on accept, in the same synchronous step as Node's own listener;
  // setSecureContext and trustChanges change together below, so the two always agree.
  const acceptedUnder = new WeakMap<Socket, number>()
  const tag = (socket: Socket): void => { acceptedUnder.set(socket, trustChanges) }
  server.prependListener('connection', tag)
  const apply = async (): Promise<void> => {
    try {
      const material = await readTlsFiles(files)
      server.setSecureContext(material)
      // A changed client CA or CRL: connections opened before it are checked again (trustChanges).
      const trustChanged = trustOf(material) !== trust
      if (trustChanged) {
        trust = trustOf(material)
        trustChanges++
      }
      lastReloadError = undefined
      log.info({ certFile: files.certFile, trustChanged }, 'TLS certificate reloaded')
    } catch (err) {
      lastReloadError = { message: (err as Error).message, at: new Date().toISOString() }
      log.error({ problem: (err as Error).message }, 'TLS reload failed; new connections still get the previous certificate')
    }
  }
  // Reloads run one at a time: each file's watcher and SIGHUP ask for one, and two reads running
  // together could finish out of order, an older read reinstating an old CRL after a newer one.
  // A request made while one runs waits for it and then reads again; requests made meanwhile
  // join that one (it starts after all of them, so it reads what they were asked for).
  let running: Promise<void> | undefined
  let queued: Promise<void> | undefined
  const start = (): Promise<void> => {
    running = apply().finally(() => { running = undefined })
    return running
  }
  const reload = (): Promise<void> => {
    if (queued !== undefined) return queued
    if (running === undefined) return start()
    queued = running.then(() => {
      queued = undefined
      return start()
    })
    return queued
  }
  const paths = [files.certFile, files.keyFile, files.clientCaFile, files.crlFile].filter((path) => path !== undefined)
  for (const path of paths) {
    watched.push(await watchedFile({
      path,
      label: 'TLS file',
      watch: true,
      log,
      parse: async () => undefined,
      onReload: (outcome) => { if (outcome === 'reloaded') reload().catch(() => {}) }
    }))
  }
  return {
    lastReloadError: () => lastReloadError,
    reload,
    isCurrent: (socket) => acceptedUnder.get(tcpSocketOf(socket)) === trustChanges,
    async close () {
      server.off('connection', tag)
      await Promise.all(watched.map((file) => file.close()))
      await queued
      await running
    }
  }
}
