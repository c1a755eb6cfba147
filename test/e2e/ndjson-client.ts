// An NDJSON client for the stream tests: POST /sign/batch on a real socket, its headers sent before any line.
import { once } from 'node:events'
import { request, type ClientRequest, type IncomingMessage } from 'node:http'

/** How long without a 'drain' means held back for good: a busy machine can take over a second for a chunk. */
const STALLED_MS = 5000

export interface Stream { req: ClientRequest, response: Promise<IncomingMessage> }

/** Opens a stream to the service on `port` (with a bearer token when given); write lines to `req`. */
export function openStream (port: number, token = ''): Stream {
  const headers = { 'content-type': 'application/x-ndjson', ...(token !== '' && { authorization: `Bearer ${token}` }) }
  const req = request({ port, host: '127.0.0.1', method: 'POST', path: '/sign/batch', headers })
  req.on('error', () => {})
  const response = once(req, 'response').then(([res]) => res as IncomingMessage)
  // Headers go out now, not with the first body write: the server starts answering before the body ends.
  req.flushHeaders()
  return { req, response }
}

/** The whole answer, as text. */
export async function readAll (res: IncomingMessage): Promise<string> {
  let text = ''
  for await (const chunk of res) text += String(chunk)
  return text
}

/**
 * Writes `chunk` over and over without reading the answer, until the writes are held back for
 * good (no 'drain' for STALLED_MS): the server has stopped reading, its answer cannot go out.
 * Resolves with the bytes written.
 */
export async function writeUntilStalled (req: ClientRequest, chunk: string): Promise<number> {
  let written = 0
  for (;;) {
    written += chunk.length
    if (req.write(chunk)) continue
    const drained = await Promise.race([once(req, 'drain').then(() => true), new Promise<boolean>((resolve) => setTimeout(resolve, STALLED_MS, false))])
    if (!drained) return written
  }
}
