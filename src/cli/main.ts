#!/usr/bin/env node
// The `enos-mqtt-signer` command line: one file per sub-command, each added here with one line.
import { readFileSync } from 'node:fs'
import { Command, CommanderError } from 'commander'
import type { Io } from './io.js'
import { exportCommand } from './export.js'
import { importCommand } from './import.js'
import { migrateCommand } from './migrate.js'
import { signBatchCommand } from './sign-batch.js'
import { tokenCommand } from './token.js'

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }

// SIGINT and SIGTERM ask the running sub-command to stop and clean up (a temporary file, a request);
// a second one ends the process at once.
const stop = new AbortController()
for (const name of ['SIGINT', 'SIGTERM'] as const) {
  process.on(name, () => {
    /* c8 ignore next -- a second signal while the first one's cleanup runs: a race no test can time */
    if (stop.signal.aborted) process.exit(130)
    stop.abort(name)
  })
}
const io: Io = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, signal: stop.signal }

/** A sub-command (and its own sub-commands, as `token create`) with the program's settings: exit codes, help after errors. */
function inherit (command: Command, parent: Command): Command {
  command.copyInheritedSettings(parent)
  for (const child of command.commands) inherit(child, command)
  return command
}

const program = new Command('enos-mqtt-signer')
  .description('Tools for the enos-mqtt-signer service.')
  .version(version, '-V, --version', 'print the version')
  .helpCommand(true)
  .showHelpAfterError('(add --help for the options)')
  // Thrown instead of exiting, so that usage errors exit 2, the usual status for them.
  .exitOverride()

// One line per sub-command; each file exports a function that builds its Command around `io`.
for (const command of [
  signBatchCommand(io),
  tokenCommand(io),
  migrateCommand(io),
  importCommand(io),
  exportCommand(io)
]) program.addCommand(inherit(command, program))

try {
  await program.parseAsync()
} catch (err) {
  /* c8 ignore start -- a bug: sub-commands turn every failure they expect into an exit status */
  if (!(err instanceof CommanderError)) {
    process.stderr.write(`enos-mqtt-signer: unexpected error: ${String((err as Error).stack)}\n`)
    process.exit(2)
  }
  /* c8 ignore stop */
  // --help and --version end with a CommanderError too, of exit code 0.
  process.exitCode = err.exitCode === 0 ? 0 : 2
}
// Whatever is still open (a read of standard input, a timer) must not keep a finished command alive.
process.exit()
