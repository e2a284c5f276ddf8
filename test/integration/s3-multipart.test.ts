import os from 'node:os';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { AbortMultipartUploadCommand, CreateMultipartUploadCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAbandonedUpload } from '../../src/backup/offsite.js';
import { runCli, spawnCli } from '../helpers/cli.js';
import { makeRandomDatabase, tempDir } from '../helpers/db.js';
import { startGate, type Gate, type GateMatch, type GateRequest } from '../servers/gate.js';

/** This machine's folder on the bucket: copies are `<prefix>/<database>/<host>/<file>`. */
const HOST = encodeURIComponent(os.hostname());
import { rawS3Client, s3DestinationEntry, startS3Server, type S3TestServer } from '../servers/s3-server.js';

/** JSON read back from the CLI; the expectations below check its shape. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const MiB = 1024 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let s3: S3TestServer;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  s3 = await startS3Server();
});
afterAll(async () => {
  for (const f of cleanups.reverse()) await f();
  await s3?.close();
});

interface Workspace {
  dir: string;
  prefix: string;
  gate: Gate;
}

/**
 * A database of ~12 MB of random pages (three 5 MiB parts, uncompressed), backed up to the test S3 server
 * through a gate that can hold or drop answers and play a dead server.
 */
async function workspace(): Promise<Workspace> {
  const dir = tempDir('litekeep-mpu-');
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  makeRandomDatabase(path.join(dir, 'app.db'), 1500);
  const gate = await startGate(s3.endpoint);
  cleanups.push(() => gate.close());
  const prefix = `hosts/${path.basename(dir)}`;
  const config = {
    database: 'app.db',
    backupDir: 'backups',
    compression: { algorithm: 'none' },
    retention: { last: 10 },
    destinations: [s3DestinationEntry(s3, { prefix, endpoint: gate.endpoint, partSize: 5 * MiB })],
  };
  fs.writeFileSync(path.join(dir, 'litekeep.yml'), JSON.stringify(config, null, 2));
  return { dir, prefix, gate };
}

const ours = (w: Workspace) => s3.openUploads().filter((u) => u.key.startsWith(`${w.prefix}/`));
const isPart = (n: number) => (r: GateRequest) =>
  r.operation === 'UploadPart' && r.url.includes(`partNumber=${n}&`);
const storedObject = (key: string) => path.join(s3.dir, s3.bucket, `${key}._S3rver_object`);

/**
 * `litekeep backup` interrupted (SIGINT) while the answer to a request `match` picks is held back; the answer
 * goes out once the backup has heard the signal. Resolves when the process has exited.
 */
async function interruptWhileHeld(w: Workspace, match: GateMatch) {
  const held = w.gate.holdAnswer(match);
  const child = spawnCli(['backup', '--json'], { cwd: w.dir });
  await held.arrived;
  child.process.kill('SIGINT');
  await child.waitForStderr(/SIGINT received/);
  held.release();
  return child.exited;
}

async function backup(w: Workspace) {
  const r = await runCli(['backup', '--json'], { cwd: w.dir });
  return { ...r, out: JSON.parse(r.stdout) as Json };
}

describe('isAbandonedUpload', () => {
  const now = new Date('2026-03-01T12:00:00Z');
  const hour = 3_600_000;
  const own = new Set(['backup-2026-03-01-030000.db']);
  it("takes this host's own backups at once, others only once older than runTimeout", () => {
    const young = new Date(now.getTime() - 60_000);
    const old = new Date(now.getTime() - 4 * hour);
    expect(
      isAbandonedUpload(
        { name: 'backup-2026-03-01-030000.db', id: 'a', startedAt: young },
        own,
        now,
        3 * hour,
      ),
    ).toBe(true);
    expect(
      isAbandonedUpload(
        { name: 'backup-2026-03-01-040000.db', id: 'b', startedAt: young },
        own,
        now,
        3 * hour,
      ),
    ).toBe(false);
    expect(
      isAbandonedUpload({ name: 'backup-2026-03-01-040000.db', id: 'c', startedAt: old }, own, now, 3 * hour),
    ).toBe(true);
    expect(isAbandonedUpload({ name: 'backup-2026-03-01-040000.db', id: 'd' }, own, now, 3 * hour)).toBe(
      false,
    );
  });
});

