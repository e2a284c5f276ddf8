import type { Command } from 'commander';
import type { PruneResult } from '../../backup/manager.js';
import { describePolicy } from '../../retention/index.js';
import type { DatabaseTarget } from '../../config/index.js';
import { EXIT, LitekeepError } from '../../util/errors.js';
import { humanBytes } from '../../util/fs.js';
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
    .option(
      '--from <destination>',
      'an incremental destination: forget its snapshots by the policy, then collect',
    )
    .option('--json', 'print JSON');
  addTargetOptions(command);
  addRetentionOptions(command);
  command.action(
    async (options: CommonOptions & { dryRun?: boolean; removeFailed?: boolean; from?: string }) => {
      const resolved = resolveConfig(options);
      if (options.from !== undefined && options.from !== 'local')
        return pruneRepositoryCommand(selectTargets(resolved, options), options);
      const [{ BackupManager }, { withDatabaseLock }] = await Promise.all([
        import('../../backup/manager.js'),
        import('../../backup/task.js'),
      ]);
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
    },
  );
}

/** `prune --from <incremental destination>`: retention over its snapshots, then garbage collection (issue 14). */
async function pruneRepositoryCommand(
  targets: DatabaseTarget[],
  options: CommonOptions & { dryRun?: boolean; from?: string },
): Promise<void> {
  // Loaded when used: a CLI start that does not prune needs none of this.
  const [{ BackupManager }, { withDatabaseLock }, { incrementalSpec }, { pruneRepository }] =
    await Promise.all([
      import('../../backup/manager.js'),
      import('../../backup/task.js'),
      import('../../repository/destination.js'),
      import('../../repository/index.js'),
    ]);
  const out: Record<string, unknown>[] = [];
  // Retention flags given here say what to keep on this destination; otherwise its own policy applies.
  const flags = Object.keys(options).some((k) => /^keep[A-Z]/.test(k) && options[k] !== undefined);
  for (const target of targets) {
    const spec = incrementalSpec(target, options.from);
    if (!spec)
      throw new LitekeepError(
        `prune --from works on destinations with format: incremental; ${options.from} keeps full files, which each backup run prunes`,
        { exitCode: EXIT.usage },
      );
    const manager = new BackupManager(target, { readOnly: options.dryRun === true });
    try {
      const run = () =>
        pruneRepository(spec, target, manager, {
          dryRun: options.dryRun,
          policy: flags ? manager.retentionPolicy() : undefined,
        });
      const result = options.dryRun ? await run() : await withDatabaseLock(target, 'prune', run);
      if (options.json) {
        out.push({ database: target.name, ...result });
        continue;
      }
      print(
        `${target.name} on ${result.destination} (${result.location}) — policy ${describePolicy(result.policy)}`,
      );
      const rows = result.decisions.map((d) => [
        d.action === 'keep' ? 'keep' : options.dryRun ? 'forget' : 'forgotten',
        d.id.slice(0, 12),
        formatTime(d.time, manager.timeZone),
        d.trigger,
        d.reasons.join(', '),
      ]);
      if (rows.length)
        print(
          table(['action', 'snapshot', 'time', 'trigger', 'reasons'], rows)
            .split('\n')
            .map((l) => '  ' + l)
            .join('\n'),
        );
      else print('  no snapshots');
      const c = result.collect;
      print(
        `  ${options.dryRun ? 'would forget' : 'forgot'} ${result.forgotten.length} snapshot(s); collection ` +
          `${options.dryRun ? 'would free' : 'freed'} ${humanBytes(Math.max(0, c.freedBytes))} ` +
          `(${c.removedPacks} pack(s) removed, ${c.repackedPacks} repacked, ${c.orphanPacks} left by killed runs)`,
      );
      const p = result.pitr;
      if (p)
        print(
          `  point-in-time window ${p.window}: ` +
            (p.recoverableFrom
              ? `every moment from ${formatTime(p.recoverableFrom, manager.timeZone)} on can be restored to the second (base ${p.anchor!.slice(0, 12)}); `
              : 'no base snapshot yet, nothing collected; ') +
            `${options.dryRun ? 'would remove' : 'removed'} ${p.segmentsRemoved} WAL segment(s) (${humanBytes(p.segmentBytes)}), ${p.segmentsKept} kept`,
        );
      if (c.partlyDeadKept)
        warn(
          `${c.partlyDeadKept} mostly unused encrypted pack(s) kept as they are: set encryption.identity to repack them`,
        );
      if (c.missingChunks)
        warn(
          `${c.missingChunks} chunk(s) that kept snapshots need are missing: run litekeep check --from ${result.destination}`,
        );
    } finally {
      manager.close();
    }
  }
  if (options.json) printPerDatabaseJson(out);
}
