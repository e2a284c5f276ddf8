import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { ArtifactMetadata } from '../../src/destinations/types.js';

/** A file of random bytes in `dir` with the metadata litekeep would record for it, as a backup to upload. */
export function randomArtifact(
  dir: string,
  bytes: number,
): { file: string; data: Buffer; metadata: ArtifactMetadata } {
  const data = crypto.randomBytes(bytes);
  const file = path.join(dir, `artifact-${crypto.randomUUID()}`);
  fs.writeFileSync(file, data, { mode: 0o600 });
  return {
    file,
    data,
    metadata: {
      sha256: crypto.createHash('sha256').update(data).digest('hex'),
      bytes,
      plainSha256: 'ab'.repeat(32),
      plainBytes: bytes * 3,
      sourceName: 'app',
      backupTime: '2026-03-01T03:00:00.000Z',
      compression: 'zstd',
      encryption: 'none',
      litekeepVersion: '0.1.0',
      host: 'web1',
      trigger: 'scheduled',
    },
  };
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Every file below a folder (hidden ones too), relative, sorted: what a server holds on its disk. */
export function tree(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[])
    .filter((f) => fs.statSync(path.join(dir, f)).isFile())
    .sort();
}

/** Polls a condition (bounded): for watching an upload arrive on a server's disk, or processes go away. */
export async function waitFor(
  condition: () => boolean,
  what = 'the upload to start',
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
