import crypto from 'node:crypto';
import type { CommitRef, WalMark } from '../pitr/plan.js';

/*
 * The incremental repository format, version 1 (docs/format.md is the specification; keep the two in step).
 * Pure encoders and decoders: no I/O, no clock. Every decoder checks magic, lengths and checksums before it
 * returns anything, and throws a FormatError naming what is wrong.
 */

/** The repository format this code writes and the newest it reads. */
export const REPOSITORY_VERSION = 1;
export const SNAPSHOT_VERSION = 1;

export const ID_BYTES = 32;
/** Tree blocks list up to this many consecutive chunk ids of the page image. */
export const TREE_FANOUT = 1024;
/** A segment (one zstd frame) closes at this many chunks or this many plain bytes, whichever comes first. */
export const SEGMENT_CHUNKS = 64;
export const SEGMENT_BYTES = 256 * 1024;
export const MiB = 1024 * 1024;
/** Target stored size of a pack; the last one of a run is smaller. */
export const DEFAULT_PACK_SIZE = 16 * MiB;
export const MIN_PACK_SIZE = 1 * MiB;
export const MAX_PACK_SIZE = 256 * MiB;

export const PACK_MAGIC = Buffer.from('LKPACK\0\x01', 'latin1');
export const INDEX_MAGIC = Buffer.from('LKINDEX\x01', 'latin1');
/** The last bytes of a plain pack: trailer length (u32) and the trailer's sha256. */
export const PACK_FOOTER = 4 + ID_BYTES;

export type ChunkKind = 'data' | 'tree';
const KIND_CODE: Record<ChunkKind, number> = { data: 1, tree: 2 };

export class FormatError extends Error {
  override name = 'FormatError';
}

export interface RepositoryConfig {
  litekeepRepository: number;
  /** 32 hex: names the repository (and its local index and key on the backing-up machine). */
  id: string;
  created: string;
  pageChunking: { pagesPerChunk: 1 };
  /** How chunk ids are computed: plain sha256, or HMAC-SHA256 with the repository's id key (encrypted). */
  idHash: 'sha256' | 'hmac-sha256';
  encryption: 'none' | 'age';
  segmentChunks: number;
  segmentBytes: number;
  treeFanout: number;
  /** HMAC-SHA256(id key, "litekeep id key check"), hex: proves a key file belongs to this repository. */
  keyCheck?: string;
  database: string;
  host: string;
}

export const KEY_CHECK_LABEL = 'litekeep id key check';

export function keyCheckOf(idKey: Buffer): string {
  return crypto.createHmac('sha256', idKey).update(KEY_CHECK_LABEL).digest('hex');
}

export function encodeConfig(config: RepositoryConfig): Buffer {
  return Buffer.from(JSON.stringify(config, null, 2) + '\n');
}

/**
 * Reads `config`. A version this code does not know is refused with the version named: a newer litekeep wrote
 * it, and reading it as version 1 could misread every object.
 */
export function decodeConfig(bytes: Buffer): RepositoryConfig {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new FormatError('its config is not JSON: this is not a litekeep repository, or it is damaged');
  }
  const c = value as Partial<RepositoryConfig>;
  if (typeof c !== 'object' || c === null || c.litekeepRepository === undefined)
    throw new FormatError('its config has no litekeepRepository version: not a litekeep repository');
  if (!Number.isInteger(c.litekeepRepository) || (c.litekeepRepository as number) < 1)
    throw new FormatError(`its config names an invalid format version (${String(c.litekeepRepository)})`);
  if ((c.litekeepRepository as number) > REPOSITORY_VERSION)
    throw new NewerFormatError(c.litekeepRepository as number);
  const ok =
    typeof c.id === 'string' &&
    /^[0-9a-f]{32}$/.test(c.id) &&
    (c.idHash === 'sha256' || c.idHash === 'hmac-sha256') &&
    (c.encryption === 'none' || c.encryption === 'age') &&
    c.pageChunking?.pagesPerChunk === 1 &&
    Number.isInteger(c.segmentChunks) &&
    (c.segmentChunks as number) > 0 &&
    Number.isInteger(c.segmentBytes) &&
    (c.segmentBytes as number) > 0 &&
    Number.isInteger(c.treeFanout) &&
    (c.treeFanout as number) > 0 &&
    (c.idHash === 'sha256' || (typeof c.keyCheck === 'string' && /^[0-9a-f]{64}$/.test(c.keyCheck)));
  if (!ok) throw new FormatError('its config is incomplete or has invalid values');
  if ((c.encryption === 'age') !== (c.idHash === 'hmac-sha256'))
    throw new FormatError('its config mixes encryption and id hashing in a way litekeep never writes');
  return c as RepositoryConfig;
}

