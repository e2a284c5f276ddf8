import { createHash, type Hash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsCommand,
  S3Client,
  type HeadObjectCommandOutput,
  type S3ClientConfig,
  type ServerSideEncryption,
  type StorageClass,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { s3BucketNameProblem } from '../config/destinations.js';
import { hostFromSegment, hostSegment, parseBackupName } from '../naming.js';
import { formatDuration } from '../util/duration.js';
import { EXIT, LitekeepError } from '../util/errors.js';
import { redactUrl } from '../util/redact.js';
import { buildS3Metadata, parseS3Metadata } from './s3-metadata.js';
import {
  isOwnedBy,
  type ArtifactMetadata,
  type Destination,
  type IncompleteUpload,
  type IncompleteUploadSweep,
  type PutOptions,
  type PutResult,
  type RemoteObject,
} from './types.js';

export interface S3DestinationOptions {
  /** Destination name shown in logs and used by `--from`; default `s3`. */
  name?: string;
  bucket: string;
  /** Key prefix shared by every database in the bucket, e.g. `litekeep/host1`; may be empty. */
  prefix?: string;
  /** Objects live under `<prefix>/<databaseName>/`, so several databases share one bucket without collision. */
  databaseName: string;
  /**
   * This machine: its copies are `<prefix>/<databaseName>/<host>/<file>`, and only those are ever written or
   * removed. Default: the system host name.
   */
  host?: string;
  region?: string;
  /** For S3-compatible services (MinIO, R2, B2, Wasabi, ...), e.g. `https://s3.example.com`. */
  endpoint?: string;
  /** Default: true when `endpoint` is given (most S3-compatible services need it), false otherwise. */
  forcePathStyle?: boolean;
  storageClass?: string;
  serverSideEncryption?: string;
  /** Both or neither; when neither, the SDK's standard chain (env, shared files, instance roles) applies. */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Multipart part size in bytes; default 16 MiB, minimum 5 MiB. */
  partSize?: number;
  /** Parts uploaded at once; default 4. */
  queueSize?: number;
  /** `when-required` for servers that store aws-chunked framing inside objects (s3rver, older MinIO). */
  checksumMode?: 'when-required' | 'when-supported';
  /** Attempts per request, including the first; default 3. */
  maxAttempts?: number;
  /** Keys per ListObjects page (S3's maximum and default is 1000); smaller only to exercise paging. */
  listPageSize?: number;
  /** A request with no byte sent or received for this long fails (and is retried); default 30 s. */
  idleTimeoutMs?: number;
  /**
   * The run's signal: every request stops when it fires, except the parts of an upload in progress, which
   * get one idle timeout to settle first (see put).
   */
  signal?: AbortSignal;
}

const MiB = 1024 * 1024;
export const DEFAULT_PART_SIZE = 16 * MiB;
export const MIN_PART_SIZE = 5 * MiB;
const MAX_PARTS = 10_000;
const HEAD_CONCURRENCY = 8;
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
/** Tries of one AbortMultipartUpload; the server that just failed an upload is often still recovering. */
const ABORT_ATTEMPTS = 3;

/** `<prefix>/<databaseName>/<name>` with no leading slash and no empty segments. */
export function objectKey(prefix: string | undefined, databaseName: string, name = ''): string {
  const parts = [prefix ?? '', databaseName].flatMap((p) => p.split('/')).filter((segment) => segment !== '');
  return `${parts.join('/')}/${name}`;
}

/** Digests of exactly the bytes sent, with MD5s per part at the boundaries lib-storage cuts. */
export interface UploadDigests {
  bytes: number;
  sha256: string;
  /** MD5 (hex) of the whole object. */
  md5: string;
  /** MD5 (hex) of each part, in order; one entry when the object fits in one part. */
  partMd5s: string[];
}

/** The ETag S3 gives a multipart object: md5 of the concatenated binary part MD5s, then `-<parts>`. */
export function multipartEtag(partMd5s: string[]): string {
  const md5 = createHash('md5');
  for (const part of partMd5s) md5.update(Buffer.from(part, 'hex'));
  return `${md5.digest('hex')}-${partMd5s.length}`;
}

/**
 * Whether the server's ETag agrees with what was sent. AWS gives a single PUT the object's MD5 and a
 * multipart upload `md5(part md5s)-N`; some compatible servers (s3rver) give the whole-object MD5 for both,
 * so either form is accepted when it matches. With SSE-KMS/SSE-C the ETag is not an MD5 at all:
 * `unverifiable`, and the size check plus the SDK's per-request checksums are what remain.
 */
export function uploadedChecksumMatches(
  etag: string | undefined,
  digests: UploadDigests,
  serverSideEncryption?: string,
): 'match' | 'mismatch' | 'unverifiable' {
  if (!etag || (serverSideEncryption && serverSideEncryption.startsWith('aws:kms'))) return 'unverifiable';
  const value = etag.replace(/"/g, '').toLowerCase();
  if (/^[0-9a-f]{32}-\d+$/.test(value))
    return value === multipartEtag(digests.partMd5s) ? 'match' : 'mismatch';
  if (/^[0-9a-f]{32}$/.test(value)) return value === digests.md5 ? 'match' : 'mismatch';
  return 'unverifiable';
}

/** Pass-through that hashes what flows to the uploader, splitting part MD5s every `partSize` bytes. */
class DigestingStream extends Transform {
  private readonly sha256 = createHash('sha256');
  private readonly md5 = createHash('md5');
  private part: Hash = createHash('md5');
  private partFill = 0;
  private readonly partMd5s: string[] = [];
  private total = 0;

  constructor(private readonly partSize: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.sha256.update(chunk);
    this.md5.update(chunk);
    this.total += chunk.length;
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(this.partSize - this.partFill, chunk.length - offset);
      this.part.update(chunk.subarray(offset, offset + take));
      this.partFill += take;
      offset += take;
      if (this.partFill === this.partSize) {
        this.partMd5s.push(this.part.digest('hex'));
        this.part = createHash('md5');
        this.partFill = 0;
      }
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.partFill > 0 || this.partMd5s.length === 0) this.partMd5s.push(this.part.digest('hex'));
    callback();
  }

  digests(): UploadDigests {
    return {
      bytes: this.total,
      sha256: this.sha256.copy().digest('hex'),
      md5: this.md5.copy().digest('hex'),
      partMd5s: [...this.partMd5s],
    };
  }
}

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
  cause?: unknown;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
]);

