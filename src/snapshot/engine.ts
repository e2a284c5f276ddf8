import fs from 'node:fs';
import Database from 'better-sqlite3';
import { inspectDatabase, type DatabaseFacts, type IntegrityMode } from './inspect.js';

export type SnapshotMode = 'vacuum' | 'backup-api';

export interface SnapshotRequest {
  source: string;
  /** Fresh temp path in the backup folder; must not exist. */
  target: string;
  mode: SnapshotMode;
  busyTimeoutMs: number;
  integrity: IntegrityMode;
  /** fsync the copy (default). Off when the copy is only read once more to make the real, fsynced artifact. */
  durable?: boolean;
}

export interface SnapshotFacts extends DatabaseFacts {
  sourceBytes: number;
  bytes: number;
  /** Journal mode of the live database (the copy itself is always in rollback mode). */
  sourceJournalMode: string;
}

/** A failure with a SQLite or errno code, carried as plain data across the process boundary. */
export interface SnapshotFailure {
  code?: string;
  message: string;
}

function openSource(source: string, busyTimeoutMs: number): Database.Database {
  try {
    // Read-only where SQLite allows: a WAL database without a live -shm cannot be opened read-only.
    const db = new Database(source, { readonly: true, fileMustExist: true, timeout: busyTimeoutMs });
    db.pragma('schema_version');
    return db;
  } catch (error) {
    const code = (error as { code?: string }).code ?? '';
    if (!/CANTOPEN|READONLY/.test(code)) throw error;
    return new Database(source, { fileMustExist: true, timeout: busyTimeoutMs });
  }
}

function fsyncPath(file: string): void {
  const fd = fs.openSync(file, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function sizeWithWal(source: string): number {
  let bytes = fs.statSync(source).size;
  try {
    bytes += fs.statSync(`${source}-wal`).size;
  } catch {
    // no WAL file: a rollback-journal database, or a checkpointed one
  }
  return bytes;
}

/**
 * The online backup API in a single step, under one read transaction, so that writers cannot make it restart.
 * better-sqlite3 takes SQLITE_BUSY on the first step (a writer kept its lock past the busy timeout) for "no
 * pages left", resolves, and deletes the unfinished copy; opening the missing file afterwards would make an
 * empty database that passes integrity_check. That is a lock, reported as one, never an empty backup.
 */
export async function backupInOneStep(source: Database.Database, target: string): Promise<void> {
  await source.backup(target, { progress: () => 0x7fffffff });
  if (!fs.existsSync(target)) throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
}

/**
 * Takes a consistent copy of a live database with SQLite's own mechanisms, never by copying the file:
 * `VACUUM INTO` (compacted), or the online backup API in one step under one read transaction so that
 * constant writers cannot make it restart forever. Then fsyncs and checks the copy.
 */
export async function snapshotInProcess(
  request: SnapshotRequest,
  onCopied?: () => void,
): Promise<SnapshotFacts> {
  const sourceBytes = sizeWithWal(request.source);
  // Created empty and private before SQLite writes a byte: VACUUM INTO accepts an empty target, and SQLite gives
  // the copy's -journal the copy's mode.
  fs.closeSync(fs.openSync(request.target, 'wx', 0o600));
  fs.chmodSync(request.target, 0o600);
  const db = openSource(request.source, request.busyTimeoutMs);
  let sourceJournalMode: string;
  try {
    sourceJournalMode = String(db.pragma('journal_mode', { simple: true }));
    if (request.mode === 'vacuum') {
      db.prepare('VACUUM INTO ?').run(request.target);
    } else {
      await backupInOneStep(db, request.target);
    }
  } finally {
    db.close();
  }
  if (request.mode === 'backup-api') {
    // The copy inherits the WAL flag from the source header; a backup file must stand alone.
    const copy = new Database(request.target);
    try {
      if (copy.pragma('journal_mode', { simple: true }) === 'wal') copy.pragma('journal_mode = DELETE');
    } finally {
      copy.close();
    }
  }
  fs.chmodSync(request.target, 0o600);
  // From here the copy's content is final: the caller may start hashing/compressing it while it is checked.
  onCopied?.();
  const facts = inspectDatabase(request.target, request.integrity);
  // fsync last: the kernel has been writing the pages back during the check, so less is left to wait for.
  if (request.durable !== false) fsyncPath(request.target);
  return { ...facts, sourceBytes, sourceJournalMode, bytes: fs.statSync(request.target).size };
}

export function removeSnapshotLeftovers(target: string): void {
  for (const suffix of ['', '-journal', '-wal', '-shm']) fs.rmSync(target + suffix, { force: true });
}
