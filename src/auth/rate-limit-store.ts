// Rate-limit counters in fixed one-minute windows, shared through Redis by the replicas, and this process's own while Redis is away.

/** The part of an ioredis client the counters use (a command defined with defineCommand). */
export interface RedisCounting {
  defineCommand (name: string, definition: { lua: string }): void
}

/** The link to Redis, as the counters need it. */
export interface SharedCounters {
  /** An ioredis client; undefined: counters are this process's alone. */
  redis: RedisCounting | undefined
  /** Whether Redis can be asked now (connected, and answering: no command has failed since a check found it answering); when not, counting goes on locally, synchronously. */
  isUp (): boolean
  /** Called when asking Redis failed or timed out: counting goes on locally, loudly, until a check finds Redis answering. */
  failed (err: Error): void
}

/** Distinct from other users of the same Redis. */
export const REDIS_KEY_PREFIX = 'enos-mqtt-signer:rate:'

/** What a counter counts: a key within a group (a device within its product, a caller within ''). */
export interface CounterKey {
  group: string
  key: string
}

/**
 * Adds ARGV[i + 2] to KEYS[i], each in turn, and answers the counts after each addition; a key
 * made by the first addition expires after ARGV[1] ms. One script, so a whole chunk of a batch is
 * one round trip; its keys name their window, so the expiry only cleans up.
 */
const COUNT_SCRIPT = `
local ttl = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local by = tonumber(ARGV[i + 1])
  local current = redis.call('INCRBY', key, by)
  if current == by then redis.call('PEXPIRE', key, ttl) end
  out[i] = current
end
return out
`

type CountCommand = (keysCount: number, ...args: Array<string | number | ((err: Error | null, result?: number[]) => void)>) => void

/** A window's counts: what each key has been counted in it so far. */
export interface Window {
  /** Epoch milliseconds when the window ends and every count starts again from 0. */
  endsAt: number
}

/**
 * Counters that every key of one window shares the length of (one minute for every limit here).
 * Windows are aligned to the clock (minute 0, 1, 2, ... since the epoch), the same in every
 * replica, so a local count and a Redis count cover the same minute. Nothing is evicted within a
 * window: a counter lives until its window ends, whatever other keys are counted meanwhile, and a
 * new window drops the old one whole. The callers count only keys that are bounded (devices found
 * in the store, tokens, addresses), so memory is bounded by those.
 */
export class Counters {
  private readonly name: string
  private readonly windowMs: number
  private readonly shared: SharedCounters
  private readonly clock: () => number
  private readonly count: CountCommand | undefined
  private current = -1
  // Keys by group, then key: no key string is made per count (a million devices a minute is millions of counts).
  private local = new Map<string, Map<string, number>>()
  private size = 0

  /** @param name distinct for each limit: its keys in Redis start with it. */
  constructor (name: string, windowMs: number, shared: SharedCounters, clock: () => number = Date.now) {
    this.name = name
    this.windowMs = windowMs
    this.shared = shared
    this.clock = clock
    const redis = shared.redis as (RedisCounting & { enosSignerCount?: CountCommand }) | undefined
    if (redis !== undefined) {
      if (redis.enosSignerCount === undefined) redis.defineCommand('enosSignerCount', { lua: COUNT_SCRIPT })
      this.count = (redis.enosSignerCount as CountCommand).bind(redis)
    }
  }

  /**
   * Adds `by[i]` (1 when omitted) to the count of `keys[i]`, in order (a key named twice is
   * counted twice), and answers each count after its addition, with the window they are in.
   * Synchronous when counting locally; one Redis round trip otherwise, and local counting when
   * that fails.
   */
  add (keys: readonly CounterKey[], by?: readonly number[]): { counts: number[], window: Window } | Promise<{ counts: number[], window: Window }> {
    const now = this.clock()
    const index = Math.floor(now / this.windowMs)
    const window = { endsAt: (index + 1) * this.windowMs }
    const { count, shared } = this
    if (count === undefined || !shared.isUp()) return { counts: this.addLocally(index, keys, by), window }
    return new Promise((resolve) => {
      const args: Array<string | number> = keys.map(({ group, key }) => `${REDIS_KEY_PREFIX}${this.name}:${index}:${group}/${key}`)
      args.push(2 * this.windowMs)
      for (let i = 0; i < keys.length; i++) args.push(by?.[i] ?? 1)
      count(keys.length, ...args, (err: Error | null, result?: number[]) => {
        // The script answers one count per key.
        if (err === null) return resolve({ counts: result as number[], window })
        shared.failed(err)
        resolve({ counts: this.addLocally(index, keys, by), window })
      })
    })
  }

  private addLocally (index: number, keys: readonly CounterKey[], by: readonly number[] | undefined): number[] {
    if (index !== this.current) {
      this.current = index
      this.local = new Map()
      this.size = 0
    }
    const { local } = this
    const counts = new Array<number>(keys.length)
    for (let i = 0; i < keys.length; i++) {
      const { group, key } = keys[i] as CounterKey
      let inGroup = local.get(group)
      if (inGroup === undefined) {
        inGroup = new Map()
        local.set(group, inGroup)
      }
      const before = inGroup.get(key)
      if (before === undefined) this.size++
      const current = (before ?? 0) + (by?.[i] ?? 1)
      inGroup.set(key, current)
      counts[i] = current
    }
    return counts
  }

  /** Keys counted locally in the current window (for tests and memory figures). */
  get localKeys (): number {
    return this.size
  }
}
