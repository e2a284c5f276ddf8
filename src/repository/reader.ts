import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { RepositoryDamagedError } from './errors.js';
import { FetchedPack } from './fetch.js';
import { keys, type ChunkEntry, type SnapshotBody } from './format.js';
import { shortId } from './ids.js';
import { LocalIndex, syncLocalIndex } from './local-index.js';
import type { Repository } from './repository.js';
import { readTreeBlocks } from './tree.js';

export interface ReadOptions {
  signal?: AbortSignal;
  /** Packs downloaded at once (default 3). */
  parallel?: number;
  /** A local index already in step with the store (the backing-up machine's); default: one built here. */
  index?: LocalIndex;
}

export interface ImageRestored {
  /** sha256 of the page image as written into the file. */
  sha256: string;
  bytes: number;
  packsRead: number;
  bytesDownloaded: number;
}

/**
 * Writes the page image of one snapshot into `file` (created here, mode 0600): reads the tree blocks, plans
 * which page comes from which pack (a SQLite table, not memory), downloads each pack once (a few at once),
 * checks every chunk against its id and writes it at its page's offset. Never leaves a wrong page unnoticed:
 * a page is written only once its bytes hash to the id the snapshot names.
 */
export async function restoreImage(
  repo: Repository,
  body: SnapshotBody,
  file: string,
  options: ReadOptions = {},
): Promise<ImageRestored> {
  const hasher = repo.requireHasher();
  const what = `snapshot of ${body.time}`;
  const ownIndex = options.index === undefined;
  const index = options.index ?? LocalIndex.open(path.join(repo.localDir, 'read-index.db'));
  const workDir = await fsp.mkdtemp(path.join(repo.localDir, 'packs-'));
  const sink = await fsp.open(file, 'wx', 0o600);
  const stats = { packs: 0, downloaded: 0 };
  try {
    if (ownIndex) await syncLocalIndex(index, repo.store, { signal: options.signal });
    const db = index.db;
    db.exec(`
      DROP TABLE IF EXISTS temp.plan;
      CREATE TEMP TABLE plan (page INTEGER PRIMARY KEY, chunk BLOB NOT NULL, pack INTEGER);
    `);
    await planPages(repo, index, body, workDir, options.signal);
    await sink.truncate(body.pageCount * body.pageSize);

    // Which pack each page is read from: the first pack that holds its chunk.
    db.exec(`UPDATE temp.plan SET pack = (SELECT c.pack FROM chunks c WHERE c.id = temp.plan.chunk LIMIT 1)`);
    const missing = db.prepare('SELECT page, chunk FROM temp.plan WHERE pack IS NULL LIMIT 1').get() as
      { page: number; chunk: Buffer } | undefined;
    if (missing)
      throw new RepositoryDamagedError(
        `${what} needs chunk ${shortId(missing.chunk)} (page ${missing.page + 1}), which no index of ${repo.location} lists; run litekeep check`,
      );
    const packs = db
      .prepare(
        'SELECT DISTINCT p.pk AS pk, p.id AS id FROM temp.plan t JOIN packs p ON p.pk = t.pack ORDER BY p.id',
      )
      .all() as { pk: number; id: string }[];
    const pagesOf = db.prepare('SELECT page, chunk FROM temp.plan WHERE pack = ? ORDER BY page');

    let next = 0;
    const worker = async () => {
      // One segment buffer per worker, reused: a restore allocates nothing per page.
      const scratch = Buffer.allocUnsafe(repo.config.segmentBytes);
      while (next < packs.length) {
        const { pk, id } = packs[next++];
        options.signal?.throwIfAborted();
        const pack = await FetchedPack.fetch(repo, id, 'data', workDir, options.signal);
        try {
          stats.packs++;
          stats.downloaded += pack.downloaded;
          const table = pack.table();
          const wanted = pagesOf.all(pk) as { page: number; chunk: Buffer }[];
          // Segment by segment, so that each is decompressed once.
          const bySegment = new Map<number, { page: number; entry: ChunkEntry }[]>();
          for (const w of wanted) {
            const entry = table.get(w.chunk.toString('hex'));
            if (!entry)
              throw new RepositoryDamagedError(
                `pack ${shortId(id)} does not hold chunk ${shortId(w.chunk)} that the index says it holds; run litekeep check`,
                keys.pack(id),
              );
            const list = bySegment.get(entry.segment) ?? [];
            list.push({ page: w.page, entry });
            bySegment.set(entry.segment, list);
          }
          for (const [n, list] of [...bySegment].sort((a, b) => a[0] - b[0])) {
            const segment = await pack.segment(n, scratch);
            const checked = new Set<ChunkEntry>();
            for (const { entry } of list) {
              if (checked.has(entry)) continue;
              const data = segment.subarray(entry.offset, entry.offset + entry.length);
              if (data.length !== body.pageSize || !hasher.id(data).equals(entry.id))
                throw new RepositoryDamagedError(
                  `pack ${shortId(id)} is damaged: chunk ${shortId(entry.id)} does not match its id; restore another snapshot and run litekeep check`,
                  keys.pack(id),
                );
              checked.add(entry);
            }
            await writePages(sink, segment, list, body.pageSize);
          }
        } finally {
          await pack.close();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(options.parallel ?? 3, packs.length) }, worker));
    await sink.sync();
    await sink.close();
    const hash = crypto.createHash('sha256');
    let bytes = 0;
    for await (const part of fs.createReadStream(file, { highWaterMark: 1024 * 1024 })) {
      hash.update(part as Buffer);
      bytes += (part as Buffer).length;
    }
    return { sha256: hash.digest('hex'), bytes, packsRead: stats.packs, bytesDownloaded: stats.downloaded };
  } catch (error) {
    await sink.close().catch(() => undefined);
    await fsp.rm(file, { force: true });
    throw error;
  } finally {
    index.db.exec('DROP TABLE IF EXISTS temp.plan');
    if (ownIndex) index.close();
    await fsp.rm(workDir, { recursive: true, force: true });
  }
}

