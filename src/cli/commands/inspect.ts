import type { Command } from 'commander';
import type { DestinationStatus } from '../../backup/offsite.js';
import type { DatabaseStatus, RemoteListing, RemoteStatus } from '../../backup/status.js';
import { CONFIG_LEAVES, describeConfig, type ConfigEntry, type ResolvedConfig } from '../../config/index.js';
import { parseDurationMs } from '../../config/settings.js';
import { durationAsWritten } from '../../util/duration.js';
import { EXIT, LitekeepError } from '../../util/errors.js';
import { COOPERATIVE_WAL_NOTE, recoverableUntil, shippingBehind } from '../../pitr/standing.js';
import { humanBytes, humanDuration } from '../../util/fs.js';
import { formatTime } from '../../util/time.js';
import { addTargetOptions, resolveConfig, selectTargets, type CommonOptions } from '../context.js';
import { age, print, printJson, printPerDatabaseJson, table, warn } from '../output.js';

/** `--limit N`: a whole number of 1 or more. */
export function parseLimit(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const limit = Number(text);
  if (!Number.isInteger(limit) || limit < 1) {
    throw new LitekeepError(`--limit must be a whole number >= 1, got '${text}'`, { exitCode: EXIT.usage });
  }
  return limit;
}

export function registerList(program: Command): void {
  const command = program
    .command('list')
    .description('list backups on disk (or on a destination), newest first, with what the activity log knows')
    .option('--from <destination>', 'list what a destination holds (drive, or a destination name)')
    .option('--limit <n>', 'only the newest n backups')
    .option('--json', 'print JSON');
  addTargetOptions(command);
  command.action(async (options: CommonOptions & { from?: string; limit?: string }) => {
    const [{ BackupManager }, { listRemote }] = await Promise.all([
      import('../../backup/manager.js'),
      import('../../backup/status.js'),
    ]);
    const resolved = resolveConfig(options);
    const limit = parseLimit(options.limit);
    const out: Record<string, unknown>[] = [];
    for (const target of selectTargets(resolved, options, { folderAlone: true })) {
      const timeZone = target.settings.timeZone!;
      if (options.from !== undefined && options.from !== 'local') {
        const listing = await listRemote(target, options.from);
        listing.backups = listing.backups.slice(0, limit);
        if (options.json) out.push(listing);
        else printRemoteListing(listing, timeZone);
        continue;
      }
      const manager = new BackupManager(target, { readOnly: true });
      const listing = await manager.listBackups();
      const backups = listing.backups.slice(0, limit);
      if (options.json) {
        out.push({
          database: target.name,
          backupDir: target.backupDir,
          backups: backups.map((b) => ({
            name: b.name,
            path: b.path,
            bytes: b.bytes,
            time: b.time.toISOString(),
            inCatalog: b.record !== undefined,
            sha256: b.record?.sha256,
            integrity: b.record?.integrity,
            mode: b.record?.mode,
            compression: b.record?.compression,
            encryption: b.record?.encryption,
          })),
          total: listing.backups.length,
          unrecognized: listing.unrecognized,
        });
      } else {
        print(`${target.name}: ${target.backupDir}`);
        if (backups.length === 0) print('  no backups yet');
        else {
          const rows = backups.map((b) => [
            b.name,
            humanBytes(b.bytes),
            formatTime(b.time, timeZone),
            age(b.time),
            b.record
              ? `${b.record.integrity ?? '?'}${b.record.recovered ? ' (found on disk)' : ''}`
              : 'not in catalog',
          ]);
          print(indent(table(['name', 'size', 'taken', 'age', 'integrity'], rows)));
          if (backups.length < listing.backups.length)
            print(`  (the newest ${backups.length} of ${listing.backups.length})`);
        }
        for (const name of listing.unrecognized) warn(`unrecognised file left alone: ${name}`);
      }
      manager.close();
    }
    if (options.json) printPerDatabaseJson(out);
  });
}