/** A repository format newer than this code: refused, never guessed at. */
export class NewerFormatError extends FormatError {
  override name = 'NewerFormatError';
  constructor(readonly version: number) {
    super(
      `it is in repository format version ${version}, written by a newer litekeep; this litekeep reads version ${REPOSITORY_VERSION}: upgrade litekeep`,
    );
  }
}

// ---------------------------------------------------------------- object keys

export const isHexId = (s: string) => /^[0-9a-f]{64}$/.test(s);

export const keys = {
  config: 'config',
  pack: (id: string) => `packs/${id.slice(0, 2)}/${id}`,
  index: (id: string) => `index/${id}`,
  snapshot: (id: string) => `snapshots/${id}`,
  key: (id: string) => `keys/${id}`,
  /** A WAL segment (docs/wal-segments.md), by its name. */
  wal: (name: string) => `wal/${name}`,
  packsPrefix: 'packs/',
  indexPrefix: 'index/',
  snapshotsPrefix: 'snapshots/',
  keysPrefix: 'keys/',
  walPrefix: 'wal/',
};

/** The id in a key of one of the content-addressed folders, or undefined for anything else. */
export function idFromKey(key: string, prefix: string): string | undefined {
  if (!key.startsWith(prefix)) return undefined;
  const rest = key.slice(prefix.length);
  const id = prefix === keys.packsPrefix ? /^[0-9a-f]{2}\/([0-9a-f]{64})$/.exec(rest)?.[1] : rest;
  if (!id || !isHexId(id)) return undefined;
  if (prefix === keys.packsPrefix && rest.slice(0, 2) !== id.slice(0, 2)) return undefined;
  return id;
}

export function sha256Hex(data: Uint8Array): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

// ---------------------------------------------------------------- packs

export interface SegmentEntry {
  /** Offset of the zstd frame in the plain pack. */
  offset: number;
  storedLength: number;
  plainLength: number;
}

export interface ChunkEntry {
  id: Buffer;
  segment: number;
  /** Offset and length inside the decompressed segment. */
  offset: number;
  length: number;
}

export interface PackContents {
  kind: ChunkKind;
  segments: SegmentEntry[];
  chunks: ChunkEntry[];
}

const SEGMENT_RECORD = 8 + 4 + 4;
/** One chunk in a trailer's chunk table: id, segment, offset and length in the segment. */
export const CHUNK_RECORD = ID_BYTES + 4 + 4 + 4;

/** Writes one chunk's record of a trailer's chunk table at `at`. */
export function writeChunkRecord(
  table: Buffer,
  at: number,
  id: Buffer,
  segment: number,
  offset: number,
  length: number,
): void {
  id.copy(table, at, 0, ID_BYTES);
  table.writeUInt32LE(segment, at + ID_BYTES);
  table.writeUInt32LE(offset, at + ID_BYTES + 4);
  table.writeUInt32LE(length, at + ID_BYTES + 8);
}

/**
 * The trailer of a pack (and the body of its index record): kind, segment table, chunk table. `chunkTable`
 * holds `chunkCount` records as writeChunkRecord writes them (a pack builder keeps its chunks so: no object
 * per chunk).
 */
export function encodeTrailerOf(
  kind: ChunkKind,
  segments: SegmentEntry[],
  chunkTable: Buffer,
  chunkCount: number,
): Buffer {
  const out = Buffer.alloc(1 + 4 + segments.length * SEGMENT_RECORD + 4 + chunkCount * CHUNK_RECORD);
  let p = 0;
  out.writeUInt8(KIND_CODE[kind], p);
  p += 1;
  out.writeUInt32LE(segments.length, p);
  p += 4;
  for (const s of segments) {
    out.writeBigUInt64LE(BigInt(s.offset), p);
    out.writeUInt32LE(s.storedLength, p + 8);
    out.writeUInt32LE(s.plainLength, p + 12);
    p += SEGMENT_RECORD;
  }
  out.writeUInt32LE(chunkCount, p);
  p += 4;
  chunkTable.copy(out, p, 0, chunkCount * CHUNK_RECORD);
  return out;
}

