import fs from 'node:fs/promises';
import { writeFileAtomic } from '../util/fs.js';
import { readHead } from '../util/held-files.js';
import { recordFingerprinted, type FingerprintedCommit, type WalEndFingerprint } from './fingerprint.js';
import type { CommitRef } from './plan.js';
import { encodeSegment, type SegmentMetadata } from './segment.js';
import {
  DEFAULT_READ_LIMIT,
  readCommitted,
  WAL_FRAME_HEADER_BYTES,
  type WalFrame,
  type WalPosition,
} from './wal.js';

/**
 * Follows one database's WAL and turns every committed transaction group into a segment, handed to a sink (a
 * destination, a local folder). The position is recorded only after the sink holds the segment, so a kill at
 * any moment ships a group again (under the same name) rather than skipping it.
 */

/** Where segments go. `put` must not report success before the segment is durable. */
export interface SegmentSink {
  put(name: string, bytes: Buffer): Promise<void>;
  /**
   * Whether a segment of that name is already stored (shipped by a pass that was killed before it recorded its
   * position): it holds the same frames, so it is kept as it is rather than written again.
   */
  has?(name: string): Promise<boolean>;
  /** The epoch a fresh start uses: one more than any segment stored (0 for none). */
  nextEpoch?(): Promise<number>;
}

export interface ShipperState {
  format: 1;
  /** The repository the position belongs to: a position is worth nothing for another one. */
  repository?: string;
  /** The fresh starts so far (see SegmentMetadata.epoch). */
  epoch: number;
  position: WalPosition | undefined;
  /**
   * When a gap (or a fresh start) was found that no base snapshot has covered yet: kept here, with the position,
   * so that a shipper killed before the base was taken takes it after its restart.
   */
  baseNeededSince?: number;
  /** Why: a gap (frames lost: moments in it cannot be recovered), or only a fresh start. */
  baseNeededFor?: 'start' | 'lost-frames';
  /** The last commit shipped: what a base snapshot taken now records as `shippedBefore`. */
  lastShipped: CommitRef | undefined;
  /** When that was (ms since the epoch), and what has been shipped since this state began (status, metrics). */
  lastShippedAt?: number;
  segmentsShipped?: number;
  bytesShipped?: number;
  /** Gaps found (frames lost to a checkpoint litekeep did not see): all of them, and when the newest were. */
  gapsTotal?: number;
  recentGaps?: number[];
  /** When the base that covered the last gap or fresh start was written: recovery is whole from then on. */
  wholeSince?: number;
  /**
   * The replication mode the position was last recorded in: a WAL reset is trusted as whole (cooperative mode)
   * only when the position was reached under litekeep's own checkpoints.
   */
  mode?: 'follow' | 'cooperative';
}

/** How many gap times a state keeps (status lists them; the total is counted apart). */
const RECENT_GAPS = 20;

export interface ShipResult {
  segments: string[];
  frames: number;
  bytes: number;
  /** Frames may have been lost since the last pass (a reset litekeep could not prove whole, or a first start). */
  gap?: 'start' | 'lost-frames';
  /** Commits shipped with a fingerprint (src/pitr/fingerprint.ts). */
  fingerprinted?: FingerprintedCommit[];
}

export interface ShipperOptions {
  database: string;
  host: string;
  /** The database file; its `-wal` is followed. */
  databasePath: string;
  /** JSON file holding the position between runs (private, written atomically). */
  stateFile: string;
  sink: SegmentSink;
  /** Compression and encryption of a segment, applied before the sink sees it. */
  seal?: (segment: Buffer) => Promise<Buffer>;
  now?: () => number;
  /** Bytes of frames per segment at most (a large transaction group spans several). */
  segmentBytes?: number;
  /** The repository the segments go to: a state recorded for another one is ignored (a fresh start). */
  repository?: string;
  /**
   * Cooperative mode: whether litekeep's checkpoints are the only ones (asked before every read; false once
   * the app was seen checkpointing). Unset: follow mode.
   */
  cooperative?: () => boolean;
}

