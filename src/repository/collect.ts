import fsp from 'node:fs/promises';
import path from 'node:path';
import { LitekeepError, oneLine } from '../util/errors.js';
import { FetchedPack } from './fetch.js';
import { encodeIndexRecord, idFromKey, keys, type ChunkKind } from './format.js';
import { shortId } from './ids.js';
import type { LocalIndex } from './local-index.js';
import type { Repository } from './repository.js';
import { listSnapshots, type SnapshotInfo } from './snapshots.js';
import { readTreeBlocks } from './tree.js';
import { INDEX_BATCH_CHUNKS, PackWriter, writeIndexRecords } from './writer.js';

export interface CollectOptions {
  /** Plan and measure only: nothing is removed or written. */
  dryRun?: boolean;
  /** Packs whose live share (by plain chunk bytes) is below this are repacked when they can be read. */
  repackBelow?: number;
  /** Packs no index lists are removed only when older than this (a writer that is still running). */
  orphanGraceMs?: number;
  packSize?: number;
  signal?: AbortSignal;
  now?: Date;
}

export interface CollectResult {
  dryRun: boolean;
  /** Snapshots whose manifests were (or would be) removed. */
  forgotten: string[];
  /** Packs with no live chunk: removed whole. */
  removedPacks: number;
  /** Mostly garbage packs rewritten into new ones. */
  repackedPacks: number;
  /** Packs no index listed (a killed run), old enough to go. */
  orphanPacks: number;
  /** Packs below the repack threshold kept as they are: encrypted, and no identity to read them. */
  partlyDeadKept: number;
  /** Stored bytes that go (dry run: would go), minus the bytes repacking writes. */
  freedBytes: number;
  /** Chunks kept snapshots refer to that no pack holds: those snapshots are already damaged (run check). */
  missingChunks: number;
}

interface PackUse {
  pk: number;
  id: string;
  kind: ChunkKind;
  storedSize: number;
  total: number;
  live: number;
}

/**
 * Forgets snapshots (manifests first), then collects garbage: chunks no remaining manifest reaches. Packs with
 * no live chunk are removed; packs that are mostly garbage are repacked when their content can be read. Every
 * step keeps every remaining snapshot restorable if the process is killed right after it: new packs and index
 * files are written before the old index files go, and a pack is removed only when no index file lists it.
 * Runs under the database lock, so no backup of this repository runs meanwhile.
 */