/** The trailer of a pack (and the body of its index record): kind, segment table, chunk table. */
export function encodeTrailer(contents: PackContents): Buffer {
  const table = Buffer.alloc(contents.chunks.length * CHUNK_RECORD);
  contents.chunks.forEach((c, i) =>
    writeChunkRecord(table, i * CHUNK_RECORD, c.id, c.segment, c.offset, c.length),
  );
  return encodeTrailerOf(contents.kind, contents.segments, table, contents.chunks.length);
}

/**
 * A pack's trailer, checked, and read in place: its segments as objects (a few per pack), its chunks straight
 * from the bytes (a pack holds thousands, an index file a hundred thousand: an object for each was most of a
 * backup's and a restore's JavaScript heap). The checks are decodeTrailer's: segments in order inside
 * `bodyEnd`, chunks inside their segment (unless `checkChunks` is false: then only the table's length).
 */
export class TrailerView {
  readonly kind: ChunkKind;
  readonly segments: SegmentEntry[] = [];
  readonly chunkCount: number;
  private readonly chunksAt: number;

  constructor(
    readonly bytes: Buffer,
    bodyEnd: number,
    what: string,
    checkChunks = true,
  ) {
    const fail = (why: string): never => {
      throw new FormatError(`${what}: ${why}`);
    };
    let p = 0;
    const need = (n: number) => {
      if (p + n > bytes.length) fail('its chunk table is truncated');
    };
    need(5);
    const code = bytes.readUInt8(0);
    const kind: ChunkKind | undefined = code === 1 ? 'data' : code === 2 ? 'tree' : undefined;
    if (!kind) fail(`unknown pack kind ${code}`);
    this.kind = kind!;
    const segmentCount = bytes.readUInt32LE(1);
    p = 5;
    need(segmentCount * SEGMENT_RECORD);
    let expected = PACK_MAGIC.length;
    for (let i = 0; i < segmentCount; i++) {
      const offset = Number(bytes.readBigUInt64LE(p));
      const storedLength = bytes.readUInt32LE(p + 8);
      const plainLength = bytes.readUInt32LE(p + 12);
      p += SEGMENT_RECORD;
      if (offset !== expected || storedLength === 0 || plainLength === 0)
        fail(`segment ${i} is out of place`);
      expected = offset + storedLength;
      this.segments.push({ offset, storedLength, plainLength });
    }
    if (expected !== bodyEnd) fail('its segments do not end where its chunk table begins');
    need(4);
    this.chunkCount = bytes.readUInt32LE(p);
    p += 4;
    need(this.chunkCount * CHUNK_RECORD);
    this.chunksAt = p;
    for (let i = 0; checkChunks && i < this.chunkCount; i++) {
      const segment = this.chunkSegment(i);
      const length = this.chunkLength(i);
      if (
        segment >= segmentCount ||
        length === 0 ||
        this.chunkOffset(i) + length > this.segments[segment].plainLength
      )
        fail(`chunk ${i} lies outside its segment`);
    }
    if (p + this.chunkCount * CHUNK_RECORD !== bytes.length) fail('its chunk table has trailing bytes');
  }

  /** Chunk `i`'s id: a view of the trailer's bytes (copy it to keep it). */
  chunkId(i: number): Buffer {
    const at = this.chunksAt + i * CHUNK_RECORD;
    return this.bytes.subarray(at, at + ID_BYTES);
  }

  chunkSegment(i: number): number {
    return this.bytes.readUInt32LE(this.chunksAt + i * CHUNK_RECORD + ID_BYTES);
  }

  chunkOffset(i: number): number {
    return this.bytes.readUInt32LE(this.chunksAt + i * CHUNK_RECORD + ID_BYTES + 4);
  }