const indent = (text: string) =>
  text
    .split('\n')
    .map((line) => '  ' + line)
    .join('\n');

function printRemoteListing(l: RemoteListing, timeZone: string): void {
  print(`${l.database} on ${l.from} (${l.type}):`);
  if (l.backups.length === 0) {
    print('  no backups there');
    return;
  }
  if (l.format === 'incremental') return printSnapshotListing(l);
  const rows = l.backups.map((b) => [
    b.name,
    b.host ?? '',
    humanBytes(b.bytes),
    formatTime(new Date(b.time), timeZone),
    age(new Date(b.time)),
    b.link ?? '',
  ]);
  print(indent(table(['name', 'host', 'size', 'taken', 'age', 'link'], rows)));
}

/** The snapshots of an incremental destination: id, host, database size, what each added, dedup ratio. */
function printSnapshotListing(l: RemoteListing): void {
  const rows = l.backups.map((b) =>
    b.error
      ? [b.name.slice(0, 12), b.host ?? '', '', '', '', '', `DAMAGED: ${b.error}`]
      : [
          b.name.slice(0, 12),
          b.host ?? '',
          age(new Date(b.time)),
          b.trigger ?? '',
          humanBytes(b.bytes),
          humanBytes(b.addedBytes ?? 0),
          `${Math.round(b.dedupRatio ?? 0)}x`,
        ],
  );
  print(
    table(['snapshot', 'host', 'age', 'trigger', 'database', 'added', 'dedup'], rows)
      .split('\n')
      .map((line) => '  ' + line)
      .join('\n'),
  );
}

export function registerHistory(program: Command): void {
  const command = program
    .command('history')
    .description('show the activity log: runs, uploads, deletions, notifications, verifications, restores')
    .option('--limit <n>', 'how many events', '30')
    .option('--runs', 'only runs')
    .option('--json', 'print JSON');
  addTargetOptions(command);
  command.action(async (options: CommonOptions & { limit: string; runs?: boolean }) => {
    const { BackupManager } = await import('../../backup/manager.js');
    const resolved = resolveConfig(options);
    const limit = parseLimit(options.limit)!;
    const out: Record<string, unknown>[] = [];
    for (const target of selectTargets(resolved, options, { folderAlone: true })) {
      const manager = new BackupManager(target, { readOnly: true });
      const events = options.runs
        ? manager.catalog.listRuns(limit).map((r) => ({ kind: 'run' as const, ...r }))
        : manager.catalog.history(limit);
      if (options.json) out.push({ database: target.name, events });
      else {
        print(`${target.name}:`);
        if (events.length === 0) print('  nothing recorded yet');
        for (const e of events)
          print('  ' + describeEvent(e as unknown as Record<string, unknown>, manager.timeZone));
      }
      manager.close();
    }
    if (options.json) printPerDatabaseJson(out);
  });
}

function describeEvent(e: Record<string, unknown>, timeZone: string): string {
  const when = formatTime(new Date(String(e.kind === 'run' ? e.startedAt : e.at)), timeZone);
  const err = e.error ? ` — ${String(e.error)}` : '';
  switch (e.kind) {
    case 'run':
      return `${when}  run #${e.id} ${e.trigger}: ${e.status}${e.backupFile ? ` ${e.backupFile}` : ''}${
        e.rotated ? `, rotated ${e.rotated}` : ''
      }${e.durationMs !== undefined ? ` (${humanDuration(Number(e.durationMs))})` : ''}${err}`;
    case 'upload':
      return `${when}  upload ${e.backupFile} → ${e.destination}: ${e.status}${e.attempts ? ` after ${e.attempts} attempt(s)` : ''}${err}`;
    case 'deletion':
      return `${when}  delete ${e.backupFile} from ${e.destination}: ${e.status}${err}`;
    case 'notification':
      return `${when}  notify ${e.channel} (${e.event}): ${e.status}${e.httpStatus ? ` HTTP ${e.httpStatus}` : ''}, ${e.attempts} attempt(s)${err}`;
    case 'verification':
      return `${when}  verify ${e.backupFile} from ${e.destination}: ${e.status}${err}`;
    case 'restore':
      return `${when}  restore ${e.backupFile} from ${e.source} to ${e.target}: ${e.status}${err}`;
    default:
      return `${when}  ${String(e.kind)}`;
  }
}

