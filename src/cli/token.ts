// `enos-mqtt-signer token create`: a new random API token, printed once, and the token-file entry to add for it.
import { createHash, randomBytes } from 'node:crypto'
import { Command, InvalidArgumentError } from 'commander'
import { z } from 'zod'
import { SCOPES, parseTokenFile } from '../auth/tokens.js'
import type { Io } from './io.js'

/** 32 random bytes (256 bits), base64url: 43 characters a shell and an HTTP header take as they are. */
const TOKEN_BYTES = 32

interface CreateOptions {
  name: string
  scopes: string[]
  products: string[]
  expires?: string
  fleet?: boolean
}

const list = (value: string): string[] => value.split(',').map((part) => part.trim()).filter((part) => part !== '')

/** The token-file entry of a new token: its SHA-256 only (the token itself is never stored). */
export function tokenEntry (token: string, options: CreateOptions): Record<string, unknown> {
  return {
    name: options.name,
    sha256: createHash('sha256').update(token).digest('hex'),
    scopes: options.scopes,
    products: options.products.length === 1 && options.products[0] === '*' ? '*' : options.products,
    ...(options.expires !== undefined && { expires: options.expires }),
    ...(options.fleet === true && { fleet: true })
  }
}

function create (options: CreateOptions, io: Io): number {
  const token = randomBytes(TOKEN_BYTES).toString('base64url')
  const entry = tokenEntry(token, options)
  try {
    // The same rules as the service's: an entry this prints is one the service loads.
    parseTokenFile(JSON.stringify({ tokens: [entry] }))
  } catch (err) {
    io.stderr.write(`token create: ${(err as Error).message.replaceAll(/tokens\[0\]( \([^)]*\))?: /g, '')}\n`)
    return 2
  }
  io.stdout.write(`${token}\n`)
  io.stderr.write('token: the line above is the token, shown this once: give it to its user now (it is not stored anywhere).\n' +
    `token: add this entry to the "tokens" list of AUTH_TOKENS_FILE; the service reloads the file by itself:\n${JSON.stringify(entry, null, 2)}\n`)
  return 0
}

export function tokenCommand (io: Io): Command {
  const token = new Command('token').summary('create API tokens for AUTH_TOKENS_FILE').description('API tokens for AUTH_MODE=token (and mtls).')
  token.command('create')
    .summary('print a new random token, and the entry to add for it')
    .description('Prints a new random token (256 bits) on standard output, once, and on standard error the JSON entry to add to ' +
      'AUTH_TOKENS_FILE: its name, the SHA-256 of the token (the file never holds a token), scopes, products and expiry.')
    .requiredOption('--name <name>', 'who the token is for, as logs and rate limits name it: 1-64 of A-Z a-z 0-9 _ . : @ -')
    .requiredOption('--scopes <list>', `what it may do, comma-separated: ${SCOPES.join(', ')}`, list)
    .requiredOption('--products <list>', 'the productKeys it may sign for, comma-separated, or * for all', list)
    .option('--expires <date>', 'when it stops working, an ISO date and time, e.g. 2027-06-30T00:00:00Z', (value) => {
      if (!z.iso.datetime({ offset: true }).safeParse(value).success) throw new InvalidArgumentError('must be an ISO date and time, e.g. 2027-06-30T00:00:00Z')
      return value
    })
    .option('--fleet', 'a fleet token, shared by the firmware of many devices: limited per device (RATE_LIMIT_PER_DEVICE), not per caller; sign scope only')
    .addHelpText('after', '\nRotating a token without downtime: create the new one, add its entry next to the old one, hand the new token ' +
      'out, and remove the old entry once nothing uses it (both work meanwhile).')
    .action((options: CreateOptions) => {
      process.exitCode = create(options, io)
    })
  return token
}
