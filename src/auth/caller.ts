// Who is calling, and what it may do: a token's scopes and products, a device certificate's one device, or everyone when open.
import { AppError } from '../errors.js'
import type { Scope } from './tokens.js'

export interface Caller {
  /** For logs and rate limits: the token's name, `cert:<identity>`, or `open` (the client address is logged beside it). */
  name: string
  kind: 'token' | 'certificate' | 'open'
  scopes: ReadonlySet<Scope> | 'all'
  /** The productKeys it may sign for, or `*`. */
  products: ReadonlySet<string> | '*'
  /** A device certificate signs only for its own device(s): the identities it names (deviceKey, and productKey when the rule has it). */
  devices?: ReadonlyArray<{ productKey: string | undefined, deviceKey: string }>
  /** When the token it comes from expires: a request still open then (an NDJSON stream) stops signing. */
  expires?: Date
  /** A fleet token (shared by many devices' firmware): limited per device, not by the per-caller budget. */
  fleet?: true
}

/** Everyone, when AUTH_MODE=none (or the bundled example store runs open). */
export const OPEN_CALLER: Caller = { name: 'open', kind: 'open', scopes: 'all', products: '*' }

/** @throws AppError FORBIDDEN when the caller lacks `scope`. */
export function requireScope (caller: Caller, scope: Scope): void {
  if (caller.scopes !== 'all' && !caller.scopes.has(scope)) {
    throw new AppError('FORBIDDEN', `${describe(caller)} has no "${scope}" scope`)
  }
}

/**
 * Whether the caller may sign for this device, as an error to answer or undefined. Decided from
 * the keys alone, before any lookup: a device of a product the caller may not see gets the same
 * answer whether or not it exists.
 */
export function deviceRefusal (caller: Caller, productKey: string, deviceKey: string): AppError | undefined {
  const { devices, products } = caller
  if (devices !== undefined) {
    if (devices.some((device) => device.deviceKey === deviceKey && (device.productKey === undefined || device.productKey === productKey))) return undefined
    return new AppError('FORBIDDEN', `${describe(caller)} may sign only for its own device`)
  }
  if (products === '*' || products.has(productKey)) return undefined
  return new AppError('FORBIDDEN', `${describe(caller)} may not sign for product "${productKey}"`)
}

/** How an error names the caller (the open caller may do everything, so it is never refused). */
function describe (caller: Caller): string {
  return caller.kind === 'token' ? `the token "${caller.name}"` : 'this client certificate'
}
