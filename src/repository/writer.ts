import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { once } from 'node:events';
import { PassThrough, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LitekeepError, oneLine } from '../util/errors.js';
import { VERSION } from '../version.js';
import { zstdCompress } from './compress.js';
import {
  DEFAULT_PACK_SIZE,
  encodeIndexOf,
  encodeIndexRecordOf,
  encodeManifest,
  keys,
  looseTrailer,
  PACK_MAGIC,
  sha256Hex,
  SNAPSHOT_VERSION,
  type ChunkKind,
  type SnapshotBody,
  type SnapshotFacts,
} from './format.js';
import { shortId } from './ids.js';
import type { LocalIndex } from './local-index.js';
import { decompressSegment, PackBuilder, type ClosedSegment } from './pack.js';
import { readTreeBlocks } from './tree.js';
import type { Repository } from './repository.js';

/** The page image of one run, already integrity-checked, and what is known about it. */
export interface SnapshotImage {
  /** The staging file: a page-exact copy made with SQLite's online backup API. */
  path: string;
  /** sha256 of the staging file as the run computed it: what is read here must be exactly that. */
  sha256: string;
  pageSize: number;
  pageCount: number;
  time: Date;
  trigger: 'manual' | 'scheduled';
  integrity: string;
  fingerprint: SnapshotFacts['fingerprint'];
  sqliteVersion: string;
  journalMode: string;
  /** The local full backup of the same run. */
  backupFile?: string;
  /** Where the capture stood in the database's WAL: what makes the snapshot a base for WAL segments. */
  wal?: SnapshotBody['wal'];
}

export interface WriteSnapshotOptions {
  /** Target stored size of a pack in bytes (default 16 MiB). */
  packSize?: number;
  /** Packs uploaded at once (default 2). */
  uploads?: number;
  signal?: AbortSignal;
  onProgress?: (bytesRead: number, total: number) => void;
}

export interface SnapshotWritten {
  id: string;
  time: string;
  pageSize: number;
  pageCount: number;
  imageBytes: number;
  /** New packs and chunks; bytes added: the stored size of the new packs and index files. */
  addedPacks: number;
  addedChunks: number;
  addedBytes: number;
  /** Everything this snapshot sent to the store: packs, index files and the manifest. */
  uploadedBytes: number;
  /** Image bytes per uploaded byte. */
  dedupRatio: number;
  durationMs: number;
  /** The earlier snapshot whose page image this one is byte for byte: its tree was reused, no page was read. */
  sameImageAs?: string;
}

/** Index files list at most this many chunks, so that neither the writer nor a reader holds more. */
export const INDEX_BATCH_CHUNKS = 100_000;
const READ_BLOCK = 1024 * 1024;

/**
 * Writes one snapshot of `image` into the repository: every page is hashed and looked up in the local index;
 * the pages the repository lacks go into packs (checked to decode to the same ids, then stored, a few at once),
 * tree blocks into tree packs; then the index files, and the manifest last. A snapshot exists exactly when its
 * manifest does, and a manifest only ever refers to chunks whose pack and index file are stored.
 */
