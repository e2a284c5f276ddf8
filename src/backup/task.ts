import fs from 'node:fs';
import path from 'node:path';
import { CATALOG_DIR } from '../catalog/index.js';
import { loadConfig, type DatabaseTarget, type LoadConfigOptions } from '../config/index.js';
import { acquireLock, LockHeldError } from '../scheduler/index.js';
import { assertSqliteFile } from '../snapshot/index.js';
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
  destinationsOf,
  hasIncrementalDestination,
  runDestinations,
  type DestinationOutcome,
} from './offsite.js';
import { notifyRun, type NotificationOutcome } from './notifications.js';

export type RunTrigger = 'manual' | 'schedule' | 'catch-up' | 'api';

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
  durationMs: number;
}

export function lockPathFor(target: DatabaseTarget): string {
  return path.join(target.backupDir, CATALOG_DIR, 'lock');
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
  const lock = await acquireLock(lockPathFor(target), {
    waitMs: target.settings.lockWait ?? 0,
    purpose: `${purpose} of ${target.name}`,
    signal,
  });
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
    durationMs: 0,
  };
  const step = (message: string) => options.onStep?.(message);
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
    manager.prepareFolder();
    manager.assertFolderHoldsOnlyThisDatabase();
    const lock = await acquireLock(lockPathFor(target), {
      waitMs: target.settings.lockWait ?? 0,
      purpose: `${trigger} backup of ${target.name}`,
      signal: options.signal,
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
    const backup = await manager.createBackup({
      trigger: backupTriggerOf(trigger),
      vacuum: incremental ? false : options.vacuum,
      keepImage: incremental,
      runId,
      signal: options.signal,
      onProgress: options.onProgress,
    });
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
        signal: options.signal,
        onStep: step,
        image: backup.image,
      });
      offsiteFailed = result.destinations.some((d) => d.status === 'failed');
      for (const d of result.destinations) if (d.warning) warnings.push(`${d.destination}: ${d.warning}`);
    }

    if (options.prune ?? target.settings.prune) {
      result.stage = 'prune';
      try {
        const prune = await manager.prune({ runId, protect: [backup.file] });
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
    result.status = offsiteFailed || (result.prune?.failed.length ?? 0) > 0 ? 'partial' : 'ok';
  } catch (error) {
    result.status = 'failed';
    result.error = oneLine(error);
    // Another run of the same database is doing the job right now: not news for the monitors.
    if (error instanceof LockHeldError) lockedOut = true;
    if (error instanceof LitekeepError && error.stage) result.stage = error.stage;
    result.exitCode = error instanceof LitekeepError ? error.exitCode : EXIT.failed;
  }

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
    return {
      database: target.name,
      file,
      path: path.join(target.backupDir, file),
      trigger,
      prune,
      removals: (plan?.decisions ?? [])
        .filter((d) => d.action === 'remove')
        .map((d) => ({ name: d.name, reasons: d.reasons })),
      destinations:
        options.upload === false
          ? []
          : destinationsOf(target, { skipDrive: options.drive === false }).map((d) => d.name),
    };
  } finally {
    manager.close();
  }
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