function networkCode(error: unknown): string | undefined {
  for (let e = error as SdkError | undefined, depth = 0; e && depth < 5; e = e.cause as SdkError, depth++) {
    if (e.code && NETWORK_CODES.has(e.code)) return e.code;
    if (e.name === 'TimeoutError') return 'timeout';
    // AggregateError from happy-eyeballs connects carries the codes in `errors`.
    const nested = (e as { errors?: SdkError[] }).errors?.find((x) => x.code && NETWORK_CODES.has(x.code));
    if (nested?.code) return nested.code;
  }
  return undefined;
}

/** The host name a failed lookup or TLS check was about, when the error says. */
function failedHost(error: unknown): string | undefined {
  for (
    let e = error as (SdkError & { hostname?: string; host?: string }) | undefined, depth = 0;
    e && depth < 5;
    depth++
  ) {
    if (e.hostname) return e.hostname;
    if (e.code === 'ERR_TLS_CERT_ALTNAME_INVALID' && e.host) return e.host;
    e = e.cause as typeof e;
  }
  return undefined;
}

/** Throws on options that cannot work, before any request is made. */
export function validateS3Options(options: S3DestinationOptions): void {
  const fail = (message: string) => {
    throw new LitekeepError(message, { exitCode: EXIT.usage, stage: 'config' });
  };
  const where = `s3 destination '${options.name ?? 's3'}'`;
  const bucketProblem = s3BucketNameProblem(options.bucket ?? '');
  if (bucketProblem) fail(`${where}: invalid bucket name '${options.bucket}'; ${bucketProblem}`);
  if (!options.databaseName)
    fail(`${where}: no database name to place objects under; set the database's name`);
  if (Boolean(options.accessKeyId) !== Boolean(options.secretAccessKey)) {
    fail(`${where}: set both accessKeyId and secretAccessKey, or neither to use the AWS credential chain`);
  }
  if (
    options.partSize !== undefined &&
    (!Number.isFinite(options.partSize) || options.partSize < MIN_PART_SIZE)
  ) {
    fail(`${where}: partSize ${options.partSize} is below the S3 minimum of ${MIN_PART_SIZE} bytes (5 MiB)`);
  }
  if (options.checksumMode && !['when-required', 'when-supported'].includes(options.checksumMode)) {
    fail(`${where}: checksumMode must be 'when-required' or 'when-supported', not '${options.checksumMode}'`);
  }
  if (options.endpoint) {
    try {
      new URL(options.endpoint);
    } catch {
      fail(`${where}: endpoint '${options.endpoint}' is not a URL; write it like https://s3.example.com`);
    }
  }
}

