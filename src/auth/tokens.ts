// API tokens: the token file (hashes only, never a token in clear), its rules, and how a presented token is found.
import { createHash, timingSafeEqual } from 'node:crypto'
import { z } from 'zod'
import { KEY_PATTERN, KEY_RULE } from '../core/fields.js'

/** What a token may do: sign one device, sign batches, verify credentials for a broker. */
export const SCOPES = ['sign', 'sign:batch', 'verify'] as const
export type Scope = (typeof SCOPES)[number]

/** A token entry as the service holds it. */
export interface Token {
  name: string
  /** The SHA-256 of the token, as bytes. */
  hash: Buffer
  scopes: ReadonlySet<Scope>
  /** The productKeys it may sign for, or `*` for all. */
  products: ReadonlySet<string> | '*'
  expires: Date | undefined
  /**
   * A fleet token: one token shared by the firmware of many devices, so it is limited per device
   * (RATE_LIMIT_PER_DEVICE) and not by the per-caller budget, and may hold only the `sign` scope.
   */
  fleet: boolean
}

/** A token file that cannot be used. The message names entries, never a token or a hash. */
export class TokenFileError extends Error {
  override name = 'TokenFileError'
}

const entrySchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.:@-]{1,64}$/, 'must be 1-64 characters from A-Z a-z 0-9 _ . : @ -'),
  sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, 'must be the SHA-256 of the token as 64 hex digits (see `enos-mqtt-signer token create`)'),
  scopes: z.array(z.enum(SCOPES, { error: `must each be one of ${SCOPES.join(', ')}` })).min(1, 'must list at least one scope'),
  products: z.union([z.literal('*'), z.array(z.union([z.literal('*'), z.string().regex(KEY_PATTERN, `must each be "*" or a productKey (${KEY_RULE})`)])).min(1, 'must list at least one productKey, or "*"')]),
  expires: z.iso.datetime({ offset: true, error: 'must be an ISO date and time, e.g. 2027-06-30T00:00:00Z' }).optional(),
  fleet: z.boolean({ error: 'must be true or false' }).optional()
})

const fileSchema = z.strictObject({ tokens: z.array(z.unknown()) }, { error: 'the file must be a JSON object with a "tokens" array' })

/**
 * The SHA-256 of a token: how it is written in the token file and looked up. Hashing first
 * means a lookup compares hashes of equal length only, whatever the caller sends.
 */
export function hashToken (token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest()
}

/**
 * Parses a token file. Each bad entry is named by its index and name, with every problem of it;
 * a name or a hash used twice is an error too.
 * @returns the tokens by the hex of their hash.
 * @throws TokenFileError naming every problem (never a token or a hash).
 */
export function parseTokenFile (text: string): Map<string, Token> {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch {
    throw new TokenFileError('the file is not valid JSON')
  }
  const file = fileSchema.safeParse(doc)
  if (!file.success) throw new TokenFileError(file.error.issues.map((issue) => issue.path.length === 0 ? issue.message : `${issue.path.join('.')}: ${issue.message}`).join('; '))
  const tokens = new Map<string, Token>()
  const names = new Set<string>()
  const problems: string[] = []
  file.data.tokens.forEach((raw, i) => {
    const entry = entrySchema.safeParse(raw)
    const name = typeof (raw as { name?: unknown } | null)?.name === 'string' ? ` (${String((raw as { name: string }).name).slice(0, 64)})` : ''
    if (!entry.success) {
      for (const issue of entry.error.issues) problems.push(`tokens[${i}]${name}: ${issue.path.length === 0 ? '' : `${String(issue.path[0])} `}${issue.message}`)
      return
    }
    const { sha256, scopes, products, expires, fleet = false } = entry.data
    const hex = sha256.toLowerCase()
    // Shared by many devices' firmware, a fleet token is as secret as the weakest device: it signs one device at a time, nothing more.
    if (fleet && scopes.some((scope) => scope !== 'sign')) {
      problems.push(`tokens[${i}]${name}: a fleet token may hold only the "sign" scope (it is shared by the firmware of many devices), not ${[...new Set(scopes.filter((scope) => scope !== 'sign'))].map((scope) => `"${scope}"`).join(' or ')}: give batch signing or verification a token of its own`)
    }
    if (names.has(entry.data.name)) problems.push(`tokens[${i}]${name}: the name is used by another entry`)
    if (tokens.has(hex)) problems.push(`tokens[${i}]${name}: the same token (sha256) is in another entry`)
    names.add(entry.data.name)
    tokens.set(hex, {
      name: entry.data.name,
      hash: Buffer.from(hex, 'hex'),
      scopes: new Set(scopes),
      products: products === '*' || products.includes('*') ? '*' : new Set(products),
      expires: expires === undefined ? undefined : new Date(expires),
      fleet
    })
  })
  if (problems.length > 0) throw new TokenFileError(problems.join('; '))
  return tokens
}

/**
 * The token entry of a presented token, or undefined. The lookup is by the SHA-256 of what was
 * presented, so its time does not depend on how much of a real token the guess gets right, and
 * the hashes are then compared in constant time.
 */
export function findToken (tokens: ReadonlyMap<string, Token>, presented: string): Token | undefined {
  const hash = hashToken(presented)
  const token = tokens.get(hash.toString('hex'))
  return token !== undefined && timingSafeEqual(token.hash, hash) ? token : undefined
}
