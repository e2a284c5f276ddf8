import fs from 'node:fs/promises';

/**
 * Reading a live SQLite `-wal` file from outside the app, the way SQLite itself decides which frames count
 * (https://www.sqlite.org/fileformat2.html#walformat): a frame is valid only when its salts equal the header's
 * and the cumulative checksum over the header and every frame before it holds; only frames up to the last valid
 * commit frame are committed. Reading takes no lock and no read transaction, so the app's checkpoints run and
 * reset the WAL as they would without litekeep; a torn read (a frame being written) fails its checksum and is
 * simply read again next time.
 */

export const WAL_HEADER_BYTES = 32;
export const WAL_FRAME_HEADER_BYTES = 24;
const MAGIC_LITTLE_ENDIAN = 0x377f0682;
const MAGIC_BIG_ENDIAN = 0x377f0683;
const WAL_FORMAT_VERSION = 3007000;

export class WalFormatError extends Error {
  override name = 'WalFormatError';
  /** A header whose checksum fails is one being rewritten (a reset in progress), not a foreign file. */
  constructor(
    message: string,
    readonly torn = false,
  ) {
    super(message);
  }
}

/** Two 32-bit words, as SQLite keeps its running checksum. */
export type Checksum = readonly [number, number];

export interface WalHeader {
  /** Whether the checksums read the content as big-endian words (magic 0x377f0683). */
  bigEndianChecksum: boolean;
  pageSize: number;
  /** Incremented by every WAL reset: together with the salts, which generation of the file this is. */
  checkpointSequence: number;
  salt1: number;
  salt2: number;
  /** The checksum of the header's first 24 bytes: where the frames' running checksum starts. */
  checksum: Checksum;
}

/** Where reading stopped: the generation of the WAL and the running checksum after the last frame taken. */
export interface WalPosition {
  salt1: number;
  salt2: number;
  checkpointSequence: number;
  /** Frames already taken, counted from 1 like SQLite's mxFrame (0: none). */
  frame: number;
  checksum: Checksum;
}

export interface WalFrame {
  /** 1-based position in this generation of the WAL. */
  index: number;
  pageNumber: number;
  /** For a commit frame, the database's size in pages after the commit; 0 for the other frames. */
  commitSize: number;
  page: Buffer;
  /** The running checksum after this frame. */
  checksum: Checksum;
}

/** SQLite's WAL checksum (walChecksumBytes): pairs of 32-bit words, added with the running pair. */
export function walChecksum(bytes: Buffer, bigEndian: boolean, start: Checksum = [0, 0]): [number, number] {
  if (bytes.length % 8 !== 0)
    throw new WalFormatError(`a checksum covers a multiple of 8 bytes, not ${bytes.length}`);
  let s0 = start[0];
  let s1 = start[1];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const littleEndian = !bigEndian;
  for (let i = 0; i < bytes.length; i += 8) {
    s0 = (s0 + view.getUint32(i, littleEndian) + s1) >>> 0;
    s1 = (s1 + view.getUint32(i + 4, littleEndian) + s0) >>> 0;
  }
  return [s0, s1];
}

/** The WAL header, checked (magic, version, page size, its own checksum); undefined for an empty file. */
export function parseWalHeader(bytes: Buffer): WalHeader | undefined {
  if (bytes.length === 0) return undefined;
  if (bytes.length < WAL_HEADER_BYTES)
    throw new WalFormatError(`the WAL header is cut short (${bytes.length} bytes)`);
  const magic = bytes.readUInt32BE(0);
  if (magic !== MAGIC_LITTLE_ENDIAN && magic !== MAGIC_BIG_ENDIAN) {
    throw new WalFormatError(`not a SQLite WAL file (magic 0x${magic.toString(16)})`);
  }
  const version = bytes.readUInt32BE(4);
  if (version !== WAL_FORMAT_VERSION) throw new WalFormatError(`unknown WAL format version ${version}`);
  const pageSize = bytes.readUInt32BE(8);
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
    throw new WalFormatError(`impossible page size ${pageSize} in the WAL header`);
  }
  const bigEndianChecksum = magic === MAGIC_BIG_ENDIAN;
  const checksum = walChecksum(bytes.subarray(0, 24), bigEndianChecksum);
  if (checksum[0] !== bytes.readUInt32BE(24) || checksum[1] !== bytes.readUInt32BE(28)) {
    // SQLite treats such a file as empty: it is rewritten before the next frame is.
    throw new WalFormatError('the WAL header checksum does not hold', true);
  }
  return {
    bigEndianChecksum,
    pageSize,
    checkpointSequence: bytes.readUInt32BE(12),
    salt1: bytes.readUInt32BE(16),
    salt2: bytes.readUInt32BE(20),
    checksum,
  };
}