  chunkLength(i: number): number {
    return this.bytes.readUInt32LE(this.chunksAt + i * CHUNK_RECORD + ID_BYTES + 8);
  }

  /** The chunks as objects (each id copied): for the few readers that want them so. */
  chunks(): ChunkEntry[] {
    const out: ChunkEntry[] = [];
    for (let i = 0; i < this.chunkCount; i++)
      out.push({
        id: Buffer.from(this.chunkId(i)),
        segment: this.chunkSegment(i),
        offset: this.chunkOffset(i),
        length: this.chunkLength(i),
      });
    return out;
  }
}

/**
 * Reads a trailer and checks that it describes a pack that can exist: segments in order inside `bodyEnd`,
 * chunks inside their segment. `bodyEnd` is where the segments must end (the trailer's own offset).
 */
export function decodeTrailer(
  bytes: Buffer,
  bodyEnd: number,
  what: string,
  options: { chunks?: boolean } = {},
): PackContents {
  // A restore finds chunks through the index and checks each against its id: it needs only the segments.
  const view = new TrailerView(bytes, bodyEnd, what, options.chunks !== false);
  return {
    kind: view.kind,
    segments: view.segments,
    chunks: options.chunks === false ? [] : view.chunks(),
  };
}

/** The fixed end of a plain pack: the trailer's length and its sha256. */
export function encodeFooter(trailer: Buffer): Buffer {
  const footer = Buffer.alloc(PACK_FOOTER);
  footer.writeUInt32LE(trailer.length, 0);
  crypto.createHash('sha256').update(trailer).digest().copy(footer, 4);
  return footer;
}

/** Splits a whole plain pack into its contents, checking magic, footer and trailer checksum. */
export function parsePack(plain: Buffer, what: string): PackContents {
  if (plain.length < PACK_MAGIC.length + PACK_FOOTER || !plain.subarray(0, 8).equals(PACK_MAGIC))
    throw new FormatError(`${what}: not a litekeep pack (no LKPACK header)`);
  const footer = plain.subarray(plain.length - PACK_FOOTER);
  const trailerLength = footer.readUInt32LE(0);
  const trailerStart = plain.length - PACK_FOOTER - trailerLength;
  if (trailerStart < PACK_MAGIC.length) throw new FormatError(`${what}: its trailer length is impossible`);
  const trailer = plain.subarray(trailerStart, plain.length - PACK_FOOTER);
  if (!crypto.createHash('sha256').update(trailer).digest().equals(footer.subarray(4)))
    throw new FormatError(`${what}: its chunk table fails its checksum`);
  return decodeTrailer(trailer, trailerStart, what);
}

// ---------------------------------------------------------------- index files

export interface IndexedPack extends PackContents {
  /** Hex sha256 of the pack as stored. */
  id: string;
  /** Bytes of the pack as stored (after encryption). */
  storedSize: number;
}

/** One pack as an index file lists it, its chunk table read in place (see TrailerView). */
export interface IndexRecord {
  /** Hex sha256 of the pack as stored. */
  id: string;
  storedSize: number;
  kind: ChunkKind;
  trailer: TrailerView;
}

/** An index file before compression: magic, packs, sha256 of all that precedes. */
export function encodeIndex(packs: IndexedPack[]): Buffer {
  return encodeIndexOf(
    packs.map((pack) => encodeIndexRecordOf(pack.id, pack.storedSize, encodeTrailer(pack))),
  );
}

/** An index file before compression from its packs' records (encodeIndexRecordOf). */
export function encodeIndexOf(records: Buffer[]): Buffer {
  const count = Buffer.alloc(4);
  count.writeUInt32LE(records.length);
  const body = Buffer.concat([INDEX_MAGIC, count, ...records]);
  return Buffer.concat([body, crypto.createHash('sha256').update(body).digest()]);
}

export function encodeIndexRecord(pack: IndexedPack): Buffer {
  return encodeIndexRecordOf(pack.id, pack.storedSize, encodeTrailer(pack));
}

/** One pack's record in an index file: its id, stored size and trailer. */
export function encodeIndexRecordOf(id: string, storedSize: number, trailer: Buffer): Buffer {
  const head = Buffer.alloc(ID_BYTES + 8 + 4);
  Buffer.from(id, 'hex').copy(head, 0);
  head.writeBigUInt64LE(BigInt(storedSize), ID_BYTES);
  head.writeUInt32LE(trailer.length, ID_BYTES + 8);
  return Buffer.concat([head, trailer]);
}

