import type { Command } from 'commander';
import { runDaemon } from '../../backup/daemon.js';
import { encryptionSettings } from '../../backup/encryption.js';
import { BackupManager } from '../../backup/manager.js';
import { destinationsOf } from '../../backup/offsite.js';
import { nextRuns, validateSchedule } from '../../scheduler/index.js';
import { EXIT, LitekeepError } from '../../util/errors.js';
import { formatTime } from '../../util/time.js';
import {
  addConfigOptions,
  addTargetOptions,
  noDatabaseError,
  resolveConfig,
  selectTargets,
  type CommonOptions,
} from '../context.js';
import { markRunsUntilSignalled, print, printJson } from '../output.js';

interface DaemonFlags extends CommonOptions {
  schedule?: string;
  http?: string;
  allowRemote?: boolean;
  drive?: boolean;
  upload?: boolean;
  notify?: boolean;
  quiet?: boolean;
}

export function registerDaemon(program: Command): void {
  const command = program
    .command('daemon')
    .description('run backups on the cron schedule (default 03:00 daily), with catch-up and graceful stop')
    .option('--schedule <cron>', 'cron expression (5 fields, or 6 with seconds)')
    .option('--http <host:port>', 'serve /healthz and /metrics (loopback unless --allow-remote)')
    .option('--allow-remote', 'let --http listen on a non-loopback address')
    .option('--no-drive', 'do not upload to Google Drive')
    .option('--no-upload', 'do not upload to any off-site destination')
    .option('--no-notify', 'send no notifications');
  addTargetOptions(command);
  command.action(async (options: DaemonFlags) => {
    const extra: Record<string, unknown> = {};
    if (options.schedule) extra.schedule = options.schedule;
    // --quiet: the daemon logs errors only.
    if (options.quiet) extra['log.level'] = 'error';
    const resolved = resolveConfig(options, extra);
    validateSchedule(resolved.config.schedule, resolved.timeZone);
    if (resolved.databases.length === 0 && !options.db) throw noDatabaseError(resolved);
    // --db / --dir: the daemon looks after that database alone, as `backup --db/--dir` would back it up.
    const databases = options.db || options.dir ? selectTargets(resolved, options) : resolved.databases;
    // Whatever would fail at 03:00 fails now, with exit 2: policies, recipients, destinations.
    for (const target of databases) {
      const manager = new BackupManager(target);
      if (target.settings.prune) manager.retentionPolicy();
      await encryptionSettings(target.settings.encryption);
      destinationsOf(target);
    }
    await runDaemon(
      { ...resolved, databases },
      {
        http: options.http,
        allowRemote: options.allowRemote,
        drive: options.drive === false ? false : undefined,
        upload: options.upload === false ? false : undefined,
        notify: options.notify === false ? false : undefined,
      },
    );
    // The schedule keeps the process alive; signals end it through the installed handlers.
    markRunsUntilSignalled();
    await new Promise<void>(() => {});
  });
}

export function registerSchedule(program: Command): void {
  const command = program
    .command('schedule')
    .description('show the next run times of the schedule, to check a cron expression')
    .option('--next <n>', 'how many run times', '5')
    .option('--schedule <cron>', 'an expression to check instead of the configured one')
    .option('--json', 'print JSON');
  addConfigOptions(command);
  command.action(async (options: CommonOptions & { next: string; schedule?: string }) => {
    const resolved = resolveConfig(options, options.schedule ? { schedule: options.schedule } : {});
    const n = Number(options.next);
    if (!Number.isInteger(n) || n < 1 || n > 1000) {
      throw new LitekeepError(`--next must be a whole number from 1 to 1000, got '${options.next}'`, {
        exitCode: EXIT.usage,
      });
    }
    const expression = resolved.config.schedule;
    const runs = nextRuns(expression, resolved.timeZone, n);
    if (options.json) {
      printJson({
        schedule: expression,
        timeZone: resolved.timeZone,
        next: runs.map((r) => r.toISOString()),
      });
      return;
    }
    print(`schedule '${expression}' in ${resolved.timeZone}, next ${n} run${n === 1 ? '' : 's'}:`);
    for (const run of runs) print(`  ${formatTime(run, resolved.timeZone)}`);
  });
}
