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
import { fileBytes, handleBytes, readPackContents, readSegment, type PackBytes } from './pack.js';
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
    /** The private copy, removed on close; undefined when the store's own file was read in place. */
    private readonly file: string | undefined,
    readonly downloaded: number,
  ) {}

  static async fetch(
    repo: Repository,
    id: string,
    kind: 'data' | 'tree',
    dir: string,
    signal?: AbortSignal,
    options: { chunks?: boolean } = {},
  ): Promise<FetchedPack> {
    const key = keys.pack(id);
    const what = `pack ${shortId(id)}`;
    if (repo.store.localFile && !(kind === 'data' && repo.encrypted))
      return FetchedPack.inPlace(repo, id, kind, repo.store.localFile(key), options);
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
      const contents = await readPackContents(bytes, what, options);
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

  /**
   * A pack of a local-folder store that needs no decryption, read where it is: hashed through one open handle
   * and then read through the same handle, so the bytes read are the bytes whose sha256 was checked even if
   * the file were replaced meanwhile (and every chunk is still checked against its id). No private copy.
   */
  private static async inPlace(
    repo: Repository,
    id: string,
    kind: 'data' | 'tree',
    file: string,
    options: { chunks?: boolean },
  ): Promise<FetchedPack> {
    const key = keys.pack(id);
    const what = `pack ${shortId(id)}`;
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(file, 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT')
        throw new RepositoryDamagedError(
          `${what} (${key}) is missing from ${repo.location}; run litekeep check`,
          key,
          error,
        );
      throw error;
    }
    try {
      const hash = crypto.createHash('sha256');
      const buffer = Buffer.allocUnsafe(256 * 1024);
      let bytes = 0;
      for (;;) {
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, bytes);
        if (bytesRead === 0) break;
        hash.update(buffer.subarray(0, bytesRead));
        bytes += bytesRead;
      }
      if (hash.digest('hex') !== id)
        throw new RepositoryDamagedError(
          `${what} in ${repo.location} is damaged: its sha256 is not its name`,
          key,
        );
      const packBytes = await handleBytes(handle);
      if (packBytes.size !== bytes)
        throw new RepositoryDamagedError(`${what} in ${repo.location} changed while it was read`, key);
      try {
        const contents = await readPackContents(packBytes, what, options);
        if (contents.kind !== kind)
          throw new FormatError(`${what}: holds ${contents.kind} chunks, ${kind} expected`);
        return new FetchedPack(id, packBytes, contents, undefined, bytes);
      } catch (error) {
        if (error instanceof FormatError)
          throw new RepositoryDamagedError(`${error.message} (in ${repo.location})`, key, error);
        throw error;
      }
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  /** The chunk table by id (hex); empty when fetched with `chunks: false`. */
  table(): Map<string, ChunkEntry> {
    return new Map(this.contents.chunks.map((c) => [c.id.toString('hex'), c]));
  }

  /**
   * Segment `n`'s plain bytes; in `into` when given and big enough (valid until the next call with it), its
   * stored frame read into `frameInto` on the same terms.
   */
  async segment(n: number, into?: Buffer, frameInto?: Buffer): Promise<Buffer> {
    try {
      return await readSegment(
        this.bytes,
        this.contents.segments[n],
        `pack ${shortId(this.id)}`,
        into,
        frameInto,
      );
    } catch (error) {
      if (error instanceof FormatError)
        throw new RepositoryDamagedError(error.message, keys.pack(this.id), error);
      throw error;
    }
  }

  async close(): Promise<void> {
    await this.bytes.close();
    if (this.file) await fsp.rm(this.file, { force: true });
  }
}
