import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DecryptionError, isWrongKey } from '../pipeline/index.js';
import { oneLine } from '../util/errors.js';
import { RepositoryDamagedError } from './errors.js';
import { FormatError, keys, type ChunkEntry, type PackContents } from './format.js';
import { shortId } from './ids.js';
import { fileBytes, readPackContents, readSegment, type PackBytes } from './pack.js';
import type { Repository } from './repository.js';
import { BlobNotFoundError } from './store.js';

/** Counts and hashes what flows through: the sha256 of a pack as stored, before anything trusts its bytes. */
class Hashing extends Transform {
  readonly hash = crypto.createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    callback(null, chunk);
  }
}

/**
 * One pack, downloaded once into a private temp file and checked: its sha256 must be its id, it must decrypt
 * (data packs of an encrypted repository), and its chunk table must pass its checksum.
 */
export class FetchedPack {
  private constructor(
    readonly id: string,
    readonly bytes: PackBytes,
    readonly contents: PackContents,
    private readonly file: string,
    readonly downloaded: number,
  ) {}

  static async fetch(
    repo: Repository,
    id: string,
    kind: 'data' | 'tree',
    dir: string,
    signal?: AbortSignal,
  ): Promise<FetchedPack> {
    const key = keys.pack(id);
    const what = `pack ${shortId(id)}`;
    const file = path.join(dir, `pack-${id}-${crypto.randomBytes(4).toString('hex')}`);
    const hashing = new Hashing();
    try {
      const source = await repo.store.get(key, { signal });
      const stages: Transform[] = [hashing];
      if (kind === 'data' && repo.encrypted) stages.push((await repo.decrypter()).stream());
      await pipeline([source, ...stages, fs.createWriteStream(file, { mode: 0o600, flags: 'wx' })], {
        signal,
      });
    } catch (error) {
      await fsp.rm(file, { force: true });
      if (error instanceof BlobNotFoundError)
        throw new RepositoryDamagedError(
          `${what} (${key}) is missing from ${repo.location}; run litekeep check`,
          key,
          error,
        );
      // A key that opens none of the stanzas says nothing about the pack; a chunk that fails authentication does.
      if (error instanceof DecryptionError && !isWrongKey(error))
        throw new RepositoryDamagedError(
          `${what} in ${repo.location} is damaged: ${oneLine(error)}`,
          key,
          error,
        );
      throw error;
    }
    if (hashing.hash.digest('hex') !== id) {
      await fsp.rm(file, { force: true });
      throw new RepositoryDamagedError(
        `${what} in ${repo.location} is damaged: its sha256 is not its name`,
        key,
      );
    }
    const bytes = await fileBytes(file);
    try {
      const contents = await readPackContents(bytes, what);
      if (contents.kind !== kind)
        throw new FormatError(`${what}: holds ${contents.kind} chunks, ${kind} expected`);
      return new FetchedPack(id, bytes, contents, file, hashing.bytes);
    } catch (error) {
      await bytes.close();
      await fsp.rm(file, { force: true });
      if (error instanceof FormatError)
        throw new RepositoryDamagedError(`${error.message} (in ${repo.location})`, key, error);
      throw error;
    }
  }

  /** The chunk table by id (hex). */
  table(): Map<string, ChunkEntry> {
    return new Map(this.contents.chunks.map((c) => [c.id.toString('hex'), c]));
  }

  /** Segment `n`'s plain bytes; in `into` when given and big enough (valid until the next call with it). */
  async segment(n: number, into?: Buffer): Promise<Buffer> {
    try {
      return await readSegment(this.bytes, this.contents.segments[n], `pack ${shortId(this.id)}`, into);
    } catch (error) {
      if (error instanceof FormatError)
        throw new RepositoryDamagedError(error.message, keys.pack(this.id), error);
      throw error;
    }
  }

  async close(): Promise<void> {
    await this.bytes.close();
    await fsp.rm(this.file, { force: true });
  }
}