/** Reads a decompressed index file. */
export function decodeIndex(plain: Buffer, what: string): IndexedPack[] {
  return decodeIndexRecords(plain, what).map((r) => ({
    id: r.id,
    storedSize: r.storedSize,
    kind: r.kind,
    segments: r.trailer.segments,
    chunks: r.trailer.chunks(),
  }));
}

/** Reads a decompressed index file, every record checked, the chunk tables left in place in `plain`. */
export function decodeIndexRecords(plain: Buffer, what: string): IndexRecord[] {
  if (plain.length < INDEX_MAGIC.length + 4 + ID_BYTES || !plain.subarray(0, 8).equals(INDEX_MAGIC))
    throw new FormatError(`${what}: not a litekeep index (no LKINDEX header)`);
  const body = plain.subarray(0, plain.length - ID_BYTES);
  if (
    !crypto
      .createHash('sha256')
      .update(body)
      .digest()
      .equals(plain.subarray(plain.length - ID_BYTES))
  )
    throw new FormatError(`${what}: fails its checksum`);
  const count = body.readUInt32LE(8);
  const packs: IndexRecord[] = [];
  let p = 12;
  for (let i = 0; i < count; i++) {
    if (p + ID_BYTES + 12 > body.length) throw new FormatError(`${what}: truncated at pack ${i}`);
    const id = body.subarray(p, p + ID_BYTES).toString('hex');
    const storedSize = Number(body.readBigUInt64LE(p + ID_BYTES));
    const trailerLength = body.readUInt32LE(p + ID_BYTES + 8);
    p += ID_BYTES + 12;
    if (p + trailerLength > body.length) throw new FormatError(`${what}: truncated at pack ${i}`);
    // The plain pack ends with its segments, then the trailer and footer: the segments' end is implied.
    const trailer = looseTrailer(body.subarray(p, p + trailerLength), `${what} (pack ${id.slice(0, 12)}…)`);
    p += trailerLength;
    packs.push({ id, storedSize, kind: trailer.kind, trailer });
  }
  if (p !== body.length) throw new FormatError(`${what}: has trailing bytes`);
  return packs;
}

/** A trailer read from an index, where the pack's body length is whatever its segments say. */
export function looseTrailer(trailer: Buffer, what: string): TrailerView {
  if (trailer.length < 5) throw new FormatError(`${what}: its chunk table is truncated`);
  const segmentCount = trailer.readUInt32LE(1);
  let end = PACK_MAGIC.length;
  if (segmentCount > 0 && trailer.length >= 5 + segmentCount * SEGMENT_RECORD) {
    const last = 5 + (segmentCount - 1) * SEGMENT_RECORD;
    end = Number(trailer.readBigUInt64LE(last)) + trailer.readUInt32LE(last + 8);
  }
  return new TrailerView(trailer, end, what);
}

// ---------------------------------------------------------------- tree blocks

export function encodeTreeBlock(ids: Buffer[]): Buffer {
  return Buffer.concat(ids);
}

export function decodeTreeBlock(block: Buffer, what: string): Buffer[] {
  if (block.length === 0 || block.length % ID_BYTES !== 0)
    throw new FormatError(`${what}: a tree block must be a whole number of 32-byte ids`);
  const out: Buffer[] = [];
  for (let p = 0; p < block.length; p += ID_BYTES) out.push(block.subarray(p, p + ID_BYTES));
  return out;
}

// ---------------------------------------------------------------- manifests

/** What a snapshot records that could tell the store about the data: sealed when encryption is on. */
export interface SnapshotFacts {
  /** sha256 (hex) of the whole page image: the end-to-end check of a restore. */
  imageSha256: string;
  integrity: string;
  fingerprint: { tables: Record<string, number>; schemaHash: string };
  sqliteVersion: string;
  journalMode: string;
}

