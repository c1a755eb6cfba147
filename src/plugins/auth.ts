// Who is calling: a bearer token, a device's client certificate, or anyone when open; and whether the route's scope allows it.
import type { TLSSocket } from 'node:tls'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { OPEN_CALLER, requireScope, type Caller } from '../auth/caller.js'
import { certificateCaller, type MtlsIdentity } from '../auth/certificate.js'
import type { TokenStore } from '../auth/token-store.js'
import type { Scope } from '../auth/tokens.js'
import type { AuthMode } from '../config.js'
import { AppError } from '../errors.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** Who made the request, once a route that needs a scope has authenticated it. */
    caller: Caller | null
  }
  interface FastifyInstance {
    /**
     * The caller of a request as the token file says now, for a request that lasts (an NDJSON
     * stream): the same object when nothing changed it (a certificate, the open caller).
     * @throws AppError UNAUTHENTICATED when its token was removed or has expired.
     */
    currentCaller: (request: FastifyRequest) => Caller
    /** Calls `listener` whenever the token file has been reloaded; returns the function that stops it. */
    onTokensChanged: (listener: () => void) => () => void
  }
  interface FastifyContextConfig {
    /** What a route needs of its caller; a route without one is open (probes, docs). */
    scope?: Scope
  }
}

export interface AuthOptions {
  mode: AuthMode
  /** The tokens of AUTH_TOKENS_FILE: required with `token`, optional with `mtls` (tools over the same listener). */
  tokens: TokenStore | undefined
  mtlsIdentity: MtlsIdentity
  /** Whether a connection was opened under the TLS context now in force (see TlsReloader.isCurrent); undefined without TLS. */
  isCurrentTls?: (socket: TLSSocket) => boolean
}

const REALM = 'Bearer realm="enos-mqtt-signer"'
/** RFC 6750 b64token, bounded: a header longer than any token is not one. The scheme is case-insensitive (RFC 7235 section 2.1). */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]{1,512}=*) *$/i

/** 401 with the WWW-Authenticate challenge of RFC 6750; `error` says what was wrong with a token that was sent. */
function unauthenticated (message: string, error?: 'invalid_request' | 'invalid_token'): AppError {
  return new AppError('UNAUTHENTICATED', message, { headers: { 'www-authenticate': error === undefined ? REALM : `${REALM}, error="${error}"` } })
}

/** The request's caller: authenticated on every route that needs a scope, so never missing there. */
export function callerOf (request: FastifyRequest): Caller {
  /* c8 ignore next -- a signing route without `config.scope` is a bug: refuse rather than sign for anyone */
  if (request.caller === null) throw new AppError('INTERNAL', 'internal error; the request id in the logs tells what happened')
  return request.caller
}

/** Why OpenSSL did not accept a client certificate, in words: a revoked one, and a CRL the service cannot use, say so. */
function notAccepted (error: string): string {
  if (error === 'CERT_REVOKED') return 'the client certificate has been revoked (CERT_REVOKED)'
  // The revocation list is the service's: a device cannot fix it, but must not sign while nobody can tell whether it is revoked.
  if (error === 'CRL_HAS_EXPIRED' || error === 'CRL_NOT_YET_VALID' || error === 'UNABLE_TO_GET_CRL') {
    return `the revocation of the client certificate cannot be checked: the service's TLS_CRL_FILE is out of date or lacks the CRL of its CA (${error})`
  }
  return `the client certificate is not accepted (${error})`
}

/** The authentication hooks of the routes: admission control finds its place after them (it judges callers). */
export const AUTH_HOOKS = new WeakSet<(...args: never[]) => void>()