/** A segment's name: in shipping order when sorted, and the same for the same frames when shipped again. */
export function segmentName(
  m: Pick<SegmentMetadata, 'epoch' | 'generation' | 'firstFrame' | 'lastFrame'>,
): string {
  const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');
  return `${hex(m.epoch, 8)}-${hex(m.generation.checkpointSequence, 8)}-${hex(m.generation.salt1, 8)}-${hex(m.firstFrame, 8)}-${hex(m.lastFrame, 8)}.lkwal`;
}

const SEGMENT_NAME = /^([0-9a-f]{8})-([0-9a-f]{8})-([0-9a-f]{8})-([0-9a-f]{8})-([0-9a-f]{8})\.lkwal$/;

/** What a segment's name says (epoch, checkpoint sequence, salt-1, frames), or undefined for another name. */
export function parseSegmentName(
  name: string,
):
  | { epoch: number; checkpointSequence: number; salt1: number; firstFrame: number; lastFrame: number }
  | undefined {
  const m = SEGMENT_NAME.exec(name);
  if (!m) return undefined;
  const [epoch, checkpointSequence, salt1, firstFrame, lastFrame] = m.slice(1).map((h) => parseInt(h, 16));
  return { epoch, checkpointSequence, salt1, firstFrame, lastFrame };
}

export class ReplicationError extends Error {
  override name = 'ReplicationError';
}

/** Checks that the database exists and is in WAL mode (byte 18 of its header is 2): only then is there a WAL. */
export async function assertWalMode(databasePath: string): Promise<void> {
  let head: Buffer | undefined;
  let failure = 'ENOENT';
  try {
    // Through the descriptor litekeep's own connections hold, if any (src/util/held-files.ts): closing another
    // would drop their locks.
    head = readHead(databasePath, 100);
  } catch (error) {
    failure = (error as NodeJS.ErrnoException).code ?? String(error);
  }
  if (!head) throw new ReplicationError(`cannot read ${databasePath} (${failure}); check the database path`);
  if (!head.subarray(0, 16).equals(Buffer.from('SQLite format 3\0', 'latin1'))) {
    throw new ReplicationError(`${databasePath} is not a SQLite database; check the database path`);
  }
  if (head[18] !== 2) {
    throw new ReplicationError(
      `${databasePath} is not in WAL mode, so there is no WAL to ship; switch it with PRAGMA journal_mode=WAL (the app keeps it)`,
    );
  }
}

/** Frames read ahead and waiting for a pass to ship them as a segment. */
interface PendingSegment {
  epoch: number;
  pageSize: number;
  generation: SegmentMetadata['generation'];
  after: SegmentMetadata['after'];
  previous?: SegmentMetadata['previous'];
  startChecksum: SegmentMetadata['startChecksum'];
  frames: WalFrame[];
  /** When litekeep read each commit frame (its `seenAt`). */
  commitTimes: number[];
  bytes: number;
  /** The position after it (what the state records once it is shipped). */
  next: WalPosition;
  gap?: ShipResult['gap'];
}

export class WalShipper {
  private state: ShipperState | undefined;
  private readonly pending: PendingSegment[] = [];
  /** Fingerprints taken from the live database, waiting for the segment that ships their commit. */
  private fingerprints: WalEndFingerprint[] = [];
  /** When the shipper last got something done (a read of the WAL, a segment stored): a stalled pass stops it. */
  progressAt = 0;

  constructor(private readonly options: ShipperOptions) {}

  private async loadState(): Promise<ShipperState> {
    if (this.state) return this.state;
    const saved = await readShipperState(this.options.stateFile);
    // No position, or one for another repository: a fresh start (a gap), in an epoch after every stored one.
    if (!saved?.position || saved.repository !== this.options.repository) {
      this.state = {
        format: 1,
        repository: this.options.repository,
        epoch: (await this.options.sink.nextEpoch?.()) ?? (saved ? saved.epoch + 1 : 0),
        position: undefined,
        lastShipped: undefined,
      };
    } else this.state = saved;
    return this.state;
  }

  /** The last commit shipped (for a base snapshot's `shippedBefore`). */
  async lastShipped(): Promise<CommitRef | undefined> {
    return (await this.loadState()).lastShipped;
  }

