import fsp from 'node:fs/promises';
import { Compressor } from 'zstd-napi';
import zstdBinding from 'zstd-napi/binding.js';
import {
  encodeFooter,
  encodeTrailer,
  FormatError,
  PACK_FOOTER,
  PACK_MAGIC,
  decodeTrailer,
  type ChunkEntry,
  type ChunkKind,
  type PackContents,
  type SegmentEntry,
} from './format.js';

export interface PackLimits {
  segmentChunks: number;
  segmentBytes: number;
  /** zstd level of the segments (default 3). */
  level?: number;
}

/**
/** One compression context for every pack a process builds: a context holds a few MiB of native memory. */
let sharedCompressor: { level: number; compressor: Compressor } | undefined;
function compressorFor(level: number): Compressor {
  if (sharedCompressor?.level !== level) {
    const compressor = new Compressor();
    compressor.setParameters({ compressionLevel: level, checksumFlag: true });
    sharedCompressor = { level, compressor };
  }
  return sharedCompressor.compressor;
}

/**
 * Builds one plain pack in memory: chunks go into the open segment; a full segment becomes one zstd frame
 * (with its content checksum). Packs are a few MiB, so memory stays a few packs whatever the database size.
 */
export class PackBuilder {
  private readonly compressor: Compressor;
  private readonly frames: Buffer[] = [];
  private readonly segments: SegmentEntry[] = [];
  private readonly chunks: ChunkEntry[] = [];
  /** The open segment's plain bytes, copied in place: no buffer per chunk. */
  private stage: Buffer;
  private openCount = 0;
  private openBytes = 0;
  private offset = PACK_MAGIC.length;
  private framedBytes = 0;

  constructor(
    readonly kind: ChunkKind,
    private readonly limits: PackLimits,
  ) {
    this.compressor = compressorFor(limits.level ?? 3);
    this.stage = Buffer.allocUnsafe(limits.segmentBytes);
  }

  get chunkCount(): number {
    return this.chunks.length;
  }

  /** Bytes of the pack so far, counting the open segment as if it did not compress. */
  get sizeEstimate(): number {
    return this.framedBytes + this.openBytes;
  }

  add(id: Buffer, data: Buffer): void {
    if (
      this.openCount > 0 &&
      (this.openCount >= this.limits.segmentChunks || this.openBytes + data.length > this.limits.segmentBytes)
    )
      this.closeSegment();
    // A chunk bigger than a segment (a 64 KiB page with small segments) gets a segment of its own.
    if (data.length > this.stage.length) this.stage = Buffer.allocUnsafe(data.length);
    this.chunks.push({
      id: Buffer.from(id),
      segment: this.segments.length,
      offset: this.openBytes,
      length: data.length,
    });
    data.copy(this.stage, this.openBytes);
    this.openCount++;
    this.openBytes += data.length;
  }

  private closeSegment(): void {
    if (this.openCount === 0) return;
    const plain = this.stage.subarray(0, this.openBytes);
    const frame = this.compressor.compress(plain);
    this.segments.push({ offset: this.offset, storedLength: frame.length, plainLength: plain.length });
    this.frames.push(frame);
    this.offset += frame.length;
    this.framedBytes += frame.length;
    this.openCount = 0;
    this.openBytes = 0;
  }

  /** The finished plain pack as its parts in order (magic, segments, trailer, footer), and what it holds. */
  finishParts(): { parts: Buffer[]; frames: Buffer[]; contents: PackContents } {
    this.closeSegment();
    const contents: PackContents = { kind: this.kind, segments: this.segments, chunks: this.chunks };
    const trailer = encodeTrailer(contents);
    return {
      parts: [PACK_MAGIC, ...this.frames, trailer, encodeFooter(trailer)],
      frames: this.frames,
      contents,
    };
  }

  /** The finished plain pack in one buffer (tests, small packs). */
  finish(): { plain: Buffer; contents: PackContents } {
    const { parts, contents } = this.finishParts();
    return { plain: Buffer.concat(parts), contents };
  }
}

/** Random access to the bytes of a plain pack: in memory, or a file on disk. */
export interface PackBytes {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
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
  const handle = await fsp.open(file, 'r');
  const { size } = await handle.stat();
  return {
    size,
    async read(offset, length) {
      const out = Buffer.allocUnsafe(length);
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

/** Reads a plain pack's trailer (checked against its checksum) without reading its segments. */
export async function readPackContents(bytes: PackBytes, what: string): Promise<PackContents> {
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
  return decodeTrailer(trailer, trailerStart, what);
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
): Promise<Buffer> {
  const frame = await bytes.read(segment.offset, segment.storedLength);
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
