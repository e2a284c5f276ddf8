import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { MIGRATIONS } from './migrations.js';
import { makeDirsSync } from '../util/fs.js';

export const CATALOG_DIR = '.litekeep';
export const CATALOG_FILE = 'catalog.db';
/** Page cache of a read-only connection, in KiB. */
const READ_CACHE_KIB = 2000;

export interface Fingerprint {
  tables: Record<string, number>;
  schemaHash: string;
}

export interface BackupRecord {
  file: string;
  runId?: number;
  createdAt: string;
  bytes: number;
  sha256?: string;
  plainBytes?: number;
  plainSha256?: string;
  sourcePath?: string;
  sourceBytes?: number;
  pageSize?: number;
  pageCount?: number;
  sqliteVersion?: string;
  mode?: string;
  integrity?: string;
  durationMs?: number;
  compression: string;
  encryption: string;
  fingerprint?: Fingerprint;
  recovered?: boolean;
  deletedAt?: string;
  /** What started the run that made it: retention keeps manual and scheduled backups as separate series. */
  trigger?: string;
  /** Journal mode of the source database (`wal`, `delete`, ...): a restore into a new file brings it back. */
  journalMode?: string;
  /** The artifact was decoded back to the recorded plain sha256 before it was published. */
  artifactChecked?: boolean;
}

export interface RunRecord {
  id: number;
  trigger: string;
  database: string;
  startedAt: string;
  endedAt?: string;
  status: string;
  stage?: string;
  error?: string;
  exitCode?: number;
  backupFile?: string;
  rotated?: number;
  durationMs?: number;
}

/** A run as the status page's chart draws it. */
export type RunPoint = Pick<RunRecord, 'id' | 'startedAt' | 'durationMs' | 'status'>;

/** A backup as the status page's chart draws it. */
export type BackupPoint = Pick<BackupRecord, 'file' | 'createdAt' | 'bytes' | 'deletedAt'>;

export interface UploadRecord {
  runId?: number;
  backupFile: string;
  destination: string;
  status: 'ok' | 'failed';
  remoteId?: string;
  link?: string;
  bytes?: number;
  durationMs?: number;
  attempts?: number;
  error?: string;
  at?: string;
}

export interface DeletionRecord {
  runId?: number;
  backupFile: string;
  destination: string;
  reasons?: string;
  status: 'ok' | 'failed';
  error?: string;
  at?: string;
}

export interface NotificationRecord {
  runId?: number;
  channel: string;
  event: string;
  status: 'ok' | 'failed';
  httpStatus?: number;
  error?: string;
  attempts: number;
  at?: string;
}

export interface VerificationRecord {
  backupFile: string;
  destination: string;
  /**
   * `failed`: the backup itself is bad (checksum, decoding, integrity, fingerprint). `error`: it could not be
   * read just now (network, permissions) — that says nothing about the backup.
   */
  status: 'ok' | 'failed' | 'error';
  error?: string;
  details?: unknown;
  at?: string;
}

export interface RestoreRecord {
  backupFile: string;
  source: string;
  target: string;
  safetyCopy?: string;
  status: 'ok' | 'failed';
  error?: string;
  at?: string;
}

export type HistoryEvent =
  | ({ kind: 'run' } & RunRecord)
  | ({ kind: 'upload'; id: number } & UploadRecord)
  | ({ kind: 'deletion'; id: number } & DeletionRecord)
  | ({ kind: 'notification'; id: number } & NotificationRecord)
  | ({ kind: 'verification'; id: number } & VerificationRecord)
  | ({ kind: 'restore'; id: number } & RestoreRecord);

type Row = Record<string, unknown>;

const now = () => new Date().toISOString();
const orNull = <T>(v: T | undefined): T | null => (v === undefined ? null : v);
const orUndef = <T>(v: T | null): T | undefined => (v === null ? undefined : v);

function camel(row: Row): Row {
  const out: Row = {};
  for (const [k, v] of Object.entries(row))
    out[k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())] = orUndef(v);
  return out;
}

