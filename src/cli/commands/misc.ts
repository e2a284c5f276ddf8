import path from 'node:path';
import type { Command } from 'commander';
import { BackupManager } from '../../backup/manager.js';
import { sendTestNotifications } from '../../backup/notifications.js';
import { destinationsOf, runDestinations } from '../../backup/offsite.js';
import { withDatabaseLock } from '../../backup/task.js';
import { generateIdentity } from '../../pipeline/index.js';
import { errorCode, EXIT, LitekeepError, oneLine } from '../../util/errors.js';
import { didYouMean } from '../../util/suggest.js';
import { runCeiling } from '../../util/timeouts.js';
import {
  addConfigOptions,
  addTargetOptions,
  resolveConfig,
  selectTargets,
  type CommonOptions,
} from '../context.js';
import { print, printJson, printPerDatabaseJson, startProgress } from '../output.js';
import { abortOnSignals } from '../signals.js';

export function registerNotify(program: Command): void {
  const notify = program.command('notify').description('notification tools');
  const test = notify
    .command('test')
    .description('send a test message to every configured channel and report each result')
    .option('--json', 'print JSON');
  addConfigOptions(test);
  test.action(async (options: CommonOptions) => {
    const resolved = resolveConfig(options);
    const target = resolved.databases[0];
    const settingsTarget = target ?? {
      name: 'litekeep',
      path: '',
      backupDir: resolved.config.backupDir!,
      settings: resolved.config,
      driveConfigured: resolved.driveConfigured,
    };
    const manager = target ? new BackupManager(target) : undefined;
    const results = await sendTestNotifications(settingsTarget, manager?.catalog);
    manager?.close();
    if (options.json) printJson({ results });
    else if (results.length === 0) {
      print(
        'no notification channel configured (set notify.ntfy.topic, notify.webhook.url or notify.ping.url)',
      );
    } else {
      for (const r of results) {
        print(
          `${r.channel.padEnd(8)} ${r.status === 'ok' ? 'ok' : 'FAILED'}${r.httpStatus ? ` HTTP ${r.httpStatus}` : ''}` +
            ` after ${r.attempts} attempt(s)${r.error ? ` — ${r.error}` : ''}`,
        );
      }
    }
    if (results.length === 0) process.exitCode = EXIT.usage;
    else if (results.some((r) => r.status === 'failed')) process.exitCode = EXIT.failed;
  });
}

export function registerKeygen(program: Command): void {
  program
    .command('keygen')
    .description(
      'write a new age identity file (mode 0600) and print its recipient for encryption.recipients',
    )
    .argument('[file]', 'where to write the identity', 'litekeep-age-key.txt')
    .action(async (file: string) => {
      const target = path.resolve(file);
      let recipient: string;
      try {
        ({ recipient } = await generateIdentity(target));
      } catch (error) {
        const code = errorCode(error);
        if (!code || !['EACCES', 'EPERM', 'ENOENT', 'ENOTDIR', 'EROFS', 'ENOSPC'].includes(code)) throw error;
        const why =
          code === 'ENOENT' || code === 'ENOTDIR'
            ? 'its folder does not exist'
            : `it is not writable (${code})`;
        throw new LitekeepError(
          `cannot write ${target}: ${why}; give a path in a folder you can write to: litekeep keygen /path/to/key.txt`,
          { exitCode: EXIT.usage, cause: error },
        );
      }
      print(
        `wrote ${target} (keep it safe and OFF this machine too: without it backups cannot be decrypted)`,
      );
      print(`recipient: ${recipient}`);
      print(`use it in litekeep.yml:  encryption: { recipients: [${recipient}], identity: ${target} }`);
      print(`or in .env:              LITEKEEP_ENCRYPTION_RECIPIENTS=${recipient}`);
      print(`                         LITEKEEP_AGE_IDENTITY=${target}`);
    });
}

export function registerSync(program: Command): void {
  const command = program
    .command('sync')
    .description(
      'upload backups that are missing from a destination (after an outage), then apply its retention',
    )
    .option('--to <destination>', 'only this destination (drive, or a destination name)')
    .option('--no-drive', 'skip Google Drive')
    .option('--json', 'print JSON');
  addTargetOptions(command);
  command.action(async (options: CommonOptions & { drive?: boolean; to?: string }) => {
    const resolved = resolveConfig(options);
    const out: unknown[] = [];
    let failed = false;
    const progress = startProgress(options);
    const stop = abortOnSignals('sync');
    for (const target of selectTargets(resolved, options)) {
      if (options.to !== undefined) {
        const names = destinationsOf(target).map((d) => d.name);
        if (!names.includes(options.to)) {
          throw new LitekeepError(
            `no destination named ${options.to} for ${target.name}${didYouMean(options.to, names)}; ` +
              (names.length
                ? `configured: ${names.join(', ')}`
                : 'none is configured (destinations: or drive.*)'),
            { exitCode: EXIT.usage },
          );
        }
      }
      const manager = new BackupManager(target);
      // It holds the database's lock like a backup run, so it has the same ceiling.
      const ceiling = runCeiling(`sync of ${target.name}`, target.settings.runTimeout, stop.signal);
      const outcomes = await withDatabaseLock(
        target,
        'sync',
        () =>
          runDestinations(target, manager, undefined, {
            skipDrive: options.drive === false,
            only: options.to,
            signal: ceiling.signal,
            onStep: options.json ? undefined : (m) => print(`- ${m}`),
            onProgress: (stage, bytes, total) => progress.update(stage, bytes, total),
          }),
        ceiling.signal,
      ).finally(() => {
        progress.done();
        ceiling.dispose();
        manager.close();
      });
      if (ceiling.expired) {
        for (const o of outcomes)
          if (o.status === 'failed') o.error = `${o.error} (${oneLine(ceiling.expired)})`;
      }
      if (outcomes.some((o) => o.status === 'failed')) failed = true;
      out.push({ database: target.name, destinations: outcomes });
      if (!options.json) {
        if (outcomes.length === 0) print(`${target.name}: no off-site destination configured`);
        for (const o of outcomes) {
          print(
            `${target.name} → ${o.destination}: ${o.status}` +
              (o.caughtUp?.length ? `, uploaded ${o.caughtUp.length} missing` : ', nothing missing') +
              (o.rotated ? `, rotated ${o.rotated}` : '') +
              (o.error ? ` — ${o.error}` : ''),
          );
        }
      }
    }
    stop.dispose();
    if (options.json) printPerDatabaseJson(out);
    if (failed) process.exitCode = EXIT.partial;
  });
}
