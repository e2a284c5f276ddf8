import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline/promises';
import type { Command } from 'commander';
import type { DecryptOptions } from '../../restore/index.js';
import type { DatabaseTarget } from '../../config/index.js';
import { EXIT, LitekeepError } from '../../util/errors.js';
import { humanBytes } from '../../util/fs.js';
import { formatTime, systemTimeZone, zonedToDate } from '../../util/time.js';
import { addTargetOptions, resolveConfig, selectTargets, type CommonOptions } from '../context.js';
import { print, printFailure, printJson, printPerDatabaseJson, startProgress, warn } from '../output.js';
import { abortOnSignals } from '../signals.js';
import { parseCommitId, type CommitId } from '../../pitr/plan.js';

interface RestoreFlags extends CommonOptions {
  from?: string;
  host?: string;
  at?: string;
  to?: string;
  force?: boolean;
  dryRun?: boolean;
  identity?: string;
  yes?: boolean;
  points?: string;
}

export async function decryptOptionsFor(target: DatabaseTarget, identity?: string): Promise<DecryptOptions> {
  const file = identity ?? target.settings.encryption.identity;
  const options: DecryptOptions = {};
  if (file) options.identities = await (await import('../../pipeline/age.js')).readIdentityFile(file);
  if (target.settings.encryption.passphrase) options.passphrase = target.settings.encryption.passphrase;
  else if (target.settings.encryption.passphraseFile) {
    const { readPassphraseFile } = await import('../../backup/encryption.js');
    options.passphrase = await readPassphraseFile(target.settings.encryption.passphraseFile);
  }
  return options;
}

/**
 * `[name]` and `--at` of restore and verify: one or the other. `--at` is a commit id or a segment name
 * (`parseCommitId`), else a time as `parseAt` reads it.
 */
function momentOf(
  name: string | undefined,
  text: string | undefined,
  timeZone: string,
): { at?: Date; atCommit?: CommitId } {
  if (name && text !== undefined)
    throw new LitekeepError('give a backup name or --at, not both', { exitCode: EXIT.usage });
  const atCommit = text === undefined ? undefined : parseCommitId(text);
  return atCommit ? { atCommit } : { at: parseAt(text, timeZone) };
}

/**
 * `--at`: an ISO timestamp with a zone is taken as it is; a date, or a date and time without zone, is wall-clock
 * time in the configured time zone (the one backup names use). A date alone means the end of that day.
 */