/**
 * An S3 bucket (AWS or any S3-compatible service) as a destination. Uploads stream through lib-storage
 * (multipart above one part), and count only after a HEAD shows the right size, litekeep's metadata and an
 * ETag that matches the MD5s computed while streaming.
 */
export class S3Destination implements Destination {
  readonly type = 's3';
  readonly name: string;
  readonly client: S3Client;
  private readonly options: S3DestinationOptions;
  private readonly keyPrefix: string;
  readonly host: string;
  /** Without the run's signal: cleaning up after a cancelled upload must still get through (bounded by retries). */
  private readonly cleanupClient: S3Client;

  constructor(options: S3DestinationOptions) {
    validateS3Options(options);
    this.options = options;
    this.name = options.name ?? 's3';
    this.host = options.host ?? os.hostname();
    this.keyPrefix = objectKey(options.prefix, options.databaseName);
    const checksum = options.checksumMode === 'when-required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED';
    const config: S3ClientConfig = {
      endpoint: options.endpoint,
      forcePathStyle: options.forcePathStyle ?? Boolean(options.endpoint),
      // A custom endpoint rarely cares about the region, but SigV4 needs one; AWS itself needs the right one.
      region:
        options.region ??
        process.env.AWS_REGION ??
        process.env.AWS_DEFAULT_REGION ??
        (options.endpoint ? 'us-east-1' : undefined),
      maxAttempts: options.maxAttempts ?? 3,
      requestChecksumCalculation: checksum,
      responseChecksumValidation: checksum,
      // Without these a blackholed endpoint or a stalled server would hang a nightly run forever. The socket
      // timeout is an idle timeout: it fires only when no byte moves either way, so large parts are not cut.
      requestHandler: {
        connectionTimeout: Math.min(10_000, options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS),
        socketTimeout: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      },
    };
    if (options.accessKeyId && options.secretAccessKey) {
      config.credentials = { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey };
    }
    this.cleanupClient = new S3Client(config);
    this.client = withDefaultAbortSignal(this.cleanupClient, options.signal);
  }

  /** Whether the bucket goes into the host name (virtual-hosted addressing) rather than the path. */
  private get virtualHosted(): boolean {
    return !(this.options.forcePathStyle ?? Boolean(this.options.endpoint));
  }

  /** `s3://bucket/<prefix>/<db>/`, for messages. */
  get location(): string {
    return `s3://${this.options.bucket}/${this.keyPrefix}`;
  }

  /** This host's key for a backup name. */
  keyFor(name: string): string {
    return `${this.keyPrefix}${hostSegment(this.host)}/${name}`;
  }

  /** Where a key stands: a backup of some host, one from before host folders, or not ours at all. */
  private placeOf(key: string): { name: string; host?: string; legacy: boolean } | undefined {
    if (!key.startsWith(this.keyPrefix)) return undefined;
    const parts = key.slice(this.keyPrefix.length).split('/');
    if (parts.length === 1 && parseBackupName(parts[0])) return { name: parts[0], legacy: true };
    if (parts.length === 2 && parts[0] !== '' && parseBackupName(parts[1]))
      return { name: parts[1], host: hostFromSegment(parts[0]), legacy: false };
    return undefined;
  }

  private get endpointLabel(): string {
    // An endpoint may carry credentials (http://user:secret@host): never in a message.
    return this.options.endpoint
      ? redactUrl(this.options.endpoint)
      : `AWS S3 (${this.options.region ?? process.env.AWS_REGION ?? 'default region'})`;
  }

