// How many unknown devices each caller may look up in the database a minute: made-up deviceKeys cost the database, not the fleet.
import { LRUCache } from 'lru-cache'

/** The callers counted at once; one that falls out starts a new minute (it still has only its own budget). */
export const MAX_COUNTED_CALLERS = 100_000

const MINUTE_MS = 60_000

export interface UnknownBudget {
  /** Most unknown devices a caller may look up in the store a minute. */
  readonly perMinute: number
  /** Seconds until the caller's minute ends, when it has spent its budget; undefined while it has some left. */
  spentFor (caller: string): number | undefined
  /** Counts `count` lookups of this caller that reached the store and found no device. */
  charge (caller: string, count: number): void
}

/**
 * A fixed one-minute window per caller, in this process. A lookup is charged after it has been
 * answered, so callers asking at the same moment can pass the budget by what they asked together
 * (at most one batch each).
 * @param clock epoch milliseconds.
 */
export function createUnknownBudget (perMinute: number, clock: () => number): UnknownBudget {
  const windows = new LRUCache<string, { start: number, count: number }>({ max: MAX_COUNTED_CALLERS })
  const current = (caller: string): { start: number, count: number } | undefined => {
    const window = windows.get(caller)
    return window !== undefined && clock() - window.start < MINUTE_MS ? window : undefined
  }
  return {
    perMinute,
    spentFor (caller) {
      const window = current(caller)
      if (window === undefined || window.count < perMinute) return undefined
      return Math.max(1, Math.ceil((window.start + MINUTE_MS - clock()) / 1000))
    },
    charge (caller, count) {
      if (count === 0) return
      const window = current(caller)
      if (window === undefined) windows.set(caller, { start: clock(), count })
      else window.count += count
    }
  }
}
