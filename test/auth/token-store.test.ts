// The token file's store: where its directory cannot be watched, the poll alone puts a change in force, at most TOKEN_POLL_MAX_MS apart.
import * as fs from 'node:fs'
import t from 'tap'
import type { WatchedFileLogger } from '../../src/store/watched-file.js'
import { makeToken, writeTokenFile } from '../helper.js'

t.test('a token file whose directory cannot be watched is checked every TOKEN_POLL_MAX_MS, whatever STORE_POLL_MS says: a removal is in force by polling alone', async (t) => {
  let watches = 0
  // What an unwatchable directory does to fs.watch (inotify out of watches, some volume mounts).
  const fileWatch = await t.mockImport('../../src/store/file-watch.js', {
    'node:fs': {
      ...fs,
      watch () {
        watches++
        throw Object.assign(new Error('inotify limit'), { code: 'ENOSPC' })
      }
    }
  })
  const watchedFile = await t.mockImport('../../src/store/watched-file.js', { '../../src/store/file-watch.js': fileWatch })
  const { createTokenStore, TOKEN_POLL_MAX_MS } = await t.mockImport<typeof import('../../src/auth/token-store.js')>('../../src/auth/token-store.js', {
    '../../src/store/watched-file.js': watchedFile
  })
  const kept = makeToken('kept', ['sign'], '*')
  const removed = makeToken('removed', ['sign'], '*')
  const path = writeTokenFile(t, [kept, removed])
  const warnings: string[] = []
  const log = { info () {}, warn (_obj: unknown, msg: string) { warnings.push(msg) }, error () {} } as unknown as WatchedFileLogger
  // STORE_POLL_MS at its largest: only the cap can notice the change before the test times out.
  const tokens = await createTokenStore({ path, watch: true, settleMs: 200, pollMs: 3_600_000, log })
  t.teardown(() => tokens.close())
  t.ok(watches > 0, 'the watch was tried')
  t.match(warnings, [new RegExp(`every ${TOKEN_POLL_MAX_MS} ms instead$`)])
  t.equal(tokens.find(removed.token)?.name, 'removed')
  const changed = new Promise<void>((resolve) => { tokens.onChange(resolve) })
  const replaced = Date.now()
  fs.writeFileSync(`${path}.next`, JSON.stringify({ tokens: [kept.entry] }))
  fs.renameSync(`${path}.next`, path)
  await changed
  t.comment(`in force ${Date.now() - replaced} ms after the mv, by polling alone`)
  t.equal(tokens.find(removed.token), undefined, 'the removed token is gone')
  t.equal(tokens.find(kept.token)?.name, 'kept')
})
