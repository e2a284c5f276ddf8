import path from 'node:path';
import type { Command } from 'commander';
import type { BackupRunPlan, RunBackupResult, RunTrigger } from '../../backup/task.js';
import { EXIT, LitekeepError } from '../../util/errors.js';
import { abortOnSignals } from '../signals.js';
import { humanBytes, humanDuration } from '../../util/fs.js';
import {
  addRetentionOptions,
  addTargetOptions,
  resolveConfig,
  selectTargets,
  type CommonOptions,
} from '../context.js';
import type { LitekeepConfig } from '../../config/index.js';
import { print, printError, printFailure, printJson, startProgress, warn } from '../output.js';

export function backupJson(r: RunBackupResult): Record<string, unknown> {
  return {
    database: r.database,
    status: r.status,
    exitCode: r.exitCode,
    path: r.backup?.path,
    file: r.backup?.file,
    bytes: r.backup?.bytes,
    sha256: r.backup?.sha256,
    plainBytes: r.backup?.plainBytes,
    plainSha256: r.backup?.plainSha256,
    durationMs: r.durationMs,
    mode: r.backup?.mode,
    integrity: r.backup?.integrity,
    compression: r.backup?.compression,
    encryption: r.backup?.encryption,
    createdAt: r.backup?.createdAt,
    sourcePath: r.backup?.sourcePath,
    rotated: r.rotated,
    trigger: r.backup?.trigger,
    removed: r.prune?.removed ?? [],
    destinations: r.destinations,
    notifications: r.notifications,
    error: r.error,
    stage: r.stage,
    warnings: r.warnings,
  };
}

/** How to restore this backup, as a command to copy: with `--identity` when it needs an age identity to read. */
export function restoreHint(r: RunBackupResult, settings: LitekeepConfig): string {
  const b = r.backup!;
  let hint = `litekeep restore ${b.file} --db ${b.sourcePath} --dir ${path.dirname(b.path)}`;
  if (b.encryption !== 'none' && settings.encryption.recipients?.length) {
    hint += ` --identity ${settings.encryption.identity ?? 'KEY_FILE'}`;
    if (!settings.encryption.identity) hint += '  (KEY_FILE: the age identity of encryption.recipients)';
  }
  return hint;
}

export function printBackupSummary(r: RunBackupResult, settings: LitekeepConfig): void {
  if (!r.backup) {
    printError(`${r.database}: ${r.error}`);
    return;
  }
  const b = r.backup;
  print(`backup of ${r.database} written: ${b.path}`);
  const plain = b.plainBytes !== b.bytes ? ` (database ${humanBytes(b.plainBytes)})` : '';
  const packing = [
    b.compression !== 'none' ? b.compression : '',
    b.encryption !== 'none' ? 'age-encrypted' : '',
  ]
    .filter(Boolean)
    .join(', ');
  print(
    `  size ${humanBytes(b.bytes)}${plain}, took ${humanDuration(r.durationMs)}, ${b.mode === 'vacuum' ? 'VACUUM INTO' : 'online backup API'}` +
      `${packing ? `, ${packing}` : ''}, integrity ${b.integrity}`,
  );
  print(`  sha256 ${b.sha256}`);
  for (const d of r.destinations) {
    if (d.status === 'ok' && d.snapshot)
      print(
        `  snapshot ${d.snapshot.id.slice(0, 12)} on ${d.destination}: ${humanBytes(d.snapshot.uploadedBytes)} uploaded ` +
          `for a ${humanBytes(d.snapshot.imageBytes)} database (dedup ${Math.round(d.snapshot.dedupRatio)}x)`,
      );
    else if (d.status === 'ok') print(`  uploaded to ${d.destination}${d.link ? `: ${d.link}` : ''}`);
    else if (d.status === 'failed')
      printFailure(
        `  upload to ${d.destination} FAILED: ${d.error}`,
        `${r.database}: upload to ${d.destination} failed: ${d.error}`,
      );
  }
  if (r.prune) {
    const names = r.prune.removed.length ? `: ${r.prune.removed.join(', ')}` : '';
    print(`  rotated ${r.rotated} old backup${r.rotated === 1 ? '' : 's'}${names}`);
  }
  for (const d of r.destinations) {
    if (d.removed?.length) print(`  removed from ${d.destination}: ${d.removed.join(', ')}`);
  }
  for (const n of r.notifications.filter((n) => n.status === 'failed')) {
    printFailure(
      `  notification ${n.channel} (${n.event}) FAILED: ${n.error}`,
      `${r.database}: notification ${n.channel} (${n.event}) failed: ${n.error}`,
    );
  }
  for (const w of r.warnings) warn(w);
  if (r.status === 'partial') print(`  the local backup is safe, but not everything succeeded (exit 3)`);
  print(`  restore with: ${restoreHint(r, settings)}`);
}

