import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { parseWalHeader } from '../../src/pitr/wal.js';
import { restoreBackup } from '../../src/restore/restore.js';
import { runCli, type CliChild } from '../helpers/cli.js';
import { healthUrl, killDaemons, msg, spawnDaemon } from '../integration/daemon-helpers.js';
import { readState, startWriter, stopWriters } from './app-writer.js';
import { killReplicators, setUp, sleep, waitFor } from './replication-setup.js';

/**
 * Cooperative mode as users run it: an app in its own process with `wal_autocheckpoint=0`, `litekeep
 * replicate` checkpointing what it shipped, killed with SIGKILL at random moments and started again while the
 * app writes. No gap, a WAL that keeps being reset (while the same app without litekeep grows it without end),
 * and restores that give exactly the app's committed prefix; the daemon (`replicate: { enabled: true, mode:
 * cooperative }`) doing the same.
 */

afterEach(() => {
  stopWriters();
  killReplicators();
  killDaemons();
});

const walBytes = (db: string) => (fs.existsSync(`${db}-wal`) ? fs.statSync(`${db}-wal`).size : 0);
const walHeader = (db: string) => parseWalHeader(fs.readFileSync(`${db}-wal`).subarray(0, 32))!;
const walSequence = (db: string) => walHeader(db).checkpointSequence;

/**
 * The cooperative app (wal_autocheckpoint=0) and the same app, writing the same, with nobody checkpointing:
 * what its WAL does without litekeep. `burst` writes to both and resolves with the app's last commit.
 */
async function withControl(t: { db: string; dir: string }) {
  const writer = startWriter(t.db, { autocheckpoint: 0 });
  const controlDb = path.join(t.dir, 'control.db');
  const control = startWriter(controlDb, { autocheckpoint: 0 });
  expect(await writer.ready).toBe('ready');
  expect(await control.ready).toBe('ready');
  const burst = async (count: number) => {
    await control.send(`burst ${count}`);
    return writer.send(`burst ${count}`);
  };
  return { writer, controlDb, burst };
}