export async function writeSnapshot(
  repo: Repository,
  index: LocalIndex,
  image: SnapshotImage,
  options: WriteSnapshotOptions = {},
): Promise<SnapshotWritten> {
  const started = Date.now();
  const hasher = repo.requireHasher();
  const fanout = repo.config.treeFanout;
  const imageBytes = image.pageCount * image.pageSize;
  const packs = new PackWriter(repo, index, options);

  const tree: string[] = [];
  let block: Buffer[] = [];
  const closeBlock = async () => {
    if (block.length === 0) return;
    const bytes = Buffer.concat(block);
    block = [];
    const id = hasher.id(bytes);
    tree.push(id.toString('hex'));
    await packs.add('tree', id, bytes);
  };

  let handle: fsp.FileHandle | undefined;
  try {
    // The same page image as a snapshot this machine wrote before (the run's sha256 of the checked copy says
    // so): its tree already names every page, and every chunk it needs is still stored.
    const same = await sameImageAs(repo, index, image, options.signal);
    let sha256: string;
    if (same) {
      tree.push(...same.tree);
      sha256 = image.sha256;
      options.onProgress?.(imageBytes, imageBytes);
    } else {
      packs.begin();
      handle = await fsp.open(image.path, 'r');
      const { size } = await handle.stat();
      if (size !== imageBytes)
        throw new LitekeepError(
          `the snapshot file has ${size} bytes, not ${image.pageCount} pages of ${image.pageSize}: it changed after the check`,
          { stage: 'upload' },
        );
      const whole = crypto.createHash('sha256');
      const pagesPerRead = Math.max(1, Math.floor(READ_BLOCK / image.pageSize));
      const buffer = Buffer.allocUnsafe(pagesPerRead * image.pageSize);
      for (let page = 0; page < image.pageCount;) {
        options.signal?.throwIfAborted();
        const pages = Math.min(pagesPerRead, image.pageCount - page);
        const length = pages * image.pageSize;
        let got = 0;
        while (got < length) {
          const { bytesRead } = await handle.read(buffer, got, length - got, page * image.pageSize + got);
          if (bytesRead === 0) throw new LitekeepError('the snapshot file ended early', { stage: 'upload' });
          got += bytesRead;
        }
        whole.update(buffer.subarray(0, length));
        for (let i = 0; i < pages; i++) {
          const data = buffer.subarray(i * image.pageSize, (i + 1) * image.pageSize);
          const id = hasher.id(data);
          await packs.add('data', id, data);
          block.push(id);
          if (block.length === fanout) await closeBlock();
        }
        page += pages;
        options.onProgress?.(page * image.pageSize, imageBytes);
      }
      await closeBlock();
      sha256 = whole.digest('hex');
      if (sha256 !== image.sha256)
        throw new LitekeepError(
          `the snapshot file read for the repository is not the one that was checked (sha256 ${shortId(sha256)}…, expected ${shortId(image.sha256)}…); nothing was stored under a manifest`,
          { stage: 'upload' },
        );
      await packs.finish();
    }

    const facts: SnapshotFacts = {
      imageSha256: sha256,
      integrity: image.integrity,
      fingerprint: image.fingerprint,
      sqliteVersion: image.sqliteVersion,
      journalMode: image.journalMode,
    };
    const body: SnapshotBody = {
      litekeepSnapshot: SNAPSHOT_VERSION,
      repository: repo.id,
      database: repo.config.database,
      host: repo.config.host,
      time: image.time.toISOString(),
      trigger: image.trigger,
      pageSize: image.pageSize,
      pageCount: image.pageCount,
      tree,
      added: { packs: packs.stats.packs, bytes: packs.stats.uploaded, chunks: packs.stats.chunks },
      ...(image.backupFile ? { backupFile: image.backupFile } : {}),
      ...(image.wal ? { wal: image.wal } : {}),
      litekeepVersion: VERSION,
      ...(await repo.sealFacts(facts)),
    };
    const manifest = repo.encodeManifestObject(encodeManifest(body));
    const id = sha256Hex(manifest);
    await repo.putBuffer(keys.snapshot(id), manifest);
    index.recordImage({ snapshot: id, sha256, pageSize: image.pageSize, pageCount: image.pageCount });
    const uploaded = packs.stats.uploaded + manifest.length;
    return {
      id,
      time: body.time,
      pageSize: image.pageSize,
      pageCount: image.pageCount,
      imageBytes,
      addedPacks: packs.stats.packs,
      addedChunks: packs.stats.chunks,
      addedBytes: packs.stats.uploaded,
      uploadedBytes: uploaded,
      dedupRatio: imageBytes / Math.max(1, uploaded),
      durationMs: Date.now() - started,
      ...(same ? { sameImageAs: same.id } : {}),
    };
  } catch (error) {
    await packs.abandon();
    if (error instanceof LitekeepError) throw error;
    if (options.signal?.aborted)
      throw new LitekeepError('stopped while writing the snapshot; nothing was recorded under a manifest', {
        stage: 'upload',
        cause: error,
      });
    throw new LitekeepError(`writing the snapshot to ${repo.location} failed: ${oneLine(error)}`, {
      stage: 'upload',
      cause: error,
    });
  } finally {
    await handle?.close();
    await packs.cleanup();
  }
}

