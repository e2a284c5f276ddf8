import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CATALOG_DIR } from '../catalog/index.js';
import { ConfigError, loadConfig, type DatabaseTarget, type LoadConfigOptions } from '../config/index.js';
import { acquireLock, LockHeldError } from '../scheduler/lock.js';
import { assertSqliteFile } from '../snapshot/index.js';
import { createDestination, hostRecordPath } from '../destinations/factory.js';
import { formatDuration } from '../util/duration.js';
import { runCeiling } from '../util/timeouts.js';
import { EXIT, LitekeepError, oneLine } from '../util/errors.js';
import { encryptionSettings } from './encryption.js';
import {
  BackupManager,
  discardImage,
  type BackupResult,
  type BackupTrigger,
  type PruneResult,
} from './manager.js';
import {
  destinationPolicy,
  destinationsOf,
  hasIncrementalDestination,
  planDestination,
  runDestinations,
  type DestinationOutcome,
} from './offsite.js';
import { notifyRun, type NotificationOutcome } from './notifications.js';

/** `replication`: a base snapshot taken because WAL shipping started or found a gap (issue 15). */
export type RunTrigger = 'manual' | 'schedule' | 'catch-up' | 'api' | 'replication';

/** The retention series a run's backup belongs to: only a person's `manual` run is not on a schedule. */
export function backupTriggerOf(trigger: RunTrigger): BackupTrigger {
  return trigger === 'manual' ? 'manual' : 'scheduled';
}

export interface RunBackupOptions {
  trigger?: RunTrigger;
  /** VACUUM INTO (default from config) or the online backup API. */
  vacuum?: boolean;
  /** Apply retention after a successful backup (default from config `prune`). */
  prune?: boolean;
  /** Skip uploads to Google Drive for this run (the seed's `--no-drive`). */
  drive?: boolean;
  /** Skip every off-site destination for this run. */
  upload?: boolean;
  /** Skip notifications for this run. */
  notify?: boolean;
  signal?: AbortSignal;
  onProgress?: (stage: string, bytes: number, total?: number) => void;
  /** Called with human-readable step messages ("snapshot done", "uploaded to drive"). */
  onStep?: (message: string) => void;
  /**
   * Something that went wrong before this run and that it answers (a replication gap): reported with the
   * run's result and notification, which make the run partly done.
   */
  problems?: string[];
}

export interface RunBackupResult {
  database: string;
  status: 'ok' | 'partial' | 'failed';
  exitCode: number;
  runId?: number;
  backup?: BackupResult;
  rotated: number;
  prune?: PruneResult;
  destinations: DestinationOutcome[];
  notifications: NotificationOutcome[];
  error?: string;
  stage?: string;
  warnings: string[];
  /** What went wrong before the run and it answered (RunBackupOptions.problems). */
  problems?: string[];
  durationMs: number;
}

/**
 * The first backup into a folder records the name this host goes by on shared destinations, unless `host`
 * is set: later runs keep that name even when the system's host name changes (a recreated container).
 */
function recordHostName(target: DatabaseTarget): void {
  const file = hostRecordPath(target);
  if (target.settings.host || fs.existsSync(file)) return;
  try {
    fs.writeFileSync(file, `${os.hostname()}\n`, { mode: 0o600, flag: 'wx' });
  } catch {
    // Another run wrote it first, or the folder is read-only: hostOf falls back to the host name.
  }
}

export function lockPathFor(target: DatabaseTarget): string {
  return path.join(target.backupDir, CATALOG_DIR, 'lock');
}

export const DEFAULT_RUN_TIMEOUT_MS = 3 * 3_600_000;

/**
 * A lock held for longer than any run may last (`runTimeout`) is held by a run that hangs: every later run is
 * blocked by it, so that is a failure to report, not a collision to skip. Returns the error to report then.
 */
export function stuckLockError(error: LockHeldError, target: DatabaseTarget): LitekeepError | undefined {
  const runTimeoutMs = target.settings.runTimeout ?? DEFAULT_RUN_TIMEOUT_MS;
  if (error.heldForMs === undefined || error.heldForMs <= runTimeoutMs) return undefined;
  const { holder } = error;
  return new LitekeepError(
    `a run seems stuck: pid ${holder.pid} on host ${holder.host} ("${holder.purpose}") has held ${error.lockPath} ` +
      `since ${holder.startedAt}, ${formatDuration(error.heldForMs)}, longer than runTimeout ${formatDuration(runTimeoutMs)}; ` +
      `no run of ${target.name} can start until it ends — stop that process, or find what it waits for`,
    { exitCode: EXIT.failed, stage: 'lock', cause: error },
  );
}

