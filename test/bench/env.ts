// Settings of the benchmark scripts, read from the environment, and the CPU pinning they share.
import { execFileSync } from 'node:child_process'
import { availableParallelism } from 'node:os'

/** A positive number from environment variable `name`, or `fallback` when it is unset or empty. */
export function envNumber (name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got ${raw}`)
  return value
}

/**
 * Pins this process (the load generator, all its threads, and the load clients it forks) to CPU 0
 * and returns the prefix that starts a server pinned to CPU 1, so the two never take turns on one
 * core; no pinning without taskset or with one CPU.
 */
export function pinning (): string[] {
  if (availableParallelism() < 2) return []
  try {
    execFileSync('taskset', ['-a', '-cp', '0', String(process.pid)], { stdio: 'ignore' })
    return ['taskset', '-c', '1']
  } catch {
    console.log('taskset is not available: server and load generator are not pinned (figures vary more)')
    return []
  }
}