export async function forgetAndCollect(
  repo: Repository,
  index: LocalIndex,
  forget: string[],
  options: CollectOptions = {},
): Promise<CollectResult> {
  const dryRun = options.dryRun === true;
  const result: CollectResult = {
    dryRun,
    forgotten: [],
    removedPacks: 0,
    repackedPacks: 0,
    orphanPacks: 0,
    partlyDeadKept: 0,
    freedBytes: 0,
    missingChunks: 0,
  };
  if (!dryRun) {
    for (const id of forget) {
      await repo.store.remove(keys.snapshot(id));
      result.forgotten.push(id);
    }
  } else result.forgotten.push(...forget);

  const listing = await listSnapshots(repo);
  if (listing.problems.length)
    throw new LitekeepError(
      `collection skipped: snapshot ${shortId(listing.problems[0].id)} cannot be read (${listing.problems[0].error}), so what it needs is unknown; run litekeep check`,
      { stage: 'prune' },
    );
  const kept = listing.snapshots.filter((s) => !(dryRun && forget.includes(s.id)));

  const workDir = await fsp.mkdtemp(path.join(repo.localDir, 'collect-'));
  const db = index.db;
  try {
    await markLive(repo, index, kept, workDir, options.signal);
    result.missingChunks = db
      .prepare('SELECT COUNT(*) FROM temp.live l WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = l.id)')
      .pluck()
      .get() as number;
    // Each live chunk is served by one pack (the oldest row), so that duplicates left by a killed repack go.
    db.exec(`
      DROP TABLE IF EXISTS temp.serve;
      CREATE TEMP TABLE serve (id BLOB NOT NULL, pack INTEGER NOT NULL, PRIMARY KEY (pack, id)) WITHOUT ROWID;
      INSERT INTO temp.serve SELECT l.id, MIN(c.pack) FROM temp.live l JOIN chunks c ON c.id = l.id GROUP BY l.id;
    `);
    const uses = db
      .prepare(
        `SELECT p.pk AS pk, p.id AS id, p.kind AS kind, p.stored_size AS storedSize,
           (SELECT COALESCE(SUM(length), 0) FROM chunks WHERE pack = p.pk) AS total,
           (SELECT COALESCE(SUM(c.length), 0) FROM temp.serve s JOIN chunks c ON c.pack = s.pack AND c.id = s.id
              WHERE s.pack = p.pk) AS live
         FROM packs p ORDER BY p.id`,
      )
      .all() as PackUse[];
    const threshold = options.repackBelow ?? 0.5;
    const dead = uses.filter((u) => u.live === 0);
    const repack: PackUse[] = [];
    for (const u of uses) {
      if (u.live === 0 || u.live / Math.max(1, u.total) >= threshold) continue;
      if (u.kind === 'tree' || repo.canReadData) repack.push(u);
      else result.partlyDeadKept++;
    }
    const orphans = await orphanPacks(repo, index, options);

    result.removedPacks = dead.length;
    result.repackedPacks = repack.length;
    result.orphanPacks = orphans.length;
    const goneBytes =
      [...dead, ...repack].reduce((sum, u) => sum + u.storedSize, 0) +
      orphans.reduce((s, o) => s + o.size, 0);
    if (dryRun) {
      // What repacking would write back: the live share of each pack, at its own compression.
      const rewritten = repack.reduce(
        (sum, u) => sum + Math.round((u.storedSize * u.live) / Math.max(1, u.total)),
        0,
      );
      result.freedBytes = goneBytes - rewritten;
      return result;
    }

    const repacked = repack.length ? await repackPacks(repo, index, repack, workDir, options) : undefined;
    const written = repacked?.bytes ?? 0;
    // Repacking is deterministic when unencrypted: after a killed collection it can write a pack (or index file)
    // that is already there, byte for byte — the one that looked dead. What this run wrote is never removed.
    const keep = new Set(repacked?.packs ?? []);
    const going = new Set([...dead, ...repack].map((u) => u.id).filter((id) => !keep.has(id)));
    await rewriteIndexes(repo, index, going, new Set(repacked?.indexes ?? []));
    for (const id of going) {
      options.signal?.throwIfAborted();
      await repo.store.remove(keys.pack(id));
    }
    for (const orphan of orphans) if (!keep.has(orphan.id)) await repo.store.remove(keys.pack(orphan.id));
    result.freedBytes = goneBytes - written;
    return result;
  } finally {
    db.exec('DROP TABLE IF EXISTS temp.live; DROP TABLE IF EXISTS temp.serve;');
    await fsp.rm(workDir, { recursive: true, force: true });
  }
}

/** `temp.live`: every tree block of the kept snapshots and every chunk those blocks list. */
async function markLive(
  repo: Repository,
  index: LocalIndex,
  kept: SnapshotInfo[],
  workDir: string,
  signal?: AbortSignal,
): Promise<void> {
  const db = index.db;
  db.exec(`
    DROP TABLE IF EXISTS temp.live;
    CREATE TEMP TABLE live (id BLOB PRIMARY KEY) WITHOUT ROWID;
  `);
  const insert = db.prepare('INSERT OR IGNORE INTO temp.live (id) VALUES (?)');
  const trees = new Set<string>();
  for (const s of kept) for (const t of s.body.tree) trees.add(t);
  db.transaction(() => {
    for (const t of trees) insert.run(Buffer.from(t, 'hex'));
  })();
  await readTreeBlocks(
    repo,
    index,
    trees,
    workDir,
    (_treeId, ids) => db.transaction(() => ids.forEach((id) => insert.run(id)))(),
    {
      signal,
      onMissing: (treeId, error) => {
        // Without the block, what it keeps alive is unknown: collecting now could remove a chunk it needs.
        throw new LitekeepError(
          `collection skipped: tree block ${shortId(treeId)} cannot be read (${oneLine(error)}); run litekeep check`,
          { stage: 'prune', cause: error },
        );
      },
    },
  );
}

