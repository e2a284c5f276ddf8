import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsCommand,
  PutObjectCommand,
  type HeadObjectCommandOutput,
  type ServerSideEncryption,
  type StorageClass,
} from '@aws-sdk/client-s3';
import type { S3Destination, S3RepositoryAccess } from '../../destinations/s3.js';
import { hostFromSegment, hostSegment } from '../../naming.js';
import { LitekeepError } from '../../util/errors.js';
import { BlobNotFoundError, type BlobInfo, type BlobStore, type PutBlobOptions } from '../store.js';

const SHA_META = 'litekeep-sha256';

interface SdkError {
  name?: string;
  $metadata?: { httpStatusCode?: number };
}

const isNotFound = (e: SdkError) =>
  e.name === 'NotFound' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404;
const isPreconditionFailed = (e: SdkError) =>
  e.name === 'PreconditionFailed' || e.$metadata?.httpStatusCode === 412;

/**
 * A repository under `<prefix>/<database>/<host>/repo/` in a bucket, through the S3 destination's client (its
 * options, retries and error messages). Objects are a few MiB: each goes up as one PutObject from memory (so
 * the SDK can retry it), with Content-MD5 checked by the server and `If-None-Match: *` so nothing is replaced.
 */
export class S3BlobStore implements BlobStore {
  private readonly s3: S3RepositoryAccess;
  private readonly root: string;

  constructor(
    private readonly destination: S3Destination,
    host: string,
  ) {
    this.s3 = destination.repositoryAccess();
    this.root = `${this.s3.databasePrefix}${hostSegment(host)}/repo/`;
  }

  /**
   * The hosts that have a repository of this database in the bucket. One listing request per host folder:
   * after a key of `<host>/…`, the next listing starts at `<host>0`, the first key after every `<host>/…`
   * ('0' follows '/'), so no host's objects are paged through (Delimiter listings are not reliable on every
   * S3-compatible server).
   */
  static async hosts(destination: S3Destination): Promise<string[]> {
    const s3 = destination.repositoryAccess();
    const segments: string[] = [];
    let marker: string | undefined;
    for (;;) {
      const page = await s3.client
        .send(
          new ListObjectsCommand({
            Bucket: s3.bucket,
            Prefix: s3.databasePrefix,
            Marker: marker,
            MaxKeys: 1,
          }),
        )
        .catch((error: unknown) => {
          throw s3.describeError(`listing s3://${s3.bucket}/${s3.databasePrefix}`, error, 'list');
        });
      const key = page.Contents?.[0]?.Key;
      if (!key) break;
      const rest = key.slice(s3.databasePrefix.length);
      const slash = rest.indexOf('/');
      if (slash > 0) {
        segments.push(rest.slice(0, slash));
        marker = `${s3.databasePrefix}${rest.slice(0, slash)}0`;
      } else marker = key;
      if (!page.IsTruncated) break;
    }
    const withRepository: string[] = [];
    for (const segment of segments) {
      const host = hostFromSegment(segment);
      if (await new S3BlobStore(destination, host).stat('config')) withRepository.push(host);
    }
    return withRepository.sort();
  }

  get location(): string {
    return `s3://${this.s3.bucket}/${this.root}`;
  }

  private head(key: string): Promise<HeadObjectCommandOutput | undefined> {
    return this.s3.client
      .send(new HeadObjectCommand({ Bucket: this.s3.bucket, Key: this.root + key }))
      .catch((error: unknown) => {
        if (isNotFound(error as SdkError)) return undefined;
        throw this.s3.describeError(`reading ${key}`, error, 'repository');
      });
  }