  /** The base snapshot owed (since when, and whether for a gap or a fresh start), if one is. */
  async baseOwed(): Promise<{ since: number; gap: boolean } | undefined> {
    const state = await this.loadState();
    return state.baseNeededSince === undefined
      ? undefined
      : { since: state.baseNeededSince, gap: state.baseNeededFor === 'lost-frames' };
  }

  /**
   * A base snapshot whose capture began at `startedAt` was written (by `writtenAt`): it covers every gap found
   * before then, and recovery is whole again from `writtenAt` on.
   */
  async baseTaken(startedAt: number, writtenAt = Date.now()): Promise<void> {
    const state = await this.loadState();
    if (state.baseNeededSince === undefined || state.baseNeededSince > startedAt) return;
    delete state.baseNeededSince;
    delete state.baseNeededFor;
    state.wholeSince = writtenAt;
    await writeFileAtomic(this.options.stateFile, JSON.stringify(state));
  }

  /** Bytes of frames read ahead and not shipped yet (a pass ships them). */
  private get pendingBytes(): number {
    return this.pending.reduce((sum, p) => sum + p.bytes, 0);
  }

  /**
   * Reads what was committed since the last read into memory, without shipping it: an app that checkpoints
   * often resets its WAL many times a second, and every commit read before its frames are overwritten is a
   * commit saved from a gap. Reads that continue the one before are joined, so a pass ships one segment per
   * WAL generation (or per `segmentBytes`), however often it read. Reads stop at `segmentBytes` of pending
   * frames until a pass ships them; resolves with whether that cap is reached (ship now).
   */
  async readAhead(): Promise<boolean> {
    const state = await this.loadState();
    const walPath = `${this.options.databasePath}-wal`;
    const limit = this.options.segmentBytes ?? DEFAULT_READ_LIMIT;
    while (this.pendingBytes < limit) {
      const last = this.pending.at(-1);
      const cursor = last?.next ?? state.position;
      const read = await readCommitted(walPath, cursor, {
        limitBytes: this.options.segmentBytes,
        trustReset: state.mode === 'cooperative' && this.options.cooperative?.() === true,
      });
      this.progressAt = Date.now();
      if (read.frames.length === 0 || !read.header || !read.next) return false;
      const header = read.header;
      const now = (this.options.now ?? Date.now)();
      const bytes = read.frames.reduce((sum, f) => sum + f.page.length + WAL_FRAME_HEADER_BYTES, 0);
      const commits = read.frames.filter((f) => f.commitSize > 0).map(() => now);
      let after: SegmentMetadata['after'];
      let gap: ShipResult['gap'];
      if (!cursor) {
        after = 'start';
        gap = 'start';
        state.baseNeededSince ??= now;
        state.baseNeededFor ??= 'start';
      } else if (read.reset) {
        after = read.reset.lostFrames ? 'gap' : 'reset';
        if (read.reset.lostFrames) {
          gap = 'lost-frames';
          state.baseNeededSince ??= now;
          state.baseNeededFor = 'lost-frames';
          state.gapsTotal = (state.gapsTotal ?? 0) + 1;
          state.recentGaps = [...(state.recentGaps ?? []), now].slice(-RECENT_GAPS);
          // Recovery never crosses a gap; a new epoch also keeps the order if the WAL started its count over.
          state.epoch += 1;
        }
      } else after = 'continuation';
      const next = read.next;
      if (last && after === 'continuation' && last.bytes + bytes <= limit) {
        // The next frames of the same generation: one segment with the ones read before.
        last.frames.push(...read.frames);
        last.commitTimes.push(...commits);
        last.bytes += bytes;
        last.next = next;
        continue;
      }
      this.pending.push({
        epoch: state.epoch,
        pageSize: header.pageSize,
        generation: {
          salt1: header.salt1,
          salt2: header.salt2,
          checkpointSequence: header.checkpointSequence,
          bigEndianChecksum: header.bigEndianChecksum,
        },
        after,
        ...(after === 'reset'
          ? {
              previous: {
                salt1: cursor!.salt1,
                salt2: cursor!.salt2,
                lastFrame: cursor!.frame,
                endChecksum: cursor!.checksum,
              },
            }
          : {}),
        startChecksum: after === 'continuation' ? cursor!.checksum : header.checksum,
        frames: [...read.frames],
        commitTimes: commits,
        bytes,
        next,
        gap,
      });
    }
    return true;
  }