/**
 * The earlier snapshot of exactly this page image, when one can stand for it: the last snapshot this machine
 * wrote to the repository (the local index remembers it with the sha256 the run computed of its image) has the
 * same sha256, page size and page count, its manifest is still stored, and every tree block and chunk its tree
 * names is in the local index (as in step with the store as for any other run's dedup). Anything else — a
 * changed byte anywhere, in the file or still in the WAL, gives another sha256 — and the image is read.
 */
async function sameImageAs(
  repo: Repository,
  index: LocalIndex,
  image: SnapshotImage,
  signal?: AbortSignal,
): Promise<{ id: string; tree: string[] } | undefined> {
  const last = index.lastImage();
  if (
    !last ||
    last.sha256 !== image.sha256 ||
    last.pageSize !== image.pageSize ||
    last.pageCount !== image.pageCount
  )
    return undefined;
  let body: SnapshotBody;
  try {
    body = await repo.readManifest(last.snapshot);
  } catch {
    // Forgotten by retention, or unreadable: read the image as any other run does.
    return undefined;
  }
  const fanout = repo.config.treeFanout;
  if (
    body.repository !== repo.id ||
    body.pageSize !== image.pageSize ||
    body.pageCount !== image.pageCount ||
    body.tree.length !== Math.ceil(image.pageCount / fanout)
  )
    return undefined;
  const workDir = await fsp.mkdtemp(path.join(repo.localDir, 'same-'));
  let complete = true;
  let pages = 0;
  try {
    const counts = new Map<string, number>();
    for (const id of body.tree) counts.set(id, (counts.get(id) ?? 0) + 1);
    await readTreeBlocks(
      repo,
      index,
      counts.keys(),
      workDir,
      (treeId, ids) => {
        pages += ids.length * counts.get(treeId)!;
        if (complete && !ids.every((id) => index.hasChunk(id))) complete = false;
      },
      { signal, onMissing: () => (complete = false) },
    );
  } catch (error) {
    if (signal?.aborted) throw error;
    return undefined;
  } finally {
    await fsp.rm(workDir, { recursive: true, force: true });
  }
  return complete && pages === image.pageCount ? { id: last.snapshot, tree: body.tree } : undefined;
}

export interface PackWriterOptions {
  packSize?: number;
  uploads?: number;
  signal?: AbortSignal;
}

/**
 * Chunks in, stored packs and index files out: what a snapshot and a repack both need. Chunks the local index
 * (or a pack still being filled) already has are skipped. Each pack is proven to decode before it is stored;
 * after every batch of packs is stored, their index file is written and only then does the local index keep
 * them (its transaction commits): a run killed at any point leaves it as the store's index files describe.
 */
export class PackWriter {
  readonly stats = { packs: 0, chunks: 0, bytes: 0, uploaded: 0 };
  /** Index files and packs this writer stored (an identical pack or index file may already have been there). */
  readonly indexes: string[] = [];
  readonly packIds: string[] = [];
  private readonly packSize: number;
  private readonly limits: { segmentChunks: number; segmentBytes: number };
  private readonly uploads: UploadQueue;
  private readonly temps = new Set<string>();
  /** The stored packs of the next index file, as their records in it (bytes: no object per chunk). */
  private batch: { id: string; record: Buffer }[] = [];
  private batchChunks = 0;
  /** Chunks of the packs being filled, by id (as a latin1 string: half a hex string's size). */
  private open: Record<ChunkKind, Set<string>> = { data: new Set(), tree: new Set() };
  private builders: Record<ChunkKind, PackBuilder>;
  /** The temp file each open pack is being written into, segment by segment. */
  private files: Partial<Record<ChunkKind, PackFile>> = {};
  /** Reused to prove each new segment decodes to its chunks. */
  private proofScratch?: Buffer;

