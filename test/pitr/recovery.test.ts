import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import {
  planRecovery,
  recoveryWindows,
  type BaseSnapshot,
  type CommitRef,
  type StoredSegment,
} from '../../src/pitr/plan.js';
import { replayOnto } from '../../src/pitr/replay.js';
import { decodeSegment, encodeSegment, SegmentError, type Segment } from '../../src/pitr/segment.js';
import { readCommitted, type WalPosition, type WalRead } from '../../src/pitr/wal.js';
import { tempDir } from '../helpers/db.js';

const open: Database.Database[] = [];
afterEach(() => {
  for (const db of open.splice(0)) if (db.open) db.close();
});

type Row = { id: number; body: string };

/** An app writing to a WAL database, and a shipper reading its WAL into segments as litekeep would. */
function scenario() {
  const dir = tempDir('litekeep-pitr-');
  const file = path.join(dir, 'app.db');
  const db = new Database(file);
  open.push(db);
  db.pragma('journal_mode = wal');
  db.pragma('wal_autocheckpoint = 0');
  db.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)');
  db.exec('CREATE INDEX notes_body ON notes (body)');
  const insert = db.prepare('INSERT INTO notes (body) VALUES (?)');
  const state = () => db.prepare('SELECT id, body FROM notes ORDER BY id').all() as Row[];
  const segments = new Map<string, Buffer>();
  let position: WalPosition | undefined;
  let shippedCommit: CommitRef | undefined;
  let epoch = 0;
  let last: WalRead | undefined;

  /** One shipper pass: what is committed since the last pass becomes a segment seen at `seenAt`. */
  async function ship(seenAt: number, limitBytes?: number): Promise<string | undefined> {
    const read = await readCommitted(`${file}-wal`, position, { limitBytes });
    if (read.frames.length === 0) return undefined;
    const header = read.header!;
    const start = read.reset || !position ? { checksum: header.checksum } : position;
    const kind = !position
      ? 'start'
      : read.reset
        ? read.reset.lostFrames
          ? 'gap'
          : 'reset'
        : 'continuation';
    if (kind === 'gap') epoch += 1;
    const bytes = encodeSegment(
      {
        database: 'app',
        host: 'alpha',
        pageSize: header.pageSize,
        epoch,
        generation: {
          salt1: header.salt1,
          salt2: header.salt2,
          checkpointSequence: header.checkpointSequence,
          bigEndianChecksum: header.bigEndianChecksum,
        },
        after: kind,
        ...(kind === 'reset'
          ? {
              previous: {
                salt1: position!.salt1,
                salt2: position!.salt2,
                lastFrame: position!.frame,
                endChecksum: position!.checksum,
              },
            }
          : {}),
      },
      start.checksum,
      read.frames,
      seenAt,
    );
    const id = `seg-${segments.size + 1}`;
    segments.set(id, bytes);
    position = read.next;
    last = read;
    shippedCommit = { epoch, generation: header, frame: read.next!.frame };
    return id;
  }

  /** A base taken with SQLite's backup API (pages as they are), with the positions a capture records. */
  async function capture(finishedAt: number): Promise<BaseSnapshot & { image: string }> {
    const shippedBefore = shippedCommit;
    const image = path.join(dir, `base-${finishedAt}.db`);
    await db.backup(image);
    const end = await readCommitted(`${file}-wal`, undefined);
    const walEndAfter =
      end.next && end.next.frame > 0 ? { generation: end.header!, frame: end.next.frame } : undefined;
    return { id: `base-${finishedAt}`, shippedBefore, walEndAfter, finishedAt, image };
  }

  const stored = (): StoredSegment[] =>
    [...segments].map(([id, bytes]) => ({ id, metadata: decodeSegment(bytes, id).metadata }));
  const load = async (id: string): Promise<Segment> => decodeSegment(segments.get(id)!, id);

  async function restore(base: BaseSnapshot & { image: string }, target: number) {
    const plan = planRecovery([base], stored(), target)!;
    const out = path.join(dir, `restored-${target}-${Math.random().toString(36).slice(2)}.db`);
    fs.copyFileSync(base.image, out);
    await replayOnto(out, plan.steps, 4096, load);
    const restored = new Database(out, { readonly: true });
    try {
      expect(restored.pragma('integrity_check', { simple: true })).toBe('ok');
      return { plan, rows: restored.prepare('SELECT id, body FROM notes ORDER BY id').all() as Row[] };
    } finally {
      restored.close();
    }
  }
  return { db, insert, state, ship, capture, restore, stored, segments, last: () => last };
}

