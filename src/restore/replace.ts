import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { oneLine } from '../util/errors.js';
import { readHeadOutside } from './outside.js';

/**
 * Replacing the content of a live database, the way the sqlite3 CLI's `.restore` does: through SQLite's own
 * locks, never by renaming a file over it. Every connection of the application, in whatever process, PID
 * namespace or container it runs, then either sees the new content on its next transaction or gets
 * SQLITE_BUSY while the copy runs; none keeps writing into a file that is no longer the database.
 */

export type LiveState =
  /** Nobody else has the database open: an exclusive lock was had and let go. */
  | { kind: 'free'; journalMode: string; pageSize: number }
  /** Another connection has it open (WAL) or is reading/writing it (rollback journal). */
  | { kind: 'busy'; code: string; journalMode?: string; pageSize?: number }
  /** The file is not a database SQLite can lock (garbage, a header that is not SQLite's). */
  | { kind: 'not-sqlite'; reason: string };

const BUSY = /^SQLITE_(BUSY|LOCKED)/;
const NOT_SQLITE = /^SQLITE_(NOTADB|CORRUPT)/;

/** Page size and journal mode from the header: readable even while another process holds every lock. */
function headerFacts(file: string): { journalMode?: string; pageSize?: number } {
  let header: Buffer;
  try {
    header = readHeadOutside(file, 20);
  } catch {
    return {};
  }
  if (header.length < 20) return {};
  const raw = header.readUInt16BE(16);
  return { pageSize: raw === 1 ? 65536 : raw, journalMode: header[18] === 2 ? 'wal' : undefined };
}

/**
 * Whether anyone else uses the database, asked of SQLite itself: an EXCLUSIVE lock in exclusive locking mode
 * cannot be had while any other connection has a WAL database open (each holds a shared lock on the file for as
 * long as it is open) or has a rollback-journal database in a transaction. Works across PID namespaces and
 * users, where /proc does not look. Opening may roll back a hot journal or recover a WAL: what any application
 * opening it would do.
 */
export function probeLiveDatabase(file: string): LiveState {
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { fileMustExist: true, timeout: 0 });
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
    const journalMode = String(db.pragma('journal_mode', { simple: true }));
    const pageSize = Number(db.pragma('page_size', { simple: true }));
    db.exec('COMMIT');
    return { kind: 'free', journalMode, pageSize };
  } catch (error) {
    const code = (error as { code?: string }).code ?? '';
    if (BUSY.test(code)) return { kind: 'busy', code, ...headerFacts(file) };
    if (NOT_SQLITE.test(code)) return { kind: 'not-sqlite', reason: oneLine(error) };
    throw error;
  } finally {
    db?.close();
  }
}

export class LiveDatabaseBusyError extends Error {
  override name = 'LiveDatabaseBusyError';
}

export interface CopyIntoLiveOptions {
  /**
   * Runs once the copy holds the live database's write lock and before any page is written (the app can no
   * longer commit): the moment to keep the safety copy. Throwing abandons the copy with nothing written.
   */
  onLocked: () => void;
  /** How long to keep trying when another connection holds the lock (default 10 s). */
  waitMs?: number;
}

/**
 * Copies the database at `source` over the live database at `target` with SQLite's online backup API, in one
 * step under one write transaction of `target`: atomic for every other connection, which sees the old pages
 * or the new ones, never a mix. `target` keeps its journal mode. Throws LiveDatabaseBusyError when the write
 * lock could not be had within `waitMs`.
 */
export async function copyIntoLiveDatabase(
  source: string,
  target: string,
  options: CopyIntoLiveOptions,
): Promise<void> {
  const deadline = Date.now() + (options.waitMs ?? 10_000);
  for (let attempt = 0; ; attempt++) {
    const src = new Database(source, { readonly: true, fileMustExist: true });
    let locked = false;
    try {
      // better-sqlite3 runs a first step of 0 pages, which takes the destination's write lock (EXCLUSIVE in
      // rollback mode) and keeps it between steps; only then does it call the progress callback. When that
      // first step meets SQLITE_BUSY it reports 0 pages left and resolves without calling back, having
      // copied nothing: `locked` tells the two apart.
      await src.backup(target, {
        progress: () => {
          if (!locked) {
            locked = true;
            options.onLocked();
          }
          return 0x7fffffff;
        },
      });
    } finally {
      src.close();
    }
    if (locked) return;
    if (Date.now() >= deadline) {
      throw new LiveDatabaseBusyError(
        `${target} stayed locked by another connection for ${Math.round((options.waitMs ?? 10_000) / 1000)} s`,
      );
    }
    // Busy-looping on purpose: an application that writes all the time holds the lock again right after each
    // commit; only an attempt that comes in the short gap between two of its transactions gets it (SQLite's
    // own busy handler, which the backup's connection lacks, would poll likewise).
    await (attempt % 64 === 63 ? sleep(1) : new Promise((resolve) => setImmediate(resolve)));
  }
}

/**
 * Makes a WAL-mode copy stand alone: folds its -wal into the main file (closing the last connection removes the
 * -wal and -shm). Returns why that failed, leaving both files as they are.
 */
export function foldWal(file: string): string | undefined {
  if (!fs.existsSync(`${file}-wal`)) return undefined;
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { fileMustExist: true, timeout: 2000 });
    const [row] = db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
    if (row?.busy) return 'its WAL could not be checkpointed';
    return undefined;
  } catch (error) {
    return oneLine(error);
  } finally {
    db?.close();
  }
}

/** Sets the journal mode of a database nobody else has open (a restored file before it is put in place). */
export function setJournalMode(file: string, mode: string): void {
  const db = new Database(file, { fileMustExist: true });
  try {
    db.pragma(`journal_mode = ${mode === 'wal' ? 'WAL' : 'DELETE'}`);
  } finally {
    // Closing the only connection of a WAL database checkpoints and removes its -wal and -shm.
    db.close();
  }
}

/** Rewrites a database nobody else has open with another page size (VACUUM keeps every row). */
export function changePageSize(file: string, pageSize: number): void {
  const db = new Database(file, { fileMustExist: true });
  try {
    if (db.pragma('journal_mode', { simple: true }) === 'wal') db.pragma('journal_mode = DELETE');
    db.pragma(`page_size = ${pageSize}`);
    db.exec('VACUUM');
  } finally {
    db.close();
  }
}