  /** One line naming the cause and the fix, for any failure of the SDK. */
  describeError(action: string, error: unknown, stage = 'upload'): LitekeepError {
    const e = (error ?? {}) as SdkError;
    const code = e.name ?? e.Code ?? e.code ?? 'Error';
    const status = e.$metadata?.httpStatusCode;
    const bucket = this.options.bucket;
    const net = networkCode(error);
    let message: string;
    if (e.name === 'AbortError') {
      message = `${action} on ${this.name} was cancelled`;
    } else if (net === 'timeout') {
      message =
        `${action} on ${this.name} failed: no answer from S3 endpoint ${this.endpointLabel} for ` +
        `${formatDuration(this.options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS)} (idleTimeout); ` +
        `check 'endpoint' and that the service is healthy, or raise idleTimeout for a very slow link`;
    } else if (this.virtualHosted && failedHost(error)?.startsWith(`${bucket}.`)) {
      // Virtual-hosted addressing puts the bucket in the host name, which many S3-compatible services (and
      // a bucket name with dots under TLS) cannot serve.
      message =
        `${action} on ${this.name} failed: the virtual-hosted name ${failedHost(error)} (the bucket as a ` +
        `subdomain of the endpoint) ${/TLS|CERT/i.test(e.code ?? '') ? 'has no matching certificate' : 'does not resolve'}; ` +
        `set forcePathStyle: true (most S3-compatible services need it), or fix 'endpoint'`;
    } else if (net) {
      message =
        `${action} on ${this.name} failed: cannot reach S3 endpoint ${this.endpointLabel} (${net}); ` +
        `check 'endpoint', the network and that the service is running`;
    } else if (code === 'NoSuchBucket') {
      message = `${action} on ${this.name} failed: bucket '${bucket}' does not exist at ${this.endpointLabel}; create it or fix 'bucket'`;
    } else if (code === 'CredentialsProviderError' || /Could not load credentials/i.test(e.message ?? '')) {
      message =
        `${action} on ${this.name} failed: no S3 credentials found; set accessKeyId/secretAccessKey, ` +
        `AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or an AWS profile or instance role`;
    } else if (code === 'InvalidAccessKeyId' || code === 'SignatureDoesNotMatch') {
      message = `${action} on ${this.name} failed: ${code}: the S3 credentials were rejected; check accessKeyId and secretAccessKey`;
    } else if (code === 'AccessDenied' || code === 'Forbidden' || status === 403) {
      message =
        `${action} on ${this.name} failed: access denied to s3://${bucket}/${this.keyPrefix}; ` +
        `grant s3:PutObject, s3:GetObject, s3:ListBucket and s3:DeleteObject to these credentials`;
    } else if (
      code === 'PermanentRedirect' ||
      code === 'AuthorizationHeaderMalformed' ||
      code === 'IllegalLocationConstraintException' ||
      status === 301
    ) {
      message = `${action} on ${this.name} failed: ${code}: bucket '${bucket}' is in another region; set 'region' to the bucket's region`;
    } else if (/Region is missing/i.test(e.message ?? '')) {
      message = `${action} on ${this.name} failed: no AWS region configured; set 'region' or AWS_REGION`;
    } else if (code === 'InvalidObjectState') {
      message = `${action} on ${this.name} failed: the object is archived (${this.options.storageClass ?? 'Glacier'}); restore it in S3 first, or use a storage class that can be read directly`;
    } else if (code === 'InvalidStorageClass' || code === 'InvalidArgument') {
      message = `${action} on ${this.name} failed: ${code}: ${firstLine(e.message)}; check 'storageClass' and 'serverSideEncryption'`;
    } else if (status === 413 || code === 'EntityTooLarge' || code === 'RequestEntityTooLarge') {
      const partSize = this.options.partSize ?? DEFAULT_PART_SIZE;
      message =
        `${action} on ${this.name} failed: ${code} (HTTP ${status ?? 413}): the service (or a proxy before it) ` +
        `refused a request as too large; lower 'partSize' (now ${Math.round(partSize / MiB)} MiB, at least 5 MiB) ` +
        `so that each request is smaller`;
    } else if (code === 'QuotaExceeded' || status === 507) {
      message = `${action} on ${this.name} failed: ${code}: the service refused the size; free space or raise the quota`;
    } else if ((status !== undefined && status >= 500) || code === 'SlowDown' || status === 429) {
      message =
        `${action} on ${this.name} failed: ${code} (HTTP ${status ?? '?'}) from ${this.endpointLabel} after retries: ` +
        `${firstLine(e.message)}; the service is failing or throttling, try again later or raise maxAttempts`;
    } else {
      message = `${action} on ${this.name} failed: ${code}${status ? ` (HTTP ${status})` : ''}: ${firstLine(e.message)}; check the endpoint, bucket and credentials`;
    }
    return new LitekeepError(message, { stage, cause: error });
  }

