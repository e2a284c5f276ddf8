import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkRepository } from '../../src/repository/check.js';
import { forgetAndCollect } from '../../src/repository/collect.js';
import { zstdCompress, zstdDecompressBounded } from '../../src/repository/compress.js';
import {
  decodeConfig,
  decodeIndex,
  decodeIndexRecords,
  encodeIndex,
  FormatError,
  keys,
  type IndexedPack,
  parsePack,
  sha256Hex,
} from '../../src/repository/format.js';
import { LocalIndex, syncLocalIndex } from '../../src/repository/local-index.js';
import { decompressSegment, PackBuilder } from '../../src/repository/pack.js';
import { restoreImage } from '../../src/repository/reader.js';
import { Repository } from '../../src/repository/repository.js';
import { LocalBlobStore } from '../../src/repository/stores/local.js';
import { writeSnapshot } from '../../src/repository/writer.js';
import { tempDir } from '../helpers/db.js';
import { changeDatabase, makeAppDatabase, sha256Of, snapshotImage, treeOf } from './helpers.js';

const made: string[] = [];
afterAll(() => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
});

describe('repository library on a local folder', () => {
  it('writes snapshots that restore page for page, and an unchanged database adds only a manifest', async () => {
    const dir = tempDir('litekeep-repo-lib-');
    made.push(dir);
    const db = path.join(dir, 'app.db');
    makeAppDatabase(db, 3000);
    const store = new LocalBlobStore(path.join(dir, 'dest', 'app', 'web1', 'repo'));
    const stateDir = path.join(dir, 'state');
    const open = () =>
      Repository.openForWrite(store, {
        database: 'app',
        host: 'web1',
        encryption: { kind: 'none' },
        stateDir,
      });
    const repo = await open();
    const index = LocalIndex.open(path.join(repo.localDir, 'index.db'));
    await syncLocalIndex(index, store, { checkPacks: true });

    const first = await snapshotImage(db, path.join(dir, 's1.db'));
    const w1 = await writeSnapshot(repo, index, first);
    expect(w1.addedPacks).toBeGreaterThan(0);
    const afterFirst = treeOf(store.root);

    changeDatabase(db, 0.01);
    const second = await snapshotImage(db, path.join(dir, 's2.db'));
    const w2 = await writeSnapshot(repo, index, second);
    expect(w2.addedChunks).toBeLessThan(w1.addedChunks / 3);

    const third = await snapshotImage(db, path.join(dir, 's3.db'));
    const beforeThird = treeOf(store.root);
    const w3 = await writeSnapshot(repo, index, third);
    expect(w3.addedPacks).toBe(0);
    const added = treeOf(store.root).filter((f) => !beforeThird.includes(f));
    expect(added).toEqual([`snapshots/${w3.id}`]);
    expect(afterFirst.filter((f) => f.startsWith('packs/')).length).toBeGreaterThan(0);
    index.close();

    const reader = await Repository.openForRead(store);
    try {
      for (const [written, image] of [
        [w1, first],
        [w2, second],
        [w3, third],
      ] as const) {
        const body = await reader.readManifest(written.id);
        const out = path.join(dir, `restored-${written.id}.db`);
        const restored = await restoreImage(reader, body, out);
        expect(restored.sha256).toBe(image.sha256);
        expect(sha256Of(out)).toBe(sha256Of(image.path));
      }
    } finally {
      await reader.closeRead();
    }
  });
});

