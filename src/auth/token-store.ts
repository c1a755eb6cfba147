// The token file held in memory and reloaded like the device store: on change and on SIGHUP, a bad version keeping the old one.
import { watchedFile, type WatchedFileLogger } from '../store/watched-file.js'
import { TokenFileError, findToken, parseTokenFile, type Token } from './tokens.js'

export interface TokenStoreOptions {
  path: string
  watch: boolean
  log: WatchedFileLogger
  settleMs?: number
  /** How often the file's version is checked besides watching it (STORE_POLL_MS), at most TOKEN_POLL_MAX_MS. */
  pollMs: number
}

/** What /readyz says about the token file. Never a token or a hash. */
export interface TokenHealth {
  path: string
  tokens: number
  loadedAt: string
  lastReloadError?: { message: string, at: string }
}

export interface TokenStore {
  /** The entry of a presented token (expired ones included: the caller tells expired from unknown). */
  find (presented: string): Token | undefined
  health (): TokenHealth
  reload (): Promise<unknown>
  /** Calls `listener` after each reload that put a new version of the file in force; returns the function that stops it. */
  onChange (listener: () => void): () => void
  close (): Promise<void>
}

/**
 * The longest a changed token file waits to settle (app.ts), whatever STORE_SETTLE_MS says: a removed or
 * narrowed token must stop working within a second, on new requests and on open streams alike
 * (by the directory watch in about 300 ms; by the poll alone, see TOKEN_POLL_MAX_MS, in under 800 ms).
 * Settling guards against reading a file that is still being written; a token file is one JSON
 * document, so a part of one does not parse and is refused (and retried once the file changes
 * again) rather than put in force.
 */
export const TOKEN_SETTLE_MAX_MS = 200

/**
 * The longest between two checks of the token file's version, whatever STORE_POLL_MS says. Where the
 * directory watch misses a change (a directory that cannot be watched, some volume mounts), the poll
 * alone puts a removal in force within a second: at most this, then TOKEN_SETTLE_MAX_MS, then the reload.
 */
export const TOKEN_POLL_MAX_MS = 500

/**
 * Loads AUTH_TOKENS_FILE and keeps it loaded.
 * @throws TokenFileError naming the path and every bad entry: startup must stop.
 */
export async function createTokenStore (options: TokenStoreOptions): Promise<TokenStore> {
  const { path } = options
  const listeners = new Set<() => void>()
  const file = await watchedFile<Map<string, Token>>({
    ...options,
    pollMs: Math.min(options.pollMs, TOKEN_POLL_MAX_MS),
    label: 'token file',
    onReload (outcome) {
      if (outcome === 'reloaded') for (const listener of listeners) listener()
    },
    async parse (read) {
      try {
        return parseTokenFile(read.bytes.toString('utf8'))
      } catch (err) {
        throw new TokenFileError(`${path}: ${(err as Error).message}`)
      }
    },
    describe: async (tokens) => ({ tokens: tokens.size })
  })
  return {
    find: (presented) => findToken(file.current(), presented),
    health () {
      const lastReloadError = file.lastReloadError()
      return { path, tokens: file.current().size, loadedAt: file.loadedAt().toISOString(), ...(lastReloadError && { lastReloadError }) }
    },
    reload: file.reload,
    onChange (listener) {
      listeners.add(listener)
      return () => { listeners.delete(listener) }
    },
    close: file.close
  }
}