  async put(
    localPath: string,
    name: string,
    metadata: ArtifactMetadata,
    options: PutOptions = {},
  ): Promise<PutResult> {
    if (!parseBackupName(name)) throw new Error(`refusing to upload ${name}: not a litekeep backup name`);
    const started = Date.now();
    const key = this.keyFor(name);
    let total: number;
    try {
      total = (await fs.promises.stat(localPath)).size;
    } catch (error) {
      throw new LitekeepError(
        `upload of ${name} to ${this.name} failed: cannot read the local backup ${localPath} (${(error as Error).message}); check that it still exists`,
        { stage: 'upload', cause: error },
      );
    }
    // Servers without conditional writes would silently overwrite: look first, and let If-None-Match catch a
    // race on those that have them.
    const existing = await this.head(key, `upload of ${name}`);
    if (existing) return this.alreadyThere(name, key, existing, metadata, started);
    // A 10,000-part ceiling: grow the part size rather than fail on very large files.
    const partSize = Math.max(this.options.partSize ?? DEFAULT_PART_SIZE, Math.ceil(total / MAX_PARTS));
    const source = fs.createReadStream(localPath);
    const digesting = new DigestingStream(partSize);
    source.on('error', (error) => digesting.destroy(error));
    source.pipe(digesting);

    const abort = new AbortController();
    const onAbort = () => abort.abort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    // The upload's own requests stop only when abandonUpload says so, not the moment the run is cancelled.
    const hardStop = new AbortController();
    const upload = new Upload({
      client: withDefaultAbortSignal(this.client, hardStop.signal),
      partSize,
      queueSize: this.options.queueSize ?? 4,
      // lib-storage's own abort masks the real error when AbortMultipartUpload fails (s3rver answers 405),
      // so parts are cleaned up below, best effort.
      leavePartsOnError: true,
      abortController: abort,
      params: {
        Bucket: this.options.bucket,
        Key: key,
        Body: digesting,
        ContentLength: total,
        ContentType: 'application/octet-stream',
        // Never replace an object: on PutObject and CompleteMultipartUpload alike (lib-storage passes it on).
        IfNoneMatch: '*',
        Metadata: buildS3Metadata(metadata),
        ...(this.options.storageClass ? { StorageClass: this.options.storageClass as StorageClass } : {}),
        ...(this.options.serverSideEncryption
          ? { ServerSideEncryption: this.options.serverSideEncryption as ServerSideEncryption }
          : {}),
      },
    });
    if (options.onProgress) {
      const report = options.onProgress;
      upload.on('httpUploadProgress', (p) => {
        if (typeof p.loaded === 'number') report(p.loaded);
      });
    }
    try {
      if (options.signal?.aborted) abort.abort();
      await upload.done();
    } catch (error) {
      const failure = this.describeError(`upload of ${name}`, error);
      const left = await this.abandonUpload(key, upload, hardStop);
      source.destroy();
      digesting.destroy();
      if (isPreconditionFailed(error) && !left) {
        // Another upload of this key completed first (a retried run, or a second machine with this host name).
        const now = await this.head(key, `upload of ${name}`);
        if (now) return this.alreadyThere(name, key, now, metadata, started);
      }
      if (!left) throw failure;
      throw new LitekeepError(
        `${failure.message}; its incomplete multipart upload could not be aborted (${left}): the next run ` +
          `aborts it, and an AbortIncompleteMultipartUpload lifecycle rule on the bucket is the safety net`,
        { stage: failure.stage, cause: error },
      );
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }

    const digests = digesting.digests();
    await this.verifyUploaded(name, key, metadata, digests);
    options.onProgress?.(digests.bytes);
    return { id: key, bytes: digests.bytes, attempts: 1, durationMs: Date.now() - started };
  }

  /** A copy under this host's key exists: it is this backup (a retried run), or another machine's. */
  private alreadyThere(
    name: string,
    key: string,
    head: HeadObjectCommandOutput,
    metadata: ArtifactMetadata,
    started: number,
  ): PutResult {
    const sha256 = parseS3Metadata(head.Metadata).sha256;
    if (sha256 === metadata.sha256 && head.ContentLength === metadata.bytes) {
      return { id: key, bytes: metadata.bytes, attempts: 1, durationMs: Date.now() - started };
    }
    throw new LitekeepError(
      `upload of ${name} to ${this.name} refused: s3://${this.options.bucket}/${key} already holds other bytes ` +
        `(sha256 ${sha256?.slice(0, 12) ?? 'unknown'}…); another machine uses the host name '${this.host}' — ` +
        `give each machine its own 'host' setting`,
      { stage: 'upload' },
    );
  }

