// The token file held in memory and reloaded like the device store: on change and on SIGHUP, a bad version keeping the old one.
import { watchedFile, type WatchedFileLogger } from '../store/watched-file.js'
import { TokenFileError, findToken, parseTokenFile, type Token } from './tokens.js'

export interface TokenStoreOptions {
  path: string
  watch: boolean
  log: WatchedFileLogger
  settleMs?: number
  pollMs?: number
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
  close (): Promise<void>
}

/**
 * Loads AUTH_TOKENS_FILE and keeps it loaded.
 * @throws TokenFileError naming the path and every bad entry: startup must stop.
 */
export async function createTokenStore (options: TokenStoreOptions): Promise<TokenStore> {
  const { path } = options
  const file = await watchedFile<Map<string, Token>>({
    ...options,
    label: 'token file',
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
    close: file.close
  }
}
