// Entrypoint. SIGHUP (reload the store) is taken before any other module loads: its default action
// kills the process, and loading the app takes long enough for a signal to arrive meanwhile.
import { hostname } from 'node:os'

let reload: (() => void) | undefined
process.on('SIGHUP', () => { reload?.() })
// A first log line (in pino's format: the logger itself is not loaded yet) says the process is up and SIGHUP is safe.
process.stdout.write(JSON.stringify({ level: 30, time: Date.now(), pid: process.pid, hostname: hostname(), msg: 'starting' }) + '\n')

const { start, failStartup } = await import('./start.js')
await start(process.env, (fn) => { reload = fn }).catch(failStartup)