  /**
   * After a failed or cancelled upload: waits for the requests still in flight (CreateMultipartUpload, parts)
   * to settle, then aborts the multipart upload, retrying, so that no part stays stored and billed. An abort
   * sent while a part is on its way leaves that part behind on S3. Returns why the abort failed, or undefined.
   */
  private async abandonUpload(
    key: string,
    upload: Upload,
    hardStop: AbortController,
  ): Promise<string | undefined> {
    const state = upload as unknown as {
      concurrentUploaders?: Promise<unknown>[];
      createMultiPartPromise?: Promise<{ UploadId?: string }>;
      uploadId?: string;
    };
    const inFlight = Promise.allSettled(state.concurrentUploaders ?? []);
    // A request still going after one more idle timeout (a server trickling bytes) is cut: a part whose body
    // is cut off is not stored.
    let grace: NodeJS.Timeout | undefined;
    const settled = await Promise.race([
      inFlight.then(() => true),
      new Promise<boolean>((resolve) => {
        grace = setTimeout(() => resolve(false), this.options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS);
      }),
    ]);
    clearTimeout(grace);
    if (!settled) {
      hardStop.abort();
      await inFlight;
    }
    if (!state.createMultiPartPromise) return undefined;
    const created = await state.createMultiPartPromise.catch(() => undefined);
    const uploadId = state.uploadId ?? created?.UploadId;
    if (uploadId) return this.abortMultipartUpload(key, uploadId);
    // The answer to CreateMultipartUpload was lost (cancelled, or the connection dropped): the server may
    // still have made one. This run holds the database's lock and the key names its own new backup.
    try {
      const found = (await this.listMultipartUploads(key, this.cleanupClient)).filter((u) => u.key === key);
      for (const u of found) {
        const problem = await this.abortMultipartUpload(key, u.uploadId);
        if (problem) return problem;
      }
      return undefined;
    } catch (error) {
      return firstLine((error as Error).message);
    }
  }