describe('no orphaned multipart uploads', () => {
  it('the server dies mid-upload: the abort that cannot get through is retried by the next run', async () => {
    const w = await workspace();
    // Part 2 is where the server dies; everything after it (the abort too) finds nobody answering.
    w.gate.onRequest(isPart(2), () => (w.gate.dead = true));
    const failed = await backup(w);
    expect(failed.code, failed.stderr).toBe(3);
    const bucket = failed.out.destinations.find((d: Json) => d.destination === 'bucket');
    expect(bucket.status).toBe('failed');
    expect(bucket.error).toMatch(/incomplete multipart upload could not be aborted .*the next run aborts it/);
    // The abort was tried more than once before giving up.
    expect(w.gate.requests.filter((r) => r.operation === 'AbortMultipartUpload').length).toBeGreaterThan(1);
    const orphans = ours(w);
    expect(orphans.map((u) => u.key)).toEqual([`${w.prefix}/app/${HOST}/${failed.out.file}`]);

    // Another host's upload in progress under the same prefix is not touched.
    const raw = rawS3Client(s3);
    const foreignKey = `${w.prefix}/app/another-host/backup-2020-01-01-000000.db`;
    const { UploadId: foreignId } = await raw.send(
      new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: foreignKey }),
    );

    // The server is back: the next run aborts the orphan before anything else, then catches up.
    w.gate.dead = false;
    const next = await backup(w);
    expect(next.code, next.stderr).toBe(0);
    const after = next.out.destinations.find((d: Json) => d.destination === 'bucket');
    expect(after).toMatchObject({
      status: 'ok',
      abortedUploads: [failed.out.file],
      caughtUp: [failed.out.file],
    });
    expect(ours(w).map((u) => u.key)).toEqual([foreignKey]);
    await raw.send(
      new AbortMultipartUploadCommand({ Bucket: s3.bucket, Key: foreignKey, UploadId: foreignId }),
    );
    raw.destroy();
    const abort = w.gate.requests.find(
      (r) =>
        r.operation === 'AbortMultipartUpload' && r.url.includes(orphans[0].uploadId) && r.answered === 204,
    );
    expect(abort).toBeDefined();
    for (const file of [failed.out.file, next.out.file]) {
      const local = fs.readFileSync(path.join(w.dir, 'backups', file));
      expect(sha256(fs.readFileSync(storedObject(`${w.prefix}/app/${HOST}/${file}`)))).toBe(sha256(local));
    }
  });

  it('the answer to CreateMultipartUpload is lost: the upload the server made anyway is found and aborted', async () => {
    const w = await workspace();
    w.gate.dropAnswer((r) => r.operation === 'CreateMultipartUpload');
    const failed = await backup(w);
    expect(failed.code, failed.stderr).toBe(3);
    expect(w.gate.requests.some((r) => r.operation === 'ListMultipartUploads')).toBe(true);
    expect(ours(w)).toEqual([]);
  });

  it('Ctrl-C while CreateMultipartUpload is in flight: its upload is aborted once it exists', async () => {
    const w = await workspace();
    const result = await interruptWhileHeld(w, (r) => r.operation === 'CreateMultipartUpload');
    expect(result.code, result.stderr).not.toBe(0);
    expect(ours(w)).toEqual([]);
    const create = w.gate.requests.find((r) => r.operation === 'CreateMultipartUpload')!;
    const abort = w.gate.requests.find((r) => r.operation === 'AbortMultipartUpload');
    expect(abort?.answered).toBe(204);
    expect(abort!.arrivedAt).toBeGreaterThan(create.answeredAt!);
  });

  it('Ctrl-C while parts are in flight: the abort waits for them, so no part is stored after it', async () => {
    const w = await workspace();
    const result = await interruptWhileHeld(w, isPart(2));
    expect(result.code, result.stderr).not.toBe(0);
    // No upload left open, and no zombie: nothing stored and billed under an upload nobody knows.
    expect(ours(w)).toEqual([]);
    const part2 = w.gate.requests.find(isPart(2))!;
    const abort = w.gate.requests.find((r) => r.operation === 'AbortMultipartUpload');
    expect(abort?.answered).toBe(204);
    expect(abort!.arrivedAt).toBeGreaterThan(part2.answeredAt!);
    expect(fs.existsSync(path.join(w.dir, 'backups'))).toBe(true);
  });
});