  constructor(
    private readonly repo: Repository,
    private readonly index: LocalIndex,
    private readonly options: PackWriterOptions = {},
  ) {
    this.packSize = options.packSize ?? DEFAULT_PACK_SIZE;
    this.limits = { segmentChunks: repo.config.segmentChunks, segmentBytes: repo.config.segmentBytes };
    this.uploads = new UploadQueue(options.uploads ?? 2, options.signal);
    this.builders = {
      data: new PackBuilder('data', this.limits, true),
      tree: new PackBuilder('tree', this.limits, true),
    };
  }

  begin(): void {
    this.index.db.exec('BEGIN IMMEDIATE');
  }

  has(id: Buffer, kind: ChunkKind): boolean {
    return this.open[kind].has(id.toString('latin1')) || this.index.hasChunk(id);
  }

  async add(kind: ChunkKind, id: Buffer, data: Buffer): Promise<void> {
    if (this.has(id, kind)) return;
    await this.addCopy(kind, id, data);
  }

  /** Adds a chunk whatever the local index says: repacking copies chunks that live in packs about to go. */
  async addCopy(kind: ChunkKind, id: Buffer, data: Buffer): Promise<void> {
    const key = id.toString('latin1');
    if (this.open[kind].has(key)) return;
    const builder = this.builders[kind];
    builder.add(id, data);
    this.open[kind].add(key);
    await this.writeClosedSegment(kind, builder);
    if (builder.sizeEstimate >= this.packSize) await this.seal(kind);
  }

  /** A segment the builder just closed: proven to decode to its chunks, then written into the pack's file. */
  private async writeClosedSegment(kind: ChunkKind, builder: PackBuilder): Promise<void> {
    const closed = builder.takeSegment();
    if (!closed) return;
    this.proofScratch = proveSegment(this.repo, closed, this.proofScratch);
    let file = this.files[kind];
    if (!file) {
      const temp = path.join(
        this.repo.localDir,
        `.pack-${crypto.randomBytes(8).toString('hex')}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`,
      );
      this.temps.add(temp);
      // Tree packs hold only keyed ids and stay readable without the identity, for collection.
      const encrypt = kind === 'data' && this.repo.encryption !== undefined;
      file = await PackFile.create(temp, encrypt ? this.repo.encryption!.encryptStream() : undefined);
      this.files[kind] = file;
      await file.write(PACK_MAGIC);
    }
    await file.write(closed.frame);
  }

  /** Seals the open packs, waits for every upload and writes the last index file; commits the local index. */
  async finish(): Promise<void> {
    await this.seal('data');
    await this.seal('tree');
    await this.flushIndex();
    if (this.index.db.inTransaction) this.index.db.exec('COMMIT');
  }

  /** After a failure: stops the uploads and forgets in the local index what no stored index file lists. */
  async abandon(): Promise<void> {
    this.uploads.abort();
    await this.uploads.settle();
    if (this.index.db.inTransaction) this.index.db.exec('ROLLBACK');
  }

  async cleanup(): Promise<void> {
    for (const file of Object.values(this.files)) await file?.abandon();
    this.files = {};
    for (const temp of this.temps) await fsp.rm(temp, { force: true });
  }