  /** The position shipped to (undefined before the first segment): what a fingerprint is due after. */
  async position(): Promise<WalPosition | undefined> {
    return (await this.loadState()).position;
  }

  /**
   * A fingerprint of the database after some commit not shipped yet: it goes into the segment that ships that
   * commit. One whose generation has moved on is dropped (its commit is shipped, or lost in a gap).
   */
  noteFingerprint(taken: WalEndFingerprint): void {
    this.fingerprints = [...this.fingerprints.slice(-3), taken];
  }

  /** The fingerprints of commits in `p`, taken off the waiting list, by commit frame. */
  private fingerprintsFor(p: PendingSegment): Map<number, WalEndFingerprint> {
    const found = new Map<number, WalEndFingerprint>();
    const commits = new Set(p.frames.filter((f) => f.commitSize > 0).map((f) => f.index));
    this.fingerprints = this.fingerprints.filter((f) => {
      const here = f.salt1 === p.generation.salt1 && f.salt2 === p.generation.salt2;
      if (here && commits.has(f.frame)) {
        found.set(f.frame, f);
        return false;
      }
      // Of this generation and beyond this segment: a later segment ships it. Of another: kept until the
      // generation it belongs to is reached or passed (at most four wait, oldest dropped first).
      return !here || f.frame > p.frames.at(-1)!.index;
    });
    return found;
  }

  /** The segment a pending read becomes: its name, plain bytes and the fingerprints it carries. */
  private encodePending(p: PendingSegment): {
    name: string;
    plain: Buffer;
    fingerprinted: Map<number, WalEndFingerprint>;
  } {
    const fingerprinted = this.fingerprintsFor(p);
    const plain = encodeSegment(
      {
        database: this.options.database,
        host: this.options.host,
        pageSize: p.pageSize,
        epoch: p.epoch,
        generation: p.generation,
        after: p.after,
        ...(p.previous ? { previous: p.previous } : {}),
      },
      p.startChecksum,
      p.frames,
      p.commitTimes,
      new Map([...fingerprinted].map(([frame, f]) => [frame, f.fingerprint])),
    );
    const name = segmentName({
      epoch: p.epoch,
      generation: p.generation,
      firstFrame: p.frames[0].index,
      lastFrame: p.frames.at(-1)!.index,
    });
    return { name, plain, fingerprinted };
  }

  /**
   * One pass: ships everything committed since the last pass (what was read ahead, then what is new), as one or
   * more segments. The position moves only after the sink holds each segment.
   */
  async shipOnce(): Promise<ShipResult> {
    const state = await this.loadState();
    const result: ShipResult = { segments: [], frames: 0, bytes: 0 };
    for (;;) {
      // What is committed while this pass ships waits for the next pass (or read-ahead): chasing a busy writer
      // here shipped a tiny segment every few milliseconds. Only a read that stopped at the cap goes on.
      const more = await this.readAhead();
      if (this.pending.length === 0) return result;
      while (this.pending.length) {
        const next = this.pending[0];
        if (next.gap === 'lost-frames' || (next.gap === 'start' && result.gap === undefined))
          result.gap = next.gap;
        const { name, plain, fingerprinted } = this.encodePending(next);
        // A segment already stored (shipped by a pass killed before it recorded that) is kept as it is, so a
        // fingerprint taken for it now is not in it: only what the stored bytes carry is indexed.
        const stored = await this.options.sink.has?.(name);
        if (!stored) {
          const sealed = this.options.seal ? await this.options.seal(plain) : plain;
          await this.options.sink.put(name, sealed);
          this.progressAt = Date.now();
          result.bytes += sealed.length;
          state.bytesShipped = (state.bytesShipped ?? 0) + sealed.length;
        }
        state.segmentsShipped = (state.segmentsShipped ?? 0) + 1;
        state.lastShippedAt = (this.options.now ?? Date.now)();
        state.position = next.next;
        state.mode = this.options.cooperative?.() ? 'cooperative' : 'follow';
        const { salt1, salt2, checkpointSequence } = next.generation;
        const commitAt = (frame: number): CommitRef => ({
          epoch: next.epoch,
          generation: { salt1, salt2, checkpointSequence },
          frame,
        });
        state.lastShipped = commitAt(next.next.frame);
        await writeFileAtomic(this.options.stateFile, JSON.stringify(state));
        this.pending.shift();
        result.segments.push(name);
        result.frames += next.frames.length;
        if (!stored && fingerprinted.size) {
          const commitTimes = new Map(
            next.frames.filter((f) => f.commitSize > 0).map((f, n) => [f.index, next.commitTimes[n]]),
          );
          const added = [...fingerprinted.keys()].map((frame) => ({
            commit: commitAt(frame),
            segment: name,
            seenAt: commitTimes.get(frame)!,
          }));
          // Only an index of where the fingerprints are (the segment holds them): losing it loses no data.
          await recordFingerprinted(this.options.stateFile, added).catch(() => undefined);
          (result.fingerprinted ??= []).push(...added);
        }
      }
      if (!more) return result;
    }
  }
}

