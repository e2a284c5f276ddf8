import { createHash } from 'node:crypto';
import type { Fingerprint } from '../catalog/index.js';
import { walChecksum, type Checksum, type WalFrame } from './wal.js';

/**
 * A WAL segment: the committed frames litekeep read from one generation of a database's WAL in one go, with
 * when it saw each commit. Layout (docs/wal-segments.md), all integers big-endian:
 *
 *   "LKWALSEG"  u32 version  u32 metadata length  metadata (UTF-8 JSON)
 *   frames: u32 page number, u32 commit size (0 unless a commit frame), page (pageSize bytes)
 *   sha256 of everything before it (32 bytes)
 *
 * A reader checks the magic, the version, the sha256, the frame count and that SQLite's own checksum chain,
 * recomputed from the metadata's start over every frame, ends where the metadata says: a segment that passes
 * holds exactly the frames SQLite wrote.
 */

export const SEGMENT_MAGIC = Buffer.from('LKWALSEG', 'ascii');
export const SEGMENT_VERSION = 1;
const PREFIX_BYTES = SEGMENT_MAGIC.length + 8;
const FRAME_PREFIX_BYTES = 8;
const DIGEST_BYTES = 32;

export class SegmentError extends Error {
  override name = 'SegmentError';
}

export interface SegmentCommit {
  /** The commit frame's index in its WAL generation. */
  frame: number;
  /** The database's size in pages after this commit. */
  pages: number;
  /** When litekeep saw the commit (ms since the epoch): a commit happened at or before this time. */
  seenAt: number;
  /**
   * The database's fingerprint (tables, row counts, schema hash) right after this commit, read by litekeep from
   * the live database while shipping it (src/pitr/fingerprint.ts): what a verification drill of this very commit
   * must find. On a few commits only (`replicate.fingerprintEvery`); optional, so older segments read as before.
   */
  fingerprint?: Fingerprint;
}

export interface SegmentMetadata {
  database: string;
  host: string;
  pageSize: number;
  /**
   * Counts the shipper's fresh starts: 0 on the first, one more after every gap or lost position. Segments are
   * ordered by epoch first, because a WAL that was deleted and created again starts its checkpoint sequence over.
   */
  epoch: number;
  /** The WAL generation: salts and checkpoint sequence from its header. */
  generation: { salt1: number; salt2: number; checkpointSequence: number; bigEndianChecksum: boolean };
  /** First and last frame index (inclusive) within the generation. */
  firstFrame: number;
  lastFrame: number;
  /** The running checksum before the first frame and after the last. */
  startChecksum: Checksum;
  endChecksum: Checksum;
  commits: SegmentCommit[];
  /**
   * How it follows the segment before it: `continuation` (the next frames of the same generation), `reset` (the
   * first frames of a new generation, the old one proven read to its end), `gap` (frames may have been lost
   * before it: recovery cannot cross it), or `start` (the first segment shipped).
   */
  after: 'start' | 'continuation' | 'reset' | 'gap';
  /**
   * On a `reset` segment: where the generation before it ended (its salts, last frame and running checksum), so
   * that a reader proves it holds that generation to its very end before it crosses into this one.
   */
  previous?: { salt1: number; salt2: number; lastFrame: number; endChecksum: Checksum };
}

export interface Segment {
  metadata: SegmentMetadata;
  frames: WalFrame[];
}