/**
 * Runs `work` while holding the database's lock, the one backups and the daemon take, so that prune, sync and
 * restore never race a backup of the same database. Fails with a message naming the holder.
 */
export async function withDatabaseLock<T>(
  target: DatabaseTarget,
  purpose: string,
  work: () => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  let lock;
  try {
    lock = await acquireLock(lockPathFor(target), {
      waitMs: target.settings.lockWait ?? 0,
      purpose: `${purpose} of ${target.name}`,
      signal,
    });
  } catch (error) {
    throw (error instanceof LockHeldError && stuckLockError(error, target)) || error;
  }
  try {
    return await work();
  } finally {
    await lock.release();
  }
}

/**
 * One whole backup run of one database, as BRIEF §3 describes: lock → snapshot → check → compress/encrypt →
 * publish → record → upload to each destination → retention (only after success) → notify → record.
 * Never throws for a failed run: the result says what happened, with the exit code to use.
 */
export async function runBackupForTarget(
  target: DatabaseTarget,
  options: RunBackupOptions = {},
): Promise<RunBackupResult> {
  const started = Date.now();
  const trigger = options.trigger ?? 'api';
  const manager = new BackupManager(target);
  const warnings: string[] = [];
  const result: RunBackupResult = {
    database: target.name,
    status: 'failed',
    exitCode: EXIT.failed,
    rotated: 0,
    destinations: [],
    notifications: [],
    warnings,
    ...(options.problems?.length ? { problems: [...options.problems] } : {}),
    durationMs: 0,
  };
  const step = (message: string) => options.onStep?.(message);
  // The run's ceiling: whatever hangs, the run ends by runTimeout, and is then reported like any failure.
  const ceiling = runCeiling(
    `the backup run of ${target.name}`,
    target.settings.runTimeout ?? DEFAULT_RUN_TIMEOUT_MS,
    options.signal,
  );
  const signal = ceiling.signal;
  let release: (() => Promise<void>) | undefined;
  let runId: number | undefined;
  let lockedOut = false;
  try {
    // Everything that can be checked without touching the backup folder is checked first: a bad source or
    // setting leaves the folder exactly as it was.
    result.stage = 'prepare';
    assertSqliteFile(target.path);
    if (options.prune ?? target.settings.prune) manager.retentionPolicy();
    await encryptionSettings(target.settings.encryption);
    // Destinations that cannot work as configured (a folder overlapping the backup folder) stop the run here.
    if (options.upload !== false) {
      for (const spec of destinationsOf(target, { skipDrive: options.drive === false })) {
        const destination = await createDestination(spec, target);
        (destination as { destroy?: () => void }).destroy?.();
      }
    }
    manager.prepareFolder();
    manager.assertFolderHoldsOnlyThisDatabase();
    recordHostName(target);
    const lock = await acquireLock(lockPathFor(target), {
      waitMs: target.settings.lockWait ?? 0,
      purpose: `${trigger} backup of ${target.name}`,
      signal,
    });
    release = () => lock.release();
    try {
      runId = manager.catalog.startRun(trigger, target.name);
    } catch (error) {
      // The activity log must never stop a backup (a full disk fails the backup itself, with a clear message).
      warnings.push(`activity log not written: ${oneLine(error)}`);
    }
    result.runId = runId;
    if (options.notify !== false) {
      result.notifications.push(...(await notifyRun(target, 'start', result, manager.catalog, runId)));
    }

    result.stage = 'snapshot';
    // Incremental destinations (issue 14) need a page-exact image: the online backup API (VACUUM INTO
    // renumbers pages), kept for them until they have their snapshots.
    const incremental =
      options.upload !== false && hasIncrementalDestination(target, options.drive === false);
    // Point-in-time recovery starts from a snapshot: what had been shipped before the copy, the WAL's end after.
    const capture = incremental ? await import('../pitr/capture.js') : undefined;
    const shippedBefore = capture ? await capture.shippedBeforeOf(target) : undefined;
    const backup = await manager.createBackup({
      trigger: backupTriggerOf(trigger),
      vacuum: incremental ? false : options.vacuum,
      keepImage: incremental,
      runId,
      signal,
      onProgress: options.onProgress,
    });
    const wal =
      capture && shippedBefore
        ? { before: shippedBefore, walEndAfter: await capture.walMarkOf(target.path), finishedAt: new Date() }
        : undefined;
    result.backup = backup;
    step(`backup written: ${backup.path}`);
    // Backups the catalog does not know (it was lost or replaced) are recorded again from the files.
    const added = await manager.reconcileCatalog();
    if (added) step(`catalog rebuilt: ${added} backups found on disk`);

    let offsiteFailed = false;
    if (options.upload !== false) {
      result.stage = 'upload';
      result.destinations = await runDestinations(target, manager, backup, {
        skipDrive: options.drive === false,
        runId,
        signal,
        onStep: step,
        image: backup.image && { ...backup.image, wal },
        onProgress: options.onProgress,
      });
      offsiteFailed = result.destinations.some((d) => d.status === 'failed');
      for (const d of result.destinations) if (d.warning) warnings.push(`${d.destination}: ${d.warning}`);
    }
    // Stopped (Ctrl-C, the daemon told to stop, runTimeout): the stages after this one do not run.
    signal.throwIfAborted();

    if (options.prune ?? target.settings.prune) {
      result.stage = 'prune';
      try {
        const prune = await manager.prune({ runId, protect: [backup.file], madeByRun: backup.file });
        if (prune.held) {
          warnings.push(`retention held back: ${prune.held}`);
          offsiteFailed = true;
        }
        result.prune = prune;
        result.rotated = prune.removed.length;
        for (const failure of prune.failed)
          warnings.push(`could not delete ${failure.name}: ${failure.error}`);
        if (prune.future.length) {
          warnings.push(
            `dated in the future, kept and not counted by retention (check the clock): ${prune.future.join(', ')}`,
          );
        }
        for (const aside of prune.setAside)
          warnings.push(`set aside, not counted: ${aside.name} (${aside.reason})`);
        if (prune.unrecognized.length) {
          warnings.push(`left alone (names litekeep does not recognise): ${prune.unrecognized.join(', ')}`);
        }
      } catch (error) {
        warnings.push(`retention not applied: ${oneLine(error)}`);
        offsiteFailed = true;
      }
    }

    result.stage = undefined;
    const reported = (options.problems?.length ?? 0) > 0;
    result.status = offsiteFailed || reported || (result.prune?.failed.length ?? 0) > 0 ? 'partial' : 'ok';
  } catch (error) {
    // A run stopped after its backup was made leaves that backup safe: partly done, not failed.
    result.status = signal.aborted && result.backup ? 'partial' : 'failed';
    result.error = oneLine(ceiling.expired ?? error);
    // Another run of the same database is doing the job right now: not news for the monitors. Unless it has
    // been at it for longer than any run may take: then it hangs, and backups have stopped.
    if (error instanceof LockHeldError) {
      const stuck = stuckLockError(error, target);
      if (stuck) result.error = oneLine(stuck);
      else lockedOut = true;
    }
    if (error instanceof LitekeepError && error.stage) result.stage = error.stage;
    result.exitCode =
      error instanceof LitekeepError || error instanceof ConfigError ? error.exitCode : EXIT.failed;
  }

  ceiling.dispose();
  result.durationMs = Date.now() - started;
  if (result.status !== 'failed') result.exitCode = result.status === 'ok' ? EXIT.ok : EXIT.partial;

  // The catalog only when the folder exists: a failed run must not create the backup folder.
  const catalog = fs.existsSync(target.backupDir) ? manager.catalog : undefined;
  if (runId === undefined && catalog && result.status === 'failed' && !lockedOut) {
    try {
      runId = catalog.startRun(trigger, target.name);
      result.runId = runId;
    } catch {
      // recorded when possible
    }
  }
  if (options.notify !== false && !lockedOut) {
    const kind = result.status === 'failed' ? 'failure' : 'success';
    const sent = await notifyRun(target, kind, result, catalog, runId);
    result.notifications.push(...sent);
    // The start ping counts too: a monitor that never heard "started" is a notification that failed.
    if (result.notifications.some((n) => n.status === 'failed') && result.status === 'ok') {
      result.status = 'partial';
      result.exitCode = EXIT.partial;
    }
  }

  if (manager.catalogWarning) warnings.push(manager.catalogWarning);
  if (runId !== undefined && catalog) {
    try {
      catalog.finishRun(runId, {
        status: result.status,
        stage: result.stage,
        error: result.error,
        exitCode: result.exitCode,
        backupFile: result.backup?.file,
        rotated: result.rotated,
        durationMs: result.durationMs,
      });
    } catch (error) {
      warnings.push(`could not record the run: ${oneLine(error)}`);
    }
  }
  await discardImage(result.backup).catch((error: unknown) => {
    warnings.push(`could not remove the snapshot image: ${oneLine(error)}`);
  });
  try {
    await release?.();
  } catch (error) {
    warnings.push(`could not release the lock: ${oneLine(error)}`);
  }
  manager.close();
  return result;
}