  async put(
    key: string,
    file: string,
    size: number,
    sha256: string,
    options: PutBlobOptions = {},
  ): Promise<'stored' | 'exists'> {
    const existing = await this.head(key);
    if (existing) return this.alreadyThere(key, existing, sha256);
    const body = await fsp.readFile(file);
    if (body.length !== size || crypto.createHash('sha256').update(body).digest('hex') !== sha256)
      throw new LitekeepError(`upload of ${key} to ${this.s3.name} failed: the local file changed`, {
        stage: 'upload',
      });
    const md5 = crypto.createHash('md5').update(body).digest();
    try {
      const sent = await this.s3.client.send(
        new PutObjectCommand({
          Bucket: this.s3.bucket,
          Key: this.root + key,
          Body: body,
          ContentLength: body.length,
          ContentMD5: md5.toString('base64'),
          ContentType: 'application/octet-stream',
          IfNoneMatch: '*',
          Metadata: { [SHA_META]: sha256 },
          ...(this.s3.storageClass ? { StorageClass: this.s3.storageClass as StorageClass } : {}),
          ...(this.s3.serverSideEncryption
            ? { ServerSideEncryption: this.s3.serverSideEncryption as ServerSideEncryption }
            : {}),
        }),
        { abortSignal: options.signal },
      );
      const etag = sent.ETag?.replace(/"/g, '').toLowerCase();
      const kms = this.s3.serverSideEncryption?.startsWith('aws:kms');
      if (etag && !kms && /^[0-9a-f]{32}$/.test(etag) && etag !== md5.toString('hex')) {
        await this.remove(key).catch(() => undefined);
        throw new LitekeepError(
          `upload of ${key} to ${this.s3.name} failed verification: the server's ETag is not the MD5 sent; try again`,
          { stage: 'upload' },
        );
      }
      return 'stored';
    } catch (error) {
      if (error instanceof LitekeepError) throw error;
      if (isPreconditionFailed(error as SdkError)) {
        const now = await this.head(key);
        if (now) return this.alreadyThere(key, now, sha256);
      }
      throw this.s3.describeError(`upload of ${key}`, error);
    }
  }

  private alreadyThere(key: string, head: HeadObjectCommandOutput, sha256: string): 'exists' {
    const there = head.Metadata?.[SHA_META];
    if (there === sha256) return 'exists';
    throw new LitekeepError(
      `upload of ${key} to ${this.s3.name} refused: ${this.location}${key} already holds other bytes ` +
        `(sha256 ${there?.slice(0, 12) ?? 'unknown'}…); nothing was replaced — run litekeep check`,
      { stage: 'upload' },
    );
  }

  async get(key: string, options: { signal?: AbortSignal } = {}): Promise<Readable> {
    try {
      const response = await this.s3.client.send(
        new GetObjectCommand({ Bucket: this.s3.bucket, Key: this.root + key }),
        { abortSignal: options.signal },
      );
      if (!(response.Body instanceof Readable))
        throw new Error('the SDK returned no Node stream for the body');
      return response.Body;
    } catch (error) {
      if (isNotFound(error as SdkError)) throw new BlobNotFoundError(key, this.location);
      throw this.s3.describeError(`download of ${key}`, error, 'restore');
    }
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    // ListObjects v1 with Marker, as the S3 destination pages: understood by every S3-compatible service.
    let marker: string | undefined;
    for (;;) {
      let page;
      try {
        page = await this.s3.client.send(
          new ListObjectsCommand({ Bucket: this.s3.bucket, Prefix: this.root + prefix, Marker: marker }),
        );
      } catch (error) {
        throw this.s3.describeError(`listing ${this.location}${prefix}`, error, 'list');
      }
      for (const o of page.Contents ?? []) {
        if (!o.Key) continue;
        yield {
          key: o.Key.slice(this.root.length),
          size: o.Size ?? 0,
          ...(o.LastModified ? { modified: o.LastModified } : {}),
        };
      }
      const last = page.Contents?.at(-1)?.Key;
      if (!page.IsTruncated || !last) break;
      marker = last;
    }
  }

  async stat(key: string): Promise<BlobInfo | undefined> {
    const head = await this.head(key);
    return head
      ? { key, size: head.ContentLength ?? 0, ...(head.LastModified ? { modified: head.LastModified } : {}) }
      : undefined;
  }

  async remove(key: string): Promise<void> {
    try {
      await this.s3.client.send(new DeleteObjectCommand({ Bucket: this.s3.bucket, Key: this.root + key }));
    } catch (error) {
      if (isNotFound(error as SdkError)) return;
      throw this.s3.describeError(`removal of ${key}`, error, 'prune');
    }
  }

  close(): void {
    this.destination.destroy();
  }
}