/**
 * The activity log: one SQLite database per backup folder at `<backupDir>/.litekeep/catalog.db`.
 * A catalog that cannot be opened is moved aside and started afresh; the backup files stay the truth.
 */
export class Catalog {
  private constructor(
    private readonly db: Database.Database,
    readonly file: string,
    /** Set when the previous catalog was unreadable and this one starts empty. */
    readonly recreatedFrom?: string,
    /** True when this catalog was created just now (none existed, or a damaged one was replaced). */
    readonly isNew = false,
  ) {}

  static open(backupDir: string): Catalog {
    const dir = path.join(backupDir, CATALOG_DIR);
    makeDirsSync(dir, 0o700);
    const file = path.join(dir, CATALOG_FILE);
    const existed = fs.existsSync(file);
    try {
      return new Catalog(Catalog.openFile(file), file, undefined, !existed);
    } catch (error) {
      // Only a damaged file is replaced. A busy, unreadable or newer-schema catalog is someone else's to keep:
      // the caller falls back to a memory-only log and says so.
      const code = (error as { code?: string }).code ?? '';
      const damaged = /^SQLITE_(CORRUPT|NOTADB)/.test(code) || /quick_check/.test((error as Error).message);
      if (!existed || !damaged) throw error;
      // A damaged catalog must never stop a backup: keep it for inspection, start a new one.
      const aside = `${file}.unreadable-${Date.now()}`;
      fs.renameSync(file, aside);
      for (const suffix of ['-wal', '-shm']) fs.rmSync(file + suffix, { force: true });
      return new Catalog(Catalog.openFile(file), file, aside, true);
    }
  }

  /**
   * The catalog of a folder for looking only (dry runs, list, status): never created, migrated, moved or written.
   * An older schema is migrated in a memory copy; a missing or unreadable one reads as empty.
   */
  static openReadOnly(backupDir: string): Catalog {
    const file = path.join(backupDir, CATALOG_DIR, CATALOG_FILE);
    if (!fs.existsSync(file)) return Catalog.inMemory();
    let disk: Database.Database | undefined;
    try {
      disk = new Database(file, { readonly: true, fileMustExist: true, timeout: 10_000 });
      // A reader's page cache is the one memory cost that grows with the log (better-sqlite3's default is
      // 16 MB a connection): 2 MB holds what the bounded queries of status, /healthz and the page touch.
      disk.pragma(`cache_size = -${READ_CACHE_KIB}`);
      const version = disk.pragma('user_version', { simple: true }) as number;
      if (version === MIGRATIONS.length) return new Catalog(disk, file);
      if (version > MIGRATIONS.length) throw new Error(`catalog schema version ${version} is newer`);
      const copy = new Database(disk.serialize());
      disk.close();
      disk = undefined;
      for (let v = version; v < MIGRATIONS.length; v++) copy.exec(MIGRATIONS[v]);
      return new Catalog(copy, file);
    } catch {
      disk?.close();
      return Catalog.inMemory();
    }
  }

  /** A throwaway catalog for when the backup folder's catalog cannot be written at all. */
  static inMemory(): Catalog {
    return new Catalog(Catalog.openFile(':memory:'), ':memory:');
  }

