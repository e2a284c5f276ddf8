import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { applyFrames } from '../../src/pitr/apply.js';
import {
  frameOffset,
  parseWalHeader,
  readCommitted,
  WAL_FRAME_HEADER_BYTES,
  WalFormatError,
  type WalFrame,
} from '../../src/pitr/wal.js';
import { tempDir } from '../helpers/db.js';

const open: Database.Database[] = [];
afterEach(() => {
  for (const db of open.splice(0)) if (db.open) db.close();
});

/** A WAL database whose app never checkpoints on its own, its file holding the state before any frame. */
function liveDatabase(dir: string, pageSize = 4096) {
  const file = path.join(dir, 'app.db');
  const db = new Database(file);
  open.push(db);
  db.pragma(`page_size = ${pageSize}`);
  db.pragma('journal_mode = wal');
  db.pragma('wal_autocheckpoint = 0');
  db.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, blob BLOB)');
  db.exec('CREATE INDEX notes_body ON notes (body)');
  db.pragma('wal_checkpoint(TRUNCATE)');
  const base = path.join(dir, 'base.db');
  fs.copyFileSync(file, base);
  const insert = db.prepare('INSERT INTO notes (body, blob) VALUES (?, randomblob(?))');
  return { file, wal: `${file}-wal`, base, db, insert };
}

function rows(file: string): unknown[] {
  const db = new Database(file, { readonly: true });
  try {
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    return db.prepare('SELECT id, body, hex(blob) AS blob FROM notes ORDER BY id').all();
  } finally {
    db.close();
  }
}

/** The base image with these frames applied, as a separate file: what a restore would produce. */
async function replayed(
  base: string,
  frames: WalFrame[],
  pageSize: number,
  dir: string,
  name = 'replayed.db',
) {
  const out = path.join(dir, name);
  fs.copyFileSync(base, out);
  await applyFrames(out, frames, pageSize);
  return out;
}

