import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { restoreBackup } from '../../src/restore/restore.js';
import { runCli } from '../helpers/cli.js';
import { startRecorder, type Recorder } from '../servers/http-recorder.js';
import { healthUrl, killDaemons, msg, spawnDaemon } from '../integration/daemon-helpers.js';
import { readState, startWriter, stopWriters } from './app-writer.js';
import { killReplicators, setUp, sleep, waitFor } from './replication-setup.js';

/**
 * `litekeep replicate` as users run it: its own process following an app that writes and checkpoints in
 * another, killed with SIGKILL at random moments and started again, down while the app's checkpoints reset
 * the WAL; then restores to many moments, each checked against what the app had committed by then.
 */

const receivers: Recorder[] = [];
afterEach(async () => {
  for (const r of receivers.splice(0)) await r.close();
  stopWriters();
  killDaemons();
  killReplicators();
});

describe('litekeep replicate', () => {
  it('restores exactly the commits made by each of 50 moments, across kill -9, restarts and WAL resets', async () => {
    // Every gap is news: an ntfy-compatible receiver on loopback hears about each one.
    const ntfy = await startRecorder();
    receivers.push(ntfy);
    const t = setUp({ notify: { ntfy: { server: ntfy.url, topic: 'litekeep-alerts' }, timeout: '2s' } });
    const writer = startWriter(t.db);
    expect(await writer.ready).toBe('ready');
    let last = await writer.send('burst 3');

    let litekeep = t.replicate();
    // A first start is a gap: the base snapshot it takes makes recovery whole from then on.
    await waitFor('the first base snapshot', () => t.snapshots() >= 1);
    await waitFor('the first commits shipped', t.shipped);

    /** Moments when every commit so far was shipped and the next burst had not begun: the answer is exact. */
    const quiet: { from: number; to: number; last: number }[] = [];
    let kills = 0;
    let gaps = 0;
    for (let round = 0; round < 16; round++) {
      if (round % 5 === 4) {
        // Down while the app writes and its checkpoints reset the WAL (autocheckpoint 20 pages): a gap.
        litekeep.process.kill('SIGKILL');
        await litekeep.exited;
        kills++;
        last = await writer.send('burst 40');
        last = await writer.send('checkpoint PASSIVE');
        last = await writer.send('burst 2');
        const before = t.snapshots();
        litekeep = t.replicate();
        await waitFor('a new base after the gap', () => t.snapshots() > before);
        gaps++;
      } else {
        last = await writer.send(`burst ${1 + ((round * 7) % 11)}`);
        if (round % 3 === 1) {
          // Killed at a random moment while it ships, and started again.
          await sleep(Math.floor(Math.random() * 150));
          litekeep.process.kill('SIGKILL');
          await litekeep.exited;
          kills++;
          litekeep = t.replicate();
        }
      }
      await waitFor(`round ${round} shipped`, t.shipped);
      const from = Date.now();
      await sleep(300);
      quiet.push({ from, to: Date.now() - 1, last });
    }
    expect(kills).toBeGreaterThanOrEqual(6);
    expect(gaps).toBe(3);
    const gapMessages = ntfy.requests.filter((r) => r.body.includes('replication gap'));
    expect(gapMessages.length).toBeGreaterThanOrEqual(3);
    // Sent with the failure priority (a gap is partly done), not as a plain success.
    for (const m of gapMessages)
      expect(String(m.headers['x-priority'] ?? m.headers.priority)).toMatch(/high|4/);
    litekeep.process.kill('SIGTERM');
    expect((await litekeep.exited).code).toBe(0);

    // Segments are private to their owner, like every backup.
    const segments = fs.readdirSync(path.join(t.repo, 'wal'));
    expect(segments.length).toBeGreaterThan(16);
    for (const name of segments) expect(fs.statSync(path.join(t.repo, 'wal', name)).mode & 0o777).toBe(0o600);

    const target = loadConfig({ cwd: t.dir }).databases[0];
    // 50 moments in random order over the whole run; a few through the CLI, the rest through the library.
    const moments = Array.from({ length: 50 }, (_, i) => {
      const q = quiet[i % quiet.length];
      return { at: new Date(q.from + Math.floor(Math.random() * (q.to - q.from))), last: q.last };
    }).sort(() => Math.random() - 0.5);
    for (const [i, moment] of moments.entries()) {
      const out = path.join(t.dir, `restored-${i}.db`);
      if (i < 4) {
        const r = await runCli(['restore', '--from', 'vault', '--at', moment.at.toISOString(), '--to', out], {
          cwd: t.dir,
          timeoutMs: 120_000,
        });
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toMatch(/point in time .*: base snapshot [0-9a-f]{12} .* WAL segment/);
      } else {
        const result = await restoreBackup(target, { from: 'vault', at: moment.at, to: out });
        expect(result.warnings, `moment ${moment.at.toISOString()}`).toEqual([]);
      }
      const state = readState(out);
      expect(state.last, `moment ${moment.at.toISOString()}`).toBe(moment.last);
      expect(state.ns).toEqual(Array.from({ length: moment.last }, (_, k) => k + 1));
      fs.rmSync(out);
    }
  }, 600_000);

  it('stops at the last whole point before a damaged or missing segment, and says so', async () => {
    const t = setUp();
    const writer = startWriter(t.db);
    expect(await writer.ready).toBe('ready');
    await writer.send('burst 3');
    const first = await runCli(['replicate', '--once'], { cwd: t.dir });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/base snapshot taken/);
    // status: behind while nothing ships, caught up after a pass.
    await writer.send('burst 2');
    const behind = JSON.parse((await runCli(['status', '--json'], { cwd: t.dir })).stdout);
    expect(behind.replication[0].destination).toBe('vault');
    expect(behind.replication[0].framesBehind).toBeGreaterThan(0);
    expect(behind.replication[0].lagMs).toBeGreaterThan(0);
    expect((await runCli(['replicate', '--once'], { cwd: t.dir })).code).toBe(0);
    const text = await runCli(['status'], { cwd: t.dir });
    expect(text.stdout).toMatch(
      /replication to vault: caught up, last shipped (just now|.* ago), \d+ segments \(/,
    );
    const marks: { at: Date; last: number }[] = [];
    for (let round = 0; round < 4; round++) {
      const last = await writer.send('burst 2');
      await sleep(20);
      const r = await runCli(['replicate', '--once'], { cwd: t.dir });
      expect(r.code, r.stderr).toBe(0);
      marks.push({ at: new Date(), last });
      await sleep(20);
    }
    const names = fs.readdirSync(path.join(t.repo, 'wal')).sort();
    const third = names[names.length - 2];
    const file = path.join(t.repo, 'wal', third);
    const bytes = fs.readFileSync(file);
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    fs.writeFileSync(file, bytes);

    const out = path.join(t.dir, 'restored.db');
    const r = await runCli(['restore', '--from', 'vault', '--at', marks[3].at.toISOString(), '--to', out], {
      cwd: t.dir,
    });
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(
      new RegExp(`restored to .*, not ${marks[3].at.toISOString()}: WAL segment ${third} cannot be used`),
    );
    expect(readState(out).last).toBe(marks[1].last);

    fs.rmSync(file);
    fs.rmSync(out);
    const missing = await runCli(
      ['restore', '--from', 'vault', '--at', marks[3].at.toISOString(), '--to', out],
      {
        cwd: t.dir,
      },
    );
    expect(missing.code, missing.stderr).toBe(3);
    expect(missing.stderr).toMatch(/does not follow the one before it \(a gap/);
    expect(readState(out).last).toBe(marks[1].last);
  }, 300_000);

  it('runs in the daemon for a database with replicate: true, and stops with it', async () => {
    const t = setUp({
      replicate: { enabled: true, interval: '100ms' },
      schedule: '0 3 * * *',
      catchUp: false,
    });
    const writer = startWriter(t.db);
    expect(await writer.ready).toBe('ready');
    await writer.send('burst 4');
    const daemon = spawnDaemon(['--http', '127.0.0.1:0'], { cwd: t.dir });
    const url = await healthUrl(daemon);
    await daemon.waitFor(msg('replicating app to vault'));
    await daemon.waitFor(msg('base snapshot of app taken'), 90_000);
    const last = await writer.send('burst 6');
    await waitFor('the burst shipped', t.shipped);
    const at = new Date();
    // /metrics: caught up, and what was shipped.
    const metrics = await (await fetch(new URL('/metrics', url))).text();
    const value = (name: string) =>
      Number(new RegExp(`^${name}\\{database="app",destination="vault"\\} (\\S+)$`, 'm').exec(metrics)?.[1]);
    expect(value('litekeep_replication_frames_behind')).toBe(0);
    expect(value('litekeep_replication_lag_seconds')).toBe(0);
    expect(value('litekeep_replication_base_owed')).toBe(0);
    expect(value('litekeep_replication_segments_shipped_total')).toBeGreaterThanOrEqual(2);
    expect(value('litekeep_replication_bytes_shipped_total')).toBeGreaterThan(0);
    daemon.process.kill('SIGTERM');
    expect((await daemon.exited).code).toBe(0);
    const target = loadConfig({ cwd: t.dir }).databases[0];
    const out = path.join(t.dir, 'restored.db');
    await restoreBackup(target, { from: 'vault', at, to: out });
    expect(readState(out).last).toBe(last);
  }, 180_000);

  it('in the daemon, a shipment that fails is a failure notification, sent once', async () => {
    const ntfy = await startRecorder();
    receivers.push(ntfy);
    const t = setUp({
      replicate: { enabled: true, interval: '100ms' },
      schedule: '0 3 * * *',
      catchUp: false,
      notify: { ntfy: { server: ntfy.url, topic: 'litekeep-alerts' }, timeout: '2s' },
    });
    const writer = startWriter(t.db);
    expect(await writer.ready).toBe('ready');
    await writer.send('burst 4');
    const daemon = spawnDaemon([], { cwd: t.dir });
    await daemon.waitFor(msg('base snapshot of app taken'), 90_000);
    await waitFor('the first commits shipped', t.shipped);
    // The destination's segment folder turns into a file: every shipment fails from now on.
    fs.rmSync(path.join(t.repo, 'wal'), { recursive: true });
    fs.writeFileSync(path.join(t.repo, 'wal'), 'not a folder');
    await writer.send('burst 3');
    await daemon.waitFor(msg('shipping app to vault failed'), 30_000);
    const failing = () => ntfy.requests.filter((r) => r.body.includes('shipping to vault failed'));
    await waitFor('the failure notification', () => failing().length > 0 || undefined, 30_000);
    expect(String(failing()[0].headers['x-priority'] ?? failing()[0].headers.priority)).toMatch(/high|4/);
    // The same failure pass after pass is one message, not one a pass.
    await writer.send('burst 3');
    await sleep(1500);
    expect(failing()).toHaveLength(1);
    daemon.process.kill('SIGTERM');
    expect((await daemon.exited).code).toBe(0);
  }, 180_000);

  it('refuses what it cannot replicate, naming the fix', async () => {
    const t = setUp();
    const none = await runCli(['replicate', '--once'], { cwd: t.dir });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/cannot read .*app\.db .*check the database path/);
    fs.writeFileSync(
      path.join(t.dir, 'litekeep.yml'),
      JSON.stringify({
        database: 'app.db',
        backupDir: 'backups',
        destinations: [{ name: 'v', type: 'local', path: 'v' }],
      }),
    );
    const writer = startWriter(t.db);
    await writer.ready;
    const full = await runCli(['replicate', '--once'], { cwd: t.dir });
    expect(full.code).toBe(2);
    expect(full.stderr).toMatch(/no format: incremental destination to replicate to/);
    // The daemon refuses at start too, before it schedules anything.
    fs.writeFileSync(
      path.join(t.dir, 'litekeep.yml'),
      JSON.stringify({
        database: 'app.db',
        backupDir: 'backups',
        replicate: true,
        destinations: [{ name: 'v', type: 'local', path: 'v' }],
      }),
    );
    const daemon = await runCli(['daemon'], { cwd: t.dir });
    expect(daemon.code).toBe(2);
    expect(daemon.stderr).toMatch(/no format: incremental destination to replicate to/);
  });
});
