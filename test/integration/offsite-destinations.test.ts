import os from 'node:os';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/index.js';
import { runCli } from '../helpers/cli.js';
import { countRows, filesIn, makeDatabase, tempDir } from '../helpers/db.js';
import { startDriveServer, writeAuthorizedUser, type DriveServer } from '../servers/drive-server.js';
import { startRecorder, type Recorder } from '../servers/http-recorder.js';

/** This machine's folder on shared destinations: copies are `<database>/<host>/<file>`. */
const HOST = encodeURIComponent(os.hostname());
import { startS3Server, type S3TestServer } from '../servers/s3-server.js';

/** JSON read back from the CLI; the expectations below check its shape. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const MiB = 1024 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let s3: S3TestServer;
let drive: DriveServer;
let ntfy: Recorder;
const cleanups: (() => void)[] = [];

beforeAll(async () => {
  s3 = await startS3Server();
  drive = await startDriveServer();
  ntfy = await startRecorder();
});
afterAll(async () => {
  await s3?.close();
  await drive?.close();
  await ntfy?.close();
  cleanups.forEach((f) => f());
});

/** Objects s3rver holds under a key prefix, by key, with their bytes. */
function s3Objects(prefix: string): Map<string, Buffer> {
  const root = path.join(s3.dir, s3.bucket);
  const out = new Map<string, Buffer>();
  const walk = (dir: string) => {
    for (const entry of fs.existsSync(dir) ? fs.readdirSync(dir, { withFileTypes: true }) : []) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('._S3rver_object')) {
        const key = path.relative(root, full).replace(/\._S3rver_object$/, '');
        if (key.startsWith(prefix)) out.set(key, fs.readFileSync(full));
      }
    }
  };
  walk(root);
  return out;
}

/** Backups the Drive server holds (not trashed) in litekeep's folder, by name. */
function driveBackups(): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const f of drive.files.values()) {
    if (!f.trashed && f.name.startsWith('backup-')) out.set(f.name, f.bytes);
  }
  return out;
}

interface Workspace {
  dir: string;
  db: string;
  backups: string;
  usb: string;
  prefix: string;
}

async function workspace(
  options: {
    rows?: number;
    s3Endpoint?: string;
    retention?: Record<string, Record<string, number>>;
    withDrive?: boolean;
  } = {},
): Promise<Workspace> {
  const dir = tempDir('litekeep-offsite-');
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const db = path.join(dir, 'app.db');
  makeDatabase(db, options.rows ?? 50);
  // A prefix per workspace keeps tests sharing the s3rver instance apart.
  const prefix = `hosts/${path.basename(dir)}`;
  const destinations: Record<string, unknown>[] = [
    {
      name: 'bucket',
      type: 's3',
      bucket: s3.bucket,
      prefix,
      endpoint: options.s3Endpoint ?? s3.endpoint,
      forcePathStyle: true,
      region: 'us-east-1',
      accessKeyId: s3.accessKeyId,
      secretAccessKey: s3.secretAccessKey,
      partSize: 5 * MiB,
      checksumMode: 'when-required',
      maxAttempts: 1,
      ...(options.retention?.bucket ? { retention: options.retention.bucket } : {}),
    },
    {
      name: 'usb',
      type: 'local',
      path: 'usb',
      ...(options.retention?.usb ? { retention: options.retention.usb } : {}),
    },
  ];
  const config: Record<string, unknown> = {
    database: 'app.db',
    backupDir: 'backups',
    compression: { algorithm: 'none' },
    retention: { last: 10 },
    destinations,
    notify: { ntfy: { server: ntfy.url, topic: path.basename(dir) }, attempts: 1 },
  };
  if (options.withDrive) {
    await writeAuthorizedUser(drive, dir);
    config.drive = {
      credentials: 'google-credentials.json',
      folder: `litekeep-${path.basename(dir)}`,
      apiUrl: drive.url,
      tokenUrl: drive.tokenUrl,
      ...(options.retention?.drive ? { retention: options.retention.drive } : {}),
    };
  }
  // JSON is YAML: the file is read exactly as a hand-written litekeep.yml would be.
  fs.writeFileSync(path.join(dir, 'litekeep.yml'), JSON.stringify(config, null, 2));
  return { dir, db, backups: path.join(dir, 'backups'), usb: path.join(dir, 'usb', 'app', HOST), prefix };
}

const backupNames = (dir: string) => filesIn(dir).filter((f) => f.startsWith('backup-'));

async function backup(w: Workspace, args: string[] = []) {
  const r = await runCli(['backup', '--json', ...args], { cwd: w.dir });
  let out: Record<string, Json> | undefined;
  try {
    out = JSON.parse(r.stdout);
  } catch {
    // reported by the assertions of the caller
  }
  return { ...r, out: out! };
}

