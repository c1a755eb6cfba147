// Admission control's decision, by plain calls with a made-up clock and made-up busy times.
import t from 'tap'
import { Admission, MAX_QUEUE_ADDRESSES, QUEUE_INTERVAL_MS, QueueDelay, SAMPLES_PER_ADDRESS, type AdmissionLimits } from '../../src/plugins/admission.js'

const LIMITS: AdmissionLimits = { busyMs: 100, queueMs: 100, maxInFlight: 100, windowMs: 1000, maxCallers: 1000 }
const QUIET = 0
const MILD = 60
const FULL = 150

/** Admits `n` requests of `key` (released at once: only the counts matter) and says how many got in. */
function admitMany (control: Admission, key: string, n: number, busy: number, now: number): number {
  let admitted = 0
  for (let i = 0; i < n; i++) {
    if (control.admit(key, busy, now) === undefined) {
      admitted++
      control.release()
    }
  }
  return admitted
}

t.test('without pressure every request is admitted and counted in flight until released', async (t) => {
  const control = new Admission(LIMITS, 0)
  t.equal(control.admit('a', QUIET, 0), undefined)
  t.equal(control.admit('a', MILD - 11, 0), undefined)
  t.equal(control.inFlight, 2)
  control.release()
  t.equal(control.inFlight, 1)
})

t.test('under full pressure from a busy loop, callers at their share are shed alike (reason busy)', async (t) => {
  const control = new Admission(LIMITS, 0)
  for (const key of ['a', 'b', 'c']) admitMany(control, key, 10, QUIET, 0)
  t.equal(control.admit('a', FULL, 10), 'busy')
  t.equal(control.admit('b', FULL, 10), 'busy')
  // A boot storm: every caller new, with one request each: none is light.
  const storm = new Admission(LIMITS, 0)
  for (let i = 0; i < 100; i++) admitMany(storm, `ip${i}`, 1, QUIET, 0)
  t.equal(storm.admit('ip-new', FULL, 10), 'busy')
  t.equal(storm.admit('ip1', FULL, 10), 'busy')
})

t.test('under mild pressure a heavy caller is shed and the others are admitted', async (t) => {
  const control = new Admission(LIMITS, 0)
  admitMany(control, 'heavy', 100, QUIET, 0)
  admitMany(control, 'light', 10, QUIET, 0)
  t.equal(admitMany(control, 'heavy', 50, MILD, 1), 0)
  t.equal(admitMany(control, 'light', 20, MILD, 1), 20)
  // A single caller is never above its own share.
  const alone = new Admission(LIMITS, 0)
  admitMany(alone, 'only', 100, QUIET, 0)
  t.equal(admitMany(alone, 'only', 10, MILD, 1), 10)
})

t.test('under full pressure a light caller is still admitted up to half its share, a heavy one is not', async (t) => {
  const control = new Admission(LIMITS, 0)
  admitMany(control, 'heavy', 100, QUIET, 0)
  admitMany(control, 'light', 5, QUIET, 0)
  t.equal(admitMany(control, 'heavy', 50, FULL, 1), 0)
  // Light is admitted while it stays within half its share: up to 33 of the 133 admitted in all.
  t.equal(admitMany(control, 'light', 50, FULL, 1), 28)
  t.equal(control.admit('light', FULL, 1), 'busy')
})

t.test('the in-flight bound: heavy callers shed from three quarters of it, everyone at it (reason in_flight)', async (t) => {
  const control = new Admission({ ...LIMITS, maxInFlight: 8 }, 0)
  for (let i = 0; i < 5; i++) t.equal(control.admit('heavy', QUIET, 0), undefined)
  t.equal(control.admit('light', QUIET, 0), undefined)
  // 6 in flight, 6 >= 8 * 0.75: mild.
  t.equal(control.admit('heavy', QUIET, 0), 'in_flight')
  t.equal(control.admit('light', QUIET, 0), undefined)
  t.equal(control.admit('light', QUIET, 0), undefined)
  t.equal(control.inFlight, 8)
  // At the bound nobody gets in, not even a light caller; the busy loop does not change the reason.
  t.equal(control.admit('new', QUIET, 0), 'in_flight')
  t.equal(control.admit('new', FULL, 0), 'in_flight')
  control.release()
  t.equal(control.admit('light', QUIET, 0), undefined)
})

