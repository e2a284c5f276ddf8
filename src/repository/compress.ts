import { Compressor } from 'zstd-napi';
import zstdBinding from 'zstd-napi/binding.js';
import { FormatError } from './format.js';

const compressor = new Compressor();
compressor.setParameters({ compressionLevel: 3, checksumFlag: true });

/** One zstd frame with its content size and checksum: manifests and index files. */
export function zstdCompress(plain: Buffer): Buffer {
  return compressor.compress(plain);
}

/**
 * Decompresses one whole zstd frame whose declared size is at most `maxBytes`: a damaged or hostile object
 * cannot make a reader allocate more than that.
 */
export function zstdDecompressBounded(frame: Buffer, maxBytes: number, what: string): Buffer {
  let size: number | null;
  try {
    size = zstdBinding.getFrameContentSize(frame);
  } catch {
    size = null;
  }
  if (size === null || size > maxBytes) throw new FormatError(`${what}: is not a zstd frame litekeep wrote`);
  const out = Buffer.allocUnsafe(size);
  let produced: number;
  try {
    produced = new zstdBinding.DCtx().decompress(out, frame);
  } catch (error) {
    throw new FormatError(`${what}: is truncated or corrupt (${(error as Error).message})`);
  }
  if (produced !== size) throw new FormatError(`${what}: decodes to the wrong length`);
  return out;
}