describe('repository format', () => {
  it('refuses a config of a newer version, naming it, and reads its own', () => {
    const config = {
      litekeepRepository: 1,
      id: 'ab'.repeat(16),
      created: new Date().toISOString(),
      pageChunking: { pagesPerChunk: 1 },
      idHash: 'sha256',
      encryption: 'none',
      segmentChunks: 64,
      segmentBytes: 262144,
      treeFanout: 1024,
      database: 'app',
      host: 'web1',
    };
    expect(decodeConfig(Buffer.from(JSON.stringify(config))).id).toBe(config.id);
    expect(() => decodeConfig(Buffer.from(JSON.stringify({ ...config, litekeepRepository: 2 })))).toThrow(
      /repository format version 2, written by a newer litekeep.*upgrade litekeep/,
    );
    expect(() => decodeConfig(Buffer.from('not json'))).toThrow(/not a litekeep repository/);
    expect(() => decodeConfig(Buffer.from(JSON.stringify({ ...config, encryption: 'age' })))).toThrow(
      FormatError,
    );
  });

  it('index files and pack trailers round-trip and fail their checksums when damaged', () => {
    const builder = new PackBuilder('data', { segmentChunks: 2, segmentBytes: 1 << 20 });
    const chunks = [0, 1, 2].map((i) => Buffer.alloc(4096, i));
    const ids = chunks.map((c) => crypto.createHash('sha256').update(c).digest());
    chunks.forEach((c, i) => builder.add(ids[i], c));
    const { plain, contents } = builder.finish();
    expect(contents.segments).toHaveLength(2);
    expect(parsePack(plain, 'p').chunks.map((c) => c.id.toString('hex'))).toEqual(
      ids.map((i) => i.toString('hex')),
    );
    const damaged = Buffer.from(plain);
    damaged[damaged.length - 40] ^= 1;
    expect(() => parsePack(damaged, 'pack x')).toThrow(/pack x: its chunk table fails its checksum/);

    const index = encodeIndex([{ id: 'cd'.repeat(32), storedSize: plain.length, ...contents }]);
    expect(decodeIndex(index, 'i')[0].chunks).toHaveLength(3);
    const bad = Buffer.from(index);
    bad[20] ^= 1;
    expect(() => decodeIndex(bad, 'index y')).toThrow(/index y: fails its checksum/);
  });

  it('an index file whose checksum holds but whose chunk table is impossible is refused, and the local index takes nothing of it', async () => {
    const dir = tempDir('litekeep-repo-lib-');
    made.push(dir);
    const builder = new PackBuilder('data', { segmentChunks: 2, segmentBytes: 1 << 20 });
    const pages = [0, 1, 2].map((i) => Buffer.alloc(4096, i));
    pages.forEach((c) => builder.add(crypto.createHash('sha256').update(c).digest(), c));
    const { plain, contents } = builder.finish();
    const good = { id: 'ab'.repeat(32), storedSize: plain.length, ...contents };
    // Written to bytes, read back in place: the same records, byte for byte and chunk for chunk.
    const index = encodeIndex([good]);
    const [record] = decodeIndexRecords(index, 'i');
    expect(record.trailer.chunkCount).toBe(3);
    expect(record.trailer.chunks()).toEqual(contents.chunks);
    expect(encodeIndex(decodeIndex(index, 'i'))).toEqual(index);

    // The last chunk said to lie past its segment's end; the file's own checksum made to match.
    const forged = (offset: number) => {
      const chunks = contents.chunks.map((c, i) => (i === 2 ? { ...c, offset } : c));
      const body = encodeIndex([{ ...good, chunks }]).subarray(0, -32);
      return Buffer.concat([body, crypto.createHash('sha256').update(body).digest()]);
    };
    expect(() => decodeIndexRecords(forged(4096), 'index z')).toThrow(
      /index z.*chunk 2 lies outside its segment/,
    );
    const store = new LocalBlobStore(path.join(dir, 'repo'));
    const stored = zstdCompress(forged(1 << 20));
    fs.mkdirSync(path.join(store.root, 'index'), { recursive: true });
    fs.writeFileSync(path.join(store.root, keys.index(sha256Hex(stored))), stored);
    const local = LocalIndex.open(path.join(dir, 'index.db'));
    try {
      await expect(syncLocalIndex(local, store)).rejects.toThrow(/chunk 2 lies outside its segment/);
      expect(local.db.prepare('SELECT COUNT(*) FROM chunks').pluck().get()).toBe(0);
      expect(local.indexIds().size).toBe(0);
    } finally {
      local.close();
    }
  });
});

/** The one index file of a small repository, decoded. */
function theIndexFile(store: LocalBlobStore): { indexId: string; packs: IndexedPack[] } {
  const [indexId] = fs.readdirSync(path.join(store.root, 'index'));
  const stored = fs.readFileSync(path.join(store.root, 'index', indexId));
  return { indexId, packs: decodeIndex(zstdDecompressBounded(stored, 1 << 30, 'i'), 'i') };
}

/** Replaces index file `indexId` with one listing `packs`, under its proper name. */
function replaceIndexFile(store: LocalBlobStore, indexId: string, packs: IndexedPack[]): void {
  const stored = zstdCompress(encodeIndex(packs));
  fs.rmSync(path.join(store.root, 'index', indexId));
  fs.writeFileSync(path.join(store.root, keys.index(sha256Hex(stored))), stored);
}

