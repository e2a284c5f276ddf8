#!/usr/bin/env -S node --
// `node --` ends Node's own option parsing: Node 20 reads a `--env-file` anywhere on its command line, even after
// the script, and would answer `litekeep list --env-file missing.env` itself (exit 9) instead of litekeep.
import { Command, CommanderError } from 'commander';
import { VERSION } from '../version.js';
import { EXIT, oneLine } from '../util/errors.js';
import { redactUrlsInText } from '../util/redact.js';
import { registerBackup } from './commands/backup.js';
import { registerDemo } from './commands/demo.js';
import { registerConfig, registerHistory, registerList, registerStatus } from './commands/inspect.js';
import { registerPrune } from './commands/prune.js';
import { isRunsUntilSignalled, PREFIX, printError, setQuiet } from './output.js';
import { registerAuth } from './commands/auth.js';
import { registerDaemon, registerSchedule } from './commands/daemon.js';
import { registerKeygen, registerNotify, registerSync } from './commands/misc.js';
import { registerRestore, registerVerify } from './commands/restore.js';
import { registerCheck } from './commands/check.js';
import { registerReplicate } from './commands/replicate.js';

/** Every command below `command`, nested ones too (`notify test`, `auth google`). */
function allCommands(command: Command): Command[] {
  return command.commands.flatMap((c) => [c, ...allCommands(c)]);
}

function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** Usage errors in the one form of every litekeep error, pointing at the help of the command that was used. */
function configureErrors(command: Command): void {
  command.configureOutput({
    writeErr: (text) => process.stderr.write(text),
    outputError: (text, write) => {
      const message = text
        .trim()
        .replace(/^error: /, '')
        .replace(/\s*\(Did you mean (.*?)\?\)/, ' (did you mean $1?)')
        .replace(/\s*\n\s*/g, ' ');
      write(`${PREFIX}${message} (see ${commandPath(command)} --help)\n`);
    },
  });
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('litekeep')
    .description('Consistent, verified, rotated, off-site backups of live SQLite databases')
    .version(VERSION)
    .showSuggestionAfterError()
    .exitOverride();
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
  registerReplicate(program);
  registerSync(program);
  registerNotify(program);
  registerKeygen(program);
  registerAuth(program);
  registerDaemon(program);
  registerSchedule(program);
  configureErrors(program);
  for (const command of allCommands(program)) {
    command.exitOverride();
    configureErrors(command);
    // Commands that only group others (`notify`, `auth`) take no options of their own.
    if (command.commands.length === 0) command.option('-q, --quiet', 'print only errors (for cron)');
  }
  program.hook('preAction', (_program, action) => setQuiet(action.opts().quiet === true));
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
  // `npx litekeep -- list --env-file X`: the `--` was for npx's Node (see the shebang), not an end of options.
  if (argv[2] === '--') argv = [...argv.slice(0, 2), ...argv.slice(3)];
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
    printError(oneLine(error));
    if (process.env.LITEKEEP_DEBUG)
      process.stderr.write(`${redactUrlsInText(String((error as Error).stack))}\n`);
    return exitCodeOf(error);
  }
}

main().then((code) => {
  process.exitCode = code;
});
