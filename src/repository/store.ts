import type { Readable } from 'node:stream';
import { LitekeepError } from '../util/errors.js';

export interface BlobInfo {
  /** Key relative to the repository's root, `/`-separated (`packs/ab/ab12…`). */
  key: string;
  size: number;
  modified?: Date;
}

export interface PutBlobOptions {
  signal?: AbortSignal;
}

/**
 * Where a repository's objects live: a folder, an S3 prefix, a Drive folder. Every object is written once and
 * never replaced; content-addressed keys make "already there with the same sha256" a success.
 */
export interface BlobStore {
  /** Where the repository lives, for messages (`s3://bucket/…/repo/`, a folder path, `drive:…`). */
  readonly location: string;
  /**
   * Stores the local `file` (`size` bytes, sha256 `sha256`) under `key`. An object already under that key with
   * the same sha256 is `exists`; with other bytes, an error: nothing is ever overwritten.
   */
  put(
    key: string,
    file: string,
    size: number,
    sha256: string,
    options?: PutBlobOptions,
  ): Promise<'stored' | 'exists'>;
  /**
   * `put` of bytes in memory, where the store can do it without a local temp file first (a local folder writes
   * them into its own temp file beside the target). Optional: `putBuffer` falls back to a temp file and `put`.
   */
  putBytes?(
    key: string,
    data: Buffer,
    sha256: string,
    options?: PutBlobOptions,
  ): Promise<'stored' | 'exists'>;
  /** The object's bytes; BlobNotFoundError when there is none. */
  get(key: string, options?: { signal?: AbortSignal }): Promise<Readable>;
  /**
   * Where the object is as a file on this machine, when the store is a local folder: a reader may open it in
   * place instead of copying it (whether it exists is for the reader to find out).
   */
  localFile?(key: string): string;
  /** Every object whose key starts with `prefix`, fetched page by page. */
  list(prefix: string): AsyncIterable<BlobInfo>;
  stat(key: string): Promise<BlobInfo | undefined>;
  /** Removes one object; one that is already gone is not an error. */
  remove(key: string): Promise<void>;
  /** Releases sockets and handles. */
  close(): void;
}

export class BlobNotFoundError extends LitekeepError {
  override name = 'BlobNotFoundError';
  constructor(
    readonly key: string,
    location: string,
  ) {
    super(`${key} is missing from the repository at ${location}`, { stage: 'repository' });
  }
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  try {
    for await (const part of stream) parts.push(Buffer.from(part as Buffer));
  } finally {
    stream.destroy();
  }
  return Buffer.concat(parts);
}

/** Reads a whole (small) object: config, manifests, index files, key files. */
export async function getBuffer(
  store: BlobStore,
  key: string,
  maxBytes = 512 * 1024 * 1024,
): Promise<Buffer> {
  const stream = await store.get(key);
  const parts: Buffer[] = [];
  let total = 0;
  try {
    for await (const part of stream) {
      total += (part as Buffer).length;
      if (total > maxBytes)
        throw new LitekeepError(`${key} in ${store.location} is larger than any litekeep writes`);
      parts.push(Buffer.from(part as Buffer));
    }
  } finally {
    stream.destroy();
  }
  return Buffer.concat(parts);
}