  private async seal(kind: ChunkKind): Promise<void> {
    const builder = this.builders[kind];
    if (builder.chunkCount === 0) return;
    this.open[kind] = new Set();
    const repo = this.repo;
    const { parts, trailer, chunkCount } = builder.finishParts();
    await this.writeClosedSegment(kind, builder);
    const file = this.files[kind]!;
    this.files[kind] = undefined;
    for (const part of parts) await file.write(part);
    const written = await file.close();
    const temp = file.path;
    this.builders[kind] = new PackBuilder(kind, this.limits, true, builder.buffers());
    if (kind === 'data' && repo.encryption !== undefined)
      await proveDecrypts(repo, temp, written.plainSha256);
    const id = written.sha256;
    const stored = { length: written.bytes };
    this.index.addPack(id, stored.length, looseTrailer(trailer, `new pack ${shortId(id)}`));
    this.batch.push({ id, record: encodeIndexRecordOf(id, stored.length, trailer) });
    this.packIds.push(id);
    this.batchChunks += chunkCount;
    this.stats.packs++;
    this.stats.chunks += chunkCount;
    this.stats.bytes += stored.length;
    await this.uploads.add(async (signal) => {
      await repo.store.put(keys.pack(id), temp, stored.length, id, { signal });
      this.stats.uploaded += stored.length;
      await fsp.rm(temp, { force: true });
      this.temps.delete(temp);
    });
    if (this.batchChunks >= INDEX_BATCH_CHUNKS) await this.flushIndex();
  }

  /** The batch's packs are stored: write their index file, then let the local index keep them. */
  private async flushIndex(): Promise<void> {
    await this.uploads.drain();
    if (this.batch.length === 0) return;
    const { id: indexId, bytes } = await writeIndexRecords(
      this.repo,
      this.batch.map((p) => p.record),
    );
    this.stats.uploaded += bytes;
    this.indexes.push(indexId);
    this.index.linkIndex(
      indexId,
      this.batch.map((p) => p.id),
    );
    this.index.db.exec('COMMIT');
    this.index.db.exec('BEGIN IMMEDIATE');
    this.batch = [];
    this.batchChunks = 0;
  }
}

/** Stores one index file of these packs' records (encodeIndexRecordOf) and returns its id. */
export async function writeIndexRecords(
  repo: Repository,
  records: Buffer[],
): Promise<{ id: string; bytes: number }> {
  const stored = zstdCompress(encodeIndexOf(records));
  const id = sha256Hex(stored);
  await repo.putBuffer(keys.index(id), stored);
  return { id, bytes: stored.length };
}

/**
 * Invariant 2 for packs, first half: each segment of a new pack decompresses, and every chunk in it hashes back
 * to the id it is filed under, before the segment is written. Returns the scratch buffer, for the next one.
 */
function proveSegment(repo: Repository, closed: ClosedSegment, scratch: Buffer | undefined): Buffer {
  const hasher = repo.requireHasher();
  if (!scratch || scratch.length < closed.plainLength) scratch = Buffer.allocUnsafe(closed.plainLength);
  const plain = decompressSegment(
    closed.frame,
    closed.plainLength,
    `segment ${closed.n} of the new pack`,
    scratch,
  );
  for (const chunk of closed.chunks)
    if (!hasher.id(plain.subarray(chunk.offset, chunk.offset + chunk.length)).equals(chunk.id))
      throw new LitekeepError(
        'a new pack does not decode to the pages it was built from; nothing was stored',
        {
          stage: 'upload',
        },
      );
  return scratch;
}

/**
 * A new pack's private temp file, written part by part (through the encryption, when given), hashing both
 * sides. A part may be reused by the caller once its write is done.
 */
class PackFile {
  private readonly plainHash = crypto.createHash('sha256');
  private readonly storedHash = crypto.createHash('sha256');
  private bytes = 0;

  private constructor(
    readonly path: string,
    private readonly handle: fsp.FileHandle | undefined,
    private readonly encrypting?: { input: PassThrough; done: Promise<void> },
  ) {}

