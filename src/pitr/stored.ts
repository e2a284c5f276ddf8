import { createHash } from 'node:crypto';
import { zstdCompress, zstdDecompressBounded } from '../repository/compress.js';
import { FormatError, keys } from '../repository/format.js';
import type { Repository } from '../repository/repository.js';
import { BlobNotFoundError, getBuffer } from '../repository/store.js';
import { decodeSegment, SegmentError, type Segment } from './segment.js';
import { nextEpochOf, parseSegmentName, type SegmentSink } from './shipper.js';

/**
 * WAL segments kept in an incremental repository, under `wal/<name>` beside its snapshots (so on every
 * destination a repository lives on, in the same host-scoped place). Each is one zstd frame, then an age file
 * to the repository's recipients when it is encrypted: the machine that ships needs no identity.
 */

/**
 * Left by `retention.pitr` before it collects segments: moments before `from` are recovered from snapshots alone
 * (the segments that reached them were collected by policy, not lost). Plain JSON, checked by its own sha256.
 */
export interface PitrHorizon {
  /** The base that serves the window's start: second-level recovery is whole from its end on. */
  base: string;
  from: string;
}

const HORIZON_PREFIX = 'horizon-';
const HORIZON_VERSION = 1;
const horizonKey = (base: string) => keys.wal(`${HORIZON_PREFIX}${base}.json`);

/** The largest segment litekeep writes is 16 MiB of frames plus their headers and metadata. */
const MAX_SEGMENT_BYTES = 64 * 1024 * 1024;

export class RepositorySegments implements SegmentSink {
  constructor(readonly repo: Repository) {}

  async put(name: string, bytes: Buffer): Promise<void> {
    await this.repo.putBuffer(keys.wal(name), bytes);
  }

  async has(name: string): Promise<boolean> {
    return (await this.repo.store.stat(keys.wal(name))) !== undefined;
  }

  async nextEpoch(): Promise<number> {
    return nextEpochOf(await this.names());
  }

  /** Compression, then encryption to the repository's recipients. */
  async seal(plain: Buffer): Promise<Buffer> {
    const compressed = zstdCompress(plain);
    if (!this.repo.encrypted) return compressed;
    if (!this.repo.encryption) throw new Error('sealing a segment needs the repository opened for write');
    return this.repo.encryption.encrypt(compressed);
  }

  /** Every segment's name, in name order (which is shipping order within an epoch and generation). */
  async names(): Promise<string[]> {
    return [...(await this.sizes()).keys()].sort();
  }

  /** Every segment's name and stored size, in name order. */
  async sizes(): Promise<Map<string, number>> {
    const sizes = new Map<string, number>();
    for await (const blob of this.repo.store.list(keys.walPrefix)) {
      const name = blob.key.slice(keys.walPrefix.length);
      if (parseSegmentName(name)) sizes.set(name, blob.size);
    }
    return sizes;
  }

  async remove(name: string): Promise<void> {
    await this.repo.store.remove(keys.wal(name));
  }

  /** Records that second-level recovery before `horizon.from` is given up by policy (idempotent). */
  async writeHorizon(horizon: PitrHorizon): Promise<void> {
    const body = {
      format: 'litekeep-pitr-horizon',
      version: HORIZON_VERSION,
      database: this.repo.config.database,
      host: this.repo.config.host,
      base: horizon.base,
      from: horizon.from,
    };
    const json = JSON.stringify(body);
    const sha256 = createHash('sha256').update(json).digest('hex');
    await this.repo.putBuffer(
      horizonKey(horizon.base),
      Buffer.from(JSON.stringify({ ...body, sha256 }) + '\n'),
    );
  }

  /**
   * The horizons stored, newest `from` last. One that does not check out (damaged, another repository's, a
   * newer format) is left out: without it a restore reports a gap where there is one, which is the safe side.
   */
  async horizons(): Promise<(PitrHorizon & { key: string })[]> {
    const found: (PitrHorizon & { key: string })[] = [];
    for await (const blob of this.repo.store.list(keys.wal(HORIZON_PREFIX))) {
      try {
        const parsed = JSON.parse(
          (await getBuffer(this.repo.store, blob.key, 64 * 1024)).toString('utf8'),
        ) as Record<string, unknown>;
        const { sha256, ...body } = parsed;
        const ok =
          body.format === 'litekeep-pitr-horizon' &&
          body.version === HORIZON_VERSION &&
          body.database === this.repo.config.database &&
          body.host === this.repo.config.host &&
          typeof body.base === 'string' &&
          blob.key === horizonKey(body.base) &&
          typeof body.from === 'string' &&
          !Number.isNaN(Date.parse(body.from)) &&
          sha256 === createHash('sha256').update(JSON.stringify(body)).digest('hex');
        if (ok) found.push({ key: blob.key, base: body.base as string, from: body.from as string });
      } catch {
        // unreadable: left out, as above
      }
    }
    return found.sort((a, b) => Date.parse(a.from) - Date.parse(b.from));
  }

  /** Removes a horizon an equal or later one supersedes. */
  async removeHorizon(key: string): Promise<void> {
    await this.repo.store.remove(key);
  }

  /**
   * Reads one segment and checks everything before it is trusted: decryption, the zstd frame, the segment's own
   * sha256 and WAL checksum chain (decodeSegment), and that it is the segment its name and repository say.
   */
  async read(name: string): Promise<Segment> {
    return (await this.readChecked(name)).segment;
  }

  /** The segment and its plain bytes (decompressed, decrypted), both checked as `read` checks them. */
  async readChecked(name: string): Promise<{ segment: Segment; plain: Buffer }> {
    const what = `WAL segment ${name}`;
    let stored: Buffer;
    try {
      stored = await getBuffer(this.repo.store, keys.wal(name), MAX_SEGMENT_BYTES);
    } catch (error) {
      if (error instanceof BlobNotFoundError)
        throw new SegmentError(`${what} is missing from ${this.repo.location}`);
      throw error;
    }
    let plain: Buffer;
    try {
      const compressed = this.repo.encrypted ? await (await this.repo.decrypter()).decrypt(stored) : stored;
      plain = zstdDecompressBounded(compressed, MAX_SEGMENT_BYTES, what);
    } catch (error) {
      if (error instanceof FormatError) throw new SegmentError(`${error.message} (in ${this.repo.location})`);
      if ((error as { exitCode?: number }).exitCode !== undefined) throw error;
      throw new SegmentError(
        `${what} in ${this.repo.location} does not decrypt: ${(error as Error).message}`,
      );
    }
    const segment = decodeSegment(plain, name);
    const m = segment.metadata;
    const named = parseSegmentName(name);
    if (
      !named ||
      named.epoch !== m.epoch ||
      named.checkpointSequence !== m.generation.checkpointSequence ||
      named.salt1 !== m.generation.salt1 ||
      named.firstFrame !== m.firstFrame ||
      named.lastFrame !== m.lastFrame
    )
      throw new SegmentError(
        `${what} holds other frames than its name says: it is not the segment shipped under that name`,
      );
    if (m.database !== this.repo.config.database || m.host !== this.repo.config.host)
      throw new SegmentError(
        `${what} belongs to ${m.database} on host '${m.host}', not to this repository (${this.repo.config.database} on '${this.repo.config.host}')`,
      );
    return { segment, plain };
  }
}
