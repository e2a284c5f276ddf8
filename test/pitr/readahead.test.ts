import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { restoreBackup } from '../../src/restore/restore.js';
import { readState, startWriter, stopWriters } from './app-writer.js';
import { killReplicators, setUp, sleep, waitFor } from './replication-setup.js';

afterEach(() => {
  stopWriters();
  killReplicators();
});

describe('reading the WAL ahead between passes', () => {
  it('loses no commit to an app whose checkpoints reset the WAL many times per pass', async () => {
    const t = setUp();
    const { dir, db } = t;
    const state = () => (fs.existsSync(t.stateFile) ? JSON.parse(fs.readFileSync(t.stateFile, 'utf8')) : {});
    const writer = startWriter(db);
    expect(await writer.ready).toBe('ready');
    await writer.send('burst 3');
    // A pass every 6 s: the app's checkpoints (every 20 pages) reset its WAL about every second meanwhile.
    const litekeep = t.replicate(['--interval', '6s']);
    await waitFor('the first base snapshot', () => state().wholeSince);
    const generations = new Set<number>();
    let last = 0;
    for (let i = 0; i < 24; i++) {
      last = await writer.send('burst 4');
      generations.add(fs.readFileSync(`${db}-wal`).readUInt32BE(16));
      await sleep(300);
    }
    // The app reset its WAL several times within one pass; every commit still reaches the destination.
    expect(generations.size).toBeGreaterThanOrEqual(4);
    // Shipped (or a gap moved the epoch on, which the next lines then report).
    await waitFor('the bursts shipped', async () => state().epoch > 0 || (await t.shipped()));
    expect(state().gapsTotal ?? 0).toBe(0);
    expect(state().epoch).toBe(0);
    litekeep.process.kill('SIGTERM');
    expect((await litekeep.exited).code).toBe(0);
    const out = path.join(dir, 'restored.db');
    const target = loadConfig({ cwd: dir }).databases[0];
    const result = await restoreBackup(target, { from: 'vault', at: new Date(Date.now()), to: out });
    expect(result.warnings).toEqual([]);
    const restored = readState(out);
    expect(restored.last).toBe(last);
    expect(restored.ns).toEqual(Array.from({ length: last }, (_, k) => k + 1));
  }, 300_000);
});