export function registerStatus(program: Command): void {
  const command = program
    .command('status')
    .description('last success, last failure, count and size; --max-age makes it fail when backups are stale')
    .option('--max-age <duration>', 'exit 1 when the newest backup is older than this (e.g. 26h)')
    .option('--from <destination>', 'the status of what a destination holds (drive, or a destination name)')
    .option('--json', 'print JSON');
  addTargetOptions(command);
  command.action(async (options: CommonOptions & { maxAge?: string; from?: string }) => {
    const [{ BackupManager }, { remoteStatusOf, statusOf }] = await Promise.all([
      import('../../backup/manager.js'),
      import('../../backup/status.js'),
    ]);
    const resolved = resolveConfig(options);
    let maxAgeMs: number | undefined;
    if (options.maxAge !== undefined) {
      maxAgeMs = parseDurationMs(options.maxAge);
      if (maxAgeMs === undefined) {
        throw new LitekeepError(`--max-age '${options.maxAge}' is not a duration; use e.g. 90m, 26h or 7d`, {
          exitCode: EXIT.usage,
        });
      }
    }
    const out: (DatabaseStatus | RemoteStatus)[] = [];
    let stale = false;
    for (const target of selectTargets(resolved, options, { folderAlone: true })) {
      const status =
        options.from !== undefined && options.from !== 'local'
          ? await remoteStatusOf(target, options.from, maxAgeMs)
          : await statusOf(new BackupManager(target, { readOnly: true }), maxAgeMs, { destinations: true });
      if (status.stale) stale = true;
      out.push(status);
      if (options.json) continue;
      if ('from' in status) printRemoteStatus(status);
      else printStatus(status, target.settings.timeZone!);
    }
    if (options.json) printPerDatabaseJson(out);
    if (stale) process.exitCode = EXIT.failed;
  });
}

function printRemoteStatus(s: RemoteStatus): void {
  print(`${s.database} on ${s.from} (${s.type}):`);
  print(`  backups: ${s.count}, ${humanBytes(s.totalBytes)}`);
  print(`  newest: ${s.newest ? `${s.newest.name} (${age(new Date(s.newest.time))})` : 'none'}`);
  if (s.stale) print(`  STALE: ${s.staleReason}`);
}