describe('repository library: the last line of defence and collection', () => {
  async function setUp(rows: number, blobEvery = 50) {
    const dir = tempDir('litekeep-repo-lib-');
    made.push(dir);
    const db = path.join(dir, 'app.db');
    makeAppDatabase(db, rows, blobEvery);
    const store = new LocalBlobStore(path.join(dir, 'dest', 'app', 'web1', 'repo'));
    const repo = await Repository.openForWrite(store, {
      database: 'app',
      host: 'web1',
      encryption: { kind: 'none' },
      stateDir: path.join(dir, 'state'),
    });
    const index = LocalIndex.open(path.join(repo.localDir, 'index.db'));
    await syncLocalIndex(index, store, { checkPacks: true });
    return { dir, db, store, repo, index };
  }

  it('a pack forged to pass every checksum but holding another page is caught by the chunk id, nothing is written', async () => {
    const { dir, db, store, repo, index } = await setUp(3000);
    const image = await snapshotImage(db, path.join(dir, 's1.db'));
    const written = await writeSnapshot(repo, index, image);
    index.close();
    // Rebuild one data pack with a changed page under its old id, and give it (and its index) valid names.
    const { indexId, packs } = theIndexFile(store);
    const victim = packs.find((p) => p.kind === 'data')!;
    const plain = fs.readFileSync(path.join(store.root, keys.pack(victim.id)));
    const contents = parsePack(plain, 'p');
    const rebuilt = new PackBuilder('data', { segmentChunks: 64, segmentBytes: 262144 });
    contents.chunks.forEach((c, n) => {
      const s = contents.segments[c.segment];
      const segment = decompressSegment(
        plain.subarray(s.offset, s.offset + s.storedLength),
        s.plainLength,
        's',
      );
      const page = Buffer.from(segment.subarray(c.offset, c.offset + c.length));
      if (n === 0) page[100] ^= 0xff;
      rebuilt.add(c.id, page);
    });
    const forged = rebuilt.finish();
    const forgedId = sha256Hex(forged.plain);
    fs.mkdirSync(path.dirname(path.join(store.root, keys.pack(forgedId))), { recursive: true });
    fs.writeFileSync(path.join(store.root, keys.pack(forgedId)), forged.plain);
    fs.rmSync(path.join(store.root, keys.pack(victim.id)));
    replaceIndexFile(
      store,
      indexId,
      packs.map((p) =>
        p === victim ? { id: forgedId, storedSize: forged.plain.length, ...forged.contents } : p,
      ),
    );

    const reader = await Repository.openForRead(store);
    const out = path.join(dir, 'restored.db');
    try {
      await expect(restoreImage(reader, await reader.readManifest(written.id), out)).rejects.toThrow(
        new RegExp(`pack ${forgedId.slice(0, 12)} is damaged: chunk [0-9a-f]{12} does not match its id`),
      );
      expect(fs.existsSync(out)).toBe(false);
      const report = await checkRepository(reader, { readData: true });
      expect(report.problems.join('\n')).toMatch(
        new RegExp(`pack ${forgedId.slice(0, 12)}.*does not match its id`),
      );
    } finally {
      await reader.closeRead();
    }
  });

  it('a snapshot with a page whose chunk no index lists is refused, naming the page and the chunk; no file is left', async () => {
    const { dir, db, store, repo, index } = await setUp(3000);
    const written = await writeSnapshot(repo, index, await snapshotImage(db, path.join(dir, 's1.db')));
    index.close();
    // The index file again, without one data pack: its pages' chunks are stored, but no index names them.
    const { indexId, packs } = theIndexFile(store);
    const victim = packs.find((p) => p.kind === 'data')!;
    replaceIndexFile(
      store,
      indexId,
      packs.filter((p) => p !== victim),
    );
    const unlisted = new Set(victim.chunks.map((c) => c.id.toString('hex').slice(0, 12)));

    const reader = await Repository.openForRead(store);
    const out = path.join(dir, 'restored.db');
    try {
      const error = await restoreImage(reader, await reader.readManifest(written.id), out).catch(
        (e: Error) => e,
      );
      const named =
        /needs chunk ([0-9a-f]{12}) \(page (\d+)\), which no index of .* lists; run litekeep check/.exec(
          String((error as Error).message),
        );
      expect(named, String(error)).not.toBeNull();
      expect(unlisted.has(named![1])).toBe(true);
      expect(fs.existsSync(out)).toBe(false);
    } finally {
      await reader.closeRead();
    }
  });

  it('collection repacks a mostly dead pack and removes dead ones; the kept snapshot restores', async () => {
    const { dir, db, store, repo, index } = await setUp(8000, 4);
    const first = await writeSnapshot(repo, index, await snapshotImage(db, path.join(dir, 's1.db')));
    changeDatabase(db, 0.7, 0);
    const secondImage = await snapshotImage(db, path.join(dir, 's2.db'));
    const second = await writeSnapshot(repo, index, secondImage);
    const dry = await forgetAndCollect(repo, index, [first.id], { dryRun: true });
    expect(dry.freedBytes).toBeGreaterThan(0);
    expect(fs.existsSync(path.join(store.root, keys.snapshot(first.id)))).toBe(true);
    const done = await forgetAndCollect(repo, index, [first.id], { packSize: 1 << 20 });
    expect(done.forgotten).toEqual([first.id]);
    expect(done.removedPacks + done.repackedPacks).toBeGreaterThan(0);
    expect(done.repackedPacks).toBeGreaterThan(0);
    index.close();
    const reader = await Repository.openForRead(store);
    try {
      expect((await checkRepository(reader, { readData: true })).problems).toEqual([]);
      const out = path.join(dir, 'after.db');
      expect((await restoreImage(reader, await reader.readManifest(second.id), out)).sha256).toBe(
        secondImage.sha256,
      );
    } finally {
      await reader.closeRead();
    }
  });
});