async function auth (app: FastifyInstance, { mode, tokens, mtlsIdentity, isCurrentTls }: AuthOptions): Promise<void> {
  app.decorateRequest('caller', null)

  // The caller of each token of the file, by its Authorization header as sent (`Bearer <token>`,
  // one space): found by hashing the token once per version of the file instead of on every
  // request (a hash, a hex string and a caller object each time: about 3 µs of ~70, measured).
  // Only tokens that are in the file enter, in that one spelling, so its size bounds the map
  // however many made-up tokens are sent (those are hashed and looked up each time, as before).
  // Emptied when the file is reloaded; listening from here, before any stream does, so a stream
  // that reads its caller again on a change (currentCaller) never meets the old version. The
  // lookup compares the header string itself: V8 compares strings of equal hash only, so a guess
  // learns nothing from its timing but what a hash collision with a real header would tell.
  const known = new Map<string, Caller>()
  tokens?.onChange(() => { known.clear() })

  function bearerCaller (header: string): Caller {
    let caller = known.get(header)
    if (caller === undefined) {
      const presented = BEARER.exec(header)?.[1]
      if (presented === undefined) throw unauthenticated('the Authorization header must be "Bearer <token>"', 'invalid_request')
      const token = tokens?.find(presented)
      if (token === undefined) throw unauthenticated('the bearer token is not valid', 'invalid_token')
      caller = { name: token.name, kind: 'token', scopes: token.scopes, products: token.products, ...(token.expires !== undefined && { expires: token.expires }), ...(token.fleet && { fleet: true }) }
      if (header === `Bearer ${presented}`) known.set(header, caller)
    }
    if (caller.expires !== undefined && caller.expires.getTime() <= Date.now()) throw unauthenticated('the bearer token has expired', 'invalid_token')
    return caller
  }

  /** The caller of a client certificate, when one was sent (mtls); TLS has already checked it against TLS_CLIENT_CA_FILE, or not. */
  function certificateOf (request: FastifyRequest): Caller | undefined {
    const socket = request.raw.socket as TLSSocket
    const cert = socket.getPeerCertificate()
    if (Object.keys(cert).length === 0) return undefined
    if (!socket.authorized) throw unauthenticated(notAccepted(String(socket.authorizationError)))
    if (isCurrentTls !== undefined && !isCurrentTls(socket)) {
      // Checked under the old client CA and CRL: it may have been revoked since. A new connection is checked anew.
      throw new AppError('UNAUTHENTICATED', 'the TLS files (client CA, revocation list) changed after this connection was opened: send the request again on a new connection', {
        headers: { 'www-authenticate': REALM, connection: 'close' }
      })
    }
    const caller = certificateCaller(cert, mtlsIdentity)
    if (caller === undefined) throw unauthenticated(`the client certificate names no device (MTLS_IDENTITY=${mtlsIdentity})`)
    return caller
  }

  function authenticate (request: FastifyRequest): Caller {
    if (mode === 'none') return OPEN_CALLER
    const header = request.headers.authorization
    if (header !== undefined) return bearerCaller(header)
    const certified = mode === 'mtls' ? certificateOf(request) : undefined
    if (certified !== undefined) return certified
    throw unauthenticated(mode === 'mtls' ? 'send a client certificate of the device, or Authorization: Bearer <token>' : 'send Authorization: Bearer <token>')
  }

  app.decorate('currentCaller', (request: FastifyRequest): Caller => {
    const caller = callerOf(request)
    // Only a token can be removed or expire (a certificate is checked once, by TLS). No other caller
    // is asked today: the open caller comes with no token file to change, and a certificate has no
    // sign:batch scope, so it holds no stream.
    /* c8 ignore next */
    if (caller.kind !== 'token') return caller
    // A token caller was read from the request's Authorization header: it is read again.
    return bearerCaller(String(request.headers.authorization))
  })
  app.decorate('onTokensChanged', (listener: () => void) => tokens?.onChange(listener) ?? (() => {}))

  // Only the routes that need a scope authenticate, each with its scope known when it is made: no
  // hook runs for the others (probes, docs), and no request reads its route's options for it. The
  // first of the route's own onRequest hooks, so it runs after every app-wide one (the request
  // guard) and before the route's own (its per-caller limit), as an app-wide hook did. Every route
  // is registered after this plugin (app.ts); one that was not would have no caller, and callerOf
  // refuses it rather than sign for anyone.
  app.addHook('onRoute', (route) => {
    const scope = route.config?.scope
    if (scope === undefined) return
    const hook = (request: FastifyRequest, _reply: unknown, done: (err?: Error) => void): void => {
      const caller = authenticate(request)
      request.caller = caller
      requireScope(caller, scope)
      done()
    }
    AUTH_HOOKS.add(hook)
    route.onRequest = [hook, ...(route.onRequest === undefined ? [] : [route.onRequest].flat())]
  })
}

export default fp(auth, { name: 'auth', fastify: '5.x', dependencies: ['error-handler'] })
