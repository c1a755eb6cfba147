// The feed between the input and the service: bounded read-ahead, in-order answers, resending, records that cannot be sent.
import t from 'tap'
import { ProtocolError, type ResultLine } from '../../src/cli/batch-client.js'
import { Feed } from '../../src/cli/feed.js'
import type { Device, InputRecord, Unreadable } from '../../src/cli/inputs.js'

function device (at: number): Device {
  return { at, line: `{"deviceKey":"d${at}"}`, productKey: 'P', deviceKey: `d${at}`, reference: '' }
}

async function * batches (count: number, size: number): AsyncGenerator<InputRecord[]> {
  for (let b = 0; b < count; b++) yield Array.from({ length: size }, (_, i) => device(b * size + i + 1))
}

const ok = (line: number): ResultLine => ({ line, ok: true })

/** The next chunk of a body, or 'waiting' when it is not ready within a turn of the event loop. */
async function nextOrWaiting (body: AsyncGenerator<string>): Promise<IteratorResult<string> | 'waiting'> {
  return Promise.race([body.next(), new Promise<'waiting'>((resolve) => setImmediate(() => setImmediate(resolve, 'waiting')))])
}

t.test('reading pauses once maxUnanswered records wait for results, and goes on as results come back', async (t) => {
  const delivered: number[] = []
  const feed = new Feed(batches(10, 1000), 2500, (record) => delivered.push(record.at), () => {})
  const attempt = feed.startAttempt()
  const body = feed.body(attempt)
  for (let i = 0; i < 3; i++) t.notMatch(await nextOrWaiting(body), 'waiting')
  t.equal(feed.unanswered, 3000)
  const pending = body.next()
  t.equal(await Promise.race([pending, new Promise((resolve) => setImmediate(() => setImmediate(resolve, 'waiting')))]), 'waiting', 'no more input is read')
  for (let line = 1; line <= 1600; line++) feed.answer(attempt, ok(line))
  t.match(await pending, { done: false }, 'room again: the next batch is taken')
  t.equal(feed.unanswered, 2400)
  t.same(delivered.slice(0, 3), [1, 2, 3])
  t.equal(delivered.length, 1600)
  t.equal(delivered.at(-1), 1600)
})

t.test('a new attempt resends the unanswered records first, in order; the old body stops', async (t) => {
  const delivered: number[] = []
  const feed = new Feed(batches(3, 4), 5, (record) => delivered.push(record.at), () => {})
  const first = feed.startAttempt()
  const oldBody = feed.body(first)
  await oldBody.next()
  await oldBody.next()
  feed.answer(first, ok(1))
  feed.answer(first, ok(2))
  const waiting = oldBody.next()
  const second = feed.startAttempt()
  t.match(await waiting, { done: true }, 'the earlier body gives up its place')
  const body = feed.body(second)
  t.same((await body.next()).value, '{"deviceKey":"d3"}\n{"deviceKey":"d4"}\n{"deviceKey":"d5"}\n{"deviceKey":"d6"}\n{"deviceKey":"d7"}\n{"deviceKey":"d8"}\n')
  t.throws(() => feed.answer(second, ok(2)), new ProtocolError('a result for request line 2 came where line 1 was expected'))
  for (let line = 1; line <= 6; line++) feed.answer(second, ok(line))
  t.same((await body.next()).value, '{"deviceKey":"d9"}\n{"deviceKey":"d10"}\n{"deviceKey":"d11"}\n{"deviceKey":"d12"}\n')
  for (let line = 7; line <= 10; line++) feed.answer(second, ok(line))
  t.match(await body.next(), { done: true })
  t.equal(feed.isDone, true)
  t.same(delivered, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
  t.throws(() => feed.answer(second, ok(11)), { name: 'ProtocolError' }, 'a result for nothing sent')
})

t.test('records that cannot be sent are handed on in input order, between the answered ones', async (t) => {
  const order: string[] = []
  const bad = (at: number): Unreadable => ({ at, reference: '', error: { code: 'MALFORMED_JSON', message: 'bad' } })
  async function * source (): AsyncGenerator<InputRecord[]> {
    yield [bad(1), device(2), bad(3), bad(4), device(5)]
    yield [bad(6)]
  }
  const feed = new Feed(source(), 100, (record) => order.push(`sent ${record.at}`), (record) => order.push(`unreadable ${record.at}`))
  const attempt = feed.startAttempt()
  const body = feed.body(attempt)
  t.same((await body.next()).value, '{"deviceKey":"d2"}\n{"deviceKey":"d5"}\n')
  t.same(order, ['unreadable 1'], 'the first waits for nothing')
  feed.answer(attempt, ok(1))
  t.same(order, ['unreadable 1', 'sent 2', 'unreadable 3', 'unreadable 4'])
  feed.answer(attempt, ok(2))
  t.match(await body.next(), { done: true }, 'a batch of nothing to send sends nothing')
  t.same(order, ['unreadable 1', 'sent 2', 'unreadable 3', 'unreadable 4', 'sent 5', 'unreadable 6'])
  t.equal(await feed.hasWork(), false)
})

t.test('an input that fails: the failure is kept and thrown to whoever waits for input', async (t) => {
  async function * source (): AsyncGenerator<InputRecord[]> {
    yield [device(1)]
    throw new Error('disk gone')
  }
  const feed = new Feed(source(), 10, () => {}, () => {})
  const body = feed.body(feed.startAttempt())
  await body.next()
  await t.rejects(body.next(), { message: 'disk gone' })
  t.match(feed.failure, { message: 'disk gone' })
  t.equal(await feed.hasWork(), true, 'the record sent is still unanswered')
})
