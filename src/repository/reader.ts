import fsp from 'node:fs/promises';
import path from 'node:path';
import { RepositoryDamagedError } from './errors.js';
import { FetchedPack } from './fetch.js';
import { keys, type SnapshotBody } from './format.js';
import { shortId } from './ids.js';
import { LocalIndex, syncLocalIndex } from './local-index.js';
import { PrefixHasher } from './prefix-hash.js';
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
  const ids = repo.requireHasher();
  const ownIndex = options.index === undefined;
  // A restore builds its index whole and then looks a snapshot's pages up in it: a larger cache pays there.
  const index = options.index ?? LocalIndex.open(path.join(repo.localDir, 'read-index.db'), { cacheMiB: 12 });
  const workDir = await fsp.mkdtemp(path.join(repo.localDir, 'packs-'));
  const sink = await fsp.open(file, 'wx', 0o600);
  const stats = { packs: 0, downloaded: 0 };
  let hasher: PrefixHasher | undefined;
  try {
    if (ownIndex) await syncLocalIndex(index, repo.store, { signal: options.signal });
    const db = index.db;
    db.exec(`
      DROP TABLE IF EXISTS temp.plan;
      CREATE TEMP TABLE plan (
        page INTEGER PRIMARY KEY, chunk BLOB NOT NULL, pack INTEGER NOT NULL, seg INTEGER NOT NULL,
        off INTEGER NOT NULL, len INTEGER NOT NULL);
    `);
    await planPages(repo, index, body, workDir, options.signal);
    await sink.truncate(body.pageCount * body.pageSize);
    db.exec('CREATE INDEX temp.plan_by_place ON plan (pack, seg, off, page)');
    // Packs in the order of the first page they serve, so that the written prefix of the file (which another
    // thread hashes as it grows) advances while the packs are read, instead of all at the end.
    const packs = db
      .prepare(
        `SELECT p.pk AS pk, p.id AS id, MIN(t.page) AS first FROM temp.plan t JOIN packs p ON p.pk = t.pack
         GROUP BY p.pk ORDER BY first`,
      )
      .all() as { pk: number; id: string }[];
    // Segment by segment, so that each is decompressed once; in each, offset by offset, so that runs of pages
    // go out in one write. Rows as arrays, a segment's at a time: a restore reads one per page.
    const segmentsOf = db.prepare('SELECT DISTINCT seg FROM temp.plan WHERE pack = ? ORDER BY seg').pluck();
    const pagesOf = db
      .prepare(
        'SELECT page, seg, off, len, chunk FROM temp.plan WHERE pack = ? AND seg = ? ORDER BY off, page',
      )
      .raw();
    const written = new WrittenPages(body.pageCount);
    const imageHash = new PrefixHasher(file);
    hasher = imageHash;

    let next = 0;
    const worker = async () => {
      // One segment buffer and one frame buffer per worker, reused: a restore allocates nothing per segment.
      const scratch = Buffer.allocUnsafe(repo.config.segmentBytes);
      const frameScratch = Buffer.allocUnsafe(repo.config.segmentBytes + 4096);
      while (next < packs.length) {
        const { pk, id } = packs[next++];
        options.signal?.throwIfAborted();
        const pack = await FetchedPack.fetch(repo, id, 'data', workDir, options.signal, { chunks: false });
        try {
          stats.packs++;
          stats.downloaded += pack.downloaded;
          for (const n of segmentsOf.all(pk) as number[]) {
            const rows = pagesOf.all(pk, n) as PageRow[];
            if (n >= pack.contents.segments.length)
              throw new RepositoryDamagedError(
                `pack ${shortId(id)} does not hold chunk ${shortId(rows[0][CHUNK])} that the index says it holds; run litekeep check`,
                keys.pack(id),
              );
            const segment = await pack.segment(n, scratch, frameScratch);
            await writeSegmentPages(sink, segment, rows, body.pageSize, (data, row) => {
              if (data.length !== body.pageSize || !ids.id(data).equals(row[CHUNK]))
                throw new RepositoryDamagedError(
                  `pack ${shortId(id)} is damaged: chunk ${shortId(row[CHUNK])} does not match its id; restore another snapshot and run litekeep check`,
                  keys.pack(id),
                );
            });
            for (const row of rows) written.mark(row[PAGE]);
            imageHash.advance(written.prefix() * body.pageSize);
          }
        } finally {
          await pack.close();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(options.parallel ?? 3, packs.length) }, worker));
    await sink.sync();
    await sink.close();
    const { size } = await fsp.stat(file);
    const image = await imageHash.finish(size);
    return {
      sha256: image.sha256,
      bytes: image.bytes,
      packsRead: stats.packs,
      bytesDownloaded: stats.downloaded,
    };
  } catch (error) {
    await hasher?.stop();
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
  // Each page with the place of its chunk (any pack that holds it: each is checked against its id), looked up
  // as it is planned. (An UPDATE … FROM join afterwards built its whole result in a temporary table first:
  // SQLite memory that grew with the page count.)
  const insert = index.db.prepare(
    `INSERT INTO temp.plan (page, chunk, pack, seg, off, len)
       SELECT ?, id, pack, segment, offset, length FROM chunks WHERE id = ? LIMIT 1`,
  );
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
        index.db.transaction(() =>
          ids.forEach((id, i) => {
            const page = n * fanout + i;
            if (insert.run(page, id).changes === 0)
              throw new RepositoryDamagedError(
                `${what} needs chunk ${shortId(id)} (page ${page + 1}), which no index of ${repo.location} lists; run litekeep check`,
              );
          }),
        )();
      }
    },
    { signal },
  );
}

