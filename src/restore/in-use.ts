import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

export interface ProcessUsingFile {
  pid: number;
  command: string;
  file: string;
}

/**
 * Processes that hold the database (or its -wal/-shm/-journal) open, found through /proc on Linux. Where /proc
 * is not available this returns [] and `isLockedBySqlite` is the only check.
 */
export function processesUsing(dbPath: string): ProcessUsingFile[] {
  const wanted = new Set(['', '-wal', '-shm', '-journal'].map((s) => path.resolve(dbPath) + s));
  const found: ProcessUsingFile[] = [];
  let pids: string[];
  try {
    pids = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return [];
  }
  for (const pid of pids) {
    if (Number(pid) === process.pid) continue;
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (wanted.has(target)) {
        let command = '?';
        try {
          command = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
        } catch {
          // process ended meanwhile
        }
        found.push({ pid: Number(pid), command, file: target });
        break;
      }
    }
  }
  return found;
}

/** Whether another connection holds a lock on the database right now (a write or exclusive transaction). */
export function isLockedBySqlite(dbPath: string): boolean {
  let db: Database.Database | undefined;
  try {
    db = new Database(dbPath, { fileMustExist: true, timeout: 0 });
    db.exec('BEGIN IMMEDIATE');
    db.exec('ROLLBACK');
    return false;
  } catch (error) {
    return /BUSY|LOCKED/.test((error as { code?: string }).code ?? '');
  } finally {
    db?.close();
  }
}
