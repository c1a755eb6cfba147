// The default connection bound, read from the process's open-file limit.
import { join } from 'node:path'
import t from 'tap'
import { FD_RESERVE, defaultMaxConnections } from '../../src/plugins/connections.js'
import { buildTestApp } from '../helper.js'

const LIMITS = (soft: string): string => [
  'Limit                     Soft Limit           Hard Limit           Units     ',
  'Max processes             127431               127431               processes ',
  `Max open files            ${soft.padEnd(20)} 1048576              files     `,
  ''
].join('\n')

t.test('the default bound is the soft open-file limit less the reserve', async (t) => {
  const dir = t.testdir({ limits: LIMITS('1024'), tiny: LIMITS('64'), unlimited: LIMITS('unlimited') })
  t.equal(defaultMaxConnections(join(dir, 'limits')), 1024 - FD_RESERVE)
  t.equal(defaultMaxConnections(join(dir, 'tiny')), 16, 'never below 16')
  t.equal(defaultMaxConnections(join(dir, 'unlimited')), undefined, 'no limit, no bound')
  t.equal(defaultMaxConnections(join(dir, 'missing')), undefined, 'not Linux: no bound')
})

t.test('this process gets a bound from its real limit, and MAX_CONNECTIONS overrides it', async (t) => {
  const auto = await buildTestApp(t)
  t.equal(auto.server.maxConnections, defaultMaxConnections())
  const set = await buildTestApp(t, { MAX_CONNECTIONS: '77' })
  t.equal(set.server.maxConnections, 77)
})
