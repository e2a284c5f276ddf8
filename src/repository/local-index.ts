import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { zstdDecompressBounded } from './compress.js';
import {
  decodeIndexRecords,
  FormatError,
  idFromKey,
  keys,
  sha256Hex,
  type ChunkKind,
  type IndexedPack,
  type IndexRecord,
  type TrailerView,
} from './format.js';
import { getBuffer, type BlobStore } from './store.js';
import { shortId } from './ids.js';
import { RepositoryDamagedError } from './errors.js';
import { makeDirsSync } from '../util/fs.js';

export interface ChunkLocation {
  pack: string;
  kind: ChunkKind;
  packSize: number;
  segment: number;
  segmentOffset: number;
  segmentStored: number;
  segmentPlain: number;
  offset: number;
  length: number;
}

export interface LastImage {
  snapshot: string;
  /** The plain sha256 of the whole page image, as the run that wrote it computed it. */
  sha256: string;
  pageSize: number;
  pageCount: number;
}

export interface PackRow {
  pk: number;
  id: string;
  kind: ChunkKind;
  storedSize: number;
}

/**
 * Which chunk is where, on this machine: a SQLite database per repository (never all in memory), rebuilt from
 * the store's `index/` files whenever they disagree. The backup run adds what it wrote inside one open
 * transaction that commits only after the index file naming those packs is stored: a killed run leaves the
 * local index exactly as the store's index files describe it.
 */
export class LocalIndex {
  readonly db: Database.Database;
  private readonly hasChunkStmt: Database.Statement;
  private packStatements?: Record<
    'insertPack' | 'pkOf' | 'insertSegment' | 'insertChunk',
    Database.Statement
  >;

