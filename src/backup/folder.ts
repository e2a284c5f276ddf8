import fs from 'node:fs';
import path from 'node:path';
import { CATALOG_DIR } from '../catalog/index.js';
import type { DatabaseTarget, ResolvedConfig } from '../config/index.js';
import { BackupManager } from './manager.js';

/**
 * A backup folder read on its own, without naming the database (`litekeep list --dir /var/backups/app` on a
 * machine where nothing is configured): the database's name and path come from the folder's activity log when
 * it has one (its newest run and backup), else the name is the folder's. Reading it never creates anything.
 */
export function targetForBackupFolder(resolved: ResolvedConfig, dir: string): DatabaseTarget {
  const backupDir = path.resolve(resolved.cwd, dir);
  const settings = structuredClone(resolved.config);
  settings.backupDir = backupDir;
  const target: DatabaseTarget = {
    name: path.basename(backupDir),
    path: '',
    backupDir,
    settings,
    driveConfigured: resolved.driveConfigured,
  };
  if (!fs.existsSync(path.join(backupDir, CATALOG_DIR))) return target;
  const manager = new BackupManager(target, { readOnly: true });
  try {
    const [run] = manager.catalog.listRuns(1);
    const [backup] = manager.catalog.listBackups({ includeDeleted: true });
    if (run?.database) target.name = run.database;
    if (backup?.sourcePath) target.path = backup.sourcePath;
    settings.database = target.path || undefined;
  } finally {
    manager.close();
  }
  return target;
}
