import type { Command } from 'commander';
import { EXIT } from '../../util/errors.js';
import { addTargetOptions, resolveConfig, selectTargets, type CommonOptions } from '../context.js';
import { print, printPerDatabaseJson } from '../output.js';
import { abortOnSignals } from '../signals.js';
import { decryptOptionsFor } from './restore.js';
import type { WalCheckReport } from '../../pitr/check.js';
import { humanBytes } from '../../util/fs.js';

function walLine(w: WalCheckReport): string {
  const parts = [`${w.segments} WAL segment${w.segments === 1 ? '' : 's'} (${humanBytes(w.bytes)})`];
  if (w.windows) {
    parts[0] += `, ${w.read} read and checked`;
    parts.push(
      w.windows.length
        ? `restorable to the second: ${w.windows.map((x) => `${x.from} – ${x.to}`).join(', ')}`
        : 'no stretch restorable to the second yet (no base snapshot with segments after it)',
    );
    if (w.recordedGaps)
      parts.push(
        `${w.recordedGaps} recorded gap${w.recordedGaps === 1 ? '' : 's'} (WAL reset before litekeep read it)`,
      );
  } else parts.push('names checked (--read-data reads each and lists the recoverable windows)');
  if (w.recoverableFrom) parts.push(`before ${w.recoverableFrom} from snapshots only (retention.pitr)`);
  return parts.join('; ');
}

/** `litekeep check`: proves the repositories of incremental destinations consistent (issue 14). */
export function registerCheck(program: Command): void {
  const command = program
    .command('check')
    .description('prove an incremental destination consistent; --read-data also decodes every chunk')
    .option('--from <destination>', 'the incremental destination (default: every one)')
    .option(
      '--host <name>',
      "whose repository, on a destination several machines share (default: this host's)",
    )
    .option('--read-data', 'download every pack: sha256, decryption and every chunk against its id')
    .option('--identity <file>', 'age identity for encrypted data packs (or LITEKEEP_AGE_IDENTITY)')
    .option('--json', 'print JSON');
  addTargetOptions(command);
  command.action(
    async (
      options: CommonOptions & { from?: string; host?: string; readData?: boolean; identity?: string },
    ) => {
      const out: unknown[] = [];
      let broken = false;
      const abort = abortOnSignals('check');
      try {
        for (const target of selectTargets(resolveConfig(options), options)) {
          const { checkDestinations } = await import('../../repository/check.js');
          const reports = await checkDestinations(target, {
            from: options.from,
            host: options.host,
            readData: options.readData,
            decrypt: await decryptOptionsFor(target, options.identity),
            signal: abort.signal,
          });
          for (const r of reports) {
            if (r.problems.length) broken = true;
            if (options.json) continue;
            const counts =
              `${r.snapshots} snapshot${r.snapshots === 1 ? '' : 's'}, ${r.indexes} index file${r.indexes === 1 ? '' : 's'}, ` +
              `${r.packs} pack${r.packs === 1 ? '' : 's'}` +
              (r.unreferencedPacks
                ? ` (${r.unreferencedPacks} unreferenced: a killed run's, collected by prune)`
                : '') +
              (r.readData ? `, ${r.packsRead} read and matched` : '');
            print(
              `${r.problems.length ? 'FAILED' : 'ok    '}  ${target.name} on ${r.destination} (host ${r.host}): ${counts}`,
            );
            if (r.wal) print(`  ${walLine(r.wal)}`);
            for (const p of r.problems) print(`  ${p}`);
            if (r.skipped) print(`  not read: ${r.skipped}`);
          }
          out.push({ database: target.name, reports });
        }
      } finally {
        abort.dispose();
      }
      if (options.json) printPerDatabaseJson(out);
      if (broken) process.exitCode = EXIT.failed;
    },
  );
}
