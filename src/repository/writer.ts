import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LitekeepError, oneLine } from '../util/errors.js';
import { VERSION } from '../version.js';
import { zstdCompress } from './compress.js';
import {
  DEFAULT_PACK_SIZE,
  encodeIndex,
  encodeManifest,
  keys,
  sha256Hex,
  SNAPSHOT_VERSION,
  type ChunkEntry,
  type ChunkKind,
  type IndexedPack,
  type PackContents,
  type SnapshotBody,
  type SnapshotFacts,
} from './format.js';
import { shortId } from './ids.js';
import type { LocalIndex } from './local-index.js';
import { decompressSegment, PackBuilder } from './pack.js';
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
}

/** Index files list at most this many chunks, so that neither the writer nor a reader holds more. */
const INDEX_BATCH_CHUNKS = 100_000;
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
    const sha256 = whole.digest('hex');
    if (sha256 !== image.sha256)
      throw new LitekeepError(
        `the snapshot file read for the repository is not the one that was checked (sha256 ${shortId(sha256)}…, expected ${shortId(image.sha256)}…); nothing was stored under a manifest`,
        { stage: 'upload' },
      );
    await packs.finish();

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
  private batch: IndexedPack[] = [];
  private batchChunks = 0;
  private open: Record<ChunkKind, Set<string>> = { data: new Set(), tree: new Set() };
  private builders: Record<ChunkKind, PackBuilder>;

  constructor(
    private readonly repo: Repository,
    private readonly index: LocalIndex,
    private readonly options: PackWriterOptions = {},
  ) {
    this.packSize = options.packSize ?? DEFAULT_PACK_SIZE;
    this.limits = { segmentChunks: repo.config.segmentChunks, segmentBytes: repo.config.segmentBytes };
    this.uploads = new UploadQueue(options.uploads ?? 2, options.signal);
    this.builders = {
      data: new PackBuilder('data', this.limits),
      tree: new PackBuilder('tree', this.limits),
    };
  }

  begin(): void {
    this.index.db.exec('BEGIN IMMEDIATE');
  }

  has(id: Buffer, kind: ChunkKind): boolean {
    return this.open[kind].has(id.toString('hex')) || this.index.hasChunk(id);
  }

  async add(kind: ChunkKind, id: Buffer, data: Buffer): Promise<void> {
    if (this.has(id, kind)) return;
    await this.addCopy(kind, id, data);
  }

  /** Adds a chunk whatever the local index says: repacking copies chunks that live in packs about to go. */
  async addCopy(kind: ChunkKind, id: Buffer, data: Buffer): Promise<void> {
    if (this.open[kind].has(id.toString('hex'))) return;
    this.builders[kind].add(id, data);
    this.open[kind].add(id.toString('hex'));
    if (this.builders[kind].sizeEstimate >= this.packSize) await this.seal(kind);
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
    for (const temp of this.temps) await fsp.rm(temp, { force: true });
  }

  private async seal(kind: ChunkKind): Promise<void> {
    const builder = this.builders[kind];
    this.builders[kind] = new PackBuilder(kind, this.limits);
    this.open[kind] = new Set();
    if (builder.chunkCount === 0) return;
    const repo = this.repo;
    const { parts, frames, contents } = builder.finishParts();
    proveChunks(repo, frames, contents);
    const temp = path.join(
      repo.localDir,
      `.pack-${crypto.randomBytes(8).toString('hex')}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`,
    );
    this.temps.add(temp);
    // Tree packs hold only keyed ids and stay readable without the identity, for collection.
    const encrypt = kind === 'data' && repo.encryption !== undefined;
    const written = await writeParts(temp, parts, encrypt ? repo.encryption!.encryptStream() : undefined);
    if (encrypt) await proveDecrypts(repo, temp, written.plainSha256);
    const id = written.sha256;
    const stored = { length: written.bytes };
    const record: IndexedPack = { id, storedSize: stored.length, ...contents };
    this.index.addPacks([record]);
    this.batch.push(record);
    this.packIds.push(id);
    this.batchChunks += contents.chunks.length;
    this.stats.packs++;
    this.stats.chunks += contents.chunks.length;
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
    const { id: indexId, bytes } = await writeIndexFile(this.repo, this.batch);
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

/** Stores one index file listing `packs` and returns its id (the sha256 of its bytes as stored). */
export async function writeIndexFile(
  repo: Repository,
  packs: IndexedPack[],
): Promise<{ id: string; bytes: number }> {
  const stored = zstdCompress(encodeIndex(packs));
  const id = sha256Hex(stored);
  await repo.putBuffer(keys.index(id), stored);
  return { id, bytes: stored.length };
}

/** Splits packs into index files of at most INDEX_BATCH_CHUNKS chunks each (one pack never splits). */
export function indexBatches(packs: IndexedPack[]): IndexedPack[][] {
  const out: IndexedPack[][] = [];
  let current: IndexedPack[] = [];
  let chunks = 0;
  for (const pack of packs) {
    if (current.length > 0 && chunks + pack.chunks.length > INDEX_BATCH_CHUNKS) {
      out.push(current);
      current = [];
      chunks = 0;
    }
    current.push(pack);
    chunks += pack.chunks.length;
  }
  if (current.length) out.push(current);
  return out;
}

/**
 * Invariant 2 for packs, first half: every segment of the pack as built decompresses, and every chunk in it
 * hashes back to the id it is filed under. One segment at a time, so memory stays one segment.
 */
function proveChunks(repo: Repository, frames: Buffer[], contents: PackContents): void {
  const hasher = repo.requireHasher();
  const bySegment = new Map<number, ChunkEntry[]>();
  for (const chunk of contents.chunks)
    bySegment.set(chunk.segment, [...(bySegment.get(chunk.segment) ?? []), chunk]);
  let scratch: Buffer | undefined;
  contents.segments.forEach((s, n) => {
    if (!scratch || scratch.length < s.plainLength) scratch = Buffer.allocUnsafe(s.plainLength);
    const plain = decompressSegment(frames[n], s.plainLength, `segment ${n} of the new pack`, scratch);
    for (const chunk of bySegment.get(n) ?? [])
      if (!hasher.id(plain.subarray(chunk.offset, chunk.offset + chunk.length)).equals(chunk.id))
        throw new LitekeepError(
          'a new pack does not decode to the pages it was built from; nothing was stored',
          {
            stage: 'upload',
          },
        );
  });
}

/** Writes a pack's parts (through the encryption, when given) into a private file, hashing both sides. */
async function writeParts(
  file: string,
  parts: Buffer[],
  encryptor: Transform | undefined,
): Promise<{ sha256: string; bytes: number; plainSha256: string }> {
  const plainHash = crypto.createHash('sha256');
  const storedHash = crypto.createHash('sha256');
  let bytes = 0;
  const counting = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      storedHash.update(chunk);
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  const source = Readable.from(
    (function* () {
      for (const part of parts) {
        plainHash.update(part);
        yield part;
      }
    })(),
  );
  await pipeline([
    source,
    ...(encryptor ? [encryptor] : []),
    counting,
    fs.createWriteStream(file, { mode: 0o600, flags: 'wx' }),
  ]);
  return { sha256: storedHash.digest('hex'), bytes, plainSha256: plainHash.digest('hex') };
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