function printStatus(s: DatabaseStatus, timeZone: string): void {
  print(`${s.database}: ${s.backupDir}`);
  print(`  backups: ${s.count}, ${humanBytes(s.totalBytes)}`);
  print(`  newest: ${s.newest ? `${s.newest.name} (${age(new Date(s.newest.time))})` : 'none'}`);
  print(`  last success: ${s.lastSuccess ? formatTime(new Date(s.lastSuccess.at), timeZone) : 'never'}`);
  print(
    `  last failure: ${
      s.lastFailure
        ? `${formatTime(new Date(s.lastFailure.at), timeZone)}${s.lastFailure.error ? ` — ${s.lastFailure.error}` : ''}`
        : 'never'
    }`,
  );
  for (const v of s.lastVerified) {
    print(`  last verified on ${v.destination}: ${v.file} (${age(new Date(v.at))})`);
  }
  for (const d of s.destinations ?? []) {
    const held =
      d.copies === undefined
        ? `unreachable: ${d.error}`
        : `${d.copies} cop${d.copies === 1 ? 'y' : 'ies'}, ${humanBytes(d.bytes ?? 0)}` +
          `, newest ${d.newest && d.newestTime ? `${d.newest} (${age(new Date(d.newestTime))})` : 'none'}`;
    if (d.format === 'incremental') {
      printRepositoryStatus(d);
      continue;
    }
    print(`  ${d.destination} (${d.type}): ${held}`);
    if (d.copies === undefined && d.newest && d.newestTime)
      print(`    newest copy known: ${d.newest} (${age(new Date(d.newestTime))})`);
    print(
      `    last success: ${d.lastSuccess ? `${formatTime(new Date(d.lastSuccess.at), timeZone)} (${d.lastSuccess.file})` : 'never'}`,
    );
    if (d.missing.length)
      print(`    missing ${d.missing.length}: ${d.missing.join(', ')} (litekeep sync uploads them)`);
    else print('    missing: none');
    if (d.lastError)
      print(
        `    last error${d.lastAttemptFailed ? '' : ' (since succeeded)'}: ${formatTime(new Date(d.lastError.at), timeZone)} — ${d.lastError.error}`,
      );
    if (d.lastVerified)
      print(`    last verified: ${d.lastVerified.file} (${age(new Date(d.lastVerified.at))})`);
    if (d.stale) print(`    STALE: ${d.staleReason}`);
  }
  if (s.replicator)
    print(
      `  replicated by pid ${s.replicator.pid} on ${s.replicator.host} (${s.replicator.purpose}) since ${s.replicator.startedAt}`,
    );
  else if (s.replicator === null)
    print(
      `  replication: not running now (no litekeep replicate or daemon follows ${s.database}); the figures below are from the last one`,
    );
  if (s.walBytes !== undefined && !s.walLarge)
    print(`  WAL: ${humanBytes(s.walBytes)} (${COOPERATIVE_WAL_NOTE})`);
  // The same judgement as the status page's (a large cooperative WAL is one of them).
  for (const problem of s.replicationProblems ?? []) print(`  WARNING: ${problem}`);
  for (const r of s.replication ?? []) {
    const where = shippingBehind(r);
    const last = r.lastShippedAt
      ? `, last shipped ${age(new Date(r.lastShippedAt))}`
      : ', nothing shipped yet';
    print(
      `  replication to ${r.destination}: ${where}${last}, ${r.segmentsShipped} segment${r.segmentsShipped === 1 ? '' : 's'} (${humanBytes(r.bytesShipped)})`,
    );
    if (r.baseOwedSince)
      print(
        `    a base snapshot is owed since ${formatTime(new Date(r.baseOwedSince), timeZone)} (a gap or a fresh start): recovery to moments since then waits for it`,
      );
    const until = recoverableUntil(r);
    if (r.recoverableFrom)
      print(
        `    restorable to the second from ${formatTime(new Date(r.recoverableFrom), timeZone)} to ${until === 'now' ? 'now' : until ? formatTime(new Date(until), timeZone) : 'the last shipment'}`,
      );
    if (r.gaps)
      print(
        `    ${r.gaps} gap${r.gaps === 1 ? '' : 's'} (the app's checkpoint reset the WAL before litekeep read it; moments in a gap cannot be restored to the second), the latest ${formatTime(new Date(r.recentGaps.at(-1)!), timeZone)}`,
      );
  }
  if (s.stale) print(`  STALE: ${s.staleReason}`);
}