  private static openFile(file: string): Database.Database {
    const db = new Database(file, { timeout: 10_000 });
    try {
      if (file !== ':memory:') fs.chmodSync(file, 0o600);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      const check = db.pragma('quick_check', { simple: true });
      if (check !== 'ok') throw new Error(`catalog quick_check: ${String(check)}`);
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > MIGRATIONS.length) {
        throw new Error(`catalog schema version ${version} is newer than this litekeep understands`);
      }
      for (let v = version; v < MIGRATIONS.length; v++) {
        db.transaction(() => {
          db.exec(MIGRATIONS[v]);
          db.pragma(`user_version = ${v + 1}`);
        })();
      }
      return db;
    } catch (error) {
      db.close();
      throw error;
    }
  }

  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  startRun(trigger: string, database: string, startedAt = now()): number {
    const info = this.db
      .prepare(`INSERT INTO runs (trigger, database, started_at, status, pid) VALUES (?, ?, ?, 'running', ?)`)
      .run(trigger, database, startedAt, process.pid);
    return Number(info.lastInsertRowid);
  }

  finishRun(
    id: number,
    result: {
      status: string;
      stage?: string;
      error?: string;
      exitCode: number;
      backupFile?: string;
      rotated?: number;
      durationMs?: number;
    },
  ): void {
    this.db
      .prepare(
        `UPDATE runs SET ended_at = ?, status = ?, stage = ?, error = ?, exit_code = ?, backup_file = ?,
         rotated = ?, duration_ms = ? WHERE id = ?`,
      )
      .run(
        now(),
        result.status,
        orNull(result.stage),
        orNull(result.error),
        result.exitCode,
        orNull(result.backupFile),
        orNull(result.rotated),
        orNull(result.durationMs),
        id,
      );
  }

  recordBackup(record: BackupRecord): void {
    this.db
      .prepare(
        `INSERT INTO backups (run_id, file, created_at, bytes, sha256, plain_bytes, plain_sha256, source_path,
           source_bytes, page_size, page_count, sqlite_version, mode, integrity, duration_ms, compression,
           encryption, fingerprint, recovered, deleted_at, trigger, journal_mode, artifact_checked)
         VALUES (@runId, @file, @createdAt, @bytes, @sha256, @plainBytes, @plainSha256, @sourcePath, @sourceBytes,
           @pageSize, @pageCount, @sqliteVersion, @mode, @integrity, @durationMs, @compression, @encryption,
           @fingerprint, @recovered, NULL, @trigger, @journalMode, @artifactChecked)
         ON CONFLICT(file) DO UPDATE SET run_id = excluded.run_id, created_at = excluded.created_at,
           bytes = excluded.bytes, sha256 = excluded.sha256, plain_bytes = excluded.plain_bytes,
           plain_sha256 = excluded.plain_sha256, source_path = excluded.source_path,
           source_bytes = excluded.source_bytes, page_size = excluded.page_size, page_count = excluded.page_count,
           sqlite_version = excluded.sqlite_version, mode = excluded.mode, integrity = excluded.integrity,
           duration_ms = excluded.duration_ms, compression = excluded.compression,
           encryption = excluded.encryption, fingerprint = excluded.fingerprint, recovered = excluded.recovered,
           deleted_at = NULL, trigger = excluded.trigger, journal_mode = excluded.journal_mode,
           artifact_checked = excluded.artifact_checked`,
      )
      .run({
        runId: orNull(record.runId),
        file: record.file,
        createdAt: record.createdAt,
        bytes: record.bytes,
        sha256: orNull(record.sha256),
        plainBytes: orNull(record.plainBytes),
        plainSha256: orNull(record.plainSha256),
        sourcePath: orNull(record.sourcePath),
        sourceBytes: orNull(record.sourceBytes),
        pageSize: orNull(record.pageSize),
        pageCount: orNull(record.pageCount),
        sqliteVersion: orNull(record.sqliteVersion),
        mode: orNull(record.mode),
        integrity: orNull(record.integrity),
        durationMs: orNull(record.durationMs),
        compression: record.compression,
        encryption: record.encryption,
        fingerprint: record.fingerprint ? JSON.stringify(record.fingerprint) : null,
        recovered: record.recovered ? 1 : 0,
        trigger: orNull(record.trigger),
        journalMode: orNull(record.journalMode),
        artifactChecked: record.artifactChecked ? 1 : 0,
      });
  }

  private toBackup(row: Row): BackupRecord {
    const r = camel(row) as unknown as BackupRecord & {
      fingerprint?: string;
      recovered?: number;
      artifactChecked?: number;
    };
    return {
      ...r,
      fingerprint: r.fingerprint ? (JSON.parse(r.fingerprint) as Fingerprint) : undefined,
      recovered: r.recovered === 1,
      artifactChecked: r.artifactChecked === 1,
    } as BackupRecord;
  }

  getBackup(file: string): BackupRecord | undefined {
    const row = this.db.prepare(`SELECT * FROM backups WHERE file = ?`).get(file) as Row | undefined;
    return row ? this.toBackup(row) : undefined;
  }

  /** Backups the catalog believes are on disk, newest first. */
  listBackups(options: { includeDeleted?: boolean } = {}): BackupRecord[] {
    const rows = this.db
      .prepare(
        `SELECT * FROM backups ${options.includeDeleted ? '' : 'WHERE deleted_at IS NULL'} ORDER BY created_at DESC, file DESC`,
      )
      .all() as Row[];
    return rows.map((row) => this.toBackup(row));
  }

  markBackupDeleted(file: string, at = now()): void {
    this.db.prepare(`UPDATE backups SET deleted_at = ? WHERE file = ?`).run(at, file);
  }

  recordUpload(record: UploadRecord): void {
    this.db
      .prepare(
        `INSERT INTO uploads (run_id, backup_file, destination, status, remote_id, link, bytes, duration_ms,
           attempts, error, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        orNull(record.runId),
        record.backupFile,
        record.destination,
        record.status,
        orNull(record.remoteId),
        orNull(record.link),
        orNull(record.bytes),
        orNull(record.durationMs),
        orNull(record.attempts),
        orNull(record.error),
        record.at ?? now(),
      );
  }

  /** The newest successful upload of a file to a destination. */
  lastUpload(backupFile: string, destination: string): UploadRecord | undefined {
    const row = this.db
      .prepare(
        `SELECT * FROM uploads WHERE backup_file = ? AND destination = ? AND status = 'ok' ORDER BY id DESC LIMIT 1`,
      )
      .get(backupFile, destination) as Row | undefined;
    return row ? (camel(row) as unknown as UploadRecord) : undefined;
  }

  listUploads(destination?: string): (UploadRecord & { id: number })[] {
    return this.rowsOf<UploadRecord>('uploads', destination);
  }

  /** Rows of a per-destination table (of one destination, or all), newest first. */
  private rowsOf<T>(table: 'uploads' | 'deletions', destination?: string): (T & { id: number })[] {
    const rows = (
      destination
        ? this.db.prepare(`SELECT * FROM ${table} WHERE destination = ? ORDER BY id DESC`).all(destination)
        : this.db.prepare(`SELECT * FROM ${table} ORDER BY id DESC`).all()
    ) as Row[];
    return rows.map((row) => camel(row) as unknown as T & { id: number });
  }

  /**
   * The files a destination holds as far as the log knows: uploaded there and not deleted there since (a
   * deletion at the same instant as the upload wins). Read from `held_copies`, which triggers keep as uploads
   * and deletions are recorded, so its cost is the number of copies held, not the length of the history.
   */
  heldOn(destination: string): string[] {
    return this.db
      .prepare(`SELECT backup_file FROM held_copies WHERE destination = ? ORDER BY backup_file`)
      .pluck()
      .all(destination) as string[];
  }

  /** The newest upload attempt to a destination, of any status or of one. */
  newestUpload(
    destination: string,
    status?: UploadRecord['status'],
  ): (UploadRecord & { id: number }) | undefined {
    const row = (
      status
        ? this.db
            .prepare(`SELECT * FROM uploads WHERE destination = ? AND status = ? ORDER BY id DESC LIMIT 1`)
            .get(destination, status)
        : this.db
            .prepare(`SELECT * FROM uploads WHERE destination = ? ORDER BY id DESC LIMIT 1`)
            .get(destination)
    ) as Row | undefined;
    return row ? (camel(row) as unknown as UploadRecord & { id: number }) : undefined;
  }

  /** Upload attempts recorded for a destination, by status. */
  uploadsByStatus(destination: string): Record<string, number> {
    const rows = this.db
      .prepare(`SELECT status, COUNT(*) AS n FROM uploads WHERE destination = ? GROUP BY status`)
      .all(destination) as { status: string; n: number }[];
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  }

  recordDeletion(record: DeletionRecord): void {
    this.db
      .prepare(
        `INSERT INTO deletions (run_id, backup_file, destination, reasons, status, error, at)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        orNull(record.runId),
        record.backupFile,
        record.destination,
        orNull(record.reasons),
        record.status,
        orNull(record.error),
        record.at ?? now(),
      );
  }

  /** Deletions from one destination (or all), newest first. */
  listDeletions(destination?: string): (DeletionRecord & { id: number })[] {
    return this.rowsOf<DeletionRecord>('deletions', destination);
  }

  recordNotification(record: NotificationRecord): void {
    this.db
      .prepare(
        `INSERT INTO notifications (run_id, channel, event, status, http_status, error, attempts, at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        orNull(record.runId),
        record.channel,
        record.event,
        record.status,
        orNull(record.httpStatus),
        orNull(record.error),
        record.attempts,
        record.at ?? now(),
      );
  }

  recordVerification(record: VerificationRecord): void {
    this.db
      .prepare(
        `INSERT INTO verifications (backup_file, destination, status, error, details, at) VALUES (?, ?, ?, ?, ?, ?)`,
      )
      .run(
        record.backupFile,
        record.destination,
        record.status,
        orNull(record.error),
        record.details === undefined ? null : JSON.stringify(record.details),
        record.at ?? now(),
      );
  }

  /**
   * The newest successful verification per destination. With `kept`, only of backups not removed from that
   * destination since: what `status` shows as proof, which a backup rotated away no longer is.
   */
  lastVerifications(options: { kept?: boolean } = {}): (VerificationRecord & { id: number })[] {
    const kept = options.kept
      ? `AND NOT EXISTS (SELECT 1 FROM deletions d WHERE d.status = 'ok'
           AND d.destination = v.destination AND d.backup_file = v.backup_file)`
      : '';
    const rows = this.db
      .prepare(
        `SELECT * FROM verifications WHERE id IN
           (SELECT MAX(v.id) FROM verifications v WHERE v.status = 'ok' ${kept} GROUP BY v.destination)`,
      )
      .all() as Row[];
    return rows.map((row) => camel(row) as unknown as VerificationRecord & { id: number });
  }

  /**
   * Every copy still there whose newest conclusive verification (`ok` or `failed`; an `error` is none) passed:
   * the proof the status page's "newest verified backup" is chosen from. A copy verified again and found bad no
   * longer counts. "Still there": a local backup not removed, or a copy a destination holds (`heldOn`). One
   * index probe per copy held, so its cost is the copies kept, not the number of verifications ever made.
   */
  verifiedCopies(): (VerificationRecord & { id: number })[] {
    const rows = this.db
      .prepare(
        `WITH copies (backup_file, destination) AS (
           SELECT file, 'local' FROM backups WHERE deleted_at IS NULL
           UNION SELECT backup_file, destination FROM held_copies)
         SELECT v.* FROM copies c JOIN verifications v ON v.id =
           (SELECT MAX(x.id) FROM verifications x WHERE x.backup_file = c.backup_file
              AND x.destination = c.destination AND x.status IN ('ok', 'failed'))
         WHERE v.status = 'ok'`,
      )
      .all() as Row[];
    return rows.map((row) => camel(row) as unknown as VerificationRecord & { id: number });
  }

  /**
   * The newest conclusive verification of each backup at one place (`local` or a destination name): `ok` or
   * `failed`. An `error` (could not be read) is no verdict and leaves the one before it standing.
   */
  verdicts(destination: string): Map<string, VerificationRecord> {
    const rows = this.db
      .prepare(
        `SELECT * FROM verifications WHERE id IN
           (SELECT MAX(id) FROM verifications WHERE destination = ? AND status IN ('ok', 'failed')
            GROUP BY backup_file)`,
      )
      .all(destination) as Row[];
    return new Map(
      rows.map((row) => {
        const record = camel(row) as unknown as VerificationRecord;
        return [record.backupFile, record];
      }),
    );
  }

  recordRestore(record: RestoreRecord): void {
    this.db
      .prepare(
        `INSERT INTO restores (backup_file, source, target, safety_copy, status, error, at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        record.backupFile,
        record.source,
        record.target,
        orNull(record.safetyCopy),
        record.status,
        orNull(record.error),
        record.at ?? now(),
      );
  }

  listRuns(limit = 50): RunRecord[] {
    const rows = this.db.prepare(`SELECT * FROM runs ORDER BY id DESC LIMIT ?`).all(limit) as Row[];
    return rows.map((row) => camel(row) as unknown as RunRecord);
  }

  /**
   * Runs started at or after `since` (ISO time), newest first, at most `limit`: the status page's chart. Only
   * the columns it draws, so a long window costs little.
   */
  runsSince(since: string, limit: number): RunPoint[] {
    const rows = this.db
      .prepare(
        `SELECT id, started_at, duration_ms, status FROM runs WHERE started_at >= ?
         ORDER BY started_at DESC, id DESC LIMIT ?`,
      )
      .all(since, limit) as { id: number; started_at: string; duration_ms: number | null; status: string }[];
    return rows.map((r) => ({
      id: r.id,
      startedAt: r.started_at,
      durationMs: orUndef(r.duration_ms),
      status: r.status,
    }));
  }

  /**
   * Backups made at or after `since` (ISO time), those removed since included, newest first, at most `limit`:
   * the sizes over time on the status page.
   */
  backupsSince(since: string, limit: number): BackupPoint[] {
    const rows = this.db
      .prepare(
        `SELECT file, created_at, bytes, deleted_at FROM backups WHERE created_at >= ?
         ORDER BY created_at DESC, file DESC LIMIT ?`,
      )
      .all(since, limit) as { file: string; created_at: string; bytes: number; deleted_at: string | null }[];
    return rows.map((r) => ({
      file: r.file,
      createdAt: r.created_at,
      bytes: r.bytes,
      deletedAt: orUndef(r.deleted_at),
    }));
  }

  lastRunWithStatus(statuses: string[]): RunRecord | undefined {
    const row = this.db
      .prepare(
        `SELECT * FROM runs WHERE status IN (${statuses.map(() => '?').join(',')}) ORDER BY id DESC LIMIT 1`,
      )
      .get(...statuses) as Row | undefined;
    return row ? (camel(row) as unknown as RunRecord) : undefined;
  }

  runsByStatus(): Record<string, number> {
    const rows = this.db.prepare(`SELECT status, COUNT(*) AS n FROM runs GROUP BY status`).all() as {
      status: string;
      n: number;
    }[];
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  }

  /** Everything that happened, newest first: runs, uploads, deletions, notifications, verifications, restores. */
  history(limit = 100): HistoryEvent[] {
    const events: HistoryEvent[] = [];
    const take = (sql: string, kind: HistoryEvent['kind']) => {
      for (const row of this.db.prepare(sql).all(limit) as Row[]) {
        const r = camel(row);
        events.push({ kind, ...r } as unknown as HistoryEvent);
      }
    };
    take(`SELECT * FROM runs ORDER BY id DESC LIMIT ?`, 'run');
    take(`SELECT * FROM uploads ORDER BY id DESC LIMIT ?`, 'upload');
    take(`SELECT * FROM deletions ORDER BY id DESC LIMIT ?`, 'deletion');
    take(`SELECT * FROM notifications ORDER BY id DESC LIMIT ?`, 'notification');
    take(`SELECT * FROM verifications ORDER BY id DESC LIMIT ?`, 'verification');
    take(`SELECT * FROM restores ORDER BY id DESC LIMIT ?`, 'restore');
    const at = (e: HistoryEvent) =>
      'startedAt' in e && e.kind === 'run' ? e.startedAt : (e as { at: string }).at;
    return events.sort((a, b) => (at(a) < at(b) ? 1 : at(a) > at(b) ? -1 : 0)).slice(0, limit);
  }
}