/** Fills `temp.plan` with (page, chunk id) from the snapshot's tree blocks, checking each block and the count. */
async function planPages(
  repo: Repository,
  index: LocalIndex,
  body: SnapshotBody,
  workDir: string,
  signal?: AbortSignal,
): Promise<void> {
  const fanout = repo.config.treeFanout;
  const expectedBlocks = Math.ceil(body.pageCount / fanout);
  const what = `snapshot of ${body.time}`;
  if (body.tree.length !== expectedBlocks)
    throw new RepositoryDamagedError(
      `${what} lists ${body.tree.length} tree blocks for ${body.pageCount} pages`,
    );
  const insert = index.db.prepare('INSERT INTO temp.plan (page, chunk) VALUES (?, ?)');
  // One region of the database may repeat another (free pages): a block can stand at several places.
  const positions = new Map<string, number[]>();
  body.tree.forEach((id, n) => positions.set(id, [...(positions.get(id) ?? []), n]));
  await readTreeBlocks(
    repo,
    index,
    positions.keys(),
    workDir,
    (treeId, ids) => {
      for (const n of positions.get(treeId)!) {
        const count = n === expectedBlocks - 1 ? body.pageCount - n * fanout : fanout;
        if (ids.length !== count)
          throw new RepositoryDamagedError(
            `${what}: tree block ${n} lists ${ids.length} pages, ${count} expected`,
          );
        index.db.transaction(() => ids.forEach((id, i) => insert.run(n * fanout + i, id)))();
      }
    },
    { signal },
  );
}

/**
 * Writes the pages of one segment, in page order, one write per run of consecutive pages (a first snapshot's
 * segment is 64 pages in a row): a write per page costs more than everything else a restore does.
 */
async function writePages(
  handle: fsp.FileHandle,
  segment: Buffer,
  list: { page: number; entry: ChunkEntry }[],
  pageSize: number,
): Promise<void> {
  const sorted = [...list].sort((a, b) => a.page - b.page);
  for (let i = 0; i < sorted.length;) {
    let j = i + 1;
    while (j < sorted.length && sorted[j].page === sorted[j - 1].page + 1) j++;
    const run = sorted.slice(i, j);
    const contiguous = run.every((r, k) => k === 0 || r.entry.offset === run[k - 1].entry.offset + pageSize);
    const data = contiguous
      ? segment.subarray(run[0].entry.offset, run[0].entry.offset + run.length * pageSize)
      : Buffer.concat(run.map((r) => segment.subarray(r.entry.offset, r.entry.offset + pageSize)));
    await writeFully(handle, data, run[0].page * pageSize);
    i = j;
  }
}

async function writeFully(handle: fsp.FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}
