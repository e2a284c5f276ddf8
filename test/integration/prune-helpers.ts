import fs from 'node:fs';
import path from 'node:path';
import { filesIn, makeDatabase, tempDir } from '../helpers/db.js';

const made: string[] = [];

/** Removes the folders `workspace` made; call it from the test file's afterAll. */
export function removeWorkspaces(): void {
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

/** A database and a backup folder filled with litekeep-named files, one per given day at 03:00 UTC. */
export function workspace(days: string[] = []) {
  const dir = tempDir('litekeep-prune-');
  made.push(dir);
  const db = path.join(dir, 'app.db');
  makeDatabase(db, 20);
  const backups = path.join(dir, 'backups');
  fs.mkdirSync(backups, { mode: 0o700 });
  for (const day of days) fs.writeFileSync(path.join(backups, nameOf(day)), `backup of ${day}\n`);
  return { dir, db, backups };
}

export const nameOf = (day: string) => `backup-${day}-030000.db`;

/** Every day from `from` to `to` inclusive, as YYYY-MM-DD. */
export function daysBetween(from: string, to: string): string[] {
  const out: string[] = [];
  for (let t = Date.parse(`${from}T00:00:00Z`); t <= Date.parse(`${to}T00:00:00Z`); t += 86400_000) {
    out.push(new Date(t).toISOString().slice(0, 10));
  }
  return out;
}

/** Environment that switches the default rules off, for tests that want only the rules they name. */
export const ONLY_RULES = {
  LITEKEEP_RETENTION_DAILY: '0',
  LITEKEEP_RETENTION_WEEKLY: '0',
  LITEKEEP_RETENTION_MONTHLY: '0',
};
export const backupFiles = (dir: string) => filesIn(dir).filter((f) => f.startsWith('backup-'));
export const env: Record<string, string> = { LITEKEEP_TIME_ZONE: 'UTC' };
