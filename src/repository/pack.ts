import fsp from 'node:fs/promises';
import zstdBinding from 'zstd-napi/binding.js';
import {
  CHUNK_RECORD,
  encodeFooter,
  encodeTrailerOf,
  FormatError,
  ID_BYTES,
  PACK_FOOTER,
  PACK_MAGIC,
  decodeTrailer,
  type ChunkEntry,
  type ChunkKind,
  type PackContents,
  type SegmentEntry,
  writeChunkRecord,
} from './format.js';

export interface PackLimits {
  segmentChunks: number;
  segmentBytes: number;
  /** zstd level of the segments (default 3). */
  level?: number;
}

/** One compression context for every pack a process builds: a context holds a few MiB of native memory. */
let sharedContext: { level: number; cctx: InstanceType<typeof zstdBinding.CCtx> } | undefined;
function contextFor(level: number): InstanceType<typeof zstdBinding.CCtx> {
  if (sharedContext?.level !== level) {
    const cctx = new zstdBinding.CCtx();
    cctx.setParameter(zstdBinding.CParameter.compressionLevel, level);
    cctx.setParameter(zstdBinding.CParameter.checksumFlag, 1);
    sharedContext = { level, cctx };
  }
  return sharedContext.cctx;
}

/** A segment just closed by a streaming builder: its frame (valid until the next add) and its chunks. */
export interface ClosedSegment {
  n: number;
  frame: Buffer;
  plainLength: number;
  chunks: ChunkEntry[];
}

/**
 * Builds one plain pack: chunks go into the open segment; a full segment becomes one zstd frame (with its
 * content checksum). In memory (`finish`, for tests and small packs), or streaming: each frame is handed out
 * as soon as its segment closes (`takeSegment`) and the caller writes it away, so that a writer holds one
 * segment, not a pack of tens of MiB (and no buffer per segment either, which the garbage collector returned
 * late and the allocator not at all).
 */
export class PackBuilder {
  private readonly cctx: InstanceType<typeof zstdBinding.CCtx>;
  private readonly segments: SegmentEntry[] = [];
  /**
   * The chunk table so far, as the trailer holds it: no object per chunk (a pack holds thousands, and they
   * lived long enough to fill the old generation of the heap).
   */
  private table: Buffer;
  private chunks = 0;
  /** The open segment's plain bytes, copied in place: no buffer per chunk. */
  private stage: Buffer;
  /** In memory: magic, then the frames so far. Streaming: the last frame. */
  private body: Buffer;
  private openCount = 0;
  private openBytes = 0;
  private openFirstChunk = 0;
  private offset = PACK_MAGIC.length;
  private closed?: ClosedSegment;
  private finished = false;

  constructor(
    readonly kind: ChunkKind,
    private readonly limits: PackLimits,
    private readonly streaming = false,
    reuse?: { stage: Buffer; body: Buffer; table: Buffer },
  ) {
    this.cctx = contextFor(limits.level ?? 3);
    const bound = zstdBinding.compressBound(limits.segmentBytes);
    this.stage =
      reuse && reuse.stage.length >= limits.segmentBytes
        ? reuse.stage
        : Buffer.allocUnsafe(limits.segmentBytes);
    this.body =
      reuse && reuse.body.length >= bound
        ? reuse.body
        : Buffer.allocUnsafe(streaming ? bound : PACK_MAGIC.length + bound);
    this.table = reuse?.table ?? Buffer.allocUnsafe(limits.segmentChunks * CHUNK_RECORD * 16);
    if (!streaming) PACK_MAGIC.copy(this.body, 0);
  }

  get chunkCount(): number {
    return this.chunks;
  }

  /** Bytes of the pack so far, counting the open segment as if it did not compress. */
  get sizeEstimate(): number {
    return this.offset - PACK_MAGIC.length + this.openBytes;
  }