/** An incremental destination in `status`: snapshots, stored bytes, the newest's bytes added and dedup. */
function printRepositoryStatus(d: DestinationStatus): void {
  const held =
    d.copies === undefined
      ? `unreachable: ${d.error}`
      : `${d.copies} snapshot${d.copies === 1 ? '' : 's'}, ${humanBytes(d.bytes ?? 0)} stored` +
        (d.newestSnapshot && d.newestTime
          ? `, newest ${d.newestSnapshot.id.slice(0, 12)} (${age(new Date(d.newestTime))}): added ` +
            `${humanBytes(d.newestSnapshot.addedBytes)}, dedup ${Math.round(d.newestSnapshot.dedupRatio)}x`
          : ', newest none');
  print(`  ${d.destination} (${d.type}, incremental): ${held}`);
  if (d.copies !== undefined && d.error)
    print(`    problem: ${d.error} (litekeep check --from ${d.destination})`);
  if (d.missed?.length)
    print(
      `    missed ${d.missed.length} backup(s) since its newest snapshot (the next run's snapshot stands alone): ${d.missed.join(', ')}`,
    );
  if (d.lastError) print(`    last error: ${d.lastError.at} — ${d.lastError.error}`);
  if (d.lastVerified)
    print(`    last verified: ${d.lastVerified.file.slice(0, 12)} (${age(new Date(d.lastVerified.at))})`);
  if (d.stale) print(`    STALE: ${d.staleReason}`);
}

/** Durations as one writes them (`26h`), and `drive.enabled` with the reason Drive is on or off. */
function shownEntries(
  entries: ConfigEntry[],
  resolved: ResolvedConfig,
): { key: string; value: string; source: string }[] {
  const durations = new Set(CONFIG_LEAVES.filter((l) => l.setting.isDuration).map((l) => l.path));
  return entries
    .filter((e) => e.value !== undefined)
    .map((e) => {
      let value =
        durations.has(e.key) && typeof e.value === 'number'
          ? durationAsWritten(e.value)
          : typeof e.value === 'string'
            ? e.value
            : JSON.stringify(e.value);
      let source = e.source;
      if (e.key === 'drive.enabled' && e.value === true) {
        const why = Object.keys(resolved.sources).find(
          (k) => k.startsWith('drive.') && !resolved.sources[k].startsWith('default'),
        );
        if (why) source = `${source}; Drive is on: ${why} set in ${resolved.sources[why]}`;
        else {
          value = 'true (inactive)';
          source = `${source}; Drive stays off: no GOOGLE_APPLICATION_CREDENTIALS or drive.* key set`;
        }
      }
      return { key: e.key, value, source };
    });
}

export function registerConfig(program: Command): void {
  const command = program
    .command('config')
    .description('print the resolved configuration and where each value came from (secrets redacted)')
    .option('--keys', 'list every key with its environment variable and meaning')
    .option('--json', 'print JSON');
  addTargetOptions(command);
  command.action(async (options: CommonOptions & { keys?: boolean }) => {
    const resolved = resolveConfig(options);
    // --db: the settings of that database, with its own overrides (databases:) applied.
    const selected = options.db ? selectTargets(resolved, options) : undefined;
    const shown = selected ? { ...resolved, config: selected[0].settings, databases: selected } : resolved;
    const entries = describeConfig(shown);
    if (options.json) {
      printJson({
        configFile: resolved.configFile ?? null,
        envFile: resolved.envFile ?? null,
        settings: Object.fromEntries(
          entries.map((e) => [e.key, { value: e.value ?? null, source: e.source }]),
        ),
        databases: shown.databases.map((t) => ({ name: t.name, path: t.path, backupDir: t.backupDir })),
      });
      return;
    }
    if (options.keys) {
      print(
        table(
          ['key', 'environment', 'meaning'],
          entries.map((e) => [e.key, e.env.join(', '), e.doc]),
        ),
      );
      return;
    }
    print(`config file: ${resolved.configFile ?? '(none)'}`);
    print(`env file:    ${resolved.envFile ?? '(none)'}`);
    print('');
    print(
      table(
        ['key', 'value', 'source'],
        shownEntries(entries, shown).map((e) => [e.key, e.value, e.source]),
      ),
    );
    print('');
    if (shown.databases.length === 0) print('databases: none configured');
    for (const t of shown.databases) print(`database ${t.name}: ${t.path} → ${t.backupDir}`);
  });
}
