// POST /verify: a broker's HTTP authentication hook asks whether a CONNECT may in (EMQX's request and answer).
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { LRUCache } from 'lru-cache'
import { z } from 'zod'
import { deviceRefusal } from '../auth/caller.js'
import { parseMqttUsername, type PresentedCredentials } from '../core/credentials.js'
import { decideVerify, startVerify, type VerifyDecision } from '../core/verify.js'
import { AppError } from '../errors.js'
import { callerOf } from '../plugins/auth.js'
import { ACCESS_ERRORS, COMMON_ERRORS, SECURITY, errorResponses } from '../schemas/error.js'
import { REQUEST_ID_HEADER } from '../schemas/response.js'
import { deviceId } from '../store/store.js'

export interface VerifyRouteOptions {
  /** MAX_CREDENTIAL_AGE_MS; 0: no age check. */
  maxAgeMs: number
  /** VERIFY_NOT_OURS: the answer for a username that is not `<deviceKey>&<productKey>`. */
  notOurs: 'ignore' | 'deny'
  /** VERIFY_UNKNOWN_CACHE_MS; 0: every request for an unknown device asks the store. */
  unknownCacheMs: number
  /** Epoch milliseconds: the age check, and the negative cache's time. */
  clock: () => number
}

export const FORM = 'application/x-www-form-urlencoded'

/** Three short fields, and whatever else a broker's body template adds: a few KiB is plenty. */
export const VERIFY_BODY_LIMIT = 4096

/**
 * The most that is read of a body, to find whose CONNECT it is: past VERIFY_BODY_LIMIT, a body
 * whose username is ours is answered deny (a 413 would send the broker on to its next
 * authenticator). MQTT's own fields are at most 65535 bytes each, a few times that once escaped
 * as JSON: a body larger than this comes from no CONNECT, and gets 413.
 */
export const VERIFY_READ_LIMIT = 1024 * 1024

/** The most unknown devices remembered at once: the cache stays small whatever a storm sends. */
export const UNKNOWN_CACHE_MAX = 10_000

const MAX_FIELD = 512

/** The username of a body, when it is `<deviceKey>&<productKey>` (ours); undefined otherwise. */
function ourUsername (body: unknown): string | undefined {
  const username = typeof body === 'object' && body !== null ? (body as { username?: unknown }).username : undefined
  return typeof username === 'string' && username.length <= MAX_FIELD && parseMqttUsername(username).ok ? username : undefined
}

/** Whether one of the three fields is a string longer than its limit (the schema's 400 otherwise). */
function hasLongField (body: unknown): boolean {
  if (typeof body !== 'object' || body === null) return false
  const { clientid, username, password } = body as Record<string, unknown>
  return [clientid, username, password].some((value) => typeof value === 'string' && value.length > MAX_FIELD)
}
const field = (what: string, example: string) => z.string({ error: (issue) => issue.input === undefined ? 'is required' : 'must be a string' })
  .max(MAX_FIELD, `must be at most ${MAX_FIELD} characters`).describe(what).meta({ example })

// Not strict: a broker's body template may add fields (peerhost, protocol, ...), which are ignored.
export const verifyRequestSchema = z.object({
  clientid: field('The MQTT client id of the CONNECT: <clientId>|securemode=2,signmethod=<m>,timestamp=<ts>|', '123|securemode=2,signmethod=hmacsha1,timestamp=1524448722000|'),
  username: field('The user name of the CONNECT: <deviceKey>&<productKey>.', 'test&123'),
  password: field('The password of the CONNECT: hex, in either case.', '093A032F713517CAE55622C75C1D5219ED618729')
}).meta({ id: 'VerifyRequest' })

export const verifyResponseSchema = z.object({
  result: z.enum(['allow', 'deny', 'ignore']).describe('allow or deny; ignore when the username is not <deviceKey>&<productKey> and VERIFY_NOT_OURS=ignore.')
}).meta({ id: 'VerifyResult' })