  add(id: Buffer, data: Buffer): void {
    if (this.finished) throw new Error('this pack is finished');
    if (
      this.openCount > 0 &&
      (this.openCount >= this.limits.segmentChunks || this.openBytes + data.length > this.limits.segmentBytes)
    )
      this.closeSegment();
    // A chunk bigger than a segment (a 64 KiB page with small segments) gets a segment of its own.
    if (data.length > this.stage.length) this.stage = Buffer.allocUnsafe(data.length);
    if ((this.chunks + 1) * CHUNK_RECORD > this.table.length) {
      const grown = Buffer.allocUnsafe(this.table.length * 2);
      this.table.copy(grown, 0, 0, this.chunks * CHUNK_RECORD);
      this.table = grown;
    }
    writeChunkRecord(
      this.table,
      this.chunks * CHUNK_RECORD,
      id,
      this.segments.length,
      this.openBytes,
      data.length,
    );
    this.chunks++;
    data.copy(this.stage, this.openBytes);
    this.openCount++;
    this.openBytes += data.length;
  }

  /** Streaming: the segment that the last add (or finishParts) closed, once; its frame is valid until the next add. */
  takeSegment(): ClosedSegment | undefined {
    const closed = this.closed;
    this.closed = undefined;
    return closed;
  }

  private closeSegment(): void {
    if (this.openCount === 0) return;
    if (this.closed) throw new Error('the last closed segment was not taken');
    const plain = this.stage.subarray(0, this.openBytes);
    const bound = zstdBinding.compressBound(plain.length);
    const at = this.streaming ? 0 : this.offset;
    if (this.body.length < at + bound) {
      // Grows by half again (in memory), or to this segment's bound (streaming, a chunk larger than a segment).
      const grown = Buffer.allocUnsafe(Math.max(at + bound, Math.ceil(this.body.length * 1.5)));
      this.body.copy(grown, 0, 0, at);
      this.body = grown;
    }
    const length = this.cctx.compress2(this.body.subarray(at, at + bound), plain);
    const n = this.segments.length;
    this.segments.push({ offset: this.offset, storedLength: length, plainLength: plain.length });
    if (this.streaming)
      this.closed = {
        n,
        frame: this.body.subarray(0, length),
        plainLength: plain.length,
        chunks: this.chunkEntries(this.openFirstChunk, this.chunks),
      };
    this.offset += length;
    this.openCount = 0;
    this.openBytes = 0;
    this.openFirstChunk = this.chunks;
  }

  /** Chunks `from` to `to` as objects, their ids views of the table (valid until the next add). */
  private chunkEntries(from: number, to: number): ChunkEntry[] {
    const out: ChunkEntry[] = [];
    for (let i = from; i < to; i++) {
      const at = i * CHUNK_RECORD;
      out.push({
        id: this.table.subarray(at, at + ID_BYTES),
        segment: this.table.readUInt32LE(at + ID_BYTES),
        offset: this.table.readUInt32LE(at + ID_BYTES + 4),
        length: this.table.readUInt32LE(at + ID_BYTES + 8),
      });
    }
    return out;
  }

  /**
   * Closes the last segment and returns the pack's remaining parts in order, and its trailer (kind, segment
   * table, chunk table). In memory: magic, segments, trailer, footer. Streaming: the trailer and footer (take
   * the last segment first). The parts are views of this builder's buffers: valid until they are handed on
   * (`buffers`).
   */
  finishParts(): { parts: Buffer[]; frames: Buffer[]; trailer: Buffer; chunkCount: number } {
    this.closeSegment();
    this.finished = true;
    const trailer = encodeTrailerOf(this.kind, this.segments, this.table, this.chunks);
    const footer = encodeFooter(trailer);
    if (this.streaming) return { parts: [trailer, footer], frames: [], trailer, chunkCount: this.chunks };
    const frames = this.segments.map((s) => this.body.subarray(s.offset, s.offset + s.storedLength));
    return {
      parts: [this.body.subarray(0, this.offset), trailer, footer],
      frames,
      trailer,
      chunkCount: this.chunks,
    };
  }

  /** The buffers, for the next pack of the same writer once this one's parts are written. */
  buffers(): { stage: Buffer; body: Buffer; table: Buffer } {
    return { stage: this.stage, body: this.body, table: this.table };
  }

