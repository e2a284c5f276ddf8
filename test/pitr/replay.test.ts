import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { applyFrames } from '../../src/pitr/apply.js';
import type { ReplayStep } from '../../src/pitr/plan.js';
import { replayOnto } from '../../src/pitr/replay.js';
import { decodeSegment, encodeSegment, type Segment } from '../../src/pitr/segment.js';
import { readCommitted, type WalPosition } from '../../src/pitr/wal.js';
import { tempDir } from '../helpers/db.js';

/**
 * Replay writes each page once, from its newest frame (segments read newest first): the image must be the one
 * that applying every frame of every segment in order gives, byte for byte, through growth, deletes and a
 * VACUUM that shrinks the file, and the database the app had at that commit.
 */

const open: Database.Database[] = [];
afterEach(() => {
  for (const db of open.splice(0)) if (db.open) db.close();
});

describe('replay of many segments', () => {
  it('gives the same image as applying every frame in order, and the rows the app had', async () => {
    const dir = tempDir('litekeep-replay-');
    const file = path.join(dir, 'app.db');
    const db = new Database(file);
    open.push(db);
    db.pragma('journal_mode = wal');
    db.pragma('wal_autocheckpoint = 0');
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)');
    db.exec('CREATE INDEX t_body ON t (body)');
    const base = path.join(dir, 'base.db');
    await db.backup(base);

    const segments: Segment[] = [];
    let position: WalPosition | undefined;
    const ship = async () => {
      const read = await readCommitted(`${file}-wal`, position);
      if (read.frames.length === 0) return;
      const h = read.header!;
      const bytes = encodeSegment(
        {
          database: 'app',
          host: 'h',
          pageSize: h.pageSize,
          epoch: 0,
          generation: {
            salt1: h.salt1,
            salt2: h.salt2,
            checkpointSequence: h.checkpointSequence,
            bigEndianChecksum: h.bigEndianChecksum,
          },
          after: position ? 'continuation' : 'start',
        },
        position ? position.checksum : h.checksum,
        read.frames,
        segments.length,
      );
      segments.push(decodeSegment(bytes, `s${segments.length}`));
      position = read.next;
    };
    const insert = db.prepare('INSERT INTO t (body) VALUES (?)');
    const rows = () => db.prepare('SELECT id, body FROM t ORDER BY id').all();
    const states: unknown[][] = [];
    // Grow, rewrite the same pages many times, delete most, VACUUM (the file shrinks), grow again.
    for (let round = 0; round < 12; round++) {
      for (let i = 0; i < 40; i++) insert.run(`round ${round} row ${i} ${'x'.repeat((i * 37) % 900)}`);
      if (round === 5) db.exec('DELETE FROM t WHERE id % 5 <> 0');
      if (round === 6) db.exec('VACUUM');
      if (round % 3 === 1) db.exec(`UPDATE t SET body = body || '!' WHERE id % 3 = 0`);
      await ship();
      states.push(rows());
    }
    const pageSize = segments[0].metadata.pageSize;

    for (const upTo of [3, 6, 7, 11]) {
      const steps: ReplayStep[] = segments.slice(0, upTo + 1).map((segment, k) => ({
        segment: { id: `s${k}`, metadata: segment.metadata },
        throughFrame: segment.metadata.lastFrame,
      }));
      const inOrder = path.join(dir, `in-order-${upTo}.db`);
      fs.copyFileSync(base, inOrder);
      for (const segment of segments.slice(0, upTo + 1)) await applyFrames(inOrder, segment.frames, pageSize);
      const newestFirst = path.join(dir, `newest-first-${upTo}.db`);
      fs.copyFileSync(base, newestFirst);
      await replayOnto(newestFirst, steps, pageSize, async (id) => segments[Number(id.slice(1))]);
      expect(fs.readFileSync(newestFirst).equals(fs.readFileSync(inOrder)), `after segment ${upTo}`).toBe(
        true,
      );
      const restored = new Database(newestFirst, { readonly: true });
      open.push(restored);
      expect(restored.pragma('integrity_check', { simple: true })).toBe('ok');
      expect(restored.prepare('SELECT id, body FROM t ORDER BY id').all()).toEqual(states[upTo]);
    }
    // The VACUUM made the file smaller than before it: the replay cut it to the size of its last commit.
    const sizes = segments.map((s) => s.metadata.commits.at(-1)!.pages);
    expect(sizes[6]).toBeLessThan(sizes[5]);

    // Stopping inside a segment: exactly the commits through that frame.
    const middle = segments[9].metadata.commits[0];
    const partial = path.join(dir, 'partial.db');
    fs.copyFileSync(base, partial);
    const steps: ReplayStep[] = segments.slice(0, 10).map((segment, k) => ({
      segment: { id: `s${k}`, metadata: segment.metadata },
      throughFrame: k === 9 ? middle.frame : segment.metadata.lastFrame,
    }));
    await replayOnto(partial, steps, pageSize, async (id) => segments[Number(id.slice(1))]);
    const p = new Database(partial, { readonly: true });
    open.push(p);
    expect(p.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(fs.statSync(partial).size).toBe(middle.pages * pageSize);
    expect(p.prepare('SELECT count(*) AS n FROM t').get()).toEqual({ n: states[8].length + 1 });
  });
});
