import type { Command } from 'commander';
import type { PruneResult } from '../../backup/manager.js';
import { describePolicy } from '../../retention/index.js';
import { EXIT } from '../../util/errors.js';
import { formatTime } from '../../util/time.js';
import {
  addRetentionOptions,
  addTargetOptions,
  resolveConfig,
  selectTargets,
  type CommonOptions,
} from '../context.js';
import { print, printPerDatabaseJson, table, warn } from '../output.js';

function pruneJson(database: string, r: PruneResult): Record<string, unknown> {
  return {
    database,
    dryRun: r.dryRun,
    policy: r.policy,
    decisions: r.decisions.map((d) => ({
      name: d.name,
      time: d.time.toISOString(),
      action: d.action,
      reasons: d.reasons,
      deleted: d.deleted,
      error: d.error,
    })),
    removed: r.removed,
    failed: r.failed,
    unrecognized: r.unrecognized,
    future: r.future,
    setAside: r.setAside,
  };
}

export function registerPrune(program: Command): void {
  const command = program
    .command('prune')
    .description('apply the retention policy: show every backup with keep/remove and why, then delete')
    .option('--dry-run', 'show the plan, delete nothing')
    .option('--remove-failed', 'also remove the backups set aside because their newest verification failed')
    .option('--json', 'print JSON');
  addTargetOptions(command);
  addRetentionOptions(command);
  command.action(async (options: CommonOptions & { dryRun?: boolean; removeFailed?: boolean }) => {
    const [{ BackupManager }, { withDatabaseLock }] = await Promise.all([
      import('../../backup/manager.js'),
      import('../../backup/task.js'),
    ]);
    const resolved = resolveConfig(options);
    const out: Record<string, unknown>[] = [];
    let failed = false;
    for (const target of selectTargets(resolved, options)) {
      // A dry run only looks: its catalog is opened read-only (never created or migrated).
      const manager = new BackupManager(target, { readOnly: options.dryRun === true });
      try {
        const removeFailed = options.removeFailed === true;
        const result = options.dryRun
          ? await manager.prune({ dryRun: true, removeFailed })
          : await withDatabaseLock(target, 'prune', () => manager.prune({ removeFailed }));
        if (result.failed.length) failed = true;
        if (options.json) {
          out.push(pruneJson(target.name, result));
          continue;
        }
        print(
          `${target.name}: ${target.backupDir} — policy ${describePolicy(result.policy)} (${manager.timeZone})`,
        );
        const rows = result.decisions.map((d) => [
          d.action === 'keep' ? 'keep' : options.dryRun ? 'remove' : d.deleted ? 'removed' : 'FAILED',
          d.name,
          formatTime(d.time, manager.timeZone),
          [d.reasons.join(', '), d.error ? `error: ${d.error}` : ''].filter(Boolean).join(' — '),
        ]);
        if (rows.length) {
          print(
            table(['action', 'name', 'time', 'reasons'], rows)
              .split('\n')
              .map((l) => '  ' + l)
              .join('\n'),
          );
        } else print('  no backups');
        const removing = result.decisions.filter((d) => d.action === 'remove').length;
        print(
          options.dryRun
            ? `  dry run: would remove ${removing}, keep ${result.decisions.length - removing}`
            : `  removed ${result.removed.length}, kept ${result.decisions.length - removing}` +
                (result.failed.length ? `, ${result.failed.length} could not be deleted` : ''),
        );
        for (const f of result.failed) warn(`could not delete ${f.name}: ${f.error}`);
        for (const name of result.future)
          warn(`${name} is dated in the future (check the clock): kept, and counted by no rule`);
        if (result.setAside.length && !options.removeFailed) {
          warn(
            `set aside and counted by no rule, because their newest verification failed: ` +
              `${result.setAside.map((a) => a.name).join(', ')} (prune --remove-failed removes them)`,
          );
        }
        for (const name of result.unrecognized) warn(`unrecognised file left alone: ${name}`);
      } finally {
        if (manager.catalogWarning) warn(manager.catalogWarning);
        manager.close();
      }
    }
    if (options.json) printPerDatabaseJson(out);
    if (failed) process.exitCode = EXIT.partial;
  });
}
