import fs from 'node:fs';
import path from 'node:path';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decompress } from 'zstd-napi';
import { BackupManager, discardImage } from '../../src/backup/manager.js';
import { runDestinations } from '../../src/backup/offsite.js';
import { loadConfig } from '../../src/config/index.js';
import { applySafetyRails, planRetention } from '../../src/retention/index.js';
import { cleanEnv } from '../helpers/cli.js';
import { changeDatabase } from '../repository/helpers.js';
import { startS3Server, type S3TestServer } from '../servers/s3-server.js';
import {
  localDestination,
  machine,
  made,
  rawS3,
  rowsOf,
  s3Destination,
  s3Keys,
  type Json,
} from './incremental-helpers.js';

let s3: S3TestServer;
let raw: S3Client;

beforeAll(async () => {
  s3 = await startS3Server();
  raw = rawS3(s3);
});

afterAll(async () => {
  raw?.destroy();
  await s3?.close();
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

async function objectBytes(key: string): Promise<Buffer> {
  const r = await raw.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
  return Buffer.from(await r.Body!.transformToByteArray());
}

describe('encrypted incremental repositories', () => {
  it('the store holds nothing readable; an empty machine with only the identity restores; a new machine continues the repository', async () => {
    const identity = await generateX25519Identity();
    const recipient = await identityToRecipient(identity);
    const prefix = `dr/${Date.now().toString(36)}`;
    const a = await machine(() => [s3Destination(s3, prefix)], {
      host: 'alpha',
      config: { encryption: { recipients: [recipient] } },
    });
    const first = await a.backup();
    expect(first.code, first.stderr).toBe(0);
    changeDatabase(a.db, 0.02, 50);
    const second = await a.backup();
    expect(second.code, second.stderr).toBe(0);
    const rows = rowsOf(a.db);

    // What the store holds: age files for data packs, keys and sealed facts; ids and offsets elsewhere.
    const root = `${prefix}/app/alpha/repo/`;
    const keys = await s3Keys(raw, s3.bucket, root);
    const age = Buffer.from('age-encryption.org/v1\n');
    let dataPacks = 0;
    for (const key of keys) {
      const bytes = await objectBytes(root + key);
      expect(bytes.includes(Buffer.from('lorem ipsum')), key).toBe(false);
      expect(bytes.includes(Buffer.from('example.com')), key).toBe(false);
      if (key.startsWith('keys/')) expect(bytes.subarray(0, age.length).equals(age)).toBe(true);
      if (key.startsWith('packs/') && bytes.subarray(0, age.length).equals(age)) dataPacks++;
      if (key.startsWith('snapshots/')) {
        const outer = JSON.parse(decompress(bytes).toString('utf8'));
        const body = JSON.parse(outer.body);
        expect(body.facts).toBeUndefined();
        expect(typeof body.sealed).toBe('string');
        expect(outer.body).not.toMatch(/messages|users|integrity/);
      }
      if (key.startsWith('index/')) expect(decompress(bytes).includes(Buffer.from('lorem'))).toBe(false);
    }
    expect(dataPacks).toBeGreaterThan(0);
    expect(keys.filter((k) => k.startsWith('keys/'))).toHaveLength(1);

    // A new machine: a config naming the bucket, the identity, no backup folder, another host name.
    const b = await machine(() => [s3Destination(s3, prefix)], { host: 'beta', db: false });
    fs.writeFileSync(path.join(b.dir, 'key.txt'), `${identity}\n`, { mode: 0o600 });
    const out = path.join(b.dir, 'restored.db');
    const refused = await b.cli(['restore', 'latest', '--from', 'bucket', '--to', out]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--identity/);
    const restored = await b.cli([
      'restore',
      'latest',
      '--from',
      'bucket',
      '--to',
      out,
      '--identity',
      'key.txt',
      '--json',
    ]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(JSON.parse(restored.stdout).backup).toBe(second.destinations[0].snapshot.id);
    expect(rowsOf(out)).toEqual(rows);
    const verified = await b.cli(['verify', 'all', '--from', 'bucket', '--identity', 'key.txt', '--json']);
    expect(verified.code, verified.stdout).toBe(0);
    expect((JSON.parse(verified.stdout).results as Json[]).map((r) => r.fingerprint)).toEqual([
      'match',
      'match',
    ]);

    // The machine was lost; its replacement (same host name) continues the same repository: the id key comes
    // back from keys/ with the identity, so the new snapshot finds the old pages.
    const c = await machine(() => [s3Destination(s3, prefix)], {
      host: 'alpha',
      db: false,
      config: { encryption: { recipients: [recipient], identity: 'key.txt' } },
    });
    fs.copyFileSync(a.db, c.db);
    fs.writeFileSync(path.join(c.dir, 'key.txt'), `${identity}\n`, { mode: 0o600 });
    const continued = await c.backup();
    expect(continued.code, continued.stderr).toBe(0);
    expect(continued.destinations[0].snapshot.addedChunks).toBeLessThan(
      first.destinations[0].snapshot.addedChunks / 4,
    );
    const check = await c.cli(['check', '--from', 'bucket', '--read-data', '--identity', 'key.txt']);
    expect(check.code, check.stdout).toBe(0);
    expect(check.stdout).toMatch(/^ok .*3 snapshots/m);

    // New recipients: the next run adds a key file for them. Packs written before stay encrypted to the old
    // ones, so the new snapshot (which reuses their pages) restores with both identities, not the new one alone.
    const identity2 = await generateX25519Identity();
    const recipient2 = await identityToRecipient(identity2);
    const configFile = path.join(c.dir, 'litekeep.yml');
    fs.writeFileSync(
      configFile,
      fs.readFileSync(configFile, 'utf8').replace(JSON.stringify(recipient), JSON.stringify(recipient2)),
    );
    changeDatabase(c.db, 0.01);
    const rotated = await c.backup();
    expect(rotated.code, rotated.stderr).toBe(0);
    expect((await s3Keys(raw, s3.bucket, `${root}keys/`)).length).toBeGreaterThan(1);
    fs.writeFileSync(path.join(b.dir, 'key2.txt'), `${identity2}\n`, { mode: 0o600 });
    fs.writeFileSync(path.join(b.dir, 'both.txt'), `${identity}\n${identity2}\n`, { mode: 0o600 });
    const out2 = path.join(b.dir, 'restored2.db');
    const alone = await b.cli([
      'restore',
      'latest',
      '--from',
      'bucket',
      '--to',
      out2,
      '--identity',
      'key2.txt',
    ]);
    expect(alone.code).toBe(1);
    expect(alone.stderr).toMatch(/cannot decrypt with the given identity/);
    const both = await b.cli([
      'restore',
      'latest',
      '--from',
      'bucket',
      '--to',
      out2,
      '--identity',
      'both.txt',
    ]);
    expect(both.code, both.stderr).toBe(0);
    expect(rowsOf(out2)).toEqual(rowsOf(c.db));
  }, 300_000);
});

describe('switching a destination from full to incremental', () => {
  it('keeps its full files restorable beside the new repository', async () => {
    const m = await machine((dir) => [localDestination(path.join(dir, 'shared'), { format: 'full' })]);
    const full = await m.backup();
    expect(full.code, full.stderr).toBe(0);
    const rowsBefore = rowsOf(m.db);
    const config = path.join(m.dir, 'litekeep.yml');
    fs.writeFileSync(
      config,
      fs.readFileSync(config, 'utf8').replace('"format": "full"', '"format": "incremental"'),
    );
    changeDatabase(m.db, 0.05, 100);
    const incremental = await m.backup();
    expect(incremental.code, incremental.stderr).toBe(0);
    const candidates = JSON.parse((await m.cli(['verify', 'all', '--from', 'usb', '--json'])).stdout)
      .results as Json[];
    expect(candidates.map((c) => c.backup).sort()).toEqual(
      [full.file, incremental.destinations[0].snapshot.id].sort(),
    );
    expect(candidates.every((c) => c.status === 'ok')).toBe(true);
    const out = path.join(m.dir, 'old.db');
    expect((await m.cli(['restore', full.file, '--from', 'usb', '--to', out])).code).toBe(0);
    expect(rowsOf(out)).toEqual(rowsBefore);
  }, 120_000);
});

describe('retention over snapshots', () => {
  it('forgets snapshots by the restic rules in their two series, then collection frees what only they held', async () => {
    const m = await machine((dir) => [localDestination(path.join(dir, 'shared'))], {
      rows: 4000,
      config: { retention: { daily: 2, weekly: 0, monthly: 0 } },
    });
    const target = loadConfig({ cwd: m.dir, env: { ...cleanEnv(), TZ: 'UTC' } }).databases[0];
    const day = 86400_000;
    const today = Math.floor(Date.now() / day) * day;
    const plan: [number, number, 'manual' | 'scheduled'][] = [
      [3, 12, 'scheduled'],
      [2, 9, 'scheduled'],
      [2, 15, 'manual'],
      [2, 21, 'scheduled'],
      [1, 12, 'scheduled'],
    ];
    const taken: {
      id: string;
      time: Date;
      trigger: 'manual' | 'scheduled';
      rows: ReturnType<typeof rowsOf>;
    }[] = [];
    for (const [daysAgo, hour, trigger] of plan) {
      changeDatabase(m.db, 0.2, 200);
      const time = new Date(today - daysAgo * day + hour * 3600_000);
      const manager = new BackupManager(target);
      try {
        const backup = await manager.createBackup({ now: time, trigger, vacuum: false, keepImage: true });
        const [outcome] = await runDestinations(target, manager, backup, {
          image: backup.image,
          prune: false,
        });
        await discardImage(backup);
        expect(outcome.status, outcome.error).toBe('ok');
        taken.push({ id: outcome.snapshot!.id, time, trigger, rows: rowsOf(m.db) });
      } finally {
        manager.close();
      }
    }
    const dry = await m.cli(['prune', '--from', 'usb', '--dry-run', '--json']);
    expect(dry.code, dry.stderr).toBe(0);
    const decisions = JSON.parse(dry.stdout).decisions as Json[];
    // The same planner as for files, on the same times: restic's rules, manual and scheduled apart.
    const expected = applySafetyRails(
      planRetention(
        taken.map((t) => ({ id: t.id, time: t.time, group: t.trigger, good: true })),
        { daily: 2, weekly: 0, monthly: 0, manual: '7d' },
        { timeZone: 'UTC', now: new Date() },
      ),
    );
    expect(
      decisions
        .filter((d) => d.action === 'keep')
        .map((d) => d.id)
        .sort(),
    ).toEqual(expected.keep.map((d) => d.backup.id).sort());
    const byTime = (daysAgo: number, hour: number) =>
      decisions.find(
        (d) => d.id === taken.find((t) => t.time.getTime() === today - daysAgo * day + hour * 3600_000)!.id,
      );
    expect(byTime(1, 12)).toMatchObject({ action: 'keep', reasons: [expect.stringMatching(/^daily /)] });
    expect(byTime(2, 21)).toMatchObject({ action: 'keep', reasons: [expect.stringMatching(/^daily /)] });
    expect(byTime(2, 15).action).toBe('keep');
    expect(byTime(2, 15).reasons).toContain('manual within 7d');
    // Both days' counts are spent by the two newer days: restic counts before it compares buckets.
    expect(byTime(2, 9)).toMatchObject({ action: 'remove', reasons: ['daily: all 2 kept by newer backups'] });
    expect(byTime(3, 12)).toMatchObject({
      action: 'remove',
      reasons: [expect.stringMatching(/all 2 kept by newer backups/)],
    });
    expect(JSON.parse(dry.stdout).collect.freedBytes).toBeGreaterThan(0);

    const pruned = await m.cli(['prune', '--from', 'usb', '--json']);
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(JSON.parse(pruned.stdout).forgotten).toHaveLength(2);
    const listed = JSON.parse((await m.cli(['list', '--from', 'usb', '--json'])).stdout).backups as Json[];
    expect(listed.map((b) => b.name).sort()).toEqual(expected.keep.map((d) => d.backup.id).sort());
    expect((await m.cli(['check', '--from', 'usb', '--read-data'])).code).toBe(0);
    for (const kept of taken.filter((t) => listed.some((b) => b.name === t.id))) {
      const out = path.join(m.dir, `kept-${kept.id.slice(0, 8)}.db`);
      const r = await m.cli(['restore', kept.id, '--from', 'usb', '--to', out]);
      expect(r.code, r.stderr).toBe(0);
      expect(rowsOf(out)).toEqual(kept.rows);
    }
  }, 240_000);
});