/**
 * A shipper's saved state, or undefined when there is none or it cannot be read (a fresh start then). A state
 * written by a newer litekeep is refused rather than misread.
 */
export async function readShipperState(stateFile: string): Promise<ShipperState | undefined> {
  let text: string;
  try {
    text = await fs.readFile(stateFile, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ReplicationError(
      `cannot read ${stateFile} (${(error as NodeJS.ErrnoException).code ?? String(error)}); check its owner and mode`,
    );
  }
  let parsed: Partial<ShipperState>;
  try {
    parsed = JSON.parse(text) as Partial<ShipperState>;
  } catch {
    return undefined;
  }
  if (parsed.format !== 1)
    throw new ReplicationError(
      `${stateFile} was written by another litekeep version (format ${String(parsed.format)}); upgrade litekeep`,
    );
  return {
    format: 1,
    repository: parsed.repository,
    epoch: Number.isInteger(parsed.epoch) ? parsed.epoch! : 0,
    position: parsed.position,
    ...(typeof parsed.baseNeededSince === 'number' ? { baseNeededSince: parsed.baseNeededSince } : {}),
    ...(parsed.baseNeededFor === 'start' || parsed.baseNeededFor === 'lost-frames'
      ? { baseNeededFor: parsed.baseNeededFor }
      : {}),
    ...(typeof parsed.lastShippedAt === 'number' ? { lastShippedAt: parsed.lastShippedAt } : {}),
    segmentsShipped: Number.isInteger(parsed.segmentsShipped) ? parsed.segmentsShipped : 0,
    bytesShipped: Number.isInteger(parsed.bytesShipped) ? parsed.bytesShipped : 0,
    lastShipped: parsed.lastShipped,
    ...(Number.isInteger(parsed.gapsTotal) ? { gapsTotal: parsed.gapsTotal } : {}),
    ...(Array.isArray(parsed.recentGaps)
      ? { recentGaps: parsed.recentGaps.filter((t) => typeof t === 'number').slice(-RECENT_GAPS) }
      : {}),
    ...(typeof parsed.wholeSince === 'number' ? { wholeSince: parsed.wholeSince } : {}),
    ...(parsed.mode === 'follow' || parsed.mode === 'cooperative' ? { mode: parsed.mode } : {}),
  };
}

/** A folder as a sink: each segment written atomically (temp, fsync, rename), private to its owner. */
export function folderSink(
  dir: string,
): SegmentSink & { list(): Promise<string[]>; get(name: string): Promise<Buffer> } {
  const list = async () => {
    try {
      return (await fs.readdir(dir)).filter((n) => n.endsWith('.lkwal')).sort();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  };
  return {
    put: (name, bytes) => writeFileAtomic(`${dir}/${name}`, bytes),
    has: async (name) => (await list()).includes(name),
    nextEpoch: async () => nextEpochOf(await list()),
    list,
    get: (name) => fs.readFile(`${dir}/${name}`),
  };
}

/** One more than the highest epoch among these segment names; 0 when there is none. */
export function nextEpochOf(names: Iterable<string>): number {
  let next = 0;
  for (const name of names) {
    const parsed = parseSegmentName(name);
    if (parsed) next = Math.max(next, parsed.epoch + 1);
  }
  return next;
}