  /** The finished plain pack in one buffer (tests, small packs). */
  finish(): { plain: Buffer; contents: PackContents } {
    if (this.streaming) throw new Error('a streaming pack has no finish(): write its segments as they close');
    const { parts, trailer } = this.finishParts();
    return { plain: Buffer.concat(parts), contents: decodeTrailer(trailer, this.offset, 'a new pack') };
  }
}

/** Random access to the bytes of a plain pack: in memory, or a file on disk. */
export interface PackBytes {
  readonly size: number;
  /** `length` bytes at `offset`; in `into` when given and big enough (valid until it is used again). */
  read(offset: number, length: number, into?: Buffer): Promise<Buffer>;
  close(): Promise<void>;
}

export function bufferBytes(buffer: Buffer): PackBytes {
  return {
    size: buffer.length,
    read: async (offset, length) => buffer.subarray(offset, offset + length),
    close: async () => {},
  };
}

export async function fileBytes(file: string): Promise<PackBytes> {
  return handleBytes(await fsp.open(file, 'r'));
}

/** Random access through an open file (closed by `close`). */
export async function handleBytes(handle: fsp.FileHandle): Promise<PackBytes> {
  const { size } = await handle.stat();
  return {
    size,
    async read(offset, length, into) {
      const out = into && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(out, done, length - done, offset + done);
        if (bytesRead === 0)
          throw new FormatError(`the pack file ends early (at ${offset + done} of ${size} bytes)`);
        done += bytesRead;
      }
      return out;
    },
    close: () => handle.close(),
  };
}

/**
 * Reads a plain pack's trailer (checked against its checksum) without reading its segments; with
 * `chunks: false` its chunk records are checked for length but not decoded (`chunks` is empty).
 */
export async function readPackContents(
  bytes: PackBytes,
  what: string,
  options: { chunks?: boolean } = {},
): Promise<PackContents> {
  if (bytes.size < PACK_MAGIC.length + PACK_FOOTER) throw new FormatError(`${what}: too short to be a pack`);
  const magic = await bytes.read(0, PACK_MAGIC.length);
  if (!magic.equals(PACK_MAGIC)) throw new FormatError(`${what}: not a litekeep pack (no LKPACK header)`);
  const footer = await bytes.read(bytes.size - PACK_FOOTER, PACK_FOOTER);
  const trailerLength = footer.readUInt32LE(0);
  const trailerStart = bytes.size - PACK_FOOTER - trailerLength;
  if (trailerStart < PACK_MAGIC.length) throw new FormatError(`${what}: its trailer length is impossible`);
  const trailer = await bytes.read(trailerStart, trailerLength);
  if (!encodeFooter(trailer).equals(footer))
    throw new FormatError(`${what}: its chunk table fails its checksum`);
  return decodeTrailer(trailer, trailerStart, what, options);
}

/**
 * One segment's plain bytes. The output size is the one the trailer records, checked against the frame's own
 * header before anything is allocated; zstd's content checksum catches a frame that decodes to other bytes.
 */
export async function readSegment(
  bytes: PackBytes,
  segment: SegmentEntry,
  what: string,
  into?: Buffer,
  frameInto?: Buffer,
): Promise<Buffer> {
  const frame = await bytes.read(segment.offset, segment.storedLength, frameInto);
  return decompressSegment(frame, segment.plainLength, what, into);
}

const dctx = new zstdBinding.DCtx();

/** Decompresses one segment, into `into` when it is big enough (a reader reuses one buffer per worker). */
export function decompressSegment(frame: Buffer, plainLength: number, what: string, into?: Buffer): Buffer {
  let declared: number | null;
  try {
    declared = zstdBinding.getFrameContentSize(frame);
  } catch {
    declared = null;
  }
  if (declared !== plainLength)
    throw new FormatError(`${what}: a segment is not the zstd frame its chunk table describes`);
  const out =
    into && into.length >= plainLength ? into.subarray(0, plainLength) : Buffer.allocUnsafe(plainLength);
  let produced: number;
  try {
    produced = dctx.decompress(out, frame);
  } catch (error) {
    throw new FormatError(`${what}: a segment is corrupt (${(error as Error).message})`);
  }
  if (produced !== plainLength) throw new FormatError(`${what}: a segment decodes to the wrong length`);
  return out;
}
