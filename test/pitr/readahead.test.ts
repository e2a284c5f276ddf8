import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { walMarkOf } from '../../src/pitr/capture.js';
import { restoreBackup } from '../../src/restore/restore.js';
import { spawnCli, type CliChild } from '../helpers/cli.js';
import { tempDir } from '../helpers/db.js';
import { readState, startWriter, stopWriters } from './app-writer.js';

const children: CliChild[] = [];
afterEach(() => {
  stopWriters();
  for (const c of children.splice(0)) c.process.kill('SIGKILL');
});
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('reading the WAL ahead between passes', () => {
  it('loses no commit to an app whose checkpoints reset the WAL many times per pass', async () => {
    const dir = tempDir('litekeep-readahead-');
    fs.writeFileSync(
      path.join(dir, 'litekeep.yml'),
      JSON.stringify({
        database: 'app.db',
        backupDir: 'backups',
        host: 'web1',
        notify: {},
        destinations: [{ name: 'vault', type: 'local', path: 'vault', format: 'incremental' }],
      }),
    );
    const db = path.join(dir, 'app.db');
    const stateFile = path.join(dir, 'backups', '.litekeep', 'replication', 'vault.json');
    const state = () => (fs.existsSync(stateFile) ? JSON.parse(fs.readFileSync(stateFile, 'utf8')) : {});
    const writer = startWriter(db);
    expect(await writer.ready).toBe('ready');
    await writer.send('burst 3');
    // A pass every 6 s: the app's checkpoints (every 20 pages) reset its WAL about every second meanwhile.
    const litekeep = spawnCli(['replicate', '--interval', '6s'], { cwd: dir, timeoutMs: 300_000 });
    children.push(litekeep);
    const deadline = Date.now() + 120_000;
    while (!state().wholeSince && Date.now() < deadline) await sleep(100);
    expect(state().wholeSince, 'the first base snapshot').toBeDefined();
    const generations = new Set<number>();
    let last = 0;
    for (let i = 0; i < 24; i++) {
      last = await writer.send('burst 4');
      generations.add(fs.readFileSync(`${db}-wal`).readUInt32BE(16));
      await sleep(300);
    }
    // The app reset its WAL several times within one pass; every commit still reaches the destination.
    expect(generations.size).toBeGreaterThanOrEqual(4);
    // Shipped: the last commit in the WAL is the last one the state records (or a gap moved the epoch on).
    for (;;) {
      const end = await walMarkOf(db);
      const shipped = state().lastShipped;
      if (
        state().epoch > 0 ||
        (end && shipped && shipped.generation.salt1 === end.generation.salt1 && shipped.frame === end.frame)
      )
        break;
      if (Date.now() > deadline + 60_000) throw new Error('the bursts were not shipped');
      await sleep(100);
    }
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
