import fs from 'node:fs';
import path from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { changeDatabase } from '../repository/helpers.js';
import { startDriveServer, type DriveServer } from '../servers/drive-server.js';
import { startRecorder, type Recorder } from '../servers/http-recorder.js';
import { startS3Server, type S3TestServer } from '../servers/s3-server.js';
import {
  driveDestination,
  driveRepoFiles,
  localDestination,
  localRepoFiles,
  machine,
  made,
  rawS3,
  rowsOf,
  s3Destination,
  s3Keys,
  type Json,
  type Machine,
} from './incremental-helpers.js';

let s3: S3TestServer;
let drive: DriveServer;
let raw: S3Client;
let webhook: Recorder;

beforeAll(async () => {
  s3 = await startS3Server();
  drive = await startDriveServer();
  raw = rawS3(s3);
  webhook = await startRecorder();
});

afterAll(async () => {
  raw?.destroy();
  await s3?.close();
  await drive?.close();
  await webhook?.close();
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

type Kind = 'local' | 's3' | 'drive';

/** A machine whose one destination is an incremental repository of `kind`, and how to see its objects. */
async function onStore(kind: Kind): Promise<{ m: Machine; name: string; objects: () => Promise<string[]> }> {
  let objects: () => Promise<string[]> = async () => [];
  const m = await machine(
    (dir) => {
      const unique = path.basename(dir);
      if (kind === 'local') {
        objects = async () => localRepoFiles(path.join(dir, 'shared'));
        return [localDestination(path.join(dir, 'shared'))];
      }
      if (kind === 's3') {
        objects = () => s3Keys(raw, s3.bucket, `rt/${unique}/app/web1/repo/`);
        return [s3Destination(s3, `rt/${unique}`)];
      }
      objects = async () => driveRepoFiles(drive, `f-${unique}`);
      return [driveDestination(drive, `f-${unique}`)];
    },
    {
      drive: kind === 'drive' ? drive : undefined,
      // One store is enough to see the figures reach the notification.
      config: kind === 'local' ? { notify: { attempts: 1, webhook: { url: `${webhook.url}/local` } } } : {},
    },
  );
  return { m, name: kind === 'local' ? 'usb' : kind === 's3' ? 'bucket' : 'gdrive', objects };
}

describe('incremental destinations: round trip on every store', () => {
  for (const kind of ['local', 's3', 'drive'] as Kind[]) {
    it(`${kind}: three snapshots (new, changed, unchanged) each restore on their own; the unchanged one stores only a manifest`, async () => {
      const { m, name, objects } = await onStore(kind);
      const states: { id: string; rows: ReturnType<typeof rowsOf> }[] = [];

      const first = await m.backup();
      expect(first.code, first.stderr).toBe(0);
      const s1 = first.destinations[0].snapshot;
      expect(s1.addedChunks).toBeGreaterThan(10);
      states.push({ id: s1.id, rows: rowsOf(m.db) });
      const afterFirst = await objects();
      expect(afterFirst).toContain('config');
      expect(afterFirst.filter((k) => k.startsWith('packs/')).length).toBeGreaterThan(0);
      // The full-file backup of the same run is still there, restorable with standard tools.
      expect(fs.readdirSync(m.backups).filter((f) => f.startsWith('backup-'))).toHaveLength(1);

      changeDatabase(m.db, 0.01, 20);
      const second = await m.backup();
      expect(second.code, second.stderr).toBe(0);
      const s2 = second.destinations[0].snapshot;
      expect(s2.addedChunks).toBeLessThan(s1.addedChunks / 2);
      states.push({ id: s2.id, rows: rowsOf(m.db) });

      const before = await objects();
      const third = await m.backup();
      expect(third.code, third.stderr).toBe(0);
      const s3snap = third.destinations[0].snapshot;
      expect(s3snap.addedChunks).toBe(0);
      const added = (await objects()).filter((k) => !before.includes(k));
      expect(added).toEqual([`snapshots/${s3snap.id}`]);
      expect(s3snap.uploadedBytes).toBeLessThan(16 * 1024);
      states.push({ id: s3snap.id, rows: rowsOf(m.db) });

      const listed = await m.cli(['list', '--from', name, '--json']);
      expect(listed.code, listed.stderr).toBe(0);
      expect((JSON.parse(listed.stdout).backups as Json[]).map((b) => b.name).sort()).toEqual(
        states.map((s) => s.id).sort(),
      );

      for (const [n, state] of states.entries()) {
        const out = path.join(m.dir, `restored-${n}.db`);
        // A unique prefix of the id names the snapshot, as it does in restic.
        const r = await m.cli(['restore', state.id.slice(0, 10), '--from', name, '--to', out, '--json']);
        expect(r.code, r.stderr).toBe(0);
        expect(JSON.parse(r.stdout).integrity).toBe('ok');
        expect(rowsOf(out)).toEqual(state.rows);
      }
      // --at picks the newest snapshot taken at or before a time: the second one, at its own time.
      const listedSecond = (JSON.parse(listed.stdout).backups as Json[]).find((b) => b.name === states[1].id);
      const atOut = path.join(m.dir, 'restored-at.db');
      const at = await m.cli(['restore', '--at', listedSecond.time, '--from', name, '--to', atOut, '--json']);
      expect(at.code, at.stderr).toBe(0);
      expect(rowsOf(atOut)).toEqual(states[1].rows);
      const verified = await m.cli(['verify', 'all', '--from', name, '--json']);
      expect(verified.code, verified.stdout + verified.stderr).toBe(0);
      expect((JSON.parse(verified.stdout).results as Json[]).map((r) => r.status)).toEqual([
        'ok',
        'ok',
        'ok',
      ]);
      const check = await m.cli(['check', '--from', name, '--read-data']);
      expect(check.code, check.stdout + check.stderr).toBe(0);
      expect(check.stdout).toMatch(/^ok/);

      // Bytes added and the dedup ratio of each snapshot: in the run result, status and the notification.
      expect(s3snap.dedupRatio).toBeGreaterThan(s2.dedupRatio);
      expect(s2.dedupRatio).toBeGreaterThan(s1.dedupRatio);
      const status = await m.cli(['status', '--json']);
      expect(status.code, status.stderr).toBe(0);
      const d = (JSON.parse(status.stdout).destinations as Json[]).find((x) => x.destination === name);
      expect(d.format).toBe('incremental');
      expect(d.copies).toBe(3);
      expect(d.newestSnapshot.id).toBe(s3snap.id);
      expect(d.newestSnapshot.addedBytes).toBeGreaterThan(0);
      expect(d.newestSnapshot.addedBytes).toBeLessThan(16 * 1024);
      expect(d.newestSnapshot.dedupRatio).toBeGreaterThan(s2.dedupRatio);
      if (kind === 'local') {
        const texts = webhook.requests.filter((r) => r.path === '/local').map((r) => r.body);
        const last = texts.filter((t) => t.includes(s3snap.id.slice(0, 12)));
        expect(last.length, texts.join('\n')).toBe(1);
        expect(last[0]).toMatch(/added, dedup \d+x/);
      }
    });
  }
});
