import crypto from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { DecompressStream } from 'zstd-napi';
import { createCompressor } from '../../src/pipeline/compression.js';

/**
 * The zstd thread compresses into one reused buffer; with zstd's own workers (threads > 1) output held back for
 * several chunks comes out at once and spills over that buffer (it does here with 2 and 4 threads: checked by
 * instrumenting the spill). Every path must give back the very bytes.
 */
function input(): Buffer[] {
  const parts: Buffer[] = [];
  // Random (incompressible), zeros (almost nothing out), and text-like runs, in pieces of odd sizes.
  for (let i = 0; i < 40; i++) {
    const size = 300_000 + ((i * 7919) % 900_000);
    if (i % 3 === 0) parts.push(crypto.randomBytes(size));
    else if (i % 3 === 1) parts.push(Buffer.alloc(size));
    else
      parts.push(Buffer.from('litekeep keeps sqlite safe '.repeat(Math.ceil(size / 27))).subarray(0, size));
  }
  return parts;
}

async function roundTrip(threads: number): Promise<{ in: string; out: string; bytes: number }> {
  const parts = input();
  const plain = crypto.createHash('sha256');
  for (const p of parts) plain.update(p);
  const restored = crypto.createHash('sha256');
  let bytes = 0;
  await pipeline(
    Readable.from(parts),
    createCompressor('zstd', 3, threads)!,
    new DecompressStream(),
    async function (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        restored.update(chunk);
        bytes += chunk.length;
      }
    },
  );
  return { in: plain.digest('hex'), out: restored.digest('hex'), bytes };
}

describe('zstd on its own thread', () => {
  for (const threads of [1, 2, 4])
    it(`gives back the same bytes with ${threads} thread(s)`, async () => {
      const r = await roundTrip(threads);
      expect(r.bytes).toBe(input().reduce((n, p) => n + p.length, 0));
      expect(r.out).toBe(r.in);
    });
});
