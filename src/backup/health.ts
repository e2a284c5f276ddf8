import fs from 'node:fs';
import path from 'node:path';
import type { DatabaseTarget } from '../config/index.js';
import type { DatabaseStatus, DaemonStatus } from '../scheduler/index.js';
import { CATALOG_DIR } from '../catalog/index.js';
import { replicationReadingOf } from '../pitr/capture.js';
import { BackupManager, type BackupEntry } from './manager.js';
import { destinationStatesFromCatalog, type DestinationState } from './offsite.js';

/** Whether a catalog exists; status reads must not create folders or catalogs as a side effect. */
export function hasCatalog(target: DatabaseTarget): boolean {
  return fs.existsSync(path.join(target.backupDir, CATALOG_DIR));
}

export const later = (a: Date | undefined, b: Date | undefined): Date | undefined =>
  !a ? b : !b ? a : a.getTime() >= b.getTime() ? a : b;

/** What health knows of a database that has no activity log yet. */
export function emptyDatabaseStatus(name: string): DatabaseStatus {
  return { name, backupsOnDisk: 0, bytesOnDisk: 0, runsByStatus: {}, newestBackupOk: false };
}

/**
 * One database's health input from its catalog and folder, with what it was read from (the status page shows
 * more of the same): the one reading /healthz, /metrics and the page share, so they never disagree.
 */
export async function databaseStatusOf(
  target: DatabaseTarget,
  manager: BackupManager,
  options: { skipDrive?: boolean; now?: Date } = {},
): Promise<{ status: DatabaseStatus; backups: BackupEntry[]; destinations: DestinationState[] }> {
  const { backups } = await manager.listBackups();
  const success = manager.catalog.lastRunWithStatus(['ok', 'partial']);
  const failure = manager.catalog.lastRunWithStatus(['failed']);
  // A run in progress (or left 'running' by a killed process) says nothing yet: judge the newest finished one.
  const newestRun = manager.catalog.lastRunWithStatus(['ok', 'partial', 'failed']);
  const lastBackup = success?.backupFile ? manager.catalog.getBackup(success.backupFile) : undefined;
  const successTime = success ? new Date(success.startedAt) : undefined;
  let destinations: DestinationState[];
  try {
    destinations = await destinationStatesFromCatalog(target, manager, options);
  } catch {
    // A destination setting that no longer parses was refused at start; nothing to judge by here.
    destinations = [];
  }
  const status: DatabaseStatus = {
    name: target.name,
    lastSuccess: success ? new Date(success.endedAt ?? success.startedAt) : undefined,
    lastFailure: failure ? new Date(failure.endedAt ?? failure.startedAt) : undefined,
    lastFailureError: failure?.error,
    lastDurationMs: newestRun?.durationMs,
    lastBytes: lastBackup?.bytes,
    backupsOnDisk: backups.length,
    bytesOnDisk: backups.reduce((sum, b) => sum + b.bytes, 0),
    runsByStatus: manager.catalog.runsByStatus(),
    newestBackupTime: later(backups[0]?.time, successTime),
    newestBackupOk: newestRun ? newestRun.status !== 'failed' : backups.length > 0,
    destinations: destinations.map((d) => ({
      name: d.destination,
      type: d.type,
      newestCopyTime: d.newestCopy?.time,
      lastSuccess: d.lastSuccess?.at,
      lastFailure: d.lastFailure?.at,
      lastFailureError: d.lastFailure?.error,
      lastAttemptFailed: d.lastAttemptFailed,
      missing: d.missing.length,
      uploadsByStatus: d.uploadsByStatus,
    })),
  };
  Object.assign(status, await replicationReadingOf(target, (options.now ?? new Date()).getTime()));
  return { status, backups, destinations };
}

/**
 * A database with no catalog yet (no backup ever ran): nothing backed up, but replication may be configured
 * (and nobody doing it), which /healthz, /metrics and the page all show alike.
 */
export async function emptyStatusOf(target: DatabaseTarget, now = new Date()): Promise<DatabaseStatus> {
  return { ...emptyDatabaseStatus(target.name), ...(await replicationReadingOf(target, now.getTime())) };
}

/** What the daemon reads from each database's catalog for catch-up, /healthz and /metrics. */
export async function statusFromCatalog(
  targets: DatabaseTarget[],
  maxAgeMs: number,
  options: { skipDrive?: boolean } = {},
): Promise<DaemonStatus> {
  const databases: DatabaseStatus[] = [];
  for (const target of targets) {
    if (!hasCatalog(target)) {
      databases.push(await emptyStatusOf(target));
      continue;
    }
    // Read-only like the status page: a health probe every few seconds must not touch the activity log.
    const manager = new BackupManager(target, { readOnly: true });
    try {
      databases.push((await databaseStatusOf(target, manager, options)).status);
    } finally {
      manager.close();
    }
  }
  return { maxAgeMs, databases };
}