  static async create(file: string, encryptor: Transform | undefined): Promise<PackFile> {
    if (!encryptor) return new PackFile(file, await fsp.open(file, 'wx', 0o600));
    const input = new PassThrough();
    const self: { file?: PackFile } = {};
    const counting = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        self.file!.storedHash.update(chunk);
        self.file!.bytes += chunk.length;
        done(null, chunk);
      },
    });
    const done = pipeline([
      input,
      encryptor,
      counting,
      fs.createWriteStream(file, { mode: 0o600, flags: 'wx' }),
    ]);
    // Reported by write() or close(); until then keep Node from calling a failure unhandled.
    done.catch(() => undefined);
    self.file = new PackFile(file, undefined, { input, done });
    return self.file;
  }

  async write(part: Buffer): Promise<void> {
    this.plainHash.update(part);
    if (this.handle) {
      this.storedHash.update(part);
      let done = 0;
      while (done < part.length) {
        const { bytesWritten } = await this.handle.write(part, done, part.length - done, this.bytes + done);
        done += bytesWritten;
      }
      this.bytes += part.length;
      return;
    }
    // The stream keeps what it is given until it is encrypted: give it a copy, since the caller reuses `part`.
    const { input, done } = this.encrypting!;
    if (!input.write(Buffer.from(part))) await Promise.race([once(input, 'drain'), done]);
  }

  async close(): Promise<{ sha256: string; bytes: number; plainSha256: string }> {
    if (this.handle) await this.handle.close();
    else {
      this.encrypting!.input.end();
      await this.encrypting!.done;
    }
    return {
      sha256: this.storedHash.digest('hex'),
      bytes: this.bytes,
      plainSha256: this.plainHash.digest('hex'),
    };
  }

  /** After a failure: closes the file (the writer removes it). */
  async abandon(): Promise<void> {
    if (this.handle) await this.handle.close().catch(() => undefined);
    else {
      this.encrypting!.input.destroy();
      await this.encrypting!.done.catch(() => undefined);
    }
  }
}

/**
 * Invariant 2, second half, for encrypted packs: the file as it will be stored decrypts (with this run's file
 * key, not the identity) to exactly the plain pack whose chunks were proven.
 */
async function proveDecrypts(repo: Repository, file: string, plainSha256: string): Promise<void> {
  const hash = crypto.createHash('sha256');
  await pipeline(
    fs.createReadStream(file, { highWaterMark: 256 * 1024 }),
    repo.encryption!.decryptOwnStream(),
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        done();
      },
    }),
  );
  if (hash.digest('hex') !== plainSha256)
    throw new LitekeepError('a new encrypted pack does not decrypt to what was written; nothing was stored', {
      stage: 'upload',
    });
}

/** At most `limit` uploads at once; the first failure stops the rest and is what the writer reports. */
class UploadQueue {
  private readonly running = new Set<Promise<void>>();
  private failure: unknown;
  private readonly controller = new AbortController();

  constructor(
    private readonly limit: number,
    signal?: AbortSignal,
  ) {
    signal?.addEventListener('abort', () => this.controller.abort(), { once: true });
  }

  async add(task: (signal: AbortSignal) => Promise<void>): Promise<void> {
    if (this.failure) throw this.failure;
    while (this.running.size >= this.limit) await Promise.race(this.running);
    if (this.failure) throw this.failure;
    const run = task(this.controller.signal).then(
      () => {
        this.running.delete(run);
      },
      (error: unknown) => {
        this.running.delete(run);
        this.failure ??= error;
        this.controller.abort();
      },
    );
    this.running.add(run);
  }

  async drain(): Promise<void> {
    while (this.running.size > 0) await Promise.race(this.running);
    if (this.failure) throw this.failure;
  }

  abort(): void {
    this.controller.abort();
  }

  async settle(): Promise<void> {
    await Promise.allSettled([...this.running]);
  }
}
