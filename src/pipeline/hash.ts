import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';

const PROGRESS_STEP = 1024 * 1024;

/** A pass-through that hashes and counts what flows through it; `sha256` is available once it has ended. */
export class Sha256Counter extends Transform {
  private readonly hash = crypto.createHash('sha256');
  private hex?: string;
  private count = 0;
  private lastReported = 0;
  private readonly onProgress?: (bytes: number) => void;

  constructor(onProgress?: (bytes: number) => void) {
    super();
    this.onProgress = onProgress;
  }

  /** Bytes seen so far (final once the stream has ended). */
  get bytes(): number {
    return this.count;
  }

  /** Hex sha256 of everything that passed; throws if read before the stream ended (a wiring bug). */
  get sha256(): string {
    if (this.hex === undefined) throw new Error('sha256 read before the stream ended');
    return this.hex;
  }

  /** `{ sha256, bytes }` of everything that passed; call once the stream has ended. */
  digest(): { sha256: string; bytes: number } {
    return { sha256: this.sha256, bytes: this.count };
  }

  get finished(): boolean {
    return this.hex !== undefined;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.count += chunk.length;
    // Reported per MiB rather than per chunk so that callers can log or update a gauge without throttling.
    if (this.onProgress && this.count - this.lastReported >= PROGRESS_STEP) {
      this.lastReported = this.count;
      this.onProgress(this.count);
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.hex = this.hash.digest('hex');
    if (this.onProgress && this.lastReported !== this.count) this.onProgress(this.count);
    callback();
  }
}

export function createSha256Counter(onProgress?: (bytes: number) => void): Sha256Counter {
  return new Sha256Counter(onProgress);
}

export async function sha256File(file: string): Promise<{ sha256: string; bytes: number }> {
  const hash = crypto.createHash('sha256');
  let bytes = 0;
  // One buffer for the whole file, not one per piece as a read stream allocates: hashing many packs or backups
  // in one run left the allocator holding memory it did not give back.
  const buffer = Buffer.allocUnsafe(256 * 1024);
  const handle = await fsp.open(file, 'r');
  try {
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      bytes += bytesRead;
    }
  } finally {
    await handle.close();
  }
  return { sha256: hash.digest('hex'), bytes };
}