/** Encodes committed frames (ending with a commit frame) as one segment. */
export function encodeSegment(
  base: Omit<SegmentMetadata, 'firstFrame' | 'lastFrame' | 'startChecksum' | 'endChecksum' | 'commits'>,
  startChecksum: Checksum,
  frames: WalFrame[],
  /** When litekeep saw the commits: one time for all, or one per commit frame in order. */
  seenAt: number | number[],
  /** Fingerprints taken right after some of these commits, by commit frame index. */
  fingerprints?: ReadonlyMap<number, Fingerprint>,
): Buffer {
  if (frames.length === 0) throw new SegmentError('a segment holds at least one frame');
  if (frames.at(-1)!.commitSize === 0) throw new SegmentError('a segment ends with a commit frame');
  const metadata: SegmentMetadata = {
    ...base,
    firstFrame: frames[0].index,
    lastFrame: frames.at(-1)!.index,
    startChecksum,
    endChecksum: frames.at(-1)!.checksum,
    commits: frames
      .filter((f) => f.commitSize > 0)
      .map((f, n) => {
        const fingerprint = fingerprints?.get(f.index);
        return {
          frame: f.index,
          pages: f.commitSize,
          seenAt: typeof seenAt === 'number' ? seenAt : seenAt[n],
          ...(fingerprint ? { fingerprint } : {}),
        };
      }),
  };
  const json = Buffer.from(JSON.stringify(metadata), 'utf8');
  const prefix = Buffer.alloc(PREFIX_BYTES);
  SEGMENT_MAGIC.copy(prefix, 0);
  prefix.writeUInt32BE(SEGMENT_VERSION, SEGMENT_MAGIC.length);
  prefix.writeUInt32BE(json.length, SEGMENT_MAGIC.length + 4);
  const parts: Buffer[] = [prefix, json];
  for (const frame of frames) {
    if (frame.page.length !== base.pageSize) throw new SegmentError(`frame ${frame.index} is not one page`);
    const head = Buffer.alloc(FRAME_PREFIX_BYTES);
    head.writeUInt32BE(frame.pageNumber, 0);
    head.writeUInt32BE(frame.commitSize, 4);
    parts.push(head, frame.page);
  }
  const body = Buffer.concat(parts);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

/** Decodes and checks a segment; `name` is what an error calls it. */
export function decodeSegment(bytes: Buffer, name: string): Segment {
  const fail = (why: string): never => {
    throw new SegmentError(`WAL segment ${name} ${why}`);
  };
  if (
    bytes.length < PREFIX_BYTES + DIGEST_BYTES ||
    !bytes.subarray(0, SEGMENT_MAGIC.length).equals(SEGMENT_MAGIC)
  ) {
    fail('is not a litekeep WAL segment');
  }
  const version = bytes.readUInt32BE(SEGMENT_MAGIC.length);
  if (version > SEGMENT_VERSION) {
    fail(
      `was written by a newer litekeep (segment format ${version}; this one reads ${SEGMENT_VERSION}): upgrade litekeep`,
    );
  }
  if (version !== SEGMENT_VERSION) fail(`has an unknown format version ${version}`);
  const body = bytes.subarray(0, bytes.length - DIGEST_BYTES);
  if (!createHash('sha256').update(body).digest().equals(bytes.subarray(body.length))) {
    fail('is damaged (its sha256 does not match)');
  }
  const jsonLength = bytes.readUInt32BE(SEGMENT_MAGIC.length + 4);
  if (PREFIX_BYTES + jsonLength > body.length) fail('is cut short');
  let metadata: SegmentMetadata;
  try {
    metadata = JSON.parse(
      body.subarray(PREFIX_BYTES, PREFIX_BYTES + jsonLength).toString('utf8'),
    ) as SegmentMetadata;
  } catch {
    return fail('has unreadable metadata');
  }
  const { pageSize, firstFrame, lastFrame } = metadata;
  const g = metadata.generation as Partial<SegmentMetadata['generation']> | undefined;
  if (
    !Number.isInteger(metadata.epoch) ||
    metadata.epoch < 0 ||
    ![512, 1024, 2048, 4096, 8192, 16384, 32768, 65536].includes(pageSize) ||
    !Number.isInteger(firstFrame) ||
    !Number.isInteger(lastFrame) ||
    typeof g !== 'object' ||
    ![g.salt1, g.salt2, g.checkpointSequence].every((v) => Number.isInteger(v)) ||
    !Array.isArray(metadata.commits) ||
    !metadata.commits.every((c) => c.fingerprint === undefined || isFingerprint(c.fingerprint)) ||
    !['start', 'continuation', 'reset', 'gap'].includes(metadata.after) ||
    (metadata.previous !== undefined &&
      !(
        typeof metadata.previous === 'object' &&
        [metadata.previous.salt1, metadata.previous.salt2, metadata.previous.lastFrame].every((v) =>
          Number.isInteger(v),
        ) &&
        Array.isArray(metadata.previous.endChecksum) &&
        metadata.previous.endChecksum.length === 2
      ))
  )
    fail('has incomplete or invalid metadata');
  const count = lastFrame - firstFrame + 1;
  const frameBytes = FRAME_PREFIX_BYTES + pageSize;
  if (!(count > 0) || body.length - PREFIX_BYTES - jsonLength !== count * frameBytes) {
    fail(`does not hold the ${count} frames its metadata names`);
  }
  const frames: WalFrame[] = [];
  let checksum: Checksum = metadata.startChecksum;
  const big = metadata.generation.bigEndianChecksum;
  for (let i = 0; i < count; i++) {
    const at = PREFIX_BYTES + jsonLength + i * frameBytes;
    const head = body.subarray(at, at + FRAME_PREFIX_BYTES);
    const page = body.subarray(at + FRAME_PREFIX_BYTES, at + frameBytes);
    checksum = walChecksum(page, big, walChecksum(head, big, checksum));
    frames.push({
      index: firstFrame + i,
      pageNumber: head.readUInt32BE(0),
      commitSize: head.readUInt32BE(4),
      page,
      checksum,
    });
  }
  if (checksum[0] !== metadata.endChecksum[0] || checksum[1] !== metadata.endChecksum[1]) {
    fail('does not hold the frames SQLite wrote (the WAL checksum chain does not end where it should)');
  }
  const commitFrames = frames.filter((f) => f.commitSize > 0).map((f) => f.index);
  if (
    frames.at(-1)!.commitSize === 0 ||
    commitFrames.join() !== metadata.commits.map((c) => c.frame).join()
  ) {
    fail('does not end with the commits its metadata names');
  }
  return { metadata, frames };
}

function isFingerprint(value: unknown): value is Fingerprint {
  const f = value as Partial<Fingerprint> | null;
  return (
    typeof f === 'object' &&
    f !== null &&
    typeof f.schemaHash === 'string' &&
    /^[0-9a-f]{64}$/.test(f.schemaHash) &&
    typeof f.tables === 'object' &&
    f.tables !== null &&
    Object.values(f.tables).every((n) => Number.isInteger(n) && (n as number) >= 0)
  );
}

/**
 * Whether `next` continues `previous` with no frame missing: the next frames of the same generation with the
 * chain carried over, or the first frames of the next generation after a proven end of the old one.
 */
export function continues(previous: SegmentMetadata, next: SegmentMetadata): boolean {
  const a = previous.generation;
  const b = next.generation;
  if (previous.epoch !== next.epoch) return false;
  if (a.salt1 === b.salt1 && a.salt2 === b.salt2) {
    return (
      next.after === 'continuation' &&
      next.firstFrame === previous.lastFrame + 1 &&
      next.startChecksum[0] === previous.endChecksum[0] &&
      next.startChecksum[1] === previous.endChecksum[1]
    );
  }
  return resetsFrom(next, a, previous.lastFrame, previous.endChecksum);
}

/**
 * Whether `next` is the first segment of the generation right after `generation`, which ended at `lastFrame`
 * (with that running checksum, when it is known): a reset segment records where the generation before it ended,
 * and without that proven end a lost tail segment would go unnoticed, so a reset is never crossed then.
 */
export function resetsFrom(
  next: SegmentMetadata,
  generation: { salt1: number; salt2: number; checkpointSequence: number },
  lastFrame: number,
  endChecksum?: Checksum,
): boolean {
  const end = next.previous;
  return (
    next.after === 'reset' &&
    next.firstFrame === 1 &&
    next.generation.checkpointSequence === (generation.checkpointSequence + 1) >>> 0 &&
    end !== undefined &&
    end.salt1 === generation.salt1 &&
    end.salt2 === generation.salt2 &&
    end.lastFrame === lastFrame &&
    (endChecksum === undefined ||
      (end.endChecksum[0] === endChecksum[0] && end.endChecksum[1] === endChecksum[1]))
  );
}