/** What `backup --dry-run` reports: the backup a run would make now, and what its retention would remove. */
export interface BackupRunPlan {
  database: string;
  file: string;
  path: string;
  trigger: BackupTrigger;
  /** Local backups the run's retention would remove, with why; empty when nothing would go or prune is off. */
  removals: { name: string; reasons: string[] }[];
  prune: boolean;
  /** Destinations the backup would be uploaded to (each then applies its own retention). */
  destinations: string[];
  /** What each destination's retention would remove of this host's copies there, or why it could not tell. */
  destinationRemovals: {
    destination: string;
    removals?: { name: string; reasons: string[] }[];
    error?: string;
  }[];
}

/** Plans a run without taking a snapshot or touching any file: the same checks a run starts with. */
export async function planBackupRun(
  target: DatabaseTarget,
  options: Pick<RunBackupOptions, 'trigger' | 'prune' | 'drive' | 'upload'> = {},
): Promise<BackupRunPlan> {
  assertSqliteFile(target.path);
  await encryptionSettings(target.settings.encryption);
  const prune = options.prune ?? target.settings.prune;
  const manager = new BackupManager(target, { readOnly: true });
  try {
    if (prune) manager.retentionPolicy();
    const now = new Date();
    const trigger = backupTriggerOf(options.trigger ?? 'api');
    const file = await manager.nextBackupName(now);
    const plan = prune
      ? await manager.prune({ dryRun: true, pretend: { name: file, time: now, trigger } })
      : undefined;
    const specs =
      options.upload === false ? [] : destinationsOf(target, { skipDrive: options.drive === false });
    const destinationRemovals: BackupRunPlan['destinationRemovals'] = [];
    for (const spec of prune ? specs : []) {
      try {
        const { plan: remote, held } = await planDestination(
          await createDestination(spec, target),
          destinationPolicy(spec, manager),
          manager,
          { pretend: { name: file, time: now, trigger } },
        );
        destinationRemovals.push({
          destination: spec.name,
          removals: held ? [] : remote.remove.map((d) => ({ name: d.backup.id, reasons: d.notKept ?? [] })),
          ...(held ? { error: `retention would be held back: ${held}` } : {}),
        });
      } catch (error) {
        destinationRemovals.push({ destination: spec.name, error: `could not plan: ${oneLine(error)}` });
      }
    }
    return {
      database: target.name,
      file,
      path: path.join(target.backupDir, file),
      trigger,
      prune,
      removals: (plan?.decisions ?? [])
        .filter((d) => d.action === 'remove')
        .map((d) => ({ name: d.name, reasons: d.reasons })),
      destinations: specs.map((d) => d.name),
      destinationRemovals,
    };
  } finally {
    manager.close();
  }
}

