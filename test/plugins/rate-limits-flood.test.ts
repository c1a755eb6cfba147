// A limited device's counter survives a flood: 101,000 made-up deviceKeys on /sign, 100,000 in a batch, and 101,000 real devices signed meanwhile.
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { buildTestApp } from '../helper.js'

// About 20 s on an idle machine: a budget for a busy one.
t.setTimeout(300_000)

const NDJSON = { 'content-type': 'application/x-ndjson' }

/** A store file of `count` real devices dev-0 ... of product P1. */
function manyDevices (t: Test, count: number): string {
  const devices = Array.from({ length: count }, (_, i) => ({ productKey: 'P1', deviceKey: `dev-${i}`, deviceSecret: `secret-${i}` }))
  const dir = t.testdir({ 'devices.json': JSON.stringify({ devices }) })
  return join(dir, 'devices.json')
}

async function signStatus (app: FastifyInstance, device: object): Promise<number> {
  return (await app.inject({ method: 'POST', url: '/sign', payload: device })).statusCode
}

t.test('a limited device stays limited after 101,000 made-up deviceKeys on /sign, 100,000 in a batch, and 101,000 real devices signed', async (t) => {
  const count = 101_000
  const app = await buildTestApp(t, { STORE_FILE: manyDevices(t, count), RATE_LIMIT_PER_DEVICE: '3', RATE_LIMIT_PER_CALLER: '0', BATCH_MAX_ITEMS: '100000' })
  const real = { productKey: 'P1', deviceKey: 'dev-0' }
  for (let i = 0; i < 3; i++) await signStatus(app, real)
  t.equal(await signStatus(app, real), 429)
  // Made-up devices through /sign, in parallel groups (each a 404).
  for (let i = 0; i < count; i += 500) {
    const statuses = await Promise.all(Array.from({ length: 500 }, (_, j) => signStatus(app, { productKey: 'P1', deviceKey: `made-up-${i + j}` })))
    if (statuses.some((status) => status !== 404)) t.fail(`made-up devices ${i}: ${statuses.find((status) => status !== 404)}`)
  }
  t.equal(await signStatus(app, real), 429, 'still limited after 101,000 made-up devices on /sign (the old limiter kept 100,000)')
  const madeUp = Array.from({ length: 100_000 }, (_, i) => ({ productKey: 'P1', deviceKey: `batch-made-up-${i}` }))
  t.same((await app.inject({ method: 'POST', url: '/sign/batch', payload: { devices: madeUp } })).json().summary, { total: 100_000, signed: 0, failed: 100_000 })
  const reals = Array.from({ length: count - 1 }, (_, i) => JSON.stringify({ productKey: 'P1', deviceKey: `dev-${i + 1}` })).join('\n') + '\n'
  const stream = await app.inject({ method: 'POST', url: '/sign/batch', headers: NDJSON, payload: reals })
  t.match(stream.body.trim().split('\n').at(-1), `{"summary":{"total":${count - 1},"signed":${count - 1},"failed":0}}`, `${count - 1} other real devices signed once each`)
  t.equal(await signStatus(app, real), 429, 'and still limited')
})