  private constructor(
    readonly file: string,
    cacheMiB = 4,
  ) {
    makeDirsSync(path.dirname(file), 0o700);
    this.db = new Database(file);
    fs.chmodSync(file, 0o600);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('temp_store = FILE');
    // better-sqlite3 builds SQLite with a 16 MB page cache per schema (main and temp): two of them were the
    // biggest share of a backup's and a restore's memory. Lookups miss into the OS's cache, which is cheap.
    this.db.pragma(`cache_size = -${cacheMiB * 1024}`);
    this.db.pragma(`temp.cache_size = -${cacheMiB * 1024}`);
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS indexes (id TEXT PRIMARY KEY);
      CREATE TABLE IF NOT EXISTS forgotten_indexes (id TEXT PRIMARY KEY);
      CREATE TABLE IF NOT EXISTS packs (
        pk INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, stored_size INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS pack_indexes (
        index_id TEXT NOT NULL, pack INTEGER NOT NULL, PRIMARY KEY (index_id, pack)) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS pack_indexes_by_pack ON pack_indexes (pack);
      CREATE TABLE IF NOT EXISTS segments (
        pack INTEGER NOT NULL, n INTEGER NOT NULL, offset INTEGER NOT NULL, stored INTEGER NOT NULL,
        plain INTEGER NOT NULL, PRIMARY KEY (pack, n)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS chunks (
        id BLOB NOT NULL, pack INTEGER NOT NULL, segment INTEGER NOT NULL, offset INTEGER NOT NULL,
        length INTEGER NOT NULL, PRIMARY KEY (id, pack)) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS chunks_by_pack ON chunks (pack);
      CREATE TABLE IF NOT EXISTS last_image (
        one INTEGER PRIMARY KEY CHECK (one = 1), snapshot TEXT NOT NULL, sha256 TEXT NOT NULL,
        page_size INTEGER NOT NULL, page_count INTEGER NOT NULL);
    `);
    this.hasChunkStmt = this.db.prepare('SELECT 1 FROM chunks WHERE id = ? LIMIT 1').pluck();
  }

  static open(file: string, options: { cacheMiB?: number } = {}): LocalIndex {
    try {
      return new LocalIndex(file, options.cacheMiB);
    } catch (error) {
      // A damaged local index is only a cache: set it aside and rebuild it from the store.
      const code = (error as { code?: string }).code ?? '';
      if (!/SQLITE_(CORRUPT|NOTADB)/.test(code)) throw error;
      for (const suffix of ['', '-wal', '-shm']) fs.rmSync(file + suffix, { force: true });
      return new LocalIndex(file, options.cacheMiB);
    }
  }

  close(): void {
    if (this.db.inTransaction) this.db.exec('ROLLBACK');
    this.db.close();
  }

  /** The page image of the last snapshot this machine wrote here (see writeSnapshot's sameImageAs). */
  lastImage(): LastImage | undefined {
    return this.db
      .prepare('SELECT snapshot, sha256, page_size AS pageSize, page_count AS pageCount FROM last_image')
      .get() as LastImage | undefined;
  }

  recordImage(image: LastImage): void {
    this.db
      .prepare(
        `INSERT INTO last_image (one, snapshot, sha256, page_size, page_count) VALUES (1, ?, ?, ?, ?)
         ON CONFLICT (one) DO UPDATE SET snapshot = excluded.snapshot, sha256 = excluded.sha256,
           page_size = excluded.page_size, page_count = excluded.page_count`,
      )
      .run(image.snapshot, image.sha256, image.pageSize, image.pageCount);
  }

  hasChunk(id: Buffer): boolean {
    return this.hasChunkStmt.get(id) !== undefined;
  }

  indexIds(): Set<string> {
    return new Set(this.db.prepare('SELECT id FROM indexes').pluck().all() as string[]);
  }

  forgottenIndexIds(): Set<string> {
    return new Set(this.db.prepare('SELECT id FROM forgotten_indexes').pluck().all() as string[]);
  }

  /**
   * Adds one pack that is not yet under any index (inside the writer's transaction), its chunks read straight
   * from its trailer's bytes.
   */
  addPack(id: string, storedSize: number, trailer: TrailerView): void {
    const s = (this.packStatements ??= {
      insertPack: this.db.prepare(
        'INSERT INTO packs (id, kind, stored_size) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING',
      ),
      pkOf: this.db.prepare('SELECT pk FROM packs WHERE id = ?').pluck(),
      insertSegment: this.db.prepare(
        'INSERT OR IGNORE INTO segments (pack, n, offset, stored, plain) VALUES (?, ?, ?, ?, ?)',
      ),
      insertChunk: this.db.prepare(
        'INSERT OR IGNORE INTO chunks (id, pack, segment, offset, length) VALUES (?, ?, ?, ?, ?)',
      ),
    });
    s.insertPack.run(id, trailer.kind, storedSize);
    const pk = s.pkOf.get(id) as number;
    trailer.segments.forEach((seg, n) =>
      s.insertSegment.run(pk, n, seg.offset, seg.storedLength, seg.plainLength),
    );
    for (let i = 0; i < trailer.chunkCount; i++)
      s.insertChunk.run(
        trailer.chunkId(i),
        pk,
        trailer.chunkSegment(i),
        trailer.chunkOffset(i),
        trailer.chunkLength(i),
      );
  }

  /** Records that index file `indexId` lists `packs` (whose rows addPacks wrote). */
  linkIndex(indexId: string, packIds: string[]): void {
    this.db.prepare('INSERT OR IGNORE INTO indexes (id) VALUES (?)').run(indexId);
    const link = this.db.prepare(
      'INSERT OR IGNORE INTO pack_indexes (index_id, pack) SELECT ?, pk FROM packs WHERE id = ?',
    );
    for (const id of packIds) link.run(indexId, id);
  }

  /** Adds a whole index file read from the store, in one transaction. */
  addIndex(indexId: string, packs: IndexRecord[]): void {
    this.db.transaction(() => {
      for (const pack of packs) this.addPack(pack.id, pack.storedSize, pack.trailer);
      this.linkIndex(
        indexId,
        packs.map((p) => p.id),
      );
    })();
  }

  /**
   * Forgets an index file; packs no remaining index lists go with it (their chunks can no longer be relied on).
   * `forgotten` records that this machine removed it, so that a listing that lags cannot bring it back.
   */
  removeIndex(indexId: string, forgotten = false): void {
    this.db.transaction(() => {
      const packs = this.db
        .prepare('SELECT pack FROM pack_indexes WHERE index_id = ?')
        .pluck()
        .all(indexId) as number[];
      this.db.prepare('DELETE FROM pack_indexes WHERE index_id = ?').run(indexId);
      this.db.prepare('DELETE FROM indexes WHERE id = ?').run(indexId);
      if (forgotten) this.db.prepare('INSERT OR IGNORE INTO forgotten_indexes (id) VALUES (?)').run(indexId);
      const orphan = this.db.prepare('SELECT 1 FROM pack_indexes WHERE pack = ? LIMIT 1').pluck();
      for (const pk of packs) if (orphan.get(pk) === undefined) this.dropPackRows(pk);
    })();
  }

  private dropPackRows(pk: number): void {
    this.db.prepare('DELETE FROM chunks WHERE pack = ?').run(pk);
    this.db.prepare('DELETE FROM segments WHERE pack = ?').run(pk);
    this.db.prepare('DELETE FROM pack_indexes WHERE pack = ?').run(pk);
    this.db.prepare('DELETE FROM packs WHERE pk = ?').run(pk);
  }

  /** A pack the store does not hold: its chunks must never be deduplicated against. */
  dropPack(packId: string): void {
    const pk = this.db.prepare('SELECT pk FROM packs WHERE id = ?').pluck().get(packId) as number | undefined;
    if (pk !== undefined) this.db.transaction(() => this.dropPackRows(pk))();
  }

  packs(): PackRow[] {
    return this.db
      .prepare('SELECT pk, id, kind, stored_size AS storedSize FROM packs ORDER BY id')
      .all() as PackRow[];
  }

  packIdsOfIndex(indexId: string): string[] {
    return this.db
      .prepare(
        'SELECT p.id FROM pack_indexes pi JOIN packs p ON p.pk = pi.pack WHERE pi.index_id = ? ORDER BY p.id',
      )
      .pluck()
      .all(indexId) as string[];
  }

  /** The whole index record of one pack, as it would be written into an index file. */
  indexedPack(packId: string): IndexedPack | undefined {
    const row = this.db
      .prepare('SELECT pk, id, kind, stored_size AS storedSize FROM packs WHERE id = ?')
      .get(packId) as PackRow | undefined;
    if (!row) return undefined;
    const segments = (
      this.db.prepare('SELECT offset, stored, plain FROM segments WHERE pack = ? ORDER BY n').all(row.pk) as {
        offset: number;
        stored: number;
        plain: number;
      }[]
    ).map((s) => ({ offset: s.offset, storedLength: s.stored, plainLength: s.plain }));
    const chunks = this.db
      .prepare('SELECT id, segment, offset, length FROM chunks WHERE pack = ? ORDER BY segment, offset')
      .all(row.pk) as { id: Buffer; segment: number; offset: number; length: number }[];
    return { id: row.id, kind: row.kind, storedSize: row.storedSize, segments, chunks };
  }

  /** Where a chunk is (the first pack that holds it). */
  locate(id: Buffer): ChunkLocation | undefined {
    return this.db
      .prepare(
        `SELECT p.id AS pack, p.kind AS kind, p.stored_size AS packSize, c.segment AS segment,
           s.offset AS segmentOffset, s.stored AS segmentStored, s.plain AS segmentPlain,
           c.offset AS offset, c.length AS length
         FROM chunks c JOIN packs p ON p.pk = c.pack JOIN segments s ON s.pack = c.pack AND s.n = c.segment
         WHERE c.id = ? LIMIT 1`,
      )
      .get(id) as ChunkLocation | undefined;
  }
}

export interface SyncResult {
  added: number;
  removed: number;
  /** Packs an index lists that the store does not hold (when packs were checked). */
  missingPacks: string[];
}

/**
 * Makes the local index agree with the store: index files it lacks are read (checked against their ids),
 * index files the store no longer holds are forgotten, and, with `checkPacks`, packs the store lacks are
 * dropped so that no new snapshot ever relies on them.
 */
export async function syncLocalIndex(
  index: LocalIndex,
  store: BlobStore,
  options: { checkPacks?: boolean; signal?: AbortSignal } = {},
): Promise<SyncResult> {
  const listed = new Set<string>();
  for await (const blob of store.list(keys.indexPrefix)) {
    const id = idFromKey(blob.key, keys.indexPrefix);
    if (id) listed.add(id);
  }
  const known = index.indexIds();
  const forgotten = index.forgottenIndexIds();
  let removed = 0;
  for (const id of known) {
    if (!listed.has(id)) {
      index.removeIndex(id);
      removed++;
    }
  }
  let added = 0;
  for (const id of listed) {
    if (known.has(id) || forgotten.has(id)) continue;
    options.signal?.throwIfAborted();
    index.addIndex(id, await readIndexFile(store, id));
    added++;
  }
  // Tombstones the listing no longer shows have served their purpose.
  for (const id of forgotten)
    if (!listed.has(id)) index.db.prepare('DELETE FROM forgotten_indexes WHERE id = ?').run(id);

  const missingPacks: string[] = [];
  if (options.checkPacks) {
    const sizes = new Map<string, number>();
    for await (const blob of store.list(keys.packsPrefix)) {
      const id = idFromKey(blob.key, keys.packsPrefix);
      if (id) sizes.set(id, blob.size);
    }
    for (const pack of index.packs()) {
      if (sizes.get(pack.id) !== pack.storedSize) {
        missingPacks.push(pack.id);
        index.dropPack(pack.id);
      }
    }
  }
  return { added, removed, missingPacks };
}

/**
 * Reads one index file, checking its name (the sha256 of its bytes), its compression, its checksum and every
 * pack's chunk table (left in place in the file's bytes: an object per chunk was most of the heap).
 */
export async function readIndexFile(store: BlobStore, id: string): Promise<IndexRecord[]> {
  const what = `index ${shortId(id)}`;
  const stored = await getBuffer(store, keys.index(id));
  if (sha256Hex(stored) !== id)
    throw new RepositoryDamagedError(
      `${what} in ${store.location} is damaged: its sha256 is not its name`,
      keys.index(id),
    );
  try {
    return decodeIndexRecords(zstdDecompressBounded(stored, 1024 * 1024 * 1024, what), what);
  } catch (error) {
    if (error instanceof FormatError)
      throw new RepositoryDamagedError(`${error.message} (in ${store.location})`, keys.index(id));
    throw error;
  }
}