/** One page to restore: [page, segment, offset in the segment, length, chunk id]. */
type PageRow = [number, number, number, number, Buffer];
const PAGE = 0;
const OFFSET = 2;
const LENGTH = 3;
const CHUNK = 4;

/**
 * Writes the pages of one segment (`rows`, ordered by offset): each chunk is checked once, before any
 * page of it is written, and a run of consecutive pages stored one after another goes out in one write (a
 * first snapshot's segment is 64 pages in a row): a write per page costs more than everything else a restore
 * does.
 */
async function writeSegmentPages(
  handle: fsp.FileHandle,
  segment: Buffer,
  rows: PageRow[],
  pageSize: number,
  check: (data: Buffer, row: PageRow) => void,
): Promise<void> {
  // The chunk last checked: a page whose row names the same id at the same place needs no second hash.
  let checked: PageRow | undefined;
  for (let i = 0; i < rows.length;) {
    let j = i;
    for (;;) {
      const row = rows[j];
      if (checked?.[OFFSET] !== row[OFFSET] || !checked[CHUNK].equals(row[CHUNK])) {
        check(segment.subarray(row[OFFSET], row[OFFSET] + row[LENGTH]), row);
        checked = row;
      }
      const following = rows[j + 1];
      if (
        j + 1 >= rows.length ||
        following[PAGE] !== row[PAGE] + 1 ||
        following[OFFSET] !== row[OFFSET] + pageSize
      )
        break;
      j++;
    }
    const start = rows[i][OFFSET];
    await writeFully(
      handle,
      segment.subarray(start, start + (j - i + 1) * pageSize),
      rows[i][PAGE] * pageSize,
    );
    i = j + 1;
  }
}

async function writeFully(handle: fsp.FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

/**
 * Which pages are written, one bit each (4 MB for 100 GiB of 4 KiB pages), and how long the run of written
 * pages from the start of the file is.
 */
class WrittenPages {
  private readonly bits: Uint8Array;
  private first = 0;

  constructor(private readonly count: number) {
    this.bits = new Uint8Array(Math.ceil(count / 8));
  }

  mark(page: number): void {
    this.bits[page >> 3] |= 1 << (page & 7);
  }

  /** The number of pages from page 0 on that are all written. */
  prefix(): number {
    while (this.first < this.count && (this.bits[this.first >> 3] & (1 << (this.first & 7))) !== 0)
      this.first++;
    return this.first;
  }
}