describe('point-in-time recovery from a base and WAL segments', () => {
  it('replays through every commit the base may hold, and then exactly the commits seen by the moment asked for', async () => {
    const s = scenario();
    for (let i = 0; i < 5; i++) s.insert.run(`one ${i}`);
    await s.ship(1000);
    // Commits made after the last shipped one and before the capture: the base holds them, no segment yet.
    for (let i = 0; i < 3; i++) s.insert.run(`two ${i}`);
    const afterTwo = s.state();
    const base = await s.capture(1200);
    for (let i = 0; i < 2; i++) s.insert.run(`three ${i}`);
    // The shipper catches up in two passes: the first takes only the first commit after the base's start.
    const partly = await s.ship(1300, 1);
    expect(s.stored().find((x) => x.id === partly)!.metadata.commits).toHaveLength(1);
    await s.ship(2000);
    for (let i = 0; i < 4; i++) s.insert.run(`four ${i}`);
    await s.ship(3000);
    const afterFour = s.state();

    // At 1500 only "two 0" was seen, yet the base holds all of "two": replay goes on through the capture's end
    // (stopping after "two 0" would put back pages older than the base's).
    const at1500 = await s.restore(base, 1500);
    expect(at1500.rows).toEqual(afterTwo);
    expect(at1500.plan.steps.map((x) => x.segment.id)).toEqual([partly, 'seg-3']);
    expect(at1500.plan.reaches).toBe(1300);
    const at2500 = await s.restore(base, 2500);
    expect(at2500.rows.map((r) => r.body)).toEqual([...afterTwo.map((r) => r.body), 'three 0', 'three 1']);
    expect(at2500.plan.reaches).toBe(2000);
    const at3000 = await s.restore(base, 3000);
    expect(at3000.rows).toEqual(afterFour);
    expect(planRecovery([base], s.stored(), 1199)).toBeUndefined();
    expect(recoveryWindows([base], s.stored())).toEqual([{ from: 1200, to: 3000 }]);
  });

  it('crosses a WAL reset the shipper proved whole, and stops before a gap, saying so', async () => {
    const s = scenario();
    for (let i = 0; i < 5; i++) s.insert.run(`one ${i}`);
    await s.ship(1000);
    const base = await s.capture(1100);
    s.db.pragma('wal_checkpoint(PASSIVE)');
    s.insert.run('after reset');
    const resetId = await s.ship(2000);
    expect(s.stored().find((x) => x.id === resetId)!.metadata.after).toBe('reset');
    const afterReset = s.state();
    // Commits the shipper never read before the app's checkpoint reset the WAL: a gap.
    // ... and the new generation overwrote where they were.
    s.insert.run('lost 1');
    s.db.pragma('wal_checkpoint(PASSIVE)');
    for (let i = 0; i < 10; i++) s.insert.run(`after gap ${i}`);
    const gapId = await s.ship(3000);
    expect(s.stored().find((x) => x.id === gapId)!.metadata.after).toBe('gap');

    const at2500 = await s.restore(base, 2500);
    expect(at2500.rows).toEqual(afterReset);
    expect(at2500.plan.stoppedByGap).toBeUndefined();
    const at4000 = await s.restore(base, 4000);
    expect(at4000.rows).toEqual(afterReset);
    expect(at4000.plan.stoppedByGap).toEqual({ after: 2000, segment: gapId });
    expect(recoveryWindows([base], s.stored())).toEqual([{ from: 1100, to: 2000 }]);
  });

  it('never crosses a reset when the tail of the generation before it is missing', async () => {
    const s = scenario();
    for (let i = 0; i < 5; i++) s.insert.run(`one ${i}`);
    await s.ship(1000);
    const base = await s.capture(1100);
    s.insert.run('tail of the first generation');
    const tail = (await s.ship(1500))!;
    const beforeTail = (await s.restore(base, 1200)).rows;
    s.db.pragma('wal_checkpoint(PASSIVE)');
    s.insert.run('after reset');
    const resetId = (await s.ship(2000))!;
    expect(s.stored().find((x) => x.id === resetId)!.metadata.previous?.lastFrame).toBe(
      s.stored().find((x) => x.id === tail)!.metadata.lastFrame,
    );
    // Lost: the segment that ended the first generation. The reset segment alone must not be taken for its follower.
    s.segments.delete(tail);
    const at3000 = await s.restore(base, 3000);
    expect(at3000.plan.stoppedByGap).toEqual({ after: 1100, segment: resetId });
    expect(at3000.rows).toEqual(beforeTail);
  });

  it('uses the base alone when the segments it needs are not there', async () => {
    const s = scenario();
    for (let i = 0; i < 5; i++) s.insert.run(`one ${i}`);
    await s.ship(1000);
    for (let i = 0; i < 3; i++) s.insert.run(`two ${i}`);
    const atCapture = s.state();
    const base = await s.capture(1200);
    // Nothing shipped since: replaying the older segment alone could leave pages older than the base's.
    const plan = planRecovery([base], s.stored(), 5000)!;
    expect(plan.steps).toEqual([]);
    expect(plan.stoppedByGap).toBeDefined();
    expect((await s.restore(base, 5000)).rows).toEqual(atCapture);
  });

  it('refuses a damaged, cut or newer segment, naming it', async () => {
    const s = scenario();
    for (let i = 0; i < 5; i++) s.insert.run(`one ${i}`);
    const id = (await s.ship(1000))!;
    const bytes = s.segments.get(id)!;
    expect(decodeSegment(bytes, id).frames.length).toBe(s.last()!.frames.length);

    const flipped = Buffer.from(bytes);
    flipped[flipped.length - 100] ^= 0x40;
    expect(() => decodeSegment(flipped, id)).toThrow(
      /WAL segment seg-1 is damaged \(its sha256 does not match\)/,
    );
    expect(() => decodeSegment(bytes.subarray(0, bytes.length - 10), id)).toThrow(SegmentError);
    const newer = Buffer.from(bytes);
    newer.writeUInt32BE(2, 8);
    expect(() => decodeSegment(newer, id)).toThrow(/newer litekeep \(segment format 2; this one reads 1\)/);
    expect(() => decodeSegment(Buffer.from('not a segment at all, really not one'), id)).toThrow(
      /not a litekeep WAL segment/,
    );
  });
});