describe('cooperative mode', () => {
  it('ships every commit without a gap across kill -9 and restarts, and keeps the WAL bounded', async () => {
    const t = setUp({ replicate: { mode: 'cooperative' } });
    const { writer, controlDb, burst } = await withControl(t);
    let last = await burst(3);

    const runs: CliChild[] = [];
    const start = () => {
      const child = t.replicate();
      runs.push(child);
      return child;
    };
    let litekeep = start();
    await waitFor('the first base snapshot', () => t.snapshots() >= 1);
    await waitFor('the first commits shipped', t.shipped);
    const firstSequence = walSequence(t.db);

    const quiet: { from: number; to: number; last: number }[] = [];
    let kills = 0;
    for (let round = 0; round < 24; round++) {
      last = await burst(4 + ((round * 7) % 19));
      if (round % 4 === 3) {
        // Killed at a random moment of its pass (shipping, checkpointing, between), the app writing on.
        await sleep(Math.floor(Math.random() * 150));
        litekeep.process.kill('SIGKILL');
        await litekeep.exited;
        kills++;
        last = await burst(6);
        litekeep = start();
      }
      await waitFor(`round ${round} shipped`, t.shipped);
      const from = Date.now();
      await sleep(250);
      quiet.push({ from, to: Date.now() - 1, last });
    }
    expect(kills).toBe(6);

    // Zero gaps: the first start's base is the only one, no new epoch, nothing owed, no GAP said.
    const state = JSON.parse(fs.readFileSync(t.stateFile, 'utf8'));
    expect(state.epoch).toBe(0);
    expect(state.baseNeededSince).toBeUndefined();
    expect(state.mode).toBe('cooperative');
    expect(t.snapshots()).toBe(1);
    litekeep.process.kill('SIGTERM');
    expect((await litekeep.exited).code).toBe(0);
    for (const run of runs) expect(run.stderr()).not.toMatch(/GAP/);

    // The WAL kept being reset by the app's writes after litekeep's checkpoints, so its file (which never
    // shrinks: it is the high-water mark) stayed far smaller than the one nobody checkpoints.
    expect(walSequence(t.db) - firstSequence).toBeGreaterThanOrEqual(12);
    expect(walBytes(t.db) * 3).toBeLessThan(walBytes(controlDb));
    // status shows that size (and would warn past 64 MiB).
    const status = JSON.parse((await runCli(['status', '--json'], { cwd: t.dir })).stdout);
    expect(status.walBytes).toBe(walBytes(t.db));
    expect(status.walLarge).toBe(false);
    expect((await runCli(['status'], { cwd: t.dir })).stdout).toMatch(
      /WAL: .* \(cooperative mode: litekeep checkpoints it\)/,
    );

    // Restores at many moments: exactly the commits made by then.
    const target = loadConfig({ cwd: t.dir }).databases[0];
    const moments = Array.from({ length: 12 }, (_, i) => {
      const q = quiet[(i * 5) % quiet.length];
      return { at: new Date(q.from + Math.floor(Math.random() * (q.to - q.from))), last: q.last };
    });
    for (const [i, moment] of moments.entries()) {
      const out = path.join(t.dir, `restored-${i}.db`);
      const result = await restoreBackup(target, { from: 'vault', at: moment.at, to: out });
      expect(result.warnings, `moment ${moment.at.toISOString()}`).toEqual([]);
      const restored = readState(out);
      expect(restored.last, `moment ${moment.at.toISOString()}`).toBe(moment.last);
      expect(restored.ns).toEqual(Array.from({ length: moment.last }, (_, k) => k + 1));
      fs.rmSync(out);
    }

    // The app's last connection closing while litekeep is down: SQLite checkpoints everything and deletes the
    // WAL, commits litekeep never read go with it, and that gap is found and answered with a new base.
    await burst(5);
    await writer.send('reopen');
    expect(walBytes(t.db)).toBe(0);
    last = await writer.send('burst 3');
    litekeep = start();
    await litekeep.waitForStderr(/GAP on vault/, 60_000);
    await waitFor('a new base after the gap', () => t.snapshots() >= 2);
    await waitFor('the commits after the gap shipped', t.shipped);
    expect(JSON.parse(fs.readFileSync(t.stateFile, 'utf8')).epoch).toBe(1);
    const at = new Date();
    litekeep.process.kill('SIGTERM');
    expect((await litekeep.exited).code).toBe(0);
    const out = path.join(t.dir, 'restored-after-gap.db');
    await restoreBackup(target, { from: 'vault', at, to: out });
    expect(readState(out).last).toBe(last);
  }, 600_000);

  it('runs in the daemon: ships every commit, its checkpoints keep resetting the WAL, restores are exact', async () => {
    const t = setUp({
      replicate: { enabled: true, mode: 'cooperative', interval: '100ms' },
      schedule: '0 3 * * *',
      catchUp: false,
      // The daemon logs each of its checkpoints at debug.
      log: { level: 'debug' },
    });
    const { controlDb, burst } = await withControl(t);
    await burst(3);
    const daemon = spawnDaemon(['--http', '127.0.0.1:0'], { cwd: t.dir });
    const url = await healthUrl(daemon);
    await daemon.waitFor(msg('replicating app to vault (cooperative: litekeep checkpoints the WAL)'));
    await daemon.waitFor(msg('base snapshot of app taken'), 90_000);
    await waitFor('the first commits shipped', t.shipped);
    const first = walHeader(t.db);

    // Bursts, each logged with the last commit it made; once it is shipped, a quiet stretch follows in which
    // every commit so far, and none after, was made.
    const quiet: { from: number; to: number; last: number }[] = [];
    for (let round = 0; round < 16; round++) {
      const last = await burst(4 + ((round * 7) % 19));
      await waitFor(`round ${round} shipped`, t.shipped);
      const from = Date.now();
      await sleep(250);
      quiet.push({ from, to: Date.now() - 1, last });
    }

    // The daemon's PASSIVE checkpoints let the app's next write reset the WAL, round after round: the header's
    // checkpoint sequence went on and its salt changed, and the file stayed far smaller than the one nobody
    // checkpoints.
    const now = walHeader(t.db);
    expect(now.checkpointSequence - first.checkpointSequence).toBeGreaterThanOrEqual(8);
    expect(now.salt1).not.toBe(first.salt1);
    expect(daemon.records.filter(msg('checkpointed ')).length).toBeGreaterThanOrEqual(8);
    expect(walBytes(t.db) * 3).toBeLessThan(walBytes(controlDb));
    // No gap: the first start's base is the only one, nothing owed, nothing warned.
    const state = JSON.parse(fs.readFileSync(t.stateFile, 'utf8'));
    expect(state).toMatchObject({ epoch: 0, mode: 'cooperative' });
    expect(state.baseNeededSince).toBeUndefined();
    expect(state.gapsTotal ?? 0).toBe(0);
    expect(t.snapshots()).toBe(1);
    expect(daemon.records.filter((r) => (r.level ?? 0) >= 40)).toEqual([]);
    // /metrics says the same: segments shipped, no gap, the WAL's size as it is.
    const metrics = await (await fetch(new URL('/metrics', url))).text();
    const value = (name: string, labels = 'database="app",destination="vault"') =>
      Number(new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(metrics)?.[1]);
    expect(value('litekeep_replication_segments_shipped_total')).toBe(state.segmentsShipped);
    expect(state.segmentsShipped).toBeGreaterThanOrEqual(16);
    expect(value('litekeep_replication_gaps_total')).toBe(0);
    expect(value('litekeep_replication_wal_bytes', 'database="app"')).toBe(walBytes(t.db));
    daemon.process.kill('SIGTERM');
    expect((await daemon.exited).code).toBe(0);

    // restore --at a moment after each logged burst: exactly the commits made by then, nothing more or less.
    const target = loadConfig({ cwd: t.dir }).databases[0];
    for (const [i, q] of quiet.entries()) {
      if (i % 3 !== 0 && i !== quiet.length - 1) continue;
      const at = new Date(q.from + Math.floor(Math.random() * (q.to - q.from)));
      const out = path.join(t.dir, `daemon-restored-${i}.db`);
      const result = await restoreBackup(target, { from: 'vault', at, to: out });
      expect(result.warnings, `moment ${at.toISOString()}`).toEqual([]);
      const restored = readState(out);
      expect(restored.last, `moment ${at.toISOString()}`).toBe(q.last);
      expect(restored.ns).toEqual(Array.from({ length: q.last }, (_, k) => k + 1));
      fs.rmSync(out);
    }
  }, 300_000);

  it('says so when the app checkpoints itself after all', async () => {
    const t = setUp({ replicate: { mode: 'cooperative' } });
    const writer = startWriter(t.db, { autocheckpoint: 0 });
    expect(await writer.ready).toBe('ready');
    await writer.send('burst 3');
    let litekeep = t.replicate();
    await waitFor('the first commits shipped', t.shipped);
    litekeep.process.kill('SIGKILL');
    await litekeep.exited;
    // While litekeep is down the app checkpoints frames litekeep has not read: against the mode's contract.
    await writer.send('burst 5');
    await writer.send('checkpoint PASSIVE');
    litekeep = t.replicate();
    await litekeep.waitForStderr(
      /the WAL of app was checkpointed past what litekeep had shipped to vault .*set PRAGMA wal_autocheckpoint=0 in the app/,
      60_000,
    );
  }, 120_000);

  it('refuses an unknown mode, naming the allowed ones', async () => {
    const t = setUp({ replicate: { mode: 'nonsense' } });
    const r = await runCli(['replicate', '--once'], { cwd: t.dir });
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/replicate\.mode.*nonsense.*one of follow, cooperative/);
  });
});
