import crypto from 'node:crypto';
import fs from 'node:fs';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';

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
  await pipeline(
    fs.createReadStream(file, { highWaterMark: 256 * 1024 }),
    async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) {
        hash.update(chunk);
        bytes += chunk.length;
      }
    },
  );
  return { sha256: hash.digest('hex'), bytes };
}
