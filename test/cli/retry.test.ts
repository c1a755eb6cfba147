// Backoff with full jitter and Retry-After: plain calls with a chosen "random".
import t from 'tap'
import { DEFAULT_BACKOFF, MAX_RETRY_AFTER_MS, backoffDelay, retryAfterMs, retryDelay } from '../../src/cli/retry.js'

const ALMOST_ONE = 1 - Number.EPSILON

t.test('backoffDelay: between 0 and base * 2^retry, capped at maxMs', async (t) => {
  const backoff = { baseMs: 100, maxMs: 1000 }
  for (const [retry, cap] of [[0, 100], [1, 200], [2, 400], [3, 800], [4, 1000], [10, 1000], [500, 1000]] as const) {
    t.equal(backoffDelay(retry, backoff, () => 0), 0, `retry ${retry}: the lowest draw waits not at all`)
    t.equal(backoffDelay(retry, backoff, () => ALMOST_ONE), cap - 1, `retry ${retry}: the highest draw stays under ${cap} ms`)
    t.equal(backoffDelay(retry, backoff, () => 0.5), cap / 2, `retry ${retry}: the draw scales the cap`)
  }
})

t.test('backoffDelay with Math.random stays within its bounds', async (t) => {
  for (let retry = 0; retry < 12; retry++) {
    const cap = Math.min(DEFAULT_BACKOFF.maxMs, DEFAULT_BACKOFF.baseMs * 2 ** retry)
    for (let i = 0; i < 200; i++) {
      const delay = backoffDelay(retry)
      if (delay < 0 || delay >= cap || !Number.isInteger(delay)) t.fail(`retry ${retry}: ${delay} is out of [0, ${cap})`)
    }
  }
  t.pass('every delay in [0, cap)')
})

t.test('retryAfterMs reads delta-seconds and HTTP dates, and refuses the rest', async (t) => {
  const now = Date.parse('2026-01-01T00:00:00Z')
  t.equal(retryAfterMs(undefined, now), undefined)
  t.equal(retryAfterMs('5', now), 5000)
  t.equal(retryAfterMs(' 0 ', now), 0)
  t.equal(retryAfterMs('Thu, 01 Jan 2026 00:00:03 GMT', now), 3000)
  t.equal(retryAfterMs('Wed, 31 Dec 2025 23:59:00 GMT', now), 0, 'a date in the past means now')
  t.equal(retryAfterMs('soon', now), undefined)
  t.equal(retryAfterMs('-1', now), undefined, 'not delta-seconds, not a date')
  t.equal(retryAfterMs('86400', now), MAX_RETRY_AFTER_MS, 'capped')
  t.type(retryAfterMs('1'), 'number', 'now defaults to the clock')
})

t.test('retryDelay: what the service asked plus up to baseMs of jitter, else the backoff', async (t) => {
  const backoff = { baseMs: 250, maxMs: 1000 }
  t.equal(retryDelay(3, 2000, backoff, () => 0), 2000, 'Retry-After wins, even over maxMs')
  t.equal(retryDelay(3, 2000, backoff, () => ALMOST_ONE), 2249)
  t.equal(retryDelay(1, undefined, backoff, () => 0.5), 250)
  t.ok(retryDelay(0, undefined) < DEFAULT_BACKOFF.baseMs)
  t.ok(retryDelay(0, 1000) >= 1000)
})
