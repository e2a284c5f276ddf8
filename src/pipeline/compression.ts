import zlib from 'node:zlib';
import { Transform, type TransformCallback } from 'node:stream';
import { CompressStream } from 'zstd-napi';
import zstdBinding from 'zstd-napi/binding.js';
import type { Compression } from '../naming.js';
import { ArtifactOptionsError, CorruptArtifactError } from './errors.js';
import { PacedTransform } from './paced.js';
import { ZstdWorkerStream } from './zstd-worker.js';

export const DEFAULT_LEVEL: Record<Compression, number | undefined> = { none: undefined, gzip: 6, zstd: 3 };

const ZSTD_OUT_CHUNK = 128 * 1024;

export function validateCompression(compression: Compression, level?: number, threads?: number): void {
  if (compression !== 'none' && compression !== 'gzip' && compression !== 'zstd')
    throw new ArtifactOptionsError(`unknown compression "${String(compression)}"; use none, gzip or zstd`);
  if (level !== undefined) {
    if (!Number.isInteger(level))
      throw new ArtifactOptionsError(`compression level ${level} is not an integer`);
    if (compression === 'gzip' && (level < 1 || level > 9))
      throw new ArtifactOptionsError(`gzip level ${level} is out of range; use 1 (fast) to 9 (small)`);
    if (compression === 'zstd') {
      const min = Math.max(zstdBinding.minCLevel(), -7);
      const max = zstdBinding.maxCLevel();
      if (level < min || level > max || level === 0)
        throw new ArtifactOptionsError(`zstd level ${level} is out of range; use 1 (fast) to ${max} (small)`);
    }
  }
  if (threads !== undefined && (!Number.isInteger(threads) || threads < 0 || threads > 64))
    throw new ArtifactOptionsError(`compression threads ${threads} is out of range; use 0 to 64`);
}

/** The compressing stage, or undefined for `none`. */
export function createCompressor(
  compression: Compression,
  level?: number,
  threads?: number,
): Transform | undefined {
  validateCompression(compression, level, threads);
  if (compression === 'gzip') return zlib.createGzip({ level: level ?? 6, chunkSize: 64 * 1024 });
  // On a thread of its own (threads >= 1): the calling thread stays free to read, hash and encrypt. More than
  // one thread: zstd's own workers, under that one.
  if (compression === 'zstd' && threads && threads > 0)
    return new ZstdWorkerStream(level ?? 3, threads > 1 ? threads : 0);
  if (compression === 'zstd')
    return new CompressStream({
      compressionLevel: level ?? 3,
      // Without the frame checksum a corrupt-but-decodable block would restore as silently wrong pages.
      checksumFlag: true,
    });
  return undefined;
}

/**
 * The decompressing stages (none for `none`). zlib applies backpressure within a chunk by itself; its errors
 * go through translateDecompressionError.
 */
export function createDecompressor(compression: Compression): Transform[] {
  if (compression === 'gzip') return [new RequireInput('gzip'), zlib.createGunzip({ chunkSize: 64 * 1024 })];
  if (compression === 'zstd') return [new ZstdDecompress()];
  return [];
}

/**
 * zstd-napi's DecompressStream pushes the whole output of an input chunk at once; a run of zeros compresses
 * ~30000:1, so one 64 KiB chunk could become gigabytes in memory. This one waits for the reader.
 */
class ZstdDecompress extends PacedTransform {
  private readonly dctx = new zstdBinding.DCtx();
  private inFrame = false;
  private sawInput = false;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (chunk.length > 0) this.sawInput = true;
    this.decompress(chunk).then(
      () => callback(),
      (error: unknown) => callback(corrupt('zstd', error)),
    );
  }

  private async decompress(input: Buffer): Promise<void> {
    let src = input;
    for (;;) {
      const dst = Buffer.allocUnsafe(ZSTD_OUT_CHUNK);
      const [ret, produced, consumed] = this.dctx.decompressStream(dst, src);
      src = src.subarray(consumed);
      if (produced > 0 && !(await this.pushPaced(dst.subarray(0, produced)))) return;
      if (src.length === 0 && (produced < dst.length || ret === 0)) {
        this.inFrame = ret !== 0;
        return;
      }
    }
  }

  override _flush(callback: TransformCallback): void {
    if (!this.sawInput) callback(corrupt('zstd', new Error('the file is empty')));
    else if (this.inFrame) callback(corrupt('zstd', new Error('it ends in the middle of a frame')));
    else callback();
  }
}

/** zlib accepts zero bytes as an empty stream; an empty artifact is a lost one, not an empty database. */
class RequireInput extends Transform {
  private sawInput = false;
  constructor(private readonly format: string) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (chunk.length > 0) this.sawInput = true;
    callback(null, chunk);
  }
  override _flush(callback: TransformCallback): void {
    callback(this.sawInput ? null : corrupt(this.format, new Error('the file is empty')));
  }
}

/** Turns a zlib error into the one-line CorruptArtifactError; other errors (I/O, abort) pass unchanged. */
export function translateDecompressionError(compression: Compression, error: Error): Error {
  const code = (error as NodeJS.ErrnoException).code;
  if (compression === 'gzip' && typeof code === 'string' && code.startsWith('Z_'))
    return corrupt('gzip', error);
  return error;
}

function corrupt(format: string, error: unknown): CorruptArtifactError {
  const reason = error instanceof Error ? error.message : String(error);
  return new CorruptArtifactError(
    `the ${format} data is truncated or corrupt (${reason}); fetch the file again or restore another backup`,
    { cause: error },
  );
}
