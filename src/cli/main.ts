#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { VERSION } from '../version.js';
import { EXIT, oneLine } from '../util/errors.js';
import { registerBackup } from './commands/backup.js';
import { registerDemo } from './commands/demo.js';
import { registerConfig, registerHistory, registerList, registerStatus } from './commands/inspect.js';
import { registerPrune } from './commands/prune.js';
import { isRunsUntilSignalled } from './output.js';
import { registerAuth } from './commands/auth.js';
import { registerDaemon, registerSchedule } from './commands/daemon.js';
import { registerKeygen, registerNotify, registerSync } from './commands/misc.js';
import { registerRestore, registerVerify } from './commands/restore.js';
import { registerCheck } from './commands/check.js';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('litekeep')
    .description('Consistent, verified, rotated, off-site backups of live SQLite databases')
    .version(VERSION)
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({
      writeErr: (text) => process.stderr.write(text),
      // Usage errors stay one line, and say where the fix is.
      outputError: (text, write) => write(`${text.trimEnd()} (see litekeep --help)\n`),
    });
  registerBackup(program);
  registerList(program);
  registerStatus(program);
  registerHistory(program);
  registerPrune(program);
  registerConfig(program);
  registerDemo(program);
  registerRestore(program);
  registerVerify(program);
  registerCheck(program);
  registerSync(program);
  registerNotify(program);
  registerKeygen(program);
  registerAuth(program);
  registerDaemon(program);
  registerSchedule(program);
  for (const command of program.commands) command.exitOverride();
  return program;
}

/** Exit code of an error: its own when it carries one (config and usage errors carry 2), else 1. */
function exitCodeOf(error: unknown): number {
  const code = (error as { exitCode?: unknown }).exitCode;
  return typeof code === 'number' && code > 0 ? code : EXIT.failed;
}

export async function main(argv = process.argv): Promise<number> {
  let finished = false;
  // `litekeep list | head` closes the pipe early: that is the reader's choice, not an error.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') {
      finished = true;
      process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
    }
  });
  const program = buildProgram();
  // A command whose work never settles (a stream that never ends) would otherwise let Node exit with 0.
  process.on('exit', (code) => {
    if (!finished && code === 0 && !isRunsUntilSignalled()) {
      process.stderr.write('litekeep: internal error: the command stopped before it finished\n');
      process.exitCode = EXIT.failed;
    }
  });
  try {
    await program.parseAsync(argv);
    finished = true;
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (error) {
    finished = true;
    if (error instanceof CommanderError) {
      // Commander printed its message already; help and version are not errors.
      if (['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(error.code))
        return EXIT.ok;
      if (error.code === 'commander.executeSubCommandAsync') return EXIT.failed;
      return EXIT.usage;
    }
    process.stderr.write(`litekeep: ${oneLine(error)}\n`);
    if (process.env.LITEKEEP_DEBUG) process.stderr.write(`${(error as Error).stack}\n`);
    return exitCodeOf(error);
  }
}

main().then((code) => {
  process.exitCode = code;
});
