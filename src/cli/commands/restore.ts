import type { Command } from 'commander';
import { readIdentityFile } from '../../pipeline/index.js';
import { restoreBackup, verifyBackup, type DecryptOptions } from '../../restore/index.js';
import type { DatabaseTarget } from '../../config/index.js';
import { readPassphraseFile } from '../../backup/encryption.js';
import { withDatabaseLock } from '../../backup/task.js';
import { EXIT, LitekeepError } from '../../util/errors.js';
import { systemTimeZone, zonedToDate } from '../../util/time.js';
import { addTargetOptions, resolveConfig, selectTargets, type CommonOptions } from '../context.js';
import { print, printJson, printPerDatabaseJson } from '../output.js';
import { abortOnSignals } from '../signals.js';

interface RestoreFlags extends CommonOptions {
  from?: string;
  at?: string;
  to?: string;
  force?: boolean;
  dryRun?: boolean;
  identity?: string;
}

export async function decryptOptionsFor(target: DatabaseTarget, identity?: string): Promise<DecryptOptions> {
  const file = identity ?? target.settings.encryption.identity;
  const options: DecryptOptions = {};
  if (file) options.identities = await readIdentityFile(file);
  if (target.settings.encryption.passphrase) options.passphrase = target.settings.encryption.passphrase;
  else if (target.settings.encryption.passphraseFile) {
    options.passphrase = await readPassphraseFile(target.settings.encryption.passphraseFile);
  }
  return options;
}

/**
 * `--at`: an ISO timestamp with a zone is taken as it is; a date, or a date and time without zone, is wall-clock
 * time in the configured time zone (the one backup names use). A date alone means the end of that day.
 */
export function parseAt(text: string | undefined, timeZone: string): Date | undefined {
  if (text === undefined) return undefined;
  const bad = () =>
    new LitekeepError(
      `--at '${text}' is not a time; use 2026-03-01, '2026-03-01 14:30' or an ISO timestamp such as 2026-03-01T14:30:00Z`,
      { exitCode: EXIT.usage },
    );
  const local = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?$/.exec(text.trim());
  if (local) {
    const [year, month, day] = [Number(local[1]), Number(local[2]), Number(local[3])];
    const dateOnly = local[4] === undefined;
    const parts = {
      year,
      month,
      day,
      hour: dateOnly ? 23 : Number(local[4]),
      minute: dateOnly ? 59 : Number(local[5]),
      second: dateOnly ? 59 : Number(local[6] ?? 0),
    };
    const probe = new Date(Date.UTC(year, month - 1, day, parts.hour, parts.minute, parts.second));
    if (
      Number.isNaN(probe.getTime()) ||
      probe.getUTCDate() !== day ||
      probe.getUTCHours() !== parts.hour ||
      probe.getUTCMinutes() !== parts.minute
    )
      throw bad();
    const at = zonedToDate(parts, timeZone);
    // The whole last second of the day (or minute) counts: a backup at 23:59:59.400 is "on" that day.
    return new Date(at.getTime() + 999);
  }
  if (!/^\d{4}-\d{2}-\d{2}T.*(Z|[+-]\d{2}:?\d{2})$/i.test(text.trim())) throw bad();
  const date = new Date(text.trim());
  if (Number.isNaN(date.getTime())) throw bad();
  return date;
}

function singleTarget(options: RestoreFlags): DatabaseTarget {
  const targets = selectTargets(resolveConfig(options), options);
  if (targets.length > 1) {
    throw new LitekeepError(
      `several databases are configured (${targets.map((t) => t.name).join(', ')}); choose one with --db NAME`,
      { exitCode: EXIT.usage },
    );
  }
  return targets[0];
}

export function registerRestore(program: Command): void {
  const command = program
    .command('restore [name]')
    .description('restore a backup (a file name, or latest) over the database, keeping the current one aside')
    .option('--from <source>', 'local (default), drive, or a destination name')
    .option('--at <time>', 'the newest backup taken at or before this time')
    .option('--to <path>', 'restore into this file instead of the configured database')
    .option('--force', 'restore even when another process has the database open')
    .option('--dry-run', 'fetch and verify, change nothing')
    .option('--identity <file>', 'age identity file for encrypted backups (or LITEKEEP_AGE_IDENTITY)')
    .option('--json', 'print JSON');
  addTargetOptions(command);
  command.action(async (name: string | undefined, options: RestoreFlags) => {
    const target = singleTarget(options);
    const at = parseAt(options.at, target.settings.timeZone ?? systemTimeZone());
    if (name && at) throw new LitekeepError('give a backup name or --at, not both', { exitCode: EXIT.usage });
    const decrypt = await decryptOptionsFor(target, options.identity);
    const stop = abortOnSignals('restore');
    const restore = () =>
      restoreBackup(target, {
        signal: stop.signal,
        name,
        at,
        from: options.from,
        to: options.to,
        force: options.force,
        dryRun: options.dryRun,
        ...decrypt,
        onStep: options.json ? undefined : (message) => print(`- ${message}`),
      });
    // No backup or prune of this database may run while it is being replaced.
    const result = await (
      options.dryRun ? restore() : withDatabaseLock(target, 'restore', restore, stop.signal)
    ).finally(() => stop.dispose());
    if (options.json) printJson(result);
    else {
      const tables = Object.entries(result.tables)
        .map(([t, n]) => `${t} ${n}`)
        .join(', ');
      print(
        result.dryRun
          ? `dry run: ${result.backup} from ${result.source} (taken ${result.takenAt}) restores cleanly into ${result.target}`
          : `restored ${result.backup} from ${result.source} (taken ${result.takenAt}) into ${result.target}`,
      );
      if (tables) print(`  rows: ${tables}`);
      if (result.safetyCopy) print(`  previous database kept as ${result.safetyCopy}`);
    }
  });
}

export function registerVerify(program: Command): void {
  const command = program
    .command('verify [name]')
    .description('prove that backups restore: sha256, integrity_check and the recorded fingerprint')
    .option('--from <source>', 'local (default), drive, or a destination name')
    .option('--identity <file>', 'age identity file for encrypted backups (or LITEKEEP_AGE_IDENTITY)')
    .option('--json', 'print JSON');
  addTargetOptions(command);
  command.action(async (name: string | undefined, options: RestoreFlags) => {
    const targets = selectTargets(resolveConfig(options), options);
    const out: unknown[] = [];
    let failed = false;
    const stop = abortOnSignals('verification');
    for (const target of targets) {
      const decrypt = await decryptOptionsFor(target, options.identity);
      const results = await verifyBackup(target, {
        name: name === 'all' ? undefined : name,
        all: name === 'all',
        from: options.from,
        signal: stop.signal,
        ...decrypt,
      }).catch((error: unknown) => {
        stop.dispose();
        throw error;
      });
      for (const r of results) {
        if (r.status !== 'ok') failed = true;
        if (!options.json) {
          print(
            r.status === 'ok'
              ? `ok      ${target.name}/${r.backup} from ${r.source}: sha256 ${r.sha256?.slice(0, 12)}…, integrity ok, fingerprint ${r.fingerprint}`
              : `FAILED  ${target.name}/${r.backup} from ${r.source}: ${r.error}`,
          );
        }
      }
      out.push({ database: target.name, results });
    }
    stop.dispose();
    if (options.json) printPerDatabaseJson(out);
    if (failed) process.exitCode = EXIT.failed;
  });
}
