// A mistake in how the command was called or in what it was given to read: exit status 2, no stack trace.

export class UsageError extends Error {
  override name = 'UsageError'
}