/** Packs in the store that no index lists and that are older than the grace period. */
async function orphanPacks(
  repo: Repository,
  index: LocalIndex,
  options: CollectOptions,
): Promise<{ id: string; size: number }[]> {
  const known = new Set(index.packs().map((p) => p.id));
  const cutoff = (options.now ?? new Date()).getTime() - (options.orphanGraceMs ?? 3600_000);
  const out: { id: string; size: number }[] = [];
  for await (const blob of repo.store.list(keys.packsPrefix)) {
    const id = idFromKey(blob.key, keys.packsPrefix);
    if (!id || known.has(id)) continue;
    if (blob.modified && blob.modified.getTime() <= cutoff) out.push({ id, size: blob.size });
  }
  return out;
}

/** Copies the live chunks of `packs` into new packs (and index files); says what it wrote. */
async function repackPacks(
  repo: Repository,
  index: LocalIndex,
  packs: PackUse[],
  workDir: string,
  options: CollectOptions,
): Promise<{ bytes: number; packs: string[]; indexes: string[] }> {
  const hasher = repo.requireHasher();
  const writer = new PackWriter(repo, index, { packSize: options.packSize, signal: options.signal });
  const servedBy = index.db.prepare('SELECT id FROM temp.serve WHERE pack = ?').pluck();
  writer.begin();
  try {
    for (const use of packs) {
      const live = new Set((servedBy.all(use.pk) as Buffer[]).map((b) => b.toString('hex')));
      const pack = await FetchedPack.fetch(repo, use.id, use.kind, workDir, options.signal);
      try {
        for (let n = 0; n < pack.contents.segments.length; n++) {
          const chunks = pack.contents.chunks.filter(
            (c) => c.segment === n && live.has(c.id.toString('hex')),
          );
          if (chunks.length === 0) continue;
          const segment = await pack.segment(n);
          for (const chunk of chunks) {
            const data = segment.subarray(chunk.offset, chunk.offset + chunk.length);
            if (!hasher.id(data).equals(chunk.id))
              throw new LitekeepError(
                `collection stopped: pack ${shortId(use.id)} holds a chunk that does not match its id; run litekeep check`,
                { stage: 'prune' },
              );
            await writer.addCopy(use.kind, chunk.id, data);
          }
        }
      } finally {
        await pack.close();
      }
    }
    await writer.finish();
  } catch (error) {
    await writer.abandon();
    throw error;
  } finally {
    await writer.cleanup();
  }
  return { bytes: writer.stats.bytes, packs: writer.packIds, indexes: writer.indexes };
}

/**
 * Every index file that lists a pack about to go is replaced: new index files listing its other packs are
 * written first, then the old one is removed (from the store, then locally). A kill in between leaves packs
 * listed twice, never a pack that nothing lists.
 */
async function rewriteIndexes(
  repo: Repository,
  index: LocalIndex,
  going: Set<string>,
  written: Set<string>,
): Promise<void> {
  const affected = [...index.indexIds()].filter(
    (id) => !written.has(id) && index.packIdsOfIndex(id).some((p) => going.has(p)),
  );
  if (affected.length === 0) return;
  const replaced = new Set(affected);
  // One pack's record at a time, read back from the local index, and one index file's worth of records as
  // bytes: the surviving packs of every affected index file (all of them, in a large repository) held as
  // objects, a chunk each, grew with the repository.
  const surviving = new Set<string>();
  for (const id of affected)
    for (const packId of index.packIdsOfIndex(id)) if (!going.has(packId)) surviving.add(packId);
  let batch: { id: string; record: Buffer }[] = [];
  let chunks = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    const { id } = await writeIndexRecords(
      repo,
      batch.map((p) => p.record),
    );
    replaced.delete(id);
    const packIds = batch.map((p) => p.id);
    index.db.transaction(() => index.linkIndex(id, packIds))();
    batch = [];
    chunks = 0;
  };
  for (const packId of surviving) {
    const record = index.indexedPack(packId);
    if (!record) continue;
    // An index file lists at most INDEX_BATCH_CHUNKS chunks; a pack never splits.
    if (batch.length > 0 && chunks + record.chunks.length > INDEX_BATCH_CHUNKS) await flush();
    batch.push({ id: packId, record: encodeIndexRecord(record) });
    chunks += record.chunks.length;
  }
  await flush();
  for (const id of replaced) {
    await repo.store.remove(keys.index(id));
    index.removeIndex(id, true);
  }
}