/**
 * A backup typed by a person is `manual`; one started by cron, a timer or a script without a terminal is on a
 * schedule. `--trigger` says it outright.
 */
function runTriggerFrom(flag: string | undefined): RunTrigger {
  if (flag === undefined) return process.stdin.isTTY ? 'manual' : 'schedule';
  if (flag === 'manual') return 'manual';
  if (flag === 'scheduled' || flag === 'schedule') return 'schedule';
  throw new LitekeepError(`--trigger '${flag}' is not manual or scheduled`, { exitCode: EXIT.usage });
}

function printBackupPlan(plan: BackupRunPlan): void {
  print(`dry run: ${plan.database} would be backed up as ${plan.path} (${plan.trigger})`);
  if (!plan.prune) print('  retention is off for this run: nothing would be removed');
  else if (plan.removals.length === 0) print('  retention would remove nothing');
  else {
    print(`  retention would remove ${plan.removals.length}:`);
    for (const r of plan.removals) print(`    ${r.name} (${r.reasons.join('; ')})`);
  }
  if (plan.destinations.length) print(`  it would be uploaded to ${plan.destinations.join(', ')}`);
  for (const d of plan.destinationRemovals) {
    if (d.error) print(`  ${d.destination}: ${d.error}`);
    else if (d.removals?.length)
      print(`  ${d.destination} would remove: ${d.removals.map((r) => r.name).join(', ')}`);
    else print(`  ${d.destination} would remove nothing`);
  }
  print('  nothing was changed');
}

export function registerBackup(program: Command): void {
  const command = program
    .command('backup')
    .description('take a consistent, checked backup of the database(s) now, then upload and rotate')
    .option('--no-vacuum', 'use the online backup API (fast, not compacted) instead of VACUUM INTO')
    .option('--quick-check', 'check the copy with PRAGMA quick_check instead of integrity_check')
    .option('--no-prune', 'do not apply retention after this backup')
    .option('--no-drive', 'do not upload to Google Drive this time')
    .option('--no-upload', 'do not upload to any off-site destination this time')
    .option('--no-notify', 'send no notifications for this run')
    .option('--compression <algorithm>', 'zstd, gzip or none')
    .option(
      '--trigger <kind>',
      'manual or scheduled (default: manual on a terminal, scheduled otherwise); retention keeps them apart',
    )
    .option('--dry-run', 'say what would be made and removed, change nothing')
    .option('--json', 'print one JSON object (or {results: [...]} for several databases)');
  addTargetOptions(command);
  addRetentionOptions(command);
  command.action(async (options: CommonOptions) => {
    // The backup machinery is loaded when a backup runs, not for `--help` or another command.
    const { planBackupRun, runBackupForTarget, worstExitCode } = await import('../../backup/task.js');
    const extra: Record<string, unknown> = {};
    if (options.vacuum === false) extra.vacuum = false;
    if (options.quickCheck) extra.integrityCheck = 'quick';
    if (options.compression !== undefined) extra['compression.algorithm'] = options.compression;
    const resolved = resolveConfig(options, extra);
    const targets = selectTargets(resolved, options);
    const trigger = runTriggerFrom(options.trigger as string | undefined);
    if (options.dryRun) {
      const plans: BackupRunPlan[] = [];
      for (const target of targets) {
        plans.push(
          await planBackupRun(target, {
            trigger,
            prune: options.prune === false ? false : undefined,
            drive: options.drive === false ? false : undefined,
            upload: options.upload === false ? false : undefined,
          }),
        );
      }
      if (options.json) printJson(plans.length === 1 ? plans[0] : { results: plans });
      else for (const plan of plans) printBackupPlan(plan);
      return;
    }
    const results: RunBackupResult[] = [];
    // Ctrl-C or a cron timeout stops the run cleanly: temp files are removed, no half-written backup is left.
    const abort = abortOnSignals('backup');
    for (const target of targets) {
      if (abort.signal.aborted) break;
      const progress = await startProgress(options);
      const result = await runBackupForTarget(target, {
        trigger,
        signal: abort.signal,
        vacuum: options.vacuum === false ? false : undefined,
        prune: options.prune === false ? false : undefined,
        drive: options.drive === false ? false : undefined,
        upload: options.upload === false ? false : undefined,
        notify: options.notify === false ? false : undefined,
        onProgress: (stage, bytes, total) => progress.update(stage, bytes, total),
      });
      progress.done();
      results.push(result);
      if (!options.json) printBackupSummary(result, target.settings);
    }
    if (options.json)
      printJson(results.length === 1 ? backupJson(results[0]) : { results: results.map(backupJson) });
    process.exitCode = worstExitCode(results);
  });
}
