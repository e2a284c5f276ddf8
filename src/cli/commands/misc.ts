import path from 'node:path';
import type { Command } from 'commander';
import { BackupManager } from '../../backup/manager.js';
import { sendTestNotifications } from '../../backup/notifications.js';
import { runDestinations } from '../../backup/offsite.js';
import { withDatabaseLock } from '../../backup/task.js';
import { generateIdentity } from '../../pipeline/index.js';
import { EXIT, oneLine } from '../../util/errors.js';
import { runCeiling } from '../../util/timeouts.js';
import {
  addConfigOptions,
  addTargetOptions,
  resolveConfig,
  selectTargets,
  type CommonOptions,
} from '../context.js';
import { print, printJson, printPerDatabaseJson } from '../output.js';
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
      const { recipient } = await generateIdentity(target);
      print(
        `wrote ${target} (keep it safe and OFF this machine too: without it backups cannot be decrypted)`,
      );
      print(`recipient: ${recipient}`);
      print(`use it with: encryption: { recipients: [${recipient}] } in litekeep.yml`);
    });
}

export function registerSync(program: Command): void {
  const command = program
    .command('sync')
    .description(
      'upload backups that are missing from a destination (after an outage), then apply its retention',
    )
    .option('--no-drive', 'skip Google Drive')
    .option('--json', 'print JSON');
  addTargetOptions(command);
  command.action(async (options: CommonOptions & { drive?: boolean }) => {
    const resolved = resolveConfig(options);
    const out: unknown[] = [];
    let failed = false;
    const stop = abortOnSignals('sync');
    for (const target of selectTargets(resolved, options)) {
      const manager = new BackupManager(target);
      // It holds the database's lock like a backup run, so it has the same ceiling.
      const ceiling = runCeiling(`sync of ${target.name}`, target.settings.runTimeout, stop.signal);
      const outcomes = await withDatabaseLock(
        target,
        'sync',
        () =>
          runDestinations(target, manager, undefined, {
            skipDrive: options.drive === false,
            signal: ceiling.signal,
            onStep: options.json ? undefined : (m) => print(`- ${m}`),
          }),
        ceiling.signal,
      ).finally(() => {
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