t.test('the counts of a caller last one to two windows, then start again', async (t) => {
  const control = new Admission(LIMITS, 0)
  admitMany(control, 'heavy', 100, QUIET, 0)
  admitMany(control, 'light', 10, QUIET, 0)
  // In the next window the previous one still counts.
  t.equal(control.admit('heavy', MILD, 1500), 'busy')
  admitMany(control, 'light', 1, QUIET, 1500)
  // Two windows on, heavy's 100 are forgotten: only light's one request of the last window counts.
  t.equal(control.admit('heavy', MILD, 2600), undefined)
  // After a whole quiet window nothing is remembered: heavy is alone again.
  const idle = new Admission(LIMITS, 0)
  admitMany(idle, 'heavy', 100, QUIET, 0)
  admitMany(idle, 'light', 10, QUIET, 0)
  t.equal(idle.admit('heavy', MILD, 2500), undefined)
})

t.test('callers past maxCallers in a window are admitted without pressure but never light', async (t) => {
  const control = new Admission({ ...LIMITS, maxCallers: 2 }, 0)
  admitMany(control, 'a', 10, QUIET, 0)
  admitMany(control, 'b', 10, QUIET, 0)
  t.equal(admitMany(control, 'c', 10, QUIET, 0), 10)
  // c was never counted: under full pressure it cannot be judged light, though its count reads 0.
  t.equal(admitMany(control, 'c', 10, FULL, 1), 0)
  t.equal(admitMany(control, 'c', 10, MILD, 1), 10)
})

t.test('under full pressure with nothing admitted yet, nobody is light', async (t) => {
  const control = new Admission(LIMITS, 0)
  t.equal(control.admit('a', FULL, 0), 'busy')
})

t.test('the wait of new connections sheds as the busy loop does, with its own reason', async (t) => {
  const control = new Admission(LIMITS, 0)
  t.equal(admitMany(control, 'a', 10, QUIET, 0), 10)
  t.equal(admitMany(control, 'b', 2, QUIET, 0), 2)
  t.equal(control.admit('a', QUIET, 1, FULL), 'queue', 'a long queue of new connections sheds everyone but the light')
  t.equal(control.admit('a', FULL, 1, MILD), 'busy', 'the signal further past its limit names the reason')
  t.equal(control.admit('a', QUIET, 2, MILD), 'queue', 'half the limit: the caller above its share is shed')
  t.equal(control.admit('b', QUIET, 2, MILD), undefined, 'and the caller below it is not')
  t.equal(control.admit('a', QUIET, 3, 0), undefined, 'no queue, no shedding')
})

t.test('QueueDelay: the median wait of an interval (0, half the limit or the limit), a few connections per address, held through the next one; nothing seen: 0', async (t) => {
  const q = new QueueDelay(100, 0)
  q.sample('a', 500, 10)
  q.sample('b', 300, 10)
  q.sample('c', 0.1, 10)
  t.equal(q.current(50), 0, 'the first interval is not over: nothing known yet')
  t.equal(q.current(QUEUE_INTERVAL_MS), 100, 'two of three waited past the limit: the median did')
  for (const [address, waited] of [['a', 60], ['b', 70], ['c', 0.1], ['d', 2000]] as const) q.sample(address, waited, QUEUE_INTERVAL_MS + 10)
  t.equal(q.current(QUEUE_INTERVAL_MS + 50), 100, 'held through the next interval')
  t.equal(q.current(2 * QUEUE_INTERVAL_MS), 50, 'three of four waited half the limit, one only past it: half')
  for (let i = 0; i < 50; i++) q.sample('late', 5000, 2 * QUEUE_INTERVAL_MS + 1)
  for (const address of ['v', 'w', 'x', 'y', 'z']) q.sample(address, 1, 2 * QUEUE_INTERVAL_MS + 1)
  t.equal(q.current(3 * QUEUE_INTERVAL_MS), 0, `fifty late connections from one address weigh ${SAMPLES_PER_ADDRESS} samples: five prompt ones keep the median at 0`)
  t.equal(q.current(4 * QUEUE_INTERVAL_MS), 0, 'an interval with no new connection: no queue')
  q.sample('a', 400, 4 * QUEUE_INTERVAL_MS + 1)
  t.equal(q.current(10 * QUEUE_INTERVAL_MS), 0, 'a sample long ago (more than an interval since) says nothing about now')
})

t.test('QueueDelay: at most MAX_QUEUE_ADDRESSES addresses an interval are counted', async (t) => {
  const q = new QueueDelay(100, 0)
  for (let i = 0; i < MAX_QUEUE_ADDRESSES; i++) q.sample(`prompt-${i}`, 0, 1)
  for (let i = 0; i < MAX_QUEUE_ADDRESSES + 5; i++) q.sample(`late-${i}`, 1000, 2)
  t.equal(q.current(QUEUE_INTERVAL_MS), 0, 'the addresses past the bound are not counted')
})
