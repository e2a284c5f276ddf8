import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Fingerprint } from '../catalog/index.js';
import { fingerprintOf } from '../snapshot/inspect.js';
import { writeFileAtomic } from '../util/fs.js';
import { holdOpen, isHeld } from '../util/held-files.js';
import { readWalIndexSync, type WalIndexState } from './cooperative.js';
import type { CommitRef } from './plan.js';

/**
 * Fingerprints of commits as they are shipped (issue 15: verification drills compare a restore to a point in
 * time against what the database held at that point). Every `replicate.fingerprintEvery` the replicator reads
 * the live database's tables, row counts and schema inside one read transaction, and learns which commit
 * that transaction saw from the wal-index: the fingerprint then travels in the segment that ships the commit.
 *
 * Which commit a read transaction sees: it takes its snapshot from the wal-index header (mxFrame, the salts)
 * when it begins. That header is read before BEGIN and again once the transaction holds its snapshot; when both
 * reads agree (both copies of the header equal, same salts, same mxFrame), nothing was committed in between,
 * so the snapshot is exactly the commit ending at mxFrame. Otherwise it is tried again, a few times at most.
 *
 * The transaction lasts as long as counting rows and then shipping what was committed meanwhile take. While it
 * is open the app's checkpoints may not reset the WAL past it (its frames stay, nothing is lost; the WAL grows
 * for that moment, by what the app writes while the rows are counted), as during a base snapshot.
 */

export interface WalEndFingerprint {
  salt1: number;
  salt2: number;
  /** The commit frame the fingerprint was taken after. */
  frame: number;
  fingerprint: Fingerprint;
}

/** The last committed frame in the WAL now, from the wal-index, when both copies of its header agree. */
export function walIndexEnd(databasePath: string): WalIndexState | undefined {
  const state = readWalIndexSync(databasePath);
  return state?.copiesAgree ? state : undefined;
}

const sameHeader = (a: WalIndexState, b: WalIndexState) =>
  a.salt1 === b.salt1 && a.salt2 === b.salt2 && a.mxFrame === b.mxFrame;

/**
 * A read transaction pinned to the commit ending at the WAL's last commit frame: `fingerprint` counts the rows
 * as of that commit, `release` ends the transaction (and closes its connection).
 */
export interface WalEndPin {
  fingerprint(): WalEndFingerprint;
  release(): void;
}

/**
 * Begins a read transaction whose snapshot is exactly the commit at the WAL's last commit frame now, holding a
 * read mark so that no writer can reset the WAL until `release`; undefined when that cannot be had now (the
 * WAL empty, just reset or wholly checkpointed, commits racing every try, no wal-index).
 *
 * Why the mark matters: counting rows blocks the event loop (0.5–1.2 s for a 1 GiB database here), so litekeep
 * reads no frame meanwhile. With the mark held the app's WAL only grows; the caller reads ahead right after
 * pinning (a reset just before it left the old generation's tail in the file only until the new one overwrites
 * it), counts, ships what was committed meanwhile, then releases.
 */
export function pinWalEnd(databasePath: string, tries = 5): WalEndPin | undefined {
  // Held before the connection opens and let go after it closes: the header is read beside it (held-files.ts).
  const letGo = [holdOpen(databasePath), holdOpen(`${databasePath}-shm`)];
  const free = () => letGo.forEach((f) => f());
  if (!isHeld(`${databasePath}-shm`)) {
    free();
    return undefined;
  }
  let db: Database.Database;
  try {
    // timeout 0: never wait in SQLite's busy handler on the event loop; a busy moment is tried next time.
    db = new Database(databasePath, { readonly: true, fileMustExist: true, timeout: 0 });
  } catch (error) {
    free();
    throw error;
  }
  // A read-only connection never checkpoints or deletes the WAL when it closes.
  const release = () => {
    if (!db.open) return;
    try {
      if (db.inTransaction) db.exec('COMMIT');
    } finally {
      db.close();
      free();
    }
  };
  try {
    for (let i = 0; i < tries; i++) {
      const before = walIndexEnd(databasePath);
      if (!before || before.mxFrame === 0) break;
      db.exec('BEGIN');
      // A read transaction takes its snapshot at its first read.
      db.prepare('SELECT count(*) FROM sqlite_schema').get();
      const after = walIndexEnd(databasePath);
      // Everything backfilled: the transaction may hold read lock 0 (reading the database file only), which
      // does not keep the app from resetting the WAL. With nBackfill below mxFrame it holds a read mark.
      if (after && sameHeader(before, after) && after.nBackfill < after.mxFrame) {
        const { salt1, salt2, mxFrame: frame } = after;
        return { fingerprint: () => ({ salt1, salt2, frame, fingerprint: fingerprintOf(db) }), release };
      }
      db.exec('COMMIT');
    }
  } catch (error) {
    release();
    throw error;
  }
  release();
  return undefined;
}

/**
 * A commit shipped with a fingerprint: kept on the shipping machine (`<destination>.fingerprints.json` beside
 * the shipper's state) so that a drill knows which segment to read without reading them all. Only an index:
 * the fingerprint a drill compares with is the one read back from the segment, checked as every segment is.
 */
export interface FingerprintedCommit {
  commit: CommitRef;
  segment: string;
  seenAt: number;
}

/** How many fingerprinted commits the index keeps: six weeks at the default of one an hour (pitr keeps 7 days). */
const INDEX_ENTRIES = 1008;

export function fingerprintIndexFile(stateFile: string): string {
  return path.join(path.dirname(stateFile), `${path.basename(stateFile, '.json')}.fingerprints.json`);
}

/** The index's entries, oldest first; none when it is missing or unreadable (drills then have no points). */
export function readFingerprintIndex(stateFile: string): FingerprintedCommit[] {
  try {
    const parsed = JSON.parse(fs.readFileSync(fingerprintIndexFile(stateFile), 'utf8')) as {
      format?: number;
      commits?: FingerprintedCommit[];
    };
    if (parsed.format !== 1 || !Array.isArray(parsed.commits)) return [];
    return parsed.commits.filter(
      (c) =>
        typeof c?.segment === 'string' &&
        typeof c.seenAt === 'number' &&
        Number.isInteger(c.commit?.frame) &&
        Number.isInteger(c.commit?.epoch),
    );
  } catch {
    return [];
  }
}

export async function recordFingerprinted(stateFile: string, added: FingerprintedCommit[]): Promise<void> {
  if (added.length === 0) return;
  const commits = [...readFingerprintIndex(stateFile), ...added].slice(-INDEX_ENTRIES);
  await writeFileAtomic(fingerprintIndexFile(stateFile), JSON.stringify({ format: 1, commits }));
}