  /** AbortMultipartUpload with retries; an upload the server no longer knows counts as aborted. */
  private async abortMultipartUpload(key: string, uploadId: string): Promise<string | undefined> {
    let problem = '';
    for (let attempt = 1; attempt <= ABORT_ATTEMPTS; attempt++) {
      try {
        await this.cleanupClient.send(
          new AbortMultipartUploadCommand({ Bucket: this.options.bucket, Key: key, UploadId: uploadId }),
        );
        return undefined;
      } catch (error) {
        const e = error as SdkError;
        if (e.name === 'NoSuchUpload' || e.$metadata?.httpStatusCode === 404) return undefined;
        problem = this.describeError(`abort of upload ${uploadId}`, error).message;
      }
      if (attempt < ABORT_ATTEMPTS) await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt));
    }
    return problem;
  }

  /** Open multipart uploads whose key starts with `prefix`, across pages. */
  private async listMultipartUploads(
    prefix: string,
    client = this.client,
  ): Promise<{ key: string; uploadId: string; initiated?: Date }[]> {
    const out: { key: string; uploadId: string; initiated?: Date }[] = [];
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await client.send(
        new ListMultipartUploadsCommand({
          Bucket: this.options.bucket,
          Prefix: prefix,
          KeyMarker: keyMarker,
          UploadIdMarker: uploadIdMarker,
        }),
      );
      for (const u of page.Uploads ?? []) {
        if (u.Key && u.UploadId) out.push({ key: u.Key, uploadId: u.UploadId, initiated: u.Initiated });
      }
      if (!page.IsTruncated || !page.NextKeyMarker) return out;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  /**
   * Aborts the incomplete multipart uploads of backups under this destination's key prefix that `isAbandoned`
   * says nobody is still sending (a run killed mid-upload, a server that died before the abort got through):
   * S3 keeps their parts, and bills them, until someone does.
   */
  async abortIncompleteUploads(
    isAbandoned: (upload: IncompleteUpload) => boolean,
  ): Promise<IncompleteUploadSweep> {
    let open;
    try {
      open = await this.listMultipartUploads(this.keyPrefix);
    } catch (error) {
      throw this.describeError(`listing the incomplete uploads under ${this.location}`, error, 'upload');
    }
    const sweep: IncompleteUploadSweep = { aborted: [], failed: [] };
    for (const u of open) {
      // Only this host's uploads (or those of the layout before host folders, which can only be its own).
      const place = this.placeOf(u.key);
      if (!place || !isOwnedBy(place, this.host)) continue;
      const name = place.name;
      if (!isAbandoned({ name, id: u.uploadId, startedAt: u.initiated })) continue;
      const problem = await this.abortMultipartUpload(u.key, u.uploadId);
      if (problem) sweep.failed.push(`${name}: ${problem}`);
      else sweep.aborted.push(name);
    }
    return sweep;
  }

  /** HEAD the new object; on any disagreement delete it (a bad copy must not count) and throw. */
  private async verifyUploaded(
    name: string,
    key: string,
    metadata: ArtifactMetadata,
    digests: UploadDigests,
  ): Promise<void> {
    let problem: string | undefined;
    if (digests.sha256 !== metadata.sha256) {
      problem = `the local file's sha256 ${digests.sha256} is not the recorded ${metadata.sha256} (it changed during upload?)`;
    } else if (digests.bytes !== metadata.bytes) {
      problem = `sent ${digests.bytes} bytes but the backup has ${metadata.bytes}`;
    } else {
      const head = await this.head(key, `verification of ${name}`);
      if (!head) {
        problem = 'the object is missing right after upload';
      } else if (head.ContentLength !== digests.bytes) {
        problem = `the server holds ${head.ContentLength} bytes, ${digests.bytes} were sent`;
      } else if (parseS3Metadata(head.Metadata).sha256 !== metadata.sha256) {
        problem = 'the server did not keep litekeep metadata (x-amz-meta-litekeep-sha256)';
      } else if (
        uploadedChecksumMatches(head.ETag, digests, this.options.serverSideEncryption) === 'mismatch'
      ) {
        problem = `ETag ${head.ETag} matches neither the MD5 ${digests.md5} nor the multipart form ${multipartEtag(digests.partMd5s)}`;
      }
    }
    if (!problem) return;
    await this.cleanupClient
      .send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: key }))
      .catch(() => undefined);
    throw new LitekeepError(
      `upload of ${name} to ${this.name} failed verification: ${problem}; the remote copy was removed, run the backup again`,
      { stage: 'upload' },
    );
  }

  private async head(key: string, action: string): Promise<HeadObjectCommandOutput | undefined> {
    try {
      return await this.client.send(new HeadObjectCommand({ Bucket: this.options.bucket, Key: key }));
    } catch (error) {
      const e = error as SdkError;
      if (e.name === 'NotFound' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404)
        return undefined;
      throw this.describeError(action, error);
    }
  }

  /** Every host's copies of this database, and those from before host folders (`<prefix>/<db>/<file>`). */
  async list(): Promise<RemoteObject[]> {
    const found: string[] = [];
    // ListObjects (v1) paged by Marker = last key: v2's continuation tokens crash s3rver on OpenSSL 3 (it
    // encrypts them with DES), and v1 is understood by every S3-compatible service.
    let marker: string | undefined;
    for (;;) {
      let page;
      try {
        page = await this.client.send(
          new ListObjectsCommand({
            Bucket: this.options.bucket,
            Prefix: this.keyPrefix,
            Marker: marker,
            MaxKeys: this.options.listPageSize,
          }),
        );
      } catch (error) {
        throw this.describeError(`listing ${this.location}`, error, 'list');
      }
      const contents = page.Contents ?? [];
      for (const object of contents) if (object.Key && this.placeOf(object.Key)) found.push(object.Key);
      const last = contents.at(-1)?.Key;
      if (!page.IsTruncated || !last) break;
      marker = last;
    }

    // Listings carry no user metadata; restore on a new machine needs each object's sha256 and backup time.
    const out: (RemoteObject | undefined)[] = new Array(found.length);
    let next = 0;
    const worker = async () => {
      while (next < found.length) {
        const index = next++;
        out[index] = await this.statKey(found[index]);
      }
    };
    await Promise.all(Array.from({ length: Math.min(HEAD_CONCURRENCY, found.length) }, worker));
    return out.filter((o): o is RemoteObject => o !== undefined);
  }

  private async statKey(key: string): Promise<RemoteObject | undefined> {
    const place = this.placeOf(key);
    if (!place) return undefined;
    const head = await this.head(key, `stat of ${place.name}`);
    if (!head) return undefined;
    const metadata = parseS3Metadata(head.Metadata);
    return {
      name: place.name,
      id: key,
      bytes: head.ContentLength ?? 0,
      metadata,
      host: place.host ?? metadata.host,
      ...(place.legacy ? { legacy: true } : {}),
      ...(head.LastModified ? { modifiedTime: head.LastModified.toISOString() } : {}),
    };
  }

  /** This host's copy of `name`, else one from before host folders that is this host's. */
  async stat(name: string): Promise<RemoteObject | undefined> {
    const own = await this.statKey(this.keyFor(name));
    if (own) return own;
    const legacy = await this.statKey(this.keyPrefix + name);
    return legacy && isOwnedBy(legacy, this.host) ? legacy : undefined;
  }

  async get(object: RemoteObject, options: { signal?: AbortSignal } = {}): Promise<Readable> {
    const key = object.id;
    try {
      const response = await this.client.send(
        new GetObjectCommand({ Bucket: this.options.bucket, Key: key }),
        {
          abortSignal: options.signal,
        },
      );
      if (!(response.Body instanceof Readable))
        throw new Error('the SDK returned no Node stream for the body');
      const body = response.Body;
      // The SDK's idle timeout also ends a download that stalls mid-body; say so in litekeep's words.
      const out = new PassThrough();
      body.on('error', (error: SdkError) =>
        out.destroy(
          networkCode(error) === 'timeout'
            ? new LitekeepError(
                `download of ${object.name} from ${this.name} stalled: no data for ` +
                  `${formatDuration(this.options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS)} (idleTimeout); ` +
                  `try again, or raise idleTimeout for a very slow link`,
                { stage: 'restore', cause: error },
              )
            : (error as Error),
        ),
      );
      out.on('close', () => body.destroy());
      return body.pipe(out);
    } catch (error) {
      const e = error as SdkError;
      if (e.name === 'NoSuchKey' || e.name === 'NotFound') {
        throw new LitekeepError(
          `no backup named ${object.name} at s3://${this.options.bucket}/${key}; run 'litekeep list' to see the backups that exist`,
          { stage: 'restore', cause: error },
        );
      }
      throw this.describeError(`download of ${object.name}`, error, 'restore');
    }
  }

  /** Removes one of this host's copies (or a pre-host-folder one that is this host's), by key. */
  async remove(object: RemoteObject): Promise<void> {
    const place = this.placeOf(object.id);
    if (!place || place.name !== object.name)
      throw new Error(`refusing to remove ${object.id}: not a litekeep backup key`);
    if (!isOwnedBy({ host: place.host ?? object.host }, this.host))
      throw new Error(`refusing to remove ${object.id}: it belongs to host '${place.host ?? object.host}'`);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: object.id }));
    } catch (error) {
      throw this.describeError(`removal of ${object.name}`, error, 'prune');
    }
  }

  /** Closes the SDK's sockets so that a short-lived process can exit promptly. */
  destroy(): void {
    this.client.destroy();
  }

  // ---------------------------------------------------------------- incremental repositories (issue 14)

  /**
   * What src/repository/stores/s3.ts needs to keep a repository under `<prefix>/<database>/<host>/repo/`: this
   * destination's client (its options, retries and timeouts), its bucket and settings, its error messages.
   */
  repositoryAccess(): S3RepositoryAccess {
    return {
      client: this.client,
      name: this.name,
      bucket: this.options.bucket,
      databasePrefix: this.keyPrefix,
      storageClass: this.options.storageClass,
      serverSideEncryption: this.options.serverSideEncryption,
      describeError: (action, error, stage) => this.describeError(action, error, stage),
    };
  }
}