export function parseAt(text: string | undefined, timeZone: string): Date | undefined {
  if (text === undefined) return undefined;
  const bad = () =>
    new LitekeepError(
      `--at '${text}' is not a time or a commit id; use 2026-03-01, '2026-03-01 14:30', an ISO timestamp such as 2026-03-01T14:30:00Z, or a commit id or segment name (00000000-00000003-5e1f0a2b-0000002a)`,
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

/** A backup given by its path rather than by its name in the backup folder (or on a destination). */
function isPath(name: string): boolean {
  return name.includes('/') || name.includes(path.sep);
}

function describeFile(file: string, timeZone: string): string {
  const stat = fs.statSync(file);
  return `${file} (${humanBytes(stat.size)}, modified ${formatTime(stat.mtime, timeZone)})`;
}

/** Asks on the terminal; anything but y/yes is a no. */
async function confirm(question: string): Promise<boolean> {
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

const isTerminal = () => process.stdin.isTTY === true && process.stderr.isTTY === true;

export function registerRestore(program: Command): void {
  const command = program
    .command('restore [name]')
    .description(
      'restore a backup (a name from litekeep list, latest, or the path of a backup file) over the database, keeping the current one aside',
    )
    .option('--from <source>', 'local (default), drive, or a destination name')
    .option('--host <name>', "whose copies, on a destination several machines share (default: this host's)")
    .option(
      '--at <time|commit>',
      'the newest backup taken at or before this time; on a destination with WAL segments, the state at that moment, or exactly after a commit (commit id or segment name)',
    )
    .option('--to <path>', 'restore into this file instead of the configured database')
    .option(
      '--force',
      'restore even while another process has the database open (through SQLite; restart that app after)',
    )
    .option('--dry-run', 'fetch and verify, change nothing')
    .option('-y, --yes', 'do not ask before replacing the database')
    .option('--identity <file>', 'age identity file for encrypted backups (or LITEKEEP_AGE_IDENTITY)')
    .option('--json', 'print JSON');
  addTargetOptions(command);
  command.action(async (name: string | undefined, options: RestoreFlags) => {
    const [{ chooseCandidate, restoreBackup }, { withDatabaseLock }] = await Promise.all([
      import('../../restore/index.js'),
      import('../../backup/task.js'),
    ]);
    const target = singleTarget(options);
    const timeZone = target.settings.timeZone ?? systemTimeZone();
    const { at, atCommit } = momentOf(name, options.at, timeZone);
    const file = name && isPath(name) ? name : undefined;
    if (file && options.from) {
      throw new LitekeepError('a backup file given by its path is read from there: leave out --from', {
        exitCode: EXIT.usage,
      });
    }
    const destination = path.resolve(options.to ?? target.path);
    const replacesLive = !options.to && !options.dryRun && fs.existsSync(destination);
    if (replacesLive && !options.yes) {
      if (isTerminal()) {
        // What will be replaced by what, before anything is fetched or locked.
        const { picked: chosen, pointInTime } = await chooseCandidate(target, {
          file,
          name,
          at,
          atCommit,
          from: options.from,
          host: options.host,
        });
        process.stderr.write(
          `this replaces  ${describeFile(destination, timeZone)}\n` +
            `with           ${chosen.name} from ${chosen.source} (taken ${formatTime(chosen.time, timeZone)}, ${humanBytes(chosen.bytes)})\n` +
            `and keeps the current database as ${destination}.before-restore-<time>\n`,
        );
        if (!(await confirm('restore? [y/N] '))) {
          throw new LitekeepError('restore cancelled; nothing was changed', { exitCode: EXIT.failed });
        }
        // Exactly what was shown, even if a newer backup arrives meanwhile.
        if (!file && !pointInTime) name = chosen.name;
      } else if (!name && !at && !atCommit) {
        throw new LitekeepError(
          `restore over ${destination} without a terminal to confirm on needs the backup named: ` +
            `litekeep restore latest (or a name from litekeep list, or --at TIME), or pass --yes`,
          { exitCode: EXIT.usage },
        );
      }
    }
    const decrypt = await decryptOptionsFor(target, options.identity);
    const stop = abortOnSignals('restore');
    const progress = await startProgress(options);
    const restore = () =>
      restoreBackup(target, {
        name: file ? undefined : name,
        file,
        at: name ? undefined : at,
        atCommit,
        from: options.from,
        host: options.host,
        to: options.to,
        force: options.force,
        dryRun: options.dryRun,
        signal: stop.signal,
        ...decrypt,
        onStep: options.json ? undefined : (message) => print(`- ${message}`),
        onProgress: (stage, bytes, total) => progress.update(stage, bytes, total),
      });
    // No backup or prune of this database may run while it is being replaced.
    const result = await (
      options.dryRun ? restore() : withDatabaseLock(target, 'restore', restore, stop.signal)
    ).finally(() => stop.dispose());
    progress.done();
    for (const w of result.warnings) warn(w);
    // A point in time that could only be reached in part (a gap, a damaged segment): restored, but not all.
    if (result.reachedShort) process.exitCode = EXIT.partial;
    if (options.json) printJson(result);
    else {
      const tables = Object.entries(result.tables)
        .map(([t, n]) => `${t} ${n}`)
        .join(', ');
      const taken = formatTime(new Date(result.takenAt), timeZone);
      print(
        result.dryRun
          ? `dry run: ${result.backup} from ${result.source} (taken ${taken}) restores cleanly into ${result.target}`
          : `restored ${result.backup} from ${result.source} (taken ${taken}) into ${result.target}`,
      );
      if (tables) print(`  rows: ${tables}`);
      if (result.safetyCopy) print(`  previous database kept as ${result.safetyCopy}`);
      if (result.appMustRestart) {
        print(
          '  the application had the database open: restart it now, so that it does not keep working from what it read before the restore',
        );
      }
    }
  });
}

export function registerVerify(program: Command): void {
  const command = program
    .command('verify [name]')
    .description('prove that backups restore: sha256, integrity_check and the recorded fingerprint')
    .option('--from <source>', 'local (default), drive, or a destination name')
    .option('--host <name>', "whose copies, on a destination several machines share (default: this host's)")
    .option('--identity <file>', 'age identity file for encrypted backups (or LITEKEEP_AGE_IDENTITY)')
    .option(
      '--at <time|commit>',
      'the newest backup taken by then; on a destination with WAL segments, the state at that moment or exactly after a commit (commit id or segment name), replayed',
    )
    .option(
      '--points <n>',
      'also verify this many random commits shipped with a fingerprint, on a destination with WAL segments (default 1, 0: none)',
    )
    .option('--json', 'print JSON');
  addTargetOptions(command);
  command.action(async (name: string | undefined, options: RestoreFlags) => {
    const { verifyBackup } = await import('../../restore/index.js');
    const targets = selectTargets(resolveConfig(options), options);
    const { at, atCommit } = momentOf(name, options.at, targets[0]?.settings.timeZone ?? systemTimeZone());
    const points = options.points === undefined ? 1 : Number(options.points);
    if (!Number.isInteger(points) || points < 0)
      throw new LitekeepError(`--points '${options.points}' is not a whole number; use 0, 1, 2, ...`, {
        exitCode: EXIT.usage,
      });
    const out: unknown[] = [];
    let failed = false;
    const progress = await startProgress(options);
    const stop = abortOnSignals('verification');
    try {
      for (const target of targets) {
        const decrypt = await decryptOptionsFor(target, options.identity);
        // Each result as soon as it is known: `verify all` over many backups takes a while.
        const results = await verifyBackup(target, {
          name: name === 'all' ? undefined : name,
          all: name === 'all',
          at,
          atCommit,
          points,
          from: options.from,
          host: options.host,
          signal: stop.signal,
          ...decrypt,
          onProgress: (stage, bytes, total) => progress.update(stage, bytes, total),
          onResult: (r) => {
            if (r.status !== 'ok') failed = true;
            if (options.json) return;
            const where = `${target.name}/${r.backup} from ${r.source}${r.host ? ` (host ${r.host})` : ''}`;
            if (r.status === 'ok') {
              print(
                `ok      ${where}: sha256 ${r.sha256?.slice(0, 12)}…, integrity ok, fingerprint ${r.fingerprint}`,
              );
              for (const note of r.notes ?? []) print(`        ${note}`);
            } else
              printFailure(
                `${r.status === 'failed' ? 'FAILED' : 'ERROR '}  ${where}: ${r.error}`,
                `${target.name}: verification of ${r.backup} from ${r.source} ${r.status === 'failed' ? 'failed' : 'could not be done'}: ${r.error}`,
              );
          },
        });
        // Asked for by name and none found: say why, rather than leave it out silently.
        if (options.points !== undefined && points > 0 && !options.json && !at && !atCommit && !name)
          if (!results.some((r) => r.point))
            print(
              `        no drill: no commit shipped to ${options.from ?? 'local'} with a fingerprint is known on this machine ` +
                `(drills use the index replication keeps here; replicate.fingerprintEvery must not be 0s)`,
            );
        out.push({ database: target.name, results });
      }
    } finally {
      stop.dispose();
    }
    progress.done();
    if (options.json) printPerDatabaseJson(out);
    if (failed) process.exitCode = EXIT.failed;
  });
}
