import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { planRecovery, type BaseSnapshot } from '../../src/pitr/plan.js';
import { replayOnto } from '../../src/pitr/replay.js';
import { decodeSegment } from '../../src/pitr/segment.js';
import { assertWalMode, folderSink, ReplicationError, WalShipper } from '../../src/pitr/shipper.js';
import { walEnd } from '../../src/pitr/wal.js';
import { tempDir } from '../helpers/db.js';
import { readState, startWriter, stopWriters } from './app-writer.js';

afterEach(stopWriters);

describe('shipping a live WAL while the app writes and checkpoints', () => {
  it('restores exactly the commits seen by each of many moments, across restarts and resets', async () => {
    const dir = tempDir('litekeep-ship-');
    const file = path.join(dir, 'app.db');
    const segmentsDir = path.join(dir, 'segments');
    const stateFile = path.join(dir, 'state', 'app.json');
    const writer = startWriter(file);
    expect(await writer.ready).toBe('ready');
    let clock = 1_000;
    const sink = folderSink(segmentsDir);
    const newShipper = () =>
      new WalShipper({
        database: 'app',
        host: 'alpha',
        databasePath: file,
        stateFile,
        sink,
        now: () => clock,
      });
    let shipper = newShipper();
    await shipper.shipOnce();

    /** A base as a capture makes it: positions before and after a backup-API copy. */
    const bases: (BaseSnapshot & { image: string })[] = [];
    async function capture() {
      const shippedBefore = await shipper.lastShipped();
      const image = path.join(dir, `base-${bases.length}.db`);
      const db = new Database(file, { readonly: true });
      await db.backup(image);
      db.close();
      const end = await walEnd(`${file}-wal`);
      clock += 1;
      bases.push({
        id: `base-${bases.length}`,
        shippedBefore,
        walEndAfter: end && { generation: end.generation, frame: end.frame },
        finishedAt: clock,
        image,
      });
    }
    await writer.send('burst 5');
    await capture();

    // Quiet moments: after a pass, before the next burst; what was committed by then is known exactly.
    const quiet: { at: number; last: number }[] = [];
    let last = 0;
    let gaps = 0;
    for (let round = 0; round < 50; round++) {
      last = await writer.send(`burst ${1 + ((round * 7) % 13)}`);
      if (round % 6 === 5) {
        // litekeep is down (killed): the app goes on writing, and its checkpoints reset the WAL meanwhile.
        last = await writer.send('burst 30');
        last = await writer.send('checkpoint PASSIVE');
        last = await writer.send('burst 2');
        shipper = newShipper();
      }
      clock += 1000;
      const pass = await shipper.shipOnce();
      if (pass.gap === 'lost-frames') {
        gaps += 1;
        // What the daemon does on a gap: a new base at once, so recovery is whole again from here.
        await capture();
      }
      clock += 1;
      quiet.push({ at: clock, last });
      clock += 500;
    }
    expect(gaps).toBeGreaterThan(0);
    expect(fs.readdirSync(segmentsDir).length).toBeGreaterThan(20);
    for (const name of fs.readdirSync(segmentsDir))
      expect(fs.statSync(path.join(segmentsDir, name)).mode & 0o777).toBe(0o600);

    const names = await sink.list();
    const stored = await Promise.all(
      names.map(async (id) => ({ id, metadata: decodeSegment(await sink.get(id), id).metadata })),
    );
    const load = async (id: string) => decodeSegment(await sink.get(id), id);
    // Moments spread over the whole run, in random order: each restores exactly the commits made by then.
    const moments = [...quiet].sort(() => Math.random() - 0.5);
    for (const [i, moment] of moments.entries()) {
      const plan = planRecovery(bases, stored, moment.at)!;
      expect(plan.stoppedByGap, `moment ${moment.at}`).toBeUndefined();
      const base = bases.find((b) => b.id === plan.base.id)!;
      const out = path.join(dir, `restored-${i}.db`);
      fs.copyFileSync(base.image, out);
      await replayOnto(out, plan.steps, 4096, load);
      const state = readState(out);
      expect(state.last, `moment ${moment.at}`).toBe(moment.last);
      expect(state.ns).toEqual(Array.from({ length: moment.last }, (_, k) => k + 1));
      fs.rmSync(out);
    }
  }, 120_000);

  it('refuses a database that is missing, not SQLite, or not in WAL mode, saying what to do', async () => {
    const dir = tempDir('litekeep-ship-');
    await expect(assertWalMode(path.join(dir, 'none.db'))).rejects.toThrow(
      /cannot read .*none\.db \(ENOENT\); check the database path/,
    );
    fs.writeFileSync(path.join(dir, 'text.db'), 'hello'.repeat(40));
    await expect(assertWalMode(path.join(dir, 'text.db'))).rejects.toThrow(/is not a SQLite database/);
    const db = new Database(path.join(dir, 'rollback.db'));
    db.exec('CREATE TABLE t (x)');
    db.close();
    await expect(assertWalMode(path.join(dir, 'rollback.db'))).rejects.toThrow(ReplicationError);
    await expect(assertWalMode(path.join(dir, 'rollback.db'))).rejects.toThrow(/PRAGMA journal_mode=WAL/);
  });
});
