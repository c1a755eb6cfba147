// The devices between the input and the service: read ahead a batch at a time, held until answered, resent on retry.
import { ProtocolError, type ResultLine } from './batch-client.js'
import { isDevice, type Device, type InputRecord, type Unreadable } from './inputs.js'

/** What the feed hands on: each record of the input once, in input order, with its result when it was sent. */
export type Deliver = (record: Device, result: ResultLine) => void
export type DeliverUnreadable = (record: Unreadable) => void

/** A first-in first-out queue with O(1) shift, for the records awaiting their results. */
class Queue<T> {
  #items: T[] = []
  #head = 0

  get size (): number {
    return this.#items.length - this.#head
  }

  push (item: T): void {
    this.#items.push(item)
  }

  peek (): T | undefined {
    return this.#items[this.#head]
  }

  shift (): T | undefined {
    const item = this.#items[this.#head]
    this.#head++
    // Let go of the answered part now and then, not at every shift.
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
    return item
  }

  * [Symbol.iterator] (): Generator<T> {
    for (let i = this.#head; i < this.#items.length; i++) yield this.#items[i] as T
  }
}

/** One request's view of the feed: which one it is, and the request line its next result must carry. */
export interface Attempt {
  readonly number: number
  nextLine: number
}

/** How many resent lines go in one chunk of the request. */
const RESEND_CHUNK = 1000

/**
 * The records of one run between the input and the service.
 *
 * Each record is taken from the input once and pushed onto `unanswered` as it is sent; a result
 * takes the record at the head (the service answers in order), so an answered record is never
 * sent again. When a request fails, the records still unanswered are sent first on the next one,
 * in the same order, followed by the rest of the input. At most `maxUnanswered` records (plus one
 * batch) wait for their results: past that, the input is not read until results come back.
 * Records that cannot be sent wait in the same queue, so that everything is handed on in input order.
 */
export class Feed {
  readonly #source: AsyncIterator<InputRecord[]>
  readonly #maxUnanswered: number
  readonly #deliver: Deliver
  readonly #deliverUnreadable: DeliverUnreadable
  readonly #unanswered = new Queue<InputRecord>()
  #lookahead: InputRecord[] | undefined
  #filling: Promise<void> | undefined
  #ended = false
  #current = 0
  #wake: Array<() => void> = []
  /** Why the input could not be read, once it could not. */
  failure: unknown

  constructor (source: AsyncIterator<InputRecord[]>, maxUnanswered: number, deliver: Deliver, deliverUnreadable: DeliverUnreadable) {
    this.#source = source
    this.#maxUnanswered = maxUnanswered
    this.#deliver = deliver
    this.#deliverUnreadable = deliverUnreadable
  }

  /** Every record has been read and handed on. */
  get isDone (): boolean {
    return this.#ended && this.#lookahead === undefined && this.#unanswered.size === 0
  }

  /** Records taken from the input that have no result yet. */
  get unanswered (): number {
    return this.#unanswered.size
  }

  /** Reads the next batch ahead, if none is waiting: the first call finds a bad CSV header before anything is sent. */
  async fill (): Promise<void> {
    if (this.#lookahead !== undefined || this.#ended) return
    this.#filling ??= this.#source.next().then((next) => {
      this.#filling = undefined
      if (next.done === true) this.#ended = true
      else this.#lookahead = next.value
    }, (err: unknown) => {
      this.#filling = undefined
      this.#ended = true
      this.failure = err
      throw err
    })
    return this.#filling
  }

  /** Whether another request has anything to send: records unanswered, or more input. */
  async hasWork (): Promise<boolean> {
    await this.fill()
    return this.#unanswered.size > 0 || this.#lookahead !== undefined
  }

  /** Starts a new request; the body of any earlier one stops taking records. */
  startAttempt (): Attempt {
    this.#current++
    this.#wakeWaiting()
    return { number: this.#current, nextLine: 1 }
  }

  /**
   * The request body of `attempt`: the unanswered records again, then the rest of the input, as
   * NDJSON text. It stops once a later attempt has started.
   */
  async * body (attempt: Attempt): AsyncGenerator<string> {
    const resend: string[] = []
    for (const record of this.#unanswered) if (isDevice(record)) resend.push(record.line)
    for (let i = 0; i < resend.length; i += RESEND_CHUNK) yield resend.slice(i, i + RESEND_CHUNK).join('\n') + '\n'
    for (;;) {
      while (this.#unanswered.size >= this.#maxUnanswered && attempt.number === this.#current) {
        await new Promise<void>((resolve) => this.#wake.push(resolve))
      }
      await this.fill()
      // A later attempt owns the input now (and the batch read ahead, if any).
      if (attempt.number !== this.#current) return
      const batch = this.#lookahead
      if (batch === undefined) return
      this.#lookahead = undefined
      const lines: string[] = []
      for (const record of batch) {
        this.#unanswered.push(record)
        if (isDevice(record)) lines.push(record.line)
      }
      this.#handOnUnreadable()
      if (lines.length > 0) yield lines.join('\n') + '\n'
    }
  }

  /**
   * Takes the result of the record at the head of the queue: the service answers in order, so
   * it belongs to the oldest record sent and unanswered.
   * @throws ProtocolError when the result is not for the line expected.
   */
  answer (attempt: Attempt, result: ResultLine): void {
    const record = this.#unanswered.peek()
    if (record === undefined || result.line !== attempt.nextLine) {
      throw new ProtocolError(`a result for request line ${result.line} came where line ${attempt.nextLine} was expected`)
    }
    this.#unanswered.shift()
    attempt.nextLine++
    this.#deliver(record as Device, result)
    this.#handOnUnreadable()
    if (this.#unanswered.size < this.#maxUnanswered) this.#wakeWaiting()
  }

  /** Records that could not be sent are handed on as soon as every record before them has been. */
  #handOnUnreadable (): void {
    for (let head = this.#unanswered.peek(); head !== undefined && !isDevice(head); head = this.#unanswered.peek()) {
      this.#unanswered.shift()
      this.#deliverUnreadable(head)
    }
  }

  #wakeWaiting (): void {
    const waiting = this.#wake
    this.#wake = []
    for (const resolve of waiting) resolve()
  }
}
