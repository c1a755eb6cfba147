// When to try again: exponential backoff with full jitter, and the service's Retry-After.

export interface Backoff {
  /** The cap of the first retry's delay, in ms; each later retry doubles it. */
  baseMs: number
  /** No delay is longer than this, in ms. */
  maxMs: number
}

export const DEFAULT_BACKOFF: Backoff = { baseMs: 250, maxMs: 30_000 }

/**
 * The wait before retry number `retry` (0 for the first): a random time between 0 and
 * min(maxMs, baseMs * 2^retry) ("full jitter"), so clients that failed together do not come back
 * together. `random` returns a number in [0, 1), as Math.random does.
 */
export function backoffDelay (retry: number, backoff: Backoff = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const cap = Math.min(backoff.maxMs, backoff.baseMs * 2 ** Math.min(retry, 30))
  return Math.floor(random() * cap)
}

/** The longest Retry-After honoured, in ms: a service asking for longer is asked again after this. */
export const MAX_RETRY_AFTER_MS = 300_000

/**
 * Retry-After as milliseconds from `now`: delta-seconds (`"5"`) or an HTTP date, capped at
 * MAX_RETRY_AFTER_MS. `undefined` when the header is missing or unreadable.
 */
export function retryAfterMs (header: string | undefined, now: number = Date.now()): number | undefined {
  if (header === undefined) return undefined
  const text = header.trim()
  // An HTTP date has a day and month name; Date.parse alone would also read "-1" as a date.
  const ms = /^\d+$/.test(text) ? Number(text) * 1000 : /[a-z]/i.test(text) ? Date.parse(text) - now : Number.NaN
  if (Number.isNaN(ms)) return undefined
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, ms))
}

/**
 * The wait before the next attempt: what the service asked for, with up to baseMs of jitter on
 * top, or else the backoff delay of this retry.
 */
export function retryDelay (retry: number, asked: number | undefined, backoff: Backoff = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  if (asked === undefined) return backoffDelay(retry, backoff, random)
  return asked + Math.floor(random() * backoff.baseMs)
}