/** Byte offset of frame `index` (1-based) in a WAL of this page size. */
export function frameOffset(index: number, pageSize: number): number {
  return WAL_HEADER_BYTES + (index - 1) * (WAL_FRAME_HEADER_BYTES + pageSize);
}

/** The position before the first frame of a generation. */
export function startOf(header: WalHeader): WalPosition {
  return {
    salt1: header.salt1,
    salt2: header.salt2,
    checkpointSequence: header.checkpointSequence,
    frame: 0,
    checksum: header.checksum,
  };
}

export function sameGeneration(
  a: Pick<WalPosition, 'salt1' | 'salt2'>,
  b: Pick<WalPosition, 'salt1' | 'salt2'>,
) {
  return a.salt1 === b.salt1 && a.salt2 === b.salt2;
}

/**
 * Checks one frame (header + page, as read from the file) against the generation and the running checksum;
 * the frame with its new running checksum, or undefined when it is not a valid continuation.
 */
export function checkFrame(
  bytes: Buffer,
  index: number,
  position: Pick<WalPosition, 'salt1' | 'salt2' | 'checksum'>,
  bigEndianChecksum: boolean,
): WalFrame | undefined {
  if (bytes.length <= WAL_FRAME_HEADER_BYTES) return undefined;
  if (bytes.readUInt32BE(8) !== position.salt1 || bytes.readUInt32BE(12) !== position.salt2) return undefined;
  const pageNumber = bytes.readUInt32BE(0);
  if (pageNumber === 0) return undefined;
  let checksum = walChecksum(bytes.subarray(0, 8), bigEndianChecksum, position.checksum);
  checksum = walChecksum(bytes.subarray(WAL_FRAME_HEADER_BYTES), bigEndianChecksum, checksum);
  if (checksum[0] !== bytes.readUInt32BE(16) || checksum[1] !== bytes.readUInt32BE(20)) return undefined;
  return {
    index,
    pageNumber,
    commitSize: bytes.readUInt32BE(4),
    page: bytes.subarray(WAL_FRAME_HEADER_BYTES),
    checksum,
  };
}

export interface WalRead {
  header: WalHeader | undefined;
  /**
   * Committed frames after the position, in order, ending with a commit frame (empty when nothing new is
   * committed). Frames after the last commit frame are left for the next read: their transaction is open.
   */
  frames: WalFrame[];
  /** Where the next read continues (the position after the last commit frame taken). */
  next: WalPosition | undefined;
  /**
   * The WAL was reset since `from` (another generation). `lostFrames` says whether frames of the old
   * generation after `from` may have been lost: false only when the file proves the old generation ended there.
   */
  reset?: { lostFrames: boolean };
}

export interface ReadOptions {
  limitBytes?: number;
  /**
   * Cooperative mode (src/pitr/cooperative.ts): every backfill of the WAL since `from` was litekeep's own, of
   * frames it had shipped, so a reset to the very next generation ended the old one exactly at `from`.
   */
  trustReset?: boolean;
}

/** Reading stops after this many bytes of frames, so that one read never holds a whole large WAL in memory. */
export const DEFAULT_READ_LIMIT = 16 * 1024 * 1024;

/**
 * Reads the committed frames of the WAL at `walPath` after `from` (the start of the current generation when
 * `from` is undefined or of another generation). A missing or empty file reads as nothing new.
 */
export async function readCommitted(
  walPath: string,
  from: WalPosition | undefined,
  options: ReadOptions = {},
): Promise<WalRead> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(walPath, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      return { header: undefined, frames: [], next: from };
    throw error;
  }
  try {
    const head = Buffer.alloc(WAL_HEADER_BYTES);
    const { bytesRead } = await handle.read(head, 0, WAL_HEADER_BYTES, 0);
    if (bytesRead === 0) return { header: undefined, frames: [], next: from };
    let header: WalHeader | undefined;
    try {
      header = parseWalHeader(head.subarray(0, bytesRead));
    } catch (error) {
      // A header being rewritten (a reset in progress) reads as torn: nothing new until it is whole.
      if (error instanceof WalFormatError && error.torn) return { header: undefined, frames: [], next: from };
      throw error;
    }
    if (!header) return { header: undefined, frames: [], next: from };
    const limit = options.limitBytes ?? DEFAULT_READ_LIMIT;
    let reset: WalRead['reset'];
    let start = from;
    if (start && !sameGeneration(start, header)) {
      // The app's checkpoint reset the WAL. The old generation's frames after `from` are often still in the
      // file, beyond the new generation's: taken first, they make the reset whole.
      const old = await collectCommitted(handle, start, header.pageSize, header.bigEndianChecksum, limit);
      if (old.frames.length > 0) {
        const oldHeader = {
          ...header,
          salt1: start.salt1,
          salt2: start.salt2,
          checkpointSequence: start.checkpointSequence,
        };
        return { header: oldHeader, frames: old.frames, next: old.position };
      }
      const cooperative =
        options.trustReset === true &&
        start.frame > 0 &&
        header.checkpointSequence === (start.checkpointSequence + 1) >>> 0;
      reset = { lostFrames: !(cooperative || (await oldGenerationEndedAt(handle, header, start))) };
      start = undefined;
    }
    const { frames, position } = await collectCommitted(
      handle,
      start ?? startOf(header),
      header.pageSize,
      header.bigEndianChecksum,
      limit,
    );
    return { header, frames, next: position, ...(reset ? { reset } : {}) };
  } finally {
    await handle.close();
  }
}

