import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { keys } from '../../src/repository/format.js';
import { LocalIndex, syncLocalIndex } from '../../src/repository/local-index.js';
import { restoreImage } from '../../src/repository/reader.js';
import { Repository } from '../../src/repository/repository.js';
import { LocalBlobStore } from '../../src/repository/stores/local.js';
import { writeSnapshot, type SnapshotWritten } from '../../src/repository/writer.js';
import { tempDir } from '../helpers/db.js';
import { makeAppDatabase, sha256Of, snapshotImage, treeOf } from './helpers.js';

const made: string[] = [];
afterAll(() => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
});

/** The body of message 1 in a database file (read-only, through SQLite). */
function bodyOf(file: string): string {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare('SELECT body FROM messages WHERE id = 1').pluck().get() as string;
  } finally {
    db.close();
  }
}

describe('an unchanged database reuses the last snapshot tree; a changed one is always read', () => {
  it('same image: manifest only, no page read; a same-size change, a change only in the WAL and a forgotten last snapshot are never skipped', async () => {
    const dir = tempDir('litekeep-repo-same-');
    made.push(dir);
    const db = path.join(dir, 'app.db');
    makeAppDatabase(db, 3000);
    const store = new LocalBlobStore(path.join(dir, 'dest', 'app', 'web1', 'repo'));
    const repo = await Repository.openForWrite(store, {
      database: 'app',
      host: 'web1',
      encryption: { kind: 'none' },
      stateDir: path.join(dir, 'state'),
    });
    const index = LocalIndex.open(path.join(repo.localDir, 'index.db'));
    await syncLocalIndex(index, store, { checkPacks: true });
    const images = new Map<string, { path: string; sha256: string }>();
    let n = 0;
    const snapshot = async (): Promise<SnapshotWritten> => {
      const image = await snapshotImage(db, path.join(dir, `s${++n}.db`));
      const written = await writeSnapshot(repo, index, image);
      images.set(written.id, image);
      return written;
    };

    const first = await snapshot();
    expect(first.sameImageAs).toBeUndefined();

    // Unchanged: the tree of the last snapshot stands for it, and only its manifest is stored.
    const before = treeOf(store.root);
    const unchanged = await snapshot();
    expect(unchanged.sameImageAs).toBe(first.id);
    expect(unchanged.addedChunks).toBe(0);
    expect(treeOf(store.root).filter((f) => !before.includes(f))).toEqual([`snapshots/${unchanged.id}`]);

    // A change that keeps the file's size: one row's text replaced by text of the same length, checkpointed.
    const sizeBefore = fs.statSync(db).size;
    const original = bodyOf(db);
    const sameLength = original.replace(/^message/, 'MESSAGE');
    expect(sameLength).not.toBe(original);
    expect(sameLength.length).toBe(original.length);
    const writer = new Database(db);
    writer.prepare('UPDATE messages SET body = ? WHERE id = 1').run(sameLength);
    writer.pragma('wal_checkpoint(TRUNCATE)');
    writer.close();
    expect(fs.statSync(db).size).toBe(sizeBefore);
    const sameSize = await snapshot();
    expect(sameSize.sameImageAs).toBeUndefined();
    expect(sameSize.addedChunks).toBeGreaterThan(0);

    // A change still only in the WAL: the database file itself is byte for byte what it was.
    const fileBefore = sha256Of(db);
    const walWriter = new Database(db);
    walWriter.pragma('wal_autocheckpoint = 0');
    const inWal = original.replace(/^message/, 'Message');
    walWriter.prepare('UPDATE messages SET body = ? WHERE id = 1').run(inWal);
    expect(sha256Of(db)).toBe(fileBefore);
    expect(fs.statSync(`${db}-wal`).size).toBeGreaterThan(0);
    const walOnly = await snapshot();
    walWriter.close();
    expect(walOnly.sameImageAs).toBeUndefined();
    expect(walOnly.addedChunks).toBeGreaterThan(0);

    // The last snapshot forgotten (its manifest gone): an unchanged image is read again, never a dangling tree.
    await store.remove(keys.snapshot(walOnly.id));
    images.delete(walOnly.id);
    const afterForget = await snapshot();
    expect(afterForget.sameImageAs).toBeUndefined();
    const again = await snapshot();
    expect(again.sameImageAs).toBe(afterForget.id);
    index.close();

    expect(bodyOf(db)).toBe(inWal);
    // Every snapshot restores to exactly its own image, with the text it had.
    const reader = await Repository.openForRead(store);
    try {
      for (const [id, image] of images) {
        const out = path.join(dir, `restored-${id}.db`);
        const restored = await restoreImage(reader, await reader.readManifest(id), out);
        expect(restored.sha256).toBe(image.sha256);
        expect(sha256Of(out)).toBe(sha256Of(image.path));
      }
      const restoredSameSize = path.join(dir, `restored-${sameSize.id}.db`);
      expect(bodyOf(restoredSameSize)).toBe(sameLength);
      expect(bodyOf(path.join(dir, `restored-${again.id}.db`))).toBe(inWal);
    } finally {
      await reader.closeRead();
    }
  });
});