describe('reading the live WAL from outside the app', () => {
  it('takes exactly the committed frames, which replayed on the base give the live rows', async () => {
    const dir = tempDir('litekeep-wal-');
    const live = liveDatabase(dir);
    for (let i = 0; i < 50; i++) live.insert.run(`note ${i}`, 300 + i * 40);
    live.db.prepare('UPDATE notes SET body = body || ? WHERE id % 7 = 0').run(' (edited)');
    live.db.prepare('DELETE FROM notes WHERE id % 11 = 0').run();

    const read = await readCommitted(live.wal, undefined);
    expect(read.header?.pageSize).toBe(4096);
    expect(read.frames.length).toBeGreaterThan(50);
    expect(read.frames.at(-1)!.commitSize).toBeGreaterThan(0);
    expect(read.next?.frame).toBe(read.frames.at(-1)!.index);
    // Every frame is in the file, in order, and nothing after the last is valid (the WAL holds no more).
    expect(read.frames.map((f) => f.index)).toEqual(read.frames.map((_, i) => i + 1));
    expect(fs.statSync(live.wal).size).toBe(frameOffset(read.frames.length + 1, 4096));

    const out = await replayed(live.base, read.frames, 4096, dir);
    expect(rows(out)).toEqual(rows(live.file));
  });

  it('continues from where it stopped, and leaves an open transaction for later', async () => {
    const dir = tempDir('litekeep-wal-');
    const live = liveDatabase(dir);
    for (let i = 0; i < 10; i++) live.insert.run(`first ${i}`, 100);
    const first = await readCommitted(live.wal, undefined);
    const afterFirst = rows(live.file);

    // A transaction larger than the page cache spills its pages into the WAL before it commits.
    live.db.pragma('cache_size = 2');
    live.db.exec('BEGIN');
    for (let i = 0; i < 200; i++) live.insert.run(`open ${i}`, 2000);
    const spilled = fs.statSync(live.wal).size;
    expect(spilled).toBeGreaterThan(frameOffset(first.frames.length + 1, 4096));
    const during = await readCommitted(live.wal, first.next);
    expect(during.frames).toEqual([]);
    expect(during.next).toEqual(first.next);
    live.db.exec('ROLLBACK');

    // The rolled-back frames are overwritten by the next transaction, whose chain continues from the last commit.
    for (let i = 0; i < 5; i++) live.insert.run(`second ${i}`, 100);
    const second = await readCommitted(live.wal, first.next);
    expect(second.reset).toBeUndefined();
    expect(second.frames[0].index).toBe(first.next!.frame + 1);
    expect(second.frames.every((f) => f.index > first.next!.frame)).toBe(true);

    const onlyFirst = await replayed(live.base, first.frames, 4096, dir, 'first.db');
    expect(rows(onlyFirst)).toEqual(afterFirst);
    const both = await replayed(live.base, [...first.frames, ...second.frames], 4096, dir, 'both.db');
    expect(rows(both)).toEqual(rows(live.file));
    expect(rows(both).some((r) => String((r as { body: string }).body).startsWith('open'))).toBe(false);
  });

  it('stops in front of a damaged frame and never takes a frame whose checksum fails', async () => {
    const dir = tempDir('litekeep-wal-');
    const live = liveDatabase(dir);
    for (let i = 0; i < 20; i++) live.insert.run(`note ${i}`, 500);
    const whole = await readCommitted(live.wal, undefined);
    const copy = path.join(dir, 'copy.db-wal');
    const bytes = fs.readFileSync(live.wal);
    // One bit flipped in the page of frame 5: frames 1-4 hold, and only the commits among them count.
    bytes[frameOffset(5, 4096) + WAL_FRAME_HEADER_BYTES + 100] ^= 0x01;
    fs.writeFileSync(copy, bytes);
    const damaged = await readCommitted(copy, undefined);
    expect(damaged.frames.length).toBeLessThan(5);
    expect(damaged.frames).toEqual(whole.frames.slice(0, damaged.frames.length));
    expect(damaged.frames.at(-1)?.commitSize ?? 1).toBeGreaterThan(0);
  });

  it('sees a reset, and knows when the old generation ended where it stopped reading', async () => {
    const dir = tempDir('litekeep-wal-');
    const live = liveDatabase(dir);
    for (let i = 0; i < 30; i++) live.insert.run(`before ${i}`, 1000);
    const before = await readCommitted(live.wal, undefined);
    // The app checkpoints; its next transaction starts the WAL over (new salts), shorter than the old one.
    live.db.pragma('wal_checkpoint(PASSIVE)');
    live.insert.run('after the reset', 10);
    const after = await readCommitted(live.wal, before.next);
    expect(after.reset).toEqual({ lostFrames: false });
    expect(after.frames[0].index).toBe(1);
    expect(after.header!.checkpointSequence).toBe(before.header!.checkpointSequence + 1);
    const out = await replayed(live.base, [...before.frames, ...after.frames], 4096, dir);
    expect(rows(out)).toEqual(rows(live.file));
  });

  it('takes the frames it missed from the old generation after a reset, while they are still in the file', async () => {
    const dir = tempDir('litekeep-wal-');
    const live = liveDatabase(dir);
    for (let i = 0; i < 10; i++) live.insert.run(`read ${i}`, 1000);
    const read = await readCommitted(live.wal, undefined);
    for (let i = 0; i < 5; i++) live.insert.run(`missed ${i}`, 1000);
    live.db.pragma('wal_checkpoint(PASSIVE)');
    live.insert.run('after the reset', 10);
    const missed = await readCommitted(live.wal, read.next);
    expect(missed.reset).toBeUndefined();
    expect(missed.header!.salt1).toBe(read.header!.salt1);
    expect(missed.frames[0].index).toBe(read.next!.frame + 1);
    const after = await readCommitted(live.wal, missed.next);
    expect(after.reset).toEqual({ lostFrames: false });
    const out = await replayed(live.base, [...read.frames, ...missed.frames, ...after.frames], 4096, dir);
    expect(rows(out)).toEqual(rows(live.file));
  });

  it('reports a gap when frames it never read are gone: overwritten, truncated, or whole generations later', async () => {
    const dir = tempDir('litekeep-wal-');
    const live = liveDatabase(dir);
    for (let i = 0; i < 10; i++) live.insert.run(`read ${i}`, 1000);
    const read = await readCommitted(live.wal, undefined);
    for (let i = 0; i < 10; i++) live.insert.run(`never read ${i}`, 1000);
    live.db.pragma('wal_checkpoint(PASSIVE)');
    // The new generation grows past where the old one's unread frames were.
    for (let i = 0; i < 40; i++) live.insert.run(`after the reset ${i}`, 1000);
    const overwritten = await readCommitted(live.wal, read.next);
    expect(overwritten.reset).toEqual({ lostFrames: true });

    // Truncated away (wal_checkpoint(TRUNCATE)): nothing proves the old generation ended, so it is a gap too.
    let again = overwritten;
    while (again.frames.length > 0) again = await readCommitted(live.wal, again.next);
    live.insert.run('unread before the truncation', 10);
    live.db.pragma('wal_checkpoint(TRUNCATE)');
    live.insert.run('after the truncation', 10);
    const truncated = await readCommitted(live.wal, again.next);
    expect(truncated.reset).toEqual({ lostFrames: true });

    // Two resets while nobody read: the generation in between is gone, whatever the file shows.
    let caughtUp = truncated;
    while (caughtUp.frames.length > 0) caughtUp = await readCommitted(live.wal, caughtUp.next);
    live.db.pragma('wal_checkpoint(PASSIVE)');
    live.insert.run('generation n+1', 10);
    live.db.pragma('wal_checkpoint(PASSIVE)');
    live.insert.run('generation n+2', 10);
    const skipped = await readCommitted(live.wal, caughtUp.next);
    expect(skipped.header!.checkpointSequence).toBe(caughtUp.next!.checkpointSequence + 2);
    expect(skipped.reset).toEqual({ lostFrames: true });
  });

  it('reads a missing or empty WAL as nothing new, and refuses a file that is not a WAL', async () => {
    const dir = tempDir('litekeep-wal-');
    expect((await readCommitted(path.join(dir, 'none-wal'), undefined)).frames).toEqual([]);
    fs.writeFileSync(path.join(dir, 'empty-wal'), '');
    expect((await readCommitted(path.join(dir, 'empty-wal'), undefined)).frames).toEqual([]);
    fs.writeFileSync(path.join(dir, 'text-wal'), 'x'.repeat(64));
    await expect(readCommitted(path.join(dir, 'text-wal'), undefined)).rejects.toThrow(
      /not a SQLite WAL file/,
    );
    expect(() => parseWalHeader(Buffer.alloc(10, 1))).toThrow(WalFormatError);
  });

  it('stops after a bounded number of bytes and goes on from there', async () => {
    const dir = tempDir('litekeep-wal-');
    const live = liveDatabase(dir, 1024);
    for (let i = 0; i < 40; i++) live.insert.run(`note ${i}`, 3000);
    const frames: WalFrame[] = [];
    let next = undefined as Awaited<ReturnType<typeof readCommitted>>['next'];
    let reads = 0;
    for (;;) {
      const r = await readCommitted(live.wal, next, { limitBytes: 16 * 1024 });
      if (r.frames.length === 0) break;
      frames.push(...r.frames);
      next = r.next;
      reads += 1;
    }
    expect(reads).toBeGreaterThan(3);
    const out = await replayed(live.base, frames, 1024, dir);
    expect(rows(out)).toEqual(rows(live.file));
  });
});
