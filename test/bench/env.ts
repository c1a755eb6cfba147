// Settings of the benchmark scripts, read from the environment.

/** A positive number from environment variable `name`, or `fallback` when it is unset or empty. */
export function envNumber (name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got ${raw}`)
  return value
}