describe('backup to several destinations', () => {
  it('uploads to s3, a local folder and Drive; each keeps its own retention; list, status, history, verify', async () => {
    const w = await workspace({
      withDrive: true,
      retention: { bucket: { last: 2 }, usb: { last: 3 }, drive: { last: 2 } },
    });
    const files: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await backup(w);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.out.status).toBe('ok');
      files.push(r.out.file);
      const byName = Object.fromEntries(r.out.destinations.map((d: Json) => [d.destination, d]));
      expect(Object.keys(byName).sort()).toEqual(['bucket', 'drive', 'usb']);
      expect(byName.bucket).toMatchObject({ type: 's3', status: 'ok', bytes: r.out.bytes });
      expect(byName.usb).toMatchObject({ type: 'local', status: 'ok', bytes: r.out.bytes });
      expect(byName.drive).toMatchObject({ type: 'google-drive', status: 'ok', bytes: r.out.bytes });
      expect(byName.drive.link).toMatch(/^https?:\/\//);
    }
    const newest = files[3];
    const newestBytes = fs.readFileSync(path.join(w.backups, newest));

    // Local retention (last 10) is untouched by the remote policies.
    expect(backupNames(w.backups)).toEqual([...files].sort());
    // Each destination keeps exactly what its own policy says, and the bytes are the local ones.
    const objects = s3Objects(w.prefix);
    expect([...objects.keys()].sort()).toEqual(
      files
        .slice(2)
        .map((f) => `${w.prefix}/app/${HOST}/${f}`)
        .sort(),
    );
    expect(sha256(objects.get(`${w.prefix}/app/${HOST}/${newest}`)!)).toBe(sha256(newestBytes));
    expect(backupNames(w.usb)).toEqual(files.slice(1).sort());
    expect(sha256(fs.readFileSync(path.join(w.usb, newest)))).toBe(sha256(newestBytes));
    const onDrive = driveBackups();
    expect([...onDrive.keys()].filter((n) => files.includes(n)).sort()).toEqual(files.slice(2).sort());
    expect(sha256(onDrive.get(newest)!)).toBe(sha256(newestBytes));
    // Drive retention trashes (the default), it does not delete.
    const trashed = [...drive.files.values()].filter((f) => f.trashed).map((f) => f.name);
    expect(trashed.sort()).toEqual(files.slice(0, 2).sort());

    // The activity log has one upload row per destination and backup, and the remote deletions.
    const catalog = Catalog.open(w.backups);
    const uploads = catalog.listUploads().filter((u) => u.status === 'ok');
    expect(
      uploads
        .filter((u) => u.backupFile === newest)
        .map((u) => u.destination)
        .sort(),
    ).toEqual(['bucket', 'drive', 'usb']);
    catalog.close();
    const history = await runCli(['history', '--json', '--limit', '100'], { cwd: w.dir });
    expect(history.code).toBe(0);
    const events = JSON.parse(history.stdout).events as Json[];
    expect(
      events
        .filter((e) => e.kind === 'upload' && e.backupFile === newest)
        .map((e) => e.destination)
        .sort(),
    ).toEqual(['bucket', 'drive', 'usb']);
    expect(
      events
        .filter((e) => e.kind === 'deletion' && e.destination === 'bucket')
        .map((e) => e.backupFile)
        .sort(),
    ).toEqual(files.slice(0, 2).sort());

    // list --from each destination shows what it holds.
    for (const [from, expected] of [
      ['bucket', files.slice(2)],
      ['usb', files.slice(1)],
      ['drive', files.slice(2)],
    ] as const) {
      const list = await runCli(['list', '--from', from, '--json'], { cwd: w.dir });
      expect(list.stderr).toBe('');
      expect(list.code).toBe(0);
      const listed = JSON.parse(list.stdout);
      expect(listed.backups.map((b: Json) => b.name)).toEqual([...expected].reverse());
      expect(listed.backups[0]).toMatchObject({ name: newest, bytes: newestBytes.length });
    }

    // verify from the bucket into nothing but a temp folder: the copy there restores.
    const verify = await runCli(['verify', '--from', 'bucket', '--json'], { cwd: w.dir });
    expect(verify.code, verify.stderr).toBe(0);

    // A new machine with only the configuration: restore from the bucket alone.
    const fresh = tempDir('litekeep-newhost-');
    cleanups.push(() => fs.rmSync(fresh, { recursive: true, force: true }));
    fs.copyFileSync(path.join(w.dir, 'litekeep.yml'), path.join(fresh, 'litekeep.yml'));
    const restored = path.join(fresh, 'restored.db');
    const restore = await runCli(['restore', '--from', 'bucket', '--to', restored, '--json'], { cwd: fresh });
    expect(restore.code, restore.stderr).toBe(0);
    expect(JSON.parse(restore.stdout)).toMatchObject({ backup: newest });
    expect(countRows(restored)).toBe(50);

    const status = await runCli(['status', '--json'], { cwd: w.dir });
    expect(status.code).toBe(0);
    const s = JSON.parse(status.stdout);
    const dests = Object.fromEntries(s.destinations.map((d: Json) => [d.destination, d]));
    expect(dests.bucket).toMatchObject({ copies: 2, newest: newest, bytes: 2 * newestBytes.length });
    expect(dests.usb).toMatchObject({ copies: 3, newest: newest });
    expect(dests.drive).toMatchObject({ copies: 2, newest: newest });
    expect(dests.bucket.lastError).toBeUndefined();
    expect(dests.bucket.lastVerified).toMatchObject({ file: newest });
  }, 60_000);

  it('sends a database larger than the part size as a multipart upload, byte for byte', async () => {
    const w = await workspace({ rows: 0 });
    const db = new Database(w.db);
    // Incompressible pages: ~12 MB of random blobs, more than two 5 MiB parts.
    db.exec(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1500)
       INSERT INTO items (name, payload) SELECT 'r' || i, randomblob(8000) FROM n`,
    );
    db.close();
    const r = await backup(w, ['--no-drive']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.out.bytes).toBeGreaterThan(11 * MiB);
    const local = fs.readFileSync(r.out.path);
    const remote = s3Objects(w.prefix).get(`${w.prefix}/app/${HOST}/${r.out.file}`);
    expect(remote?.length).toBe(local.length);
    expect(sha256(remote!)).toBe(sha256(local));
  }, 60_000);
});

describe('one destination down', () => {
  it('the others still get the backup (exit 3); sync and the next backup catch up what is missing', async () => {
    // A port nobody listens on: connection refused.
    const closed = `http://127.0.0.1:1`;
    const w = await workspace({ s3Endpoint: closed });
    const down1 = await backup(w);
    expect(down1.code).toBe(3);
    expect(down1.out.status).toBe('partial');
    const byName = Object.fromEntries(down1.out.destinations.map((d: Json) => [d.destination, d]));
    expect(byName.bucket.status).toBe('failed');
    expect(byName.bucket.error).toBeTruthy();
    expect(byName.usb.status).toBe('ok');
    expect(backupNames(w.usb)).toEqual([down1.out.file]);
    expect(fs.existsSync(down1.out.path)).toBe(true);
    // The notification says which destination failed.
    const sent = ntfy.requests.filter((r) => r.path === `/${path.basename(w.dir)}`).at(-1)!;
    expect(sent.body).toContain('upload to bucket failed');
    const down2 = await backup(w);
    expect(down2.code).toBe(3);

    const failedStatus = JSON.parse((await runCli(['status', '--json'], { cwd: w.dir })).stdout);
    const bucketStatus = failedStatus.destinations.find((d: Json) => d.destination === 'bucket');
    expect(bucketStatus.lastError).toBeTruthy();
    expect(bucketStatus.missing).toEqual([down2.out.file, down1.out.file]);

    // The outage ends.
    const config = path.join(w.dir, 'litekeep.yml');
    fs.writeFileSync(config, fs.readFileSync(config, 'utf8').replace(closed, s3.endpoint));
    const sync = await runCli(['sync', '--json'], { cwd: w.dir });
    expect(sync.stderr).toBe('');
    expect(sync.code).toBe(0);
    const synced = JSON.parse(sync.stdout).destinations.find((d: Json) => d.destination === 'bucket');
    // Newest first: the most recent state of the database is safe soonest.
    expect(synced.caughtUp).toEqual([down2.out.file, down1.out.file]);
    expect([...s3Objects(w.prefix).keys()].sort()).toEqual(
      [down1.out.file, down2.out.file].map((f) => `${w.prefix}/app/${HOST}/${f}`).sort(),
    );
    expect(sha256(s3Objects(w.prefix).get(`${w.prefix}/app/${HOST}/${down1.out.file}`)!)).toBe(
      sha256(fs.readFileSync(down1.out.path)),
    );

    // Down again, then the next backup itself brings the bucket up to date.
    fs.writeFileSync(config, fs.readFileSync(config, 'utf8').replace(s3.endpoint, closed));
    const down3 = await backup(w);
    expect(down3.code).toBe(3);
    fs.writeFileSync(config, fs.readFileSync(config, 'utf8').replace(closed, s3.endpoint));
    const next = await backup(w);
    expect(next.code).toBe(0);
    const bucket = next.out.destinations.find((d: Json) => d.destination === 'bucket');
    expect(bucket).toMatchObject({ status: 'ok', caughtUp: [down3.out.file] });
    expect([...s3Objects(w.prefix).keys()].sort()).toEqual(
      [down1, down2, down3, next].map((r) => `${w.prefix}/app/${HOST}/${r.out.file}`).sort(),
    );
    const healthy = JSON.parse((await runCli(['status', '--json'], { cwd: w.dir })).stdout);
    expect(healthy.destinations.find((d: Json) => d.destination === 'bucket')).toMatchObject({
      copies: 4,
      missing: [],
    });
  }, 60_000);
});
