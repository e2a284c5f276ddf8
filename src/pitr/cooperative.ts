import os from 'node:os';
import Database from 'better-sqlite3';
import { holdOpen, isHeld, readHead } from '../util/held-files.js';

/**
 * Cooperative mode (`replicate.mode: cooperative`, docs/wal-segments.md): the app sets `wal_autocheckpoint=0`
 * and litekeep checkpoints, PASSIVE, only what it has shipped, so the WAL is never reset past a frame litekeep
 * has not read. Why this holds (SQLite's wal.c, https://www.sqlite.org/walformat.html):
 *
 * - A reader holds a read lock: lock i >= 1 with read mark aReadMark[i] <= its snapshot, or lock 0 when the
 *   whole WAL was already backfilled as it began (it then reads the database file only).
 * - A checkpoint never backfills past the mark of a read lock it cannot take (`mxSafeFrame = y`), and backfills
 *   nothing while anyone holds lock 0 (it needs lock 0 exclusively to write the database file).
 * - The WAL is reset only by a writer that began with nBackfill == mxFrame (everything backfilled) and then gets
 *   every read lock 1..N exclusively.
 *
 * So: a read transaction is begun (the pin: snapshot M); every destination is shipped up to the last commit in
 * the file, which is at or after M; then a PASSIVE checkpoint from a second connection backfills at most up to
 * M; then the read transaction ends. Every backfill is of shipped frames, and a reset needs everything
 * backfilled: no reset can ever drop a frame litekeep has not shipped, and a reset to the next generation means
 * the old one ended exactly where litekeep had shipped to. That inference is what `trustReset` gives the WAL
 * reader; it rests on the app keeping its side (no checkpoints of its own), so every pass also looks at the
 * wal-index for a backfill beyond what was shipped (the app checkpointing after all) and stops trusting it.
 *
 * Both connections stay open between passes: an open connection keeps the app's last close from checkpointing
 * everything and deleting the WAL. The read-write one is closed first, while the read-only one still holds the
 * database (a read-only connection never checkpoints on close), so litekeep's own close never checkpoints either.
 */

export interface CheckpointResult {
  /** SQLITE_BUSY: another checkpoint ran (nothing done). */
  busy: boolean;
  /** Frames in the WAL when the checkpoint began. */
  log: number;
  /** Frames backfilled into the database file (all of `log` when no reader held it back). */
  checkpointed: number;
}

export class CooperativeCheckpoints {
  private reader: Database.Database | undefined;
  private writer: Database.Database | undefined;
  private readonly holds: (() => void)[] = [];

  constructor(private readonly databasePath: string) {}

  private connections(): { reader: Database.Database; writer: Database.Database } {
    // The database's files are held open while these connections live, so that reading the wal-index beside
    // them never closes a descriptor of a file they hold locks on (src/util/held-files.ts); let go in close().
    const shm = `${this.databasePath}-shm`;
    if (!this.reader) this.holds.push(holdOpen(this.databasePath), holdOpen(shm));
    // timeout 0: never block the event loop in SQLite's busy handler; a busy moment is tried again next pass.
    this.reader ??= new Database(this.databasePath, { readonly: true, fileMustExist: true, timeout: 0 });
    this.writer ??= new Database(this.databasePath, { fileMustExist: true, timeout: 0 });
    // No -shm before the first connection made it: held from now on.
    if (!isHeld(shm)) this.holds.push(holdOpen(shm));
    return { reader: this.reader, writer: this.writer };
  }

  /** Begins the read transaction whose snapshot bounds the next checkpoint. */
  pin(): void {
    const { reader } = this.connections();
    if (reader.inTransaction) return;
    reader.exec('BEGIN');
    try {
      // A read transaction starts at its first read: this takes the read lock and its mark.
      reader.prepare('SELECT count(*) FROM sqlite_schema').get();
    } catch (error) {
      reader.exec('ROLLBACK');
      throw error;
    }
  }

  /** PASSIVE checkpoint from the second connection: never waits, never blocks the app, stops at the pin. */
  checkpoint(): CheckpointResult {
    const { writer } = this.connections();
    if (!this.reader?.inTransaction) throw new Error('a cooperative checkpoint runs only while pinned');
    const [row] = writer.pragma('wal_checkpoint(PASSIVE)') as {
      busy: number;
      log: number;
      checkpointed: number;
    }[];
    return { busy: row.busy !== 0, log: row.log, checkpointed: row.checkpointed };
  }

  /** Ends the read transaction (the app's next writer may then reset the WAL, if everything was backfilled). */
  unpin(): void {
    if (this.reader?.inTransaction) this.reader.exec('COMMIT');
  }

  close(): void {
    this.unpin();
    // The read-write connection first, while the read-only one keeps it from being the last (see above).
    this.writer?.close();
    this.writer = undefined;
    this.reader?.close();
    this.reader = undefined;
    for (const letGo of this.holds.splice(0)) letGo();
  }
}

/** What the wal-index (`-shm`) says of the current WAL generation: its salts, last frame and frames backfilled. */
export interface WalIndexState {
  salt1: number;
  salt2: number;
  mxFrame: number;
  nBackfill: number;
  /** Whether the header's two copies agree (a writer updating it leaves them different for a moment). */
  copiesAgree: boolean;
}

/**
 * Reads the first wal-index header and the checkpoint info from `<db>-shm` (walformat.html: 48-byte header
 * twice, then nBackfill; native byte order, the salts as in the WAL header). Undefined when there is none or it
 * is being rebuilt. Through the descriptor litekeep's own connections hold, when they exist: closing another
 * would drop their locks (src/util/held-files.ts).
 */
export function readWalIndexSync(databasePath: string): WalIndexState | undefined {
  let bytes: Buffer | undefined;
  try {
    bytes = readHead(`${databasePath}-shm`, 100);
  } catch {
    return undefined;
  }
  if (!bytes || bytes.length < 100) return undefined;
  // isInit (byte 12): a wal-index being rebuilt says nothing yet.
  if (bytes[12] !== 1) return undefined;
  const u32 = (offset: number) =>
    os.endianness() === 'LE' ? bytes.readUInt32LE(offset) : bytes.readUInt32BE(offset);
  return {
    mxFrame: u32(16),
    salt1: bytes.readUInt32BE(32),
    salt2: bytes.readUInt32BE(36),
    nBackfill: u32(96),
    copiesAgree: bytes.subarray(0, 48).equals(bytes.subarray(48, 96)),
  };
}

/** `readWalIndexSync`, for callers that await it. */
export async function readWalIndex(databasePath: string): Promise<WalIndexState | undefined> {
  return readWalIndexSync(databasePath);
}