/** The committed frames after `start` in its generation, up to about `limit` bytes, and where they end. */
async function collectCommitted(
  handle: fs.FileHandle,
  start: WalPosition,
  pageSize: number,
  bigEndianChecksum: boolean,
  limit: number,
): Promise<{ frames: WalFrame[]; position: WalPosition }> {
  const frameBytes = WAL_FRAME_HEADER_BYTES + pageSize;
  const frames: WalFrame[] = [];
  let pending: WalFrame[] = [];
  let position = start;
  let taken = 0;
  for (let index = start.frame + 1; ; index += 1) {
    const bytes = Buffer.alloc(frameBytes);
    const read = await handle.read(bytes, 0, frameBytes, frameOffset(index, pageSize));
    if (read.bytesRead < frameBytes) break;
    const last = pending.at(-1)?.checksum ?? position.checksum;
    const frame = checkFrame(bytes, index, { ...start, checksum: last }, bigEndianChecksum);
    if (!frame) break;
    pending.push(frame);
    if (frame.commitSize > 0) {
      frames.push(...pending);
      taken += pending.length * frameBytes;
      pending = [];
      position = { ...start, frame: frame.index, checksum: frame.checksum };
      if (taken >= limit) break;
    }
  }
  return { frames, position };
}

/**
 * Whether the file proves that the old generation had no committed frame after `from` (frame N). The file only
 * shrinks when it is truncated (a TRUNCATE checkpoint, journal_size_limit), and a new generation writes its own
 * salts from frame 1 on. So:
 * - slot N+1 inside the file, with neither generation's salts: the old generation never wrote it, and nothing
 *   truncated the file since (a regrown file holds only new frames): proven;
 * - slot N+1 with the old salts but not continuing the old chain: an unfinished write, never committed: proven;
 * - slot N+1 continuing the old chain: frames after N were there (committed or not): not proven;
 * - slot N+1 with the new salts: overwritten, unknown: not proven;
 * - slot N+1 beyond the end, slot N still holding the old generation's frame N: not truncated, and a file that
 *   never shrank would reach past N+1 had the old generation written it: proven. Otherwise not.
 * All of this only when the new generation is the very next one (its checkpoint sequence one more).
 */
async function oldGenerationEndedAt(
  handle: fs.FileHandle,
  header: WalHeader,
  from: WalPosition,
): Promise<boolean> {
  const frameBytes = WAL_FRAME_HEADER_BYTES + header.pageSize;
  const slotAt = async (index: number) => {
    const bytes = Buffer.alloc(frameBytes);
    const read = await handle.read(bytes, 0, frameBytes, frameOffset(index, header.pageSize));
    return read.bytesRead === frameBytes ? bytes : undefined;
  };
  // Every reset adds one to the sequence: more than one means whole generations came and went unread.
  if (header.checkpointSequence !== (from.checkpointSequence + 1) >>> 0) return false;
  const saltsOf = (bytes: Buffer) => ({ salt1: bytes.readUInt32BE(8), salt2: bytes.readUInt32BE(12) });
  const next = await slotAt(from.frame + 1);
  if (next) {
    const salts = saltsOf(next);
    if (sameGeneration(salts, header)) return false;
    if (!sameGeneration(salts, from)) return true;
    return checkFrame(next, from.frame + 1, from, header.bigEndianChecksum) === undefined;
  }
  if (from.frame === 0) return false;
  const last = await slotAt(from.frame);
  return last !== undefined && sameGeneration(saltsOf(last), from);
}

/**
 * The last commit of the WAL as it is now (generation and frame), reading it through in bounded pieces; undefined
 * when the WAL holds no commit.
 */
export async function walEnd(walPath: string): Promise<{ generation: WalHeader; frame: number } | undefined> {
  let position: WalPosition | undefined;
  let header: WalHeader | undefined;
  for (;;) {
    const read = await readCommitted(walPath, position);
    if (read.header && (!header || read.reset)) header = read.header;
    if (read.frames.length === 0) break;
    position = read.next;
  }
  return header && position && position.frame > 0 ? { generation: header, frame: position.frame } : undefined;
}