/** What did not work in a run that was partly done, one phrase each: for logs and messages. */
export function partialProblems(result: RunBackupResult): string[] {
  const problems: string[] = [];
  for (const d of result.destinations)
    if (d.status === 'failed')
      problems.push(`upload to ${d.destination} failed: ${d.error ?? 'unknown error'}`);
  for (const failure of result.prune?.failed ?? [])
    problems.push(`could not delete ${failure.name}: ${failure.error}`);
  for (const n of result.notifications)
    if (n.status === 'failed') problems.push(`notification ${n.channel} (${n.event}) failed: ${n.error}`);
  if (result.error) problems.push(result.error);
  problems.push(...(result.problems ?? []));
  for (const w of result.warnings) if (/^retention (not applied|held back)/.test(w)) problems.push(w);
  return problems.length ? problems : ['see the warnings'];
}

export interface RunBackupTaskOptions extends RunBackupOptions, LoadConfigOptions {
  /** Only these databases (by name); default all configured. */
  databases?: string[];
}

/**
 * The seed's `run_backup_task()`: backs up every configured database once (backup, upload, prune, notify) and
 * returns one result per database. The worst exit code of them is the task's.
 */
export async function runBackupTask(options: RunBackupTaskOptions = {}): Promise<RunBackupResult[]> {
  const resolved = loadConfig(options);
  let targets = resolved.databases;
  if (options.databases) targets = targets.filter((t) => options.databases!.includes(t.name));
  if (targets.length === 0) {
    throw new LitekeepError(
      'no database configured: set DATABASE_URL, add database: to litekeep.yml, or pass --db',
      { exitCode: EXIT.usage },
    );
  }
  const results: RunBackupResult[] = [];
  for (const target of targets)
    results.push(await runBackupForTarget(target, { trigger: 'api', ...options }));
  return results;
}

export function worstExitCode(results: { exitCode: number }[]): number {
  const codes = results.map((r) => r.exitCode);
  if (codes.includes(EXIT.usage)) return EXIT.usage;
  if (codes.includes(EXIT.failed)) return EXIT.failed;
  if (codes.includes(EXIT.partial)) return EXIT.partial;
  return EXIT.ok;
}