/** See S3Destination.repositoryAccess. */
export interface S3RepositoryAccess {
  client: S3Client;
  name: string;
  bucket: string;
  /** `<prefix>/<database>/`. */
  databasePrefix: string;
  storageClass?: string;
  serverSideEncryption?: string;
  describeError(action: string, error: unknown, stage?: string): LitekeepError;
}

/** 412: a conditional write found the key taken (or, on a multipart upload, completed meanwhile). */
function isPreconditionFailed(error: unknown): boolean {
  const e = (error ?? {}) as SdkError;
  return e.name === 'PreconditionFailed' || e.$metadata?.httpStatusCode === 412;
}

/**
 * The client with `signal` as the abort signal of every request that does not bring its own: one place that
 * makes all of a destination's requests stop with the run (or with an upload's own stop).
 */
function withDefaultAbortSignal(client: S3Client, signal: AbortSignal | undefined): S3Client {
  if (!signal) return client;
  return new Proxy(client, {
    get(target, property, receiver) {
      if (property !== 'send') return Reflect.get(target, property, receiver);
      return (command: Parameters<S3Client['send']>[0], options?: { abortSignal?: AbortSignal }) =>
        target.send(command, { ...options, abortSignal: options?.abortSignal ?? signal });
    },
  });
}

function firstLine(message: string | undefined): string {
  return (message ?? 'no message').split('\n')[0].trim() || 'no message';
}
