import path from 'node:path';
import type { Command } from 'commander';
import { abortOnSignals } from '../signals.js';
import { runBackupForTarget, worstExitCode, type RunBackupResult } from '../../backup/task.js';
import { humanBytes, humanDuration } from '../../util/fs.js';
import {
  addRetentionOptions,
  addTargetOptions,
  resolveConfig,
  selectTargets,
  type CommonOptions,
} from '../context.js';
import { print, printJson, Progress, warn } from '../output.js';

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
    removed: r.prune?.removed ?? [],
    destinations: r.destinations,
    notifications: r.notifications,
    error: r.error,
    stage: r.stage,
    warnings: r.warnings,
  };
}

export function printBackupSummary(r: RunBackupResult): void {
  if (!r.backup) {
    process.stderr.write(`litekeep: ${r.database}: ${r.error}\n`);
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
    if (d.status === 'ok') print(`  uploaded to ${d.destination}${d.link ? `: ${d.link}` : ''}`);
    else if (d.status === 'failed') print(`  upload to ${d.destination} FAILED: ${d.error}`);
  }
  if (r.prune) print(`  rotated ${r.rotated} old backup${r.rotated === 1 ? '' : 's'}`);
  for (const n of r.notifications.filter((n) => n.status === 'failed')) {
    print(`  notification ${n.channel} (${n.event}) FAILED: ${n.error}`);
  }
  for (const w of r.warnings) warn(w);
  if (r.status === 'partial') print(`  the local backup is safe, but not everything succeeded (exit 3)`);
  print(`  restore with: litekeep restore ${b.file} --db ${b.sourcePath} --dir ${path.dirname(b.path)}`);
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
    .option('--json', 'print one JSON object (or {results: [...]} for several databases)');
  addTargetOptions(command);
  addRetentionOptions(command);
  command.action(async (options: CommonOptions) => {
    const extra: Record<string, unknown> = {};
    if (options.vacuum === false) extra.vacuum = false;
    if (options.quickCheck) extra.integrityCheck = 'quick';
    if (options.compression !== undefined) extra['compression.algorithm'] = options.compression;
    const resolved = resolveConfig(options, extra);
    const targets = selectTargets(resolved, options);
    const results: RunBackupResult[] = [];
    // Ctrl-C or a cron timeout stops the run cleanly: temp files are removed, no half-written backup is left.
    const abort = abortOnSignals('backup');
    for (const target of targets) {
      if (abort.signal.aborted) break;
      const progress = new Progress(!options.json);
      const result = await runBackupForTarget(target, {
        trigger: 'manual',
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
      if (!options.json) printBackupSummary(result);
    }
    if (options.json)
      printJson(results.length === 1 ? backupJson(results[0]) : { results: results.map(backupJson) });
    process.exitCode = worstExitCode(results);
  });
}
