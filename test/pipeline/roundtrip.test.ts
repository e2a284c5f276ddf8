import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  generateIdentity,
  openArtifact,
  PlainBacklog,
  readIdentityFile,
  restoreArtifactToFile,
  sha256File,
  writeArtifact,
  type Compression,
} from '../../src/pipeline/index.js';
import { makeDatabase, sha256sum, tempDir } from './helpers.js';

let dir: string;
let db: string;
let dbSha: string;
let identity: string;
let recipient: string;

beforeAll(async () => {
  dir = tempDir();
  db = path.join(dir, 'source.db');
  makeDatabase(db, 3);
  dbSha = sha256sum(db);
  ({ recipient } = await generateIdentity(path.join(dir, 'key.txt')));
  [identity] = await readIdentityFile(path.join(dir, 'key.txt'));
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const compressions: Compression[] = ['none', 'gzip', 'zstd'];

describe('the decode check done while writing (PlainBacklog)', () => {
  const plain = crypto.randomBytes(300_000);
  const pieces = (buffer: Buffer, size: number) =>
    Array.from({ length: Math.ceil(buffer.length / size) }, (_, i) =>
      buffer.subarray(i * size, (i + 1) * size),
    );

  it('matches decoded bytes against the plain chunks whatever the chunk boundaries', () => {
    const backlog = new PlainBacklog();
    for (const chunk of pieces(plain, 65_536)) backlog.add(chunk);
    expect(pieces(plain, 131_072 - 7).every((chunk) => backlog.match(chunk))).toBe(true);
    expect(backlog.empty).toBe(true);
  });

  it('refuses one changed byte, bytes beyond the input, and output that stops short', () => {
    const flipped = Buffer.from(plain);
    flipped[123_456] ^= 0x01;
    const a = new PlainBacklog();
    a.add(plain);
    expect(pieces(flipped, 100_000).every((chunk) => a.match(chunk))).toBe(false);

    const b = new PlainBacklog();
    b.add(plain);
    expect(b.match(plain)).toBe(true);
    expect(b.match(Buffer.from([0]))).toBe(false);

    const c = new PlainBacklog();
    c.add(plain);
    expect(c.match(plain.subarray(0, plain.length - 1))).toBe(true);
    expect(c.empty).toBe(false);
  });

  it('an empty source decodes back to nothing, encrypted and compressed', async () => {
    const empty = path.join(dir, 'empty.bin');
    fs.writeFileSync(empty, '');
    const result = await writeArtifact(empty, path.join(dir, 'empty.bin.zst.age'), {
      compression: 'zstd',
      recipients: [recipient],
      checkDecodes: true,
    });
    expect(result).toMatchObject({ decodeChecked: true, plainBytes: 0 });
  });
});

describe('writeArtifact → restoreArtifactToFile round trip', () => {
  for (const compression of compressions) {
    for (const encrypted of [false, true]) {
      it(`${compression}${encrypted ? ' + age recipient' : ''}`, async () => {
        const out = path.join(dir, `rt-${compression}-${encrypted}.artifact`);
        const packed = compression !== 'none' || encrypted;
        const result = await writeArtifact(db, out, {
          compression,
          recipients: encrypted ? [recipient] : undefined,
          checkDecodes: packed,
        });
        expect(result.decodeChecked).toBe(packed);
        expect(result.plainSha256).toBe(dbSha);
        expect(result.plainBytes).toBe(fs.statSync(db).size);
        expect(result.sha256).toBe(sha256sum(out));
        expect(result.bytes).toBe(fs.statSync(out).size);
        expect(fs.statSync(out).mode & 0o777).toBe(0o600);
        if (compression !== 'none') expect(result.bytes).toBeLessThan(result.plainBytes * 0.7);
        if (compression === 'none' && !encrypted) expect(result.sha256).toBe(dbSha);

        const plain = path.join(dir, `rt-${compression}-${encrypted}.db`);
        const restored = await restoreArtifactToFile(out, plain, {
          compression,
          encrypted,
          identities: encrypted ? [identity] : undefined,
        });
        expect(restored).toEqual({ sha256: dbSha, bytes: result.plainBytes });
        expect(sha256sum(plain)).toBe(dbSha);
        expect(fs.statSync(plain).mode & 0o777).toBe(0o600);
      });
    }
  }

  it('zstd + passphrase (scrypt) round trip', async () => {
    const out = path.join(dir, 'pw.db.zst.age');
    const result = await writeArtifact(db, out, {
      compression: 'zstd',
      level: 5,
      passphrase: 'correct horse',
    });
    expect(fs.readFileSync(out).subarray(0, 40).toString()).toMatch(/^age-encryption\.org\/v1\n-> scrypt /);
    const restored = await restoreArtifactToFile(out, path.join(dir, 'pw.db'), {
      compression: 'zstd',
      encrypted: true,
      passphrase: 'correct horse',
    });
    expect(restored.sha256).toBe(dbSha);
    expect(result.plainSha256).toBe(dbSha);
  });

  it('encrypts to several recipients; each identity alone decrypts', async () => {
    const second = await generateIdentity(path.join(dir, 'key2.txt'));
    const [secondIdentity] = await readIdentityFile(path.join(dir, 'key2.txt'));
    const out = path.join(dir, 'multi.db.gz.age');
    await writeArtifact(db, out, {
      compression: 'gzip',
      level: 1,
      recipients: [recipient, second.recipient],
    });
    for (const id of [identity, secondIdentity]) {
      const plain = path.join(dir, `multi-${id.slice(-6)}.db`);
      const restored = await restoreArtifactToFile(out, plain, {
        compression: 'gzip',
        encrypted: true,
        identities: [id],
      });
      expect(restored.sha256).toBe(dbSha);
    }
  });

  // STREAM edge cases: an empty payload has one empty final chunk; an exact multiple of 64 KiB ends on a full
  // final chunk; one byte more adds a one-byte final chunk.
  for (const size of [0, 1, 65536, 65537, 3 * 65536]) {
    it(`encrypts and decrypts a ${size}-byte file exactly`, async () => {
      const src = path.join(dir, `edge-${size}.bin`);
      fs.writeFileSync(src, crypto.randomBytes(size));
      const out = `${src}.age`;
      const result = await writeArtifact(src, out, { compression: 'none', recipients: [recipient] });
      expect(result.plainBytes).toBe(size);
      const restored = await restoreArtifactToFile(out, `${src}.out`, {
        compression: 'none',
        encrypted: true,
        identities: [identity],
      });
      expect(restored.bytes).toBe(size);
      expect(fs.readFileSync(`${src}.out`).equals(fs.readFileSync(src))).toBe(true);
    });
  }

  it('reports progress up to the plain size', async () => {
    const seen: number[] = [];
    await writeArtifact(db, path.join(dir, 'progress.zst'), { compression: 'zstd' }, (n) => seen.push(n));
    expect(seen.length).toBeGreaterThan(1);
    expect(seen.at(-1)).toBe(fs.statSync(db).size);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
  });

  it('uses zstd worker threads when asked, with the same decoded result', async () => {
    const out = path.join(dir, 'threads.zst');
    await writeArtifact(db, out, { compression: 'zstd', threads: 2 });
    const restored = await restoreArtifactToFile(out, path.join(dir, 'threads.db'), {
      compression: 'zstd',
      encrypted: false,
    });
    expect(restored.sha256).toBe(dbSha);
  });

  // zstd on its worker thread takes input in 1 MiB buffers: sizes around that boundary, on the worker (threads
  // 1) and on the calling thread (threads 0), all read back by the decoder to the same bytes.
  for (const threads of [0, 1]) {
    for (const size of [0, 1, 2 ** 20 - 1, 2 ** 20, 2 ** 20 + 1, 3 * 2 ** 20 + 12345]) {
      it(`zstd with threads ${threads} round-trips a ${size}-byte file`, async () => {
        const src = path.join(dir, `zstd-${threads}-${size}.bin`);
        // Half random, half repetitive: some chunks shrink a lot, some not at all.
        const half = Math.floor(size / 2);
        fs.writeFileSync(
          src,
          Buffer.concat([crypto.randomBytes(half), Buffer.alloc(size - half, 'litekeep ')]),
        );
        const out = `${src}.zst`;
        const result = await writeArtifact(src, out, { compression: 'zstd', threads });
        expect(result.plainBytes).toBe(size);
        expect(result.bytes).toBe(fs.statSync(out).size);
        const restored = await restoreArtifactToFile(out, `${src}.out`, {
          compression: 'zstd',
          encrypted: false,
        });
        expect(restored.sha256).toBe(crypto.createHash('sha256').update(fs.readFileSync(src)).digest('hex'));
      });
    }
  }

  it('stops zstd on its worker on abort and removes the partial artifact', async () => {
    const src = path.join(dir, 'abort-zstd.bin');
    fs.writeFileSync(src, crypto.randomBytes(8 * 2 ** 20));
    const out = `${src}.zst`;
    const controller = new AbortController();
    const promise = writeArtifact(
      src,
      out,
      { compression: 'zstd', threads: 1 },
      () => controller.abort(),
      controller.signal,
    );
    await expect(promise).rejects.toThrow(/abort/i);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('stops on abort and removes the partial artifact', async () => {
    const out = path.join(dir, 'aborted.gz');
    const controller = new AbortController();
    const promise = writeArtifact(
      db,
      out,
      { compression: 'gzip', level: 9 },
      () => controller.abort(),
      controller.signal,
    );
    await expect(promise).rejects.toThrow(/abort/i);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('openArtifact decodes from any readable (here: 1-byte chunks of a small artifact)', async () => {
    const src = path.join(dir, 'small.txt');
    fs.writeFileSync(src, 'hello litekeep\n'.repeat(500));
    const out = `${src}.zst.age`;
    await writeArtifact(src, out, { compression: 'zstd', recipients: [recipient] });
    const bytes = fs.readFileSync(out);
    const oneByOne = Readable.from(
      (function* () {
        for (const b of bytes) yield Buffer.from([b]);
      })(),
    );
    const chunks: Buffer[] = [];
    for await (const chunk of await openArtifact(oneByOne, {
      compression: 'zstd',
      encrypted: true,
      identities: [identity],
    }))
      chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(fs.readFileSync(src))).toBe(true);
  });

  it('sha256File matches sha256sum', async () => {
    expect(await sha256File(db)).toEqual({ sha256: dbSha, bytes: fs.statSync(db).size });
  });
});