export interface SnapshotBody {
  litekeepSnapshot: number;
  repository: string;
  database: string;
  host: string;
  /** ISO-8601 UTC. */
  time: string;
  trigger: 'manual' | 'scheduled';
  pageSize: number;
  pageCount: number;
  /** Tree block ids (hex), in page order: their concatenated ids are the page image's chunk ids. */
  tree: string[];
  /** What this snapshot stored: new packs, the chunks in them, and the bytes of those packs and index files. */
  added: { packs: number; bytes: number; chunks: number };
  /** The local full backup of the same run, when there was one. */
  backupFile?: string;
  /**
   * Where the capture stood in the database's WAL (docs/wal-segments.md): the last commit shipped as a WAL
   * segment before the copy began, the WAL's last commit read right after it, and when that was. Only what
   * point-in-time recovery needs to start from this snapshot; a reader that ignores it restores the snapshot
   * exactly as well.
   */
  wal?: { shippedBefore?: CommitRef; walEndAfter?: WalMark; finishedAt: string };
  litekeepVersion: string;
  /** Unencrypted repositories: the facts in the clear. */
  facts?: SnapshotFacts;
  /** Encrypted repositories: the facts as an age file (base64), to the repository's recipients. */
  sealed?: string;
}

/** The manifest as stored before compression: the body as a string and its sha256. */
export function encodeManifest(body: SnapshotBody): Buffer {
  const text = JSON.stringify(body);
  return Buffer.from(JSON.stringify({ body: text, sha256: sha256Hex(Buffer.from(text)) }));
}

export function decodeManifest(plain: Buffer, what: string): SnapshotBody {
  let outer: { body?: unknown; sha256?: unknown };
  try {
    outer = JSON.parse(plain.toString('utf8')) as typeof outer;
  } catch {
    throw new FormatError(`${what}: is not a litekeep manifest (not JSON)`);
  }
  if (typeof outer.body !== 'string' || typeof outer.sha256 !== 'string')
    throw new FormatError(`${what}: is not a litekeep manifest`);
  if (sha256Hex(Buffer.from(outer.body)) !== outer.sha256)
    throw new FormatError(`${what}: fails its checksum`);
  const body = JSON.parse(outer.body) as Partial<SnapshotBody>;
  if (typeof body.litekeepSnapshot !== 'number' || body.litekeepSnapshot > SNAPSHOT_VERSION)
    throw new FormatError(
      `${what}: is a snapshot format ${String(body.litekeepSnapshot)}, written by a newer litekeep: upgrade litekeep`,
    );
  const valid =
    typeof body.repository === 'string' &&
    typeof body.time === 'string' &&
    !Number.isNaN(Date.parse(body.time)) &&
    Number.isInteger(body.pageSize) &&
    (body.pageSize as number) >= 512 &&
    (body.pageSize as number) <= 65536 &&
    Number.isInteger(body.pageCount) &&
    (body.pageCount as number) >= 1 &&
    Array.isArray(body.tree) &&
    body.tree.every((t) => typeof t === 'string' && isHexId(t)) &&
    (body.facts !== undefined || typeof body.sealed === 'string') &&
    (body.wal === undefined ||
      (typeof body.wal === 'object' &&
        body.wal !== null &&
        !Number.isNaN(Date.parse(body.wal.finishedAt)) &&
        (body.wal.shippedBefore === undefined || isWalMark(body.wal.shippedBefore, true)) &&
        (body.wal.walEndAfter === undefined || isWalMark(body.wal.walEndAfter, false))));
  if (!valid) throw new FormatError(`${what}: is incomplete or has invalid values`);
  return body as SnapshotBody;
}

function isWalMark(value: unknown, withEpoch: boolean): boolean {
  const m = value as Partial<CommitRef> | null;
  return (
    typeof m === 'object' &&
    m !== null &&
    Number.isInteger(m.frame) &&
    (!withEpoch || Number.isInteger(m.epoch)) &&
    typeof m.generation === 'object' &&
    m.generation !== null &&
    [m.generation.salt1, m.generation.salt2, m.generation.checkpointSequence].every((v) =>
      Number.isInteger(v),
    )
  );
}

/** Tree blocks a page image of `pageCount` pages needs. */
export function treeBlocksFor(pageCount: number, fanout = TREE_FANOUT): number {
  return Math.ceil(pageCount / fanout);
}
