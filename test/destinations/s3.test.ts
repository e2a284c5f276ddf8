import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  S3Destination,
  multipartEtag,
  objectKey,
  uploadedChecksumMatches,
  type S3DestinationOptions,
} from '../../src/destinations/s3.js';
import type { ArtifactMetadata } from '../../src/destinations/types.js';
import { rawS3Client, startS3Server, type S3TestServer } from '../servers/s3-server.js';
import { startFaultProxy, type FaultProxy } from '../servers/s3-fault-proxy.js';

const MiB = 1024 * 1024;
let server: S3TestServer;
let work: string;
let raw: S3Client;
const destinations: S3Destination[] = [];

beforeAll(async () => {
  server = await startS3Server();
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'litekeep-s3-test-'));
  // An independent client, to see what the server holds without going through the code under test.
  raw = rawS3Client(server);
});

afterAll(async () => {
  for (const d of destinations) d.destroy();
  raw?.destroy();
  await server?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

function destination(overrides: Partial<S3DestinationOptions> = {}): S3Destination {
  const d = new S3Destination({
    bucket: server.bucket,
    prefix: 'hosts/alpha',
    databaseName: 'app',
    endpoint: server.endpoint,
    accessKeyId: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
    checksumMode: 'when-required',
    partSize: 5 * MiB,
    maxAttempts: 1,
    host: 'web1',
    ...overrides,
  });
  destinations.push(d);
  return d;
}

function artifact(name: string, bytes: number): { file: string; data: Buffer; metadata: ArtifactMetadata } {
  const data = crypto.randomBytes(bytes);
  const file = path.join(work, name);
  fs.writeFileSync(file, data);
  return {
    file,
    data,
    metadata: {
      sha256: crypto.createHash('sha256').update(data).digest('hex'),
      bytes,
      plainSha256: 'ab'.repeat(32),
      plainBytes: bytes * 3,
      sourceName: 'app – prod',
      backupTime: '2026-03-01T03:00:00.000Z',
      compression: 'zstd',
      encryption: 'age',
      litekeepVersion: '0.1.0',
    },
  };
}

/** What s3rver wrote to its disk for `key`: the bytes the server actually stored. */
function storedBytes(key: string): Buffer {
  return fs.readFileSync(path.join(server.dir, server.bucket, `${key}._S3rver_object`));
}

function storedExists(key: string): boolean {
  return fs.existsSync(path.join(server.dir, server.bucket, `${key}._S3rver_object`));
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

/** test/servers/s3-fault-proxy.ts in front of this file's s3rver, failing requests by `rule`. */
async function faultyProxy(rule: FaultProxy['rule']): Promise<FaultProxy> {
  const proxy = await startFaultProxy(server.endpoint);
  proxy.rule = rule;
  return proxy;
}

async function closedPort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

describe('objectKey', () => {
  it('joins prefix, database and name without leading or doubled slashes', () => {
    expect(objectKey('hosts/alpha', 'app', 'f.db')).toBe('hosts/alpha/app/f.db');
    expect(objectKey('', 'app', 'f.db')).toBe('app/f.db');
    expect(objectKey(undefined, 'app')).toBe('app/');
    expect(objectKey('/hosts//alpha/', 'app', 'f.db')).toBe('hosts/alpha/app/f.db');
  });
});

describe('uploadedChecksumMatches', () => {
  const parts = [crypto.randomBytes(100), crypto.randomBytes(50)];
  const partMd5s = parts.map((p) => crypto.createHash('md5').update(p).digest('hex'));
  const md5 = crypto.createHash('md5').update(Buffer.concat(parts)).digest('hex');
  const digests = { bytes: 150, sha256: '', md5, partMd5s };

  it('accepts the whole-object MD5 and the multipart form, rejects others', () => {
    const composite = crypto
      .createHash('md5')
      .update(Buffer.concat(partMd5s.map((h) => Buffer.from(h, 'hex'))))
      .digest('hex');
    expect(multipartEtag(partMd5s)).toBe(`${composite}-2`);
    expect(uploadedChecksumMatches(`"${md5}"`, digests)).toBe('match');
    expect(uploadedChecksumMatches(`"${composite}-2"`, digests)).toBe('match');
    expect(uploadedChecksumMatches(`"${composite}-3"`, digests)).toBe('mismatch');
    expect(uploadedChecksumMatches(`"${'0'.repeat(32)}"`, digests)).toBe('mismatch');
  });

  it('does not judge ETags that are not MD5s (SSE-KMS)', () => {
    expect(uploadedChecksumMatches(`"${'0'.repeat(32)}"`, digests, 'aws:kms')).toBe('unverifiable');
    expect(uploadedChecksumMatches(undefined, digests)).toBe('unverifiable');
  });
});

describe('S3Destination against s3rver', () => {
  it('uploads a file larger than the part size in parts, and the server stores every byte', async () => {
    const d = destination();
    const { file, data, metadata } = artifact('big.bin', 12 * MiB + 4321);
    const progress: number[] = [];
    const result = await d.put(file, 'backup-2026-03-01-030000.db.zst.age', metadata, {
      onProgress: (n) => progress.push(n),
    });
    expect(result.id).toBe('hosts/alpha/app/web1/backup-2026-03-01-030000.db.zst.age');
    expect(result.bytes).toBe(data.length);
    expect(progress.at(-1)).toBe(data.length);
    expect(sha256(storedBytes(result.id))).toBe(metadata.sha256);
    const downloaded = await readAll(await d.get((await d.stat('backup-2026-03-01-030000.db.zst.age'))!));
    expect(sha256(downloaded)).toBe(metadata.sha256);
  });

  it.each(['when-required', 'when-supported'] as const)(
    'uploads a small file in one PUT (checksumMode %s) with exact bytes',
    async (checksumMode) => {
      const d = destination({ checksumMode, databaseName: `small-${checksumMode}` });
      const { file, data, metadata } = artifact(`small-${checksumMode}.bin`, 1000);
      const result = await d.put(file, 'backup-2026-03-01-030000.db', metadata);
      expect(storedBytes(result.id).equals(data)).toBe(true);
      expect((await readAll(await d.get((await d.stat('backup-2026-03-01-030000.db'))!))).equals(data)).toBe(
        true,
      );
    },
  );

  it('round-trips litekeep metadata through x-amz-meta headers', async () => {
    const d = destination({ databaseName: 'meta' });
    const { file, metadata } = artifact('meta.bin', 2048);
    await d.put(file, 'backup-2026-03-02-030000.db.zst.age', metadata);
    const object = await d.stat('backup-2026-03-02-030000.db.zst.age');
    expect(object).toMatchObject({ name: 'backup-2026-03-02-030000.db.zst.age', bytes: 2048, metadata });
    const head = await raw.send(
      new HeadObjectCommand({
        Bucket: server.bucket,
        Key: 'hosts/alpha/meta/web1/backup-2026-03-02-030000.db.zst.age',
      }),
    );
    expect(head.Metadata?.['litekeep-sha256']).toBe(metadata.sha256);
    expect(head.Metadata?.['litekeep-backup-time']).toBe(metadata.backupTime);
  });

  it("lists every host's copies under <prefix>/<database>/<host>/ and the older flat ones, across pages", async () => {
    const d = destination({ databaseName: 'listed', listPageSize: 2 });
    const { file, metadata } = artifact('listed.bin', 300);
    const ours = [
      'backup-2026-03-01-030000.db',
      'backup-2026-03-02-030000-2.db.gz',
      'backup-2026-03-03-030000.db.zst',
    ];
    for (const name of ours) await d.put(file, name, { ...metadata, host: 'web1' });
    // Another machine sharing the prefix, and a copy from before host folders (its host in the metadata).
    await destination({ databaseName: 'listed', host: 'web 2' }).put(file, ours[0], {
      ...metadata,
      host: 'web 2',
    });
    await raw.send(
      new PutObjectCommand({
        Bucket: server.bucket,
        Key: 'hosts/alpha/listed/backup-2026-02-28-030000.db',
        Body: 'x',
        Metadata: { 'litekeep-host': 'web1', 'litekeep-sha256': 'cd'.repeat(32) },
      }),
    );
    const foreign = [
      'hosts/alpha/listed/notes.txt',
      'hosts/alpha/listed/backup-garbage.db',
      'hosts/alpha/listed/web1/sub/backup-2026-03-04-030000.db',
      'hosts/alpha/listedx/backup-2026-03-05-030000.db',
      'hosts/alpha/other/backup-2026-03-06-030000.db',
      'hosts/beta/listed/backup-2026-03-07-030000.db',
      'listed/backup-2026-03-08-030000.db',
    ];
    for (const Key of foreign)
      await raw.send(new PutObjectCommand({ Bucket: server.bucket, Key, Body: 'x' }));
    const listed = await d.list();
    const seen = listed.map((o) => `${o.host}:${o.id}${o.legacy ? ' (legacy)' : ''}`).sort();
    expect(seen).toEqual(
      [
        ...ours.map((n) => `web1:hosts/alpha/listed/web1/${n}`),
        `web 2:hosts/alpha/listed/web%202/${ours[0]}`,
        'web1:hosts/alpha/listed/backup-2026-02-28-030000.db (legacy)',
      ].sort(),
    );
    for (const o of listed.filter((o) => !o.legacy)) {
      expect(o.bytes).toBe(300);
      expect(o.metadata?.sha256).toBe(metadata.sha256);
    }
    // stat finds this host's copy, or the old flat one when it is this host's.
    expect((await d.stat(ours[0]))?.id).toBe(`hosts/alpha/listed/web1/${ours[0]}`);
    expect((await d.stat('backup-2026-02-28-030000.db'))?.legacy).toBe(true);
    expect(
      await destination({ databaseName: 'listed', host: 'web 2' }).stat('backup-2026-02-28-030000.db'),
    ).toBeUndefined();
  });

  it("never overwrites: the same bytes again are a success, other bytes under this host's name are refused", async () => {
    const d = destination({ databaseName: 'clash' });
    const { file, data, metadata } = artifact('clash.bin', 400);
    const first = await d.put(file, 'backup-2026-03-01-030000.db', metadata);
    const again = await d.put(file, 'backup-2026-03-01-030000.db', metadata);
    expect(again.id).toBe(first.id);
    // A second machine with the same host name and another database state.
    const other = artifact('clash-other.bin', 400);
    await expect(d.put(other.file, 'backup-2026-03-01-030000.db', other.metadata)).rejects.toThrow(
      /refused: s3:\/\/litekeep-test\/hosts\/alpha\/clash\/web1\/backup-2026-03-01-030000\.db already holds other bytes .*give each machine its own 'host'/,
    );
    expect(storedBytes(first.id).equals(data)).toBe(true);
    // Under another host name they live side by side.
    const second = await destination({ databaseName: 'clash', host: 'web2' }).put(
      other.file,
      'backup-2026-03-01-030000.db',
      other.metadata,
    );
    expect(second.id).toBe('hosts/alpha/clash/web2/backup-2026-03-01-030000.db');
    expect(storedBytes(first.id).equals(data)).toBe(true);
  });

  it("removes only this host's copies, by key", async () => {
    const d = destination({ databaseName: 'owners' });
    const { file, metadata } = artifact('owners.bin', 100);
    await d.put(file, 'backup-2026-03-01-030000.db', metadata);
    await destination({ databaseName: 'owners', host: 'web2' }).put(file, 'backup-2026-03-01-030000.db', {
      ...metadata,
      host: 'web2',
    });
    const theirs = (await d.list()).find((o) => o.host === 'web2')!;
    await expect(d.remove(theirs)).rejects.toThrow(/belongs to host 'web2'/);
    expect(storedExists(theirs.id)).toBe(true);
    const mine = (await d.list()).find((o) => o.host === 'web1')!;
    await d.remove(mine);
    expect(storedExists(mine.id)).toBe(false);
    expect((await d.list()).map((o) => o.host)).toEqual(['web2']);
  });

  it('lists an empty prefix as nothing, and keys without a prefix have no leading slash', async () => {
    const d = destination({ prefix: '', databaseName: 'bare' });
    expect(await d.list()).toEqual([]);
    const { file, metadata } = artifact('bare.bin', 10);
    const result = await d.put(file, 'backup-2026-03-01-030000.db', metadata);
    expect(result.id).toBe('bare/web1/backup-2026-03-01-030000.db');
    expect(storedExists('bare/web1/backup-2026-03-01-030000.db')).toBe(true);
    expect((await d.list()).map((o) => o.name)).toEqual(['backup-2026-03-01-030000.db']);
  });

  it('removes an object, after which stat is undefined and the server no longer holds it', async () => {
    const d = destination({ databaseName: 'removal' });
    const { file, metadata } = artifact('removal.bin', 500);
    const { id } = await d.put(file, 'backup-2026-03-01-030000.db', metadata);
    expect(storedExists(id)).toBe(true);
    await d.remove((await d.stat('backup-2026-03-01-030000.db'))!);
    expect(storedExists(id)).toBe(false);
    expect(await d.stat('backup-2026-03-01-030000.db')).toBeUndefined();
    await expect(
      d.remove({ name: 'notes.txt', id: 'hosts/alpha/removal/web1/notes.txt', bytes: 1 }),
    ).rejects.toThrow(/not a litekeep backup key/);
  });

  it('stat of a missing object is undefined; get of one names the key', async () => {
    const d = destination({ databaseName: 'missing' });
    expect(await d.stat('backup-2026-01-01-000000.db')).toBeUndefined();
    await expect(
      d.get({ name: 'backup-2026-01-01-000000.db', id: d.keyFor('backup-2026-01-01-000000.db'), bytes: 0 }),
    ).rejects.toThrow(
      /no backup named backup-2026-01-01-000000\.db at s3:\/\/litekeep-test\/hosts\/alpha\/missing\/web1\//,
    );
  });

  it('does not count an upload whose bytes disagree with the metadata, and leaves nothing behind', async () => {
    const d = destination({ databaseName: 'mismatch' });
    const { file, metadata } = artifact('mismatch.bin', 700);
    await expect(
      d.put(file, 'backup-2026-03-01-030000.db', { ...metadata, sha256: '00'.repeat(32) }),
    ).rejects.toThrow(/failed verification: .*sha256.*remote copy was removed/);
    expect(storedExists('hosts/alpha/mismatch/web1/backup-2026-03-01-030000.db')).toBe(false);
  });

  it('retries a part the server answers 503 to and one whose connection drops, and stores exact bytes', async () => {
    let failedWith503 = false;
    let dropped = false;
    const proxy = await faultyProxy((req) => {
      if (req.method !== 'PUT' || !req.url?.includes('partNumber=')) return 'pass';
      if (req.url.includes('partNumber=2') && !failedWith503) {
        failedWith503 = true;
        return 503;
      }
      if (req.url.includes('partNumber=3') && !dropped) {
        dropped = true;
        return 'destroy';
      }
      return 'pass';
    });
    try {
      const d = destination({
        endpoint: proxy.endpoint,
        databaseName: 'flaky',
        maxAttempts: 3,
        queueSize: 1,
      });
      const { file, data, metadata } = artifact('flaky.bin', 11 * MiB);
      const result = await d.put(file, 'backup-2026-03-01-030000.db', metadata);
      expect(failedWith503 && dropped).toBe(true);
      expect(proxy.seen.filter((r) => r.includes('partNumber=2'))).toHaveLength(2);
      expect(proxy.seen.filter((r) => r.includes('partNumber=3'))).toHaveLength(2);
      expect(storedBytes(result.id).equals(data)).toBe(true);
    } finally {
      await proxy.close();
    }
  });

  it('gives up with a one-line error when the server keeps failing, and counts nothing', async () => {
    const proxy = await faultyProxy((req) => (req.method === 'PUT' ? 500 : 'pass'));
    try {
      const d = destination({ endpoint: proxy.endpoint, databaseName: 'down', maxAttempts: 2 });
      const { file, metadata } = artifact('down.bin', 6 * MiB);
      const error = await d.put(file, 'backup-2026-03-01-030000.db', metadata).catch((e: Error) => e);
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toMatch(
        /^upload of backup-2026-03-01-030000\.db on s3 failed: SlowDown \(HTTP 500\) from http:\/\/127\.0\.0\.1:\d+ after retries: .*try again later/,
      );
      expect((error as Error).message.split('\n')).toHaveLength(1);
      expect(storedExists('hosts/alpha/down/web1/backup-2026-03-01-030000.db')).toBe(false);
      expect(await destination({ databaseName: 'down' }).list()).toEqual([]);
    } finally {
      await proxy.close();
    }
  });

  it('stops when the caller aborts, leaving nothing behind', async () => {
    const d = destination({ databaseName: 'aborted' });
    const { file, metadata } = artifact('aborted.bin', 6 * MiB);
    const controller = new AbortController();
    controller.abort();
    await expect(
      d.put(file, 'backup-2026-03-01-030000.db', metadata, { signal: controller.signal }),
    ).rejects.toThrow(/was cancelled/);
    expect(storedExists('hosts/alpha/aborted/web1/backup-2026-03-01-030000.db')).toBe(false);
  });

  it('names the missing bucket', async () => {
    const d = destination({ bucket: 'no-such-bucket' });
    const { file, metadata } = artifact('nobucket.bin', 100);
    await expect(d.list()).rejects.toThrow(
      /bucket 'no-such-bucket' does not exist at http:\/\/127\.0\.0\.1:\d+; create it/,
    );
    await expect(d.put(file, 'backup-2026-03-01-030000.db', metadata)).rejects.toThrow(
      /bucket 'no-such-bucket' does not exist/,
    );
  });

  it('names rejected credentials', async () => {
    const d = destination({ accessKeyId: 'WRONG', secretAccessKey: 'WRONG' });
    await expect(d.list()).rejects.toThrow(/InvalidAccessKeyId: the S3 credentials were rejected/);
  });

  it('fails quickly and names the endpoint when nothing listens there', async () => {
    const port = await closedPort();
    const d = destination({ endpoint: `http://127.0.0.1:${port}`, maxAttempts: 2 });
    const { file, metadata } = artifact('unreachable.bin', 100);
    const pattern = new RegExp(`cannot reach S3 endpoint http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)`);
    await expect(d.list()).rejects.toThrow(pattern);
    await expect(d.put(file, 'backup-2026-03-01-030000.db', metadata)).rejects.toThrow(pattern);
    const error = await d.list().catch((e: Error) => e);
    expect((error as Error).message.split('\n')).toHaveLength(1);
  });

  it('rejects bad options before any request', () => {
    expect(() => destination({ partSize: MiB })).toThrow(/partSize .* below the S3 minimum/);
    expect(() => destination({ accessKeyId: 'A', secretAccessKey: undefined })).toThrow(/both accessKeyId/);
    expect(() => destination({ bucket: 's3://x/y' })).toThrow(/bare bucket name/);
  });
});
