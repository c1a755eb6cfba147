// Refuses, before any body is read, requests no route should see: no Host, an unknown Expect, a wrong path or method, shutdown.
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AppError } from '../errors.js'
import { writeRawError } from './error-handler.js'

/**
 * The methods some route answers for `path`, e.g. `GET, HEAD`, or '' when none does. The path
 * is matched by Fastify's own router, so parametric and wildcard routes count.
 */
function allowedMethods (app: FastifyInstance, methods: ReadonlySet<string>, url: string): string {
  const path = url.split('?', 1)[0] as string
  return [...methods].filter((method) => app.findRoute({ method, url: path }) !== null).join(', ')
}

/** 404 for a path no route has, 405 with `Allow` for a path that exists with other methods. */
function noRoute (app: FastifyInstance, methods: ReadonlySet<string>, method: string, url: string): AppError {
  const allow = allowedMethods(app, methods, url)
  const shown = `${method} ${url.slice(0, 200)}`
  return allow === ''
    ? new AppError('ROUTE_NOT_FOUND', `no route ${shown}; see /docs`)
    : new AppError('METHOD_NOT_ALLOWED', `${shown} is not supported; this path takes ${allow}`, { headers: { allow } })
}

async function requestGuard (app: FastifyInstance): Promise<void> {
  const methods = new Set<string>()
  let closing = false
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) methods.add(method)
  })
  app.addHook('preClose', (done) => {
    closing = true
    done()
  })

  function refusal (request: FastifyRequest): AppError | undefined {
    if (closing) return new AppError('SHUTTING_DOWN', 'the service is shutting down; retry, another instance or the restarted one will answer')
    const { headers } = request
    // Node's own check (requireHostHeader) answers an empty 400 that nobody logs; it is off, and this replaces it.
    if (headers.host === undefined && request.raw.httpVersion === '1.1') {
      return new AppError('BAD_REQUEST', 'an HTTP/1.1 request needs a Host header')
    }
    const expect = headers.expect
    if (expect !== undefined && expect.toLowerCase() !== '100-continue') {
      return new AppError('EXPECTATION_FAILED', 'the only Expect this service meets is 100-continue')
    }
    // Answered here, before Fastify would read and parse a body that no route will use.
    if (request.is404) return noRoute(app, methods, request.method, request.url)
    return undefined
  }

  app.addHook('onRequest', (request, reply, done) => {
    const error = refusal(request)
    if (error === undefined) {
      done()
      return
    }
    // Whatever body was sent with it is not read: the connection cannot carry another request.
    reply.header('connection', 'close')
    done(error)
  })

  // Node answers an Expect other than 100-continue with a bare 417 unless someone listens: route it like any request.
  app.server.on('checkExpectation', (req: IncomingMessage, res) => { app.routing(req, res) })
  // CONNECT never reaches a route (Node treats it as a tunnel); without a listener it is dropped silently.
  app.server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    socket.on('error', () => {})
    const target = String(req.url)
    writeRawError(app, socket, noRoute(app, methods, 'CONNECT', target), { method: 'CONNECT', route: target.slice(0, 200) })
  })
}

export default fp(requestGuard, { name: 'request-guard', fastify: '5.x', dependencies: ['error-handler'] })