const verifyRoute: FastifyPluginAsyncZod<VerifyRouteOptions> = async (app, { maxAgeMs, notOurs, unknownCacheMs, clock }) => {
  // Bodies past VERIFY_BODY_LIMIT (up to VERIFY_READ_LIMIT) are still read, to find their username;
  // the preValidation hook answers them.
  const oversized = new WeakSet<FastifyRequest>()
  const noteSize = (request: FastifyRequest, body: string): void => {
    if (body.length > VERIFY_BODY_LIMIT || Buffer.byteLength(body) > VERIFY_BODY_LIMIT) oversized.add(request)
  }
  // Some brokers' hooks send a form: the same three fields. The body is small, so it is parsed whole.
  app.addContentTypeParser(FORM, { parseAs: 'string' }, (request, body, done) => {
    noteSize(request, body as string)
    done(null, Object.fromEntries(new URLSearchParams(body as string)))
  })
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    noteSize(request, body as string)
    parseJson(request, body as string, done)
  })

  /**
   * A body or field too large is a deny when its username is ours: a broker passes a 400 or 413 on
   * to its next authenticator, which must not get to decide a CONNECT for one of our devices.
   */
  // A callback hook, not an async one: nothing to wait for, and no promise per request on this hot path.
  function answerOversized (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void {
    const tooLarge = oversized.has(request)
    if (!tooLarge && !hasLongField(request.body)) return done()
    const username = ourUsername(request.body)
    if (username === undefined) {
      return tooLarge ? done(new AppError('PAYLOAD_TOO_LARGE', `request body is larger than ${VERIFY_BODY_LIMIT} bytes`)) : done()
    }
    request.outcome = 'deny'
    request.reason = `body or field too large (username ${username})`
    reply.send({ result: 'deny' })
  }
  const unknown = unknownCacheMs === 0 ? undefined : new LRUCache<string, true>({ max: UNKNOWN_CACHE_MAX, ttl: unknownCacheMs, perf: { now: clock } })

  async function decide (request: FastifyRequest, presented: PresentedCredentials): Promise<VerifyDecision> {
    const start = startVerify(presented, notOurs)
    if ('decided' in start) return start.decided
    const { productKey, deviceKey } = start
    request.deviceRef = start
    // Outside the caller's products: the same deny as an unknown device, so a broker's token cannot map another tenant's devices.
    if (deviceRefusal(callerOf(request), productKey, deviceKey) !== undefined) return { result: 'deny', reason: 'product not allowed for this caller' }
    const id = deviceId(productKey, deviceKey)
    if (unknown?.has(id) === true) return { result: 'deny', reason: 'unknown device (remembered)' }
    const device = await app.store.findDevice(productKey, deviceKey)
    if (device === undefined) unknown?.set(id, true)
    // Counted only for devices the store holds: attempts for made-up devices cannot deny real ones.
    const counted = device === undefined ? undefined : app.limits.verifyPerDevice?.(start)
    const limited = counted instanceof Promise ? await counted : counted
    if (limited !== undefined) return { result: 'deny', reason: limited }
    return decideVerify(presented, device, { now: clock(), maxAgeMs })
  }

  app.post('/verify', {
    schema: {
      tags: ['verification'],
      operationId: 'verify',
      summary: 'Check presented MQTT CONNECT credentials, for a broker',
      description: 'For a broker\'s HTTP authentication (EMQX\'s request and answer): recomputes the password of the device named by username with the method named in clientid, ' +
        'and answers allow or deny (ignore for a username of another form, see VERIFY_NOT_OURS). A deny never says why; the service\'s log line does.',
      security: SECURITY,
      body: {
        content: {
          'application/json': { schema: verifyRequestSchema },
          [FORM]: { schema: verifyRequestSchema }
        }
      },
      response: {
        200: {
          description: 'The decision. Also 200 for deny: the broker refuses the CONNECT. A device past RATE_LIMIT_VERIFY_PER_DEVICE attempts a minute is denied.',
          headers: REQUEST_ID_HEADER,
          content: { 'application/json': { schema: verifyResponseSchema } }
        },
        ...errorResponses({
          400: 'The body is not valid: not JSON (MALFORMED_JSON), or clientid, username or password missing, not strings or too long (VALIDATION_FAILED). A field too long with a username of the form <deviceKey>&<productKey> is a 200 deny instead.',
          403: 'The caller lacks the verify scope (FORBIDDEN).',
          ...ACCESS_ERRORS,
          408: COMMON_ERRORS[408],
          413: `The body is larger than ${VERIFY_BODY_LIMIT} bytes (PAYLOAD_TOO_LARGE); up to ${VERIFY_READ_LIMIT} bytes with a username of the form <deviceKey>&<productKey>, it is a 200 deny instead.`,
          415: `The body is neither application/json nor ${FORM} (UNSUPPORTED_MEDIA_TYPE).`,
          500: COMMON_ERRORS[500],
          503: COMMON_ERRORS[503]
        })
      }
    },
    config: { scope: 'verify', audit: true },
    onRequest: app.limits.verifyPerCaller,
    preValidation: answerOversized,
    bodyLimit: VERIFY_READ_LIMIT
  }, async (request) => {
    // Validated against verifyRequestSchema for either content type; the type provider infers no type from a body given per content type.
    const { clientid, username, password } = request.body as z.infer<typeof verifyRequestSchema>
    const decision = await decide(request, { mqttClientId: clientid, mqttUsername: username, mqttPassword: password })
    request.outcome = decision.result
    request.reason = decision.reason
    return { result: decision.result }
  })
}

export default verifyRoute
