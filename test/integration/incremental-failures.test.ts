import fs from 'node:fs';
import path from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { changeDatabase } from '../repository/helpers.js';
import { startFaultProxy, type FaultProxy } from '../servers/s3-fault-proxy.js';
import { startS3Server, type S3TestServer } from '../servers/s3-server.js';
import {
  localDestination,
  localRepoFiles,
  machine,
  made,
  rawS3,
  rowsOf,
  s3Destination,
  s3Keys,
  spawnCli,
  type Json,
  type Machine,
} from './incremental-helpers.js';

let s3: S3TestServer;
let raw: S3Client;
const proxies: FaultProxy[] = [];

beforeAll(async () => {
  s3 = await startS3Server();
  raw = rawS3(s3);
});

afterAll(async () => {
  for (const p of proxies) await p.close();
  raw?.destroy();
  await s3?.close();
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** One line, no stack: what a user reads. */
function oneLineError(stderr: string): string {
  const lines = stderr
    .trim()
    .split('\n')
    .filter((l) => !l.startsWith('warning:'));
  expect(lines).toHaveLength(1);
  return lines[0];
}

async function restoreRows(m: Machine, from: string, id: string, extra: string[] = []) {
  const out = path.join(m.dir, `check-${id.slice(0, 8)}-${Date.now()}.db`);
  const r = await m.cli(['restore', id, '--from', from, '--to', out, '--json', ...extra]);
  expect(r.code, r.stderr).toBe(0);
  return rowsOf(out);
}

/** A machine backing up through a proxy to S3, with small packs so that a run writes several. */
async function proxied(prefix: string): Promise<{ m: Machine; proxy: FaultProxy }> {
  const proxy = await startFaultProxy(s3.endpoint);
  proxies.push(proxy);
  const m = await machine(
    (dir) => [
      s3Destination({ ...s3, endpoint: proxy.endpoint }, `${prefix}/${path.basename(dir)}`, {
        packSize: 1048576,
      }),
    ],
    { rows: 12000, blobEvery: 4 },
  );
  return { m, proxy };
}

describe('incremental destinations when things go wrong', () => {
  it('a kill -9 during pack uploads leaves every kept snapshot restorable, and check passes', async () => {
    const { m, proxy } = await proxied('kill-upload');
    const first = await m.backup();
    expect(first.code, first.stderr).toBe(0);
    const kept = { id: first.destinations[0].snapshot.id as string, rows: rowsOf(m.db) };

    changeDatabase(m.db, 0.4, 2000);
    let packPuts = 0;
    proxy.rule = (req) =>
      req.method === 'PUT' && (req.url ?? '').includes('/repo/packs/') && ++packPuts >= 2 ? 'hold' : 'pass';
    const run = spawnCli(m, ['backup', '--trigger', 'scheduled']);
    expect(await run.until(proxy.held())).toMatch(/^PUT .*\/repo\/packs\//);
    run.child.kill('SIGKILL');
    await run.done;
    proxy.rule = () => 'pass';

    const check = await m.cli(['check', '--from', 'bucket', '--json']);
    expect(check.code, check.stdout).toBe(0);
    const report = JSON.parse(check.stdout).reports[0] as Json;
    expect(report.problems).toEqual([]);
    expect(report.snapshots).toBe(1);
    expect(report.unreferencedPacks).toBeGreaterThanOrEqual(1);
    expect(await restoreRows(m, 'bucket', kept.id)).toEqual(kept.rows);

    const next = await m.backup();
    expect(next.code, next.stderr).toBe(0);
    expect(await restoreRows(m, 'bucket', next.destinations[0].snapshot.id)).toEqual(rowsOf(m.db));
    expect((await m.cli(['check', '--from', 'bucket', '--read-data'])).code).toBe(0);
  }, 180_000);

  it('a store that drops the connection mid-pack fails the destination in one line (exit 3); the next run is whole', async () => {
    const { m, proxy } = await proxied('drop');
    let packPuts = 0;
    proxy.rule = (req) =>
      req.method === 'PUT' && (req.url ?? '').includes('/repo/packs/') && ++packPuts === 2
        ? 'destroy'
        : 'pass';
    const failed = await m.backup();
    expect(failed.code).toBe(3);
    expect(failed.destinations[0].status).toBe('failed');
    expect(failed.destinations[0].error).toMatch(
      /upload of packs\/[0-9a-f]{2}\/[0-9a-f]{64} on bucket failed/,
    );
    expect(failed.destinations[0].error).not.toMatch(/\n/);
    // The local full backup of that run is safe.
    expect(fs.readdirSync(m.backups).filter((f) => f.startsWith('backup-'))).toHaveLength(1);

    proxy.rule = () => 'pass';
    const list = JSON.parse((await m.cli(['list', '--from', 'bucket', '--json'])).stdout);
    expect(list.backups).toEqual([]);
    const ok = await m.backup();
    expect(ok.code, ok.stderr).toBe(0);
    expect((await m.cli(['check', '--from', 'bucket', '--read-data'])).code).toBe(0);
    expect(await restoreRows(m, 'bucket', ok.destinations[0].snapshot.id)).toEqual(rowsOf(m.db));
  }, 180_000);

  it('a kill -9 at any step of collection never costs a kept snapshot a chunk; restore after collection works', async () => {
    const { m, proxy } = await proxied('kill-collect');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await m.backup();
      expect(r.code, r.stderr).toBe(0);
      ids.push(r.destinations[0].snapshot.id);
      changeDatabase(m.db, 0.6, 500);
    }
    const last = await m.backup();
    ids.push(last.destinations[0].snapshot.id);
    const newest = { id: ids[3], rows: rowsOf(m.db) };
    const keepTwo = [
      '--keep-last',
      '2',
      '--keep-daily',
      '0',
      '--keep-weekly',
      '0',
      '--keep-monthly',
      '0',
      '--keep-manual',
      '0d',
    ];

    // Killed while removing packs (after the manifests and index files were dealt with).
    proxy.rule = (req) =>
      req.method === 'DELETE' && (req.url ?? '').includes('/repo/packs/') ? 'hold' : 'pass';
    let run = spawnCli(m, ['prune', '--from', 'bucket', ...keepTwo]);
    expect(await run.until(proxy.held())).toMatch(/^DELETE .*\/repo\/packs\//);
    // A backup while collection runs cannot lose a chunk it relies on: it does not run at all (database lock).
    const during = await m.cli(['backup', '--trigger', 'scheduled']);
    expect(during.code, during.stderr).toBe(1);
    expect(during.stderr).toMatch(/another run holds .*lock/);
    run.child.kill('SIGKILL');
    await run.done;
    proxy.rule = () => 'pass';
    let check = await m.cli(['check', '--from', 'bucket', '--json']);
    expect(JSON.parse(check.stdout).reports[0].problems).toEqual([]);
    expect(await restoreRows(m, 'bucket', newest.id)).toEqual(newest.rows);

    // Killed while replacing index files: the new ones are written, an old one is on its way out.
    const more = await m.backup();
    expect(more.code, more.stderr).toBe(0);
    changeDatabase(m.db, 0.6, 500);
    const after = await m.backup();
    const latest = { id: after.destinations[0].snapshot.id as string, rows: rowsOf(m.db) };
    const held = startHeld(
      proxy,
      (req) => req.method === 'DELETE' && (req.url ?? '').includes('/repo/index/'),
    );
    run = spawnCli(m, ['prune', '--from', 'bucket', '--keep-last', '1', ...keepTwo.slice(2)]);
    expect(await run.until(held)).toMatch(/^DELETE .*\/repo\/index\//);
    run.child.kill('SIGKILL');
    await run.done;
    proxy.rule = () => 'pass';
    check = await m.cli(['check', '--from', 'bucket', '--json']);
    expect(JSON.parse(check.stdout).reports[0].problems).toEqual([]);
    expect(await restoreRows(m, 'bucket', latest.id)).toEqual(latest.rows);

    // Finished at last: collection removed what no snapshot needs, the kept one restores.
    const done = await m.cli([
      'prune',
      '--from',
      'bucket',
      '--json',
      '--keep-last',
      '1',
      ...keepTwo.slice(2),
    ]);
    expect(done.code, done.stderr).toBe(0);
    const full = await m.cli(['check', '--from', 'bucket', '--read-data', '--json']);
    expect(full.code, full.stdout).toBe(0);
    expect(JSON.parse(full.stdout).reports[0].snapshots).toBe(1);
    expect(await restoreRows(m, 'bucket', latest.id)).toEqual(latest.rows);
  }, 300_000);
});

/** A fresh wait for the next held request (the proxy remembers only the first). */
function startHeld(
  proxy: FaultProxy,
  match: (req: import('node:http').IncomingMessage) => boolean,
): Promise<string> {
  return new Promise<string>((resolve) => {
    proxy.rule = (req) => {
      if (!match(req)) return 'pass';
      resolve(`${req.method} ${req.url}`);
      return 'hold';
    };
  });
}

describe('damaged repositories', () => {
  it('a missing, truncated or corrupt pack or manifest is named in one line, restores nothing wrong, and check finds it', async () => {
    const m = await machine((dir) => [localDestination(path.join(dir, 'shared'))], {
      rows: 6000,
      blobEvery: 5,
    });
    const repo = path.join(m.dir, 'shared', 'app', 'web1', 'repo');
    const first = await m.backup();
    changeDatabase(m.db, 0.05);
    const second = await m.backup();
    const [id1, id2] = [
      first.destinations[0].snapshot.id as string,
      second.destinations[0].snapshot.id as string,
    ];
    const packs = localRepoFiles(path.join(m.dir, 'shared')).filter((f) => f.startsWith('packs/'));
    // A pack the first snapshot needs: every pack of its run.
    const pack = packs.find(
      (p) =>
        fs.statSync(path.join(repo, p)).mtimeMs <= fs.statSync(path.join(repo, 'snapshots', id1)).mtimeMs,
    )!;
    const packFile = path.join(repo, pack);
    const short = path.basename(pack).slice(0, 12);
    const original = fs.readFileSync(packFile);
    const out = path.join(m.dir, 'out.db');

    const damage: [string, () => void, string[]][] = [
      ['truncated', () => fs.writeFileSync(packFile, original.subarray(0, original.length - 100)), []],
      ['missing', () => fs.rmSync(packFile), []],
      [
        'corrupt',
        () => {
          const bytes = Buffer.from(original);
          bytes[Math.floor(bytes.length / 2)] ^= 0x40;
          fs.writeFileSync(packFile, bytes);
        },
        ['--read-data'],
      ],
    ];
    for (const [what, spoil, checkFlags] of damage) {
      spoil();
      const r = await m.cli(['restore', id1, '--from', 'usb', '--to', out]);
      expect(r.code, what).toBe(1);
      expect(oneLineError(r.stderr), what).toContain(`pack ${short}`);
      expect(fs.existsSync(out), what).toBe(false);
      const check = await m.cli(['check', '--from', 'usb', ...checkFlags]);
      expect(check.code, what).toBe(1);
      expect(check.stdout, what).toContain(`pack ${short}`);
      fs.writeFileSync(packFile, original);
    }
    expect((await m.cli(['check', '--from', 'usb', '--read-data'])).code).toBe(0);

    const manifest = path.join(repo, 'snapshots', id2);
    const bytes = fs.readFileSync(manifest);
    bytes[10] ^= 0x01;
    fs.writeFileSync(manifest, bytes);
    const r = await m.cli(['restore', id2, '--from', 'usb', '--to', out]);
    expect(r.code).toBe(1);
    expect(oneLineError(r.stderr)).toContain(`snapshot ${id2.slice(0, 12)}`);
    const check = await m.cli(['check', '--from', 'usb']);
    expect(check.code).toBe(1);
    expect(check.stdout).toContain(`snapshot ${id2.slice(0, 12)}`);
    const verify = await m.cli(['verify', 'all', '--from', 'usb']);
    expect(verify.code).toBe(1);
    expect(verify.stdout).toMatch(new RegExp(`^FAILED .*${id2}`, 'm'));
    expect(verify.stdout).toMatch(new RegExp(`^ok .*${id1}`, 'm'));
    // The other snapshot is whole.
    expect((await m.cli(['restore', id1, '--from', 'usb', '--to', out])).code).toBe(0);
  }, 180_000);

  it('a repository written by a newer format version is refused, naming the version', async () => {
    const m = await machine((dir) => [localDestination(path.join(dir, 'shared'))]);
    expect((await m.backup()).code).toBe(0);
    const config = path.join(m.dir, 'shared', 'app', 'web1', 'repo', 'config');
    const parsed = JSON.parse(fs.readFileSync(config, 'utf8'));
    fs.writeFileSync(config, JSON.stringify({ ...parsed, litekeepRepository: 2 }));
    const run = await m.backup();
    expect(run.code).toBe(3);
    expect(run.destinations[0].error).toMatch(
      /repository format version 2, written by a newer litekeep.*upgrade litekeep/,
    );
    const restore = await m.cli(['restore', 'latest', '--from', 'usb', '--to', path.join(m.dir, 'x.db')]);
    expect(restore.code).toBe(1);
    expect(oneLineError(restore.stderr)).toMatch(/version 2.*upgrade litekeep/);
    const check = await m.cli(['check', '--from', 'usb']);
    expect(check.code).toBe(1);
    expect(check.stdout).toMatch(/version 2/);
  });
});

void s3Keys;
