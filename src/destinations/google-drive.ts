import { VERSION } from '../version.js';
import { createHash } from 'node:crypto';
import os from 'node:os';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rename, stat as fsStat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { gaxios } from 'google-auth-library';
import { parseBackupName } from '../naming.js';
import {
  isOwnedBy,
  type ArtifactMetadata,
  type Destination,
  type PutOptions,
  type PutResult,
  type RemoteObject,
} from './types.js';
import {
  DriveAuthRevokedError,
  DriveChecksumMismatchError,
  DriveError,
  DriveFileNotFoundError,
  DriveFolderNotFoundError,
  DriveQuotaExceededError,
  DriveRequestError,
} from './drive-errors.js';
import { formatDuration } from '../util/duration.js';
import { fsyncDir, tempPathBeside } from '../util/fs.js';
import { idleTimer, sleep, touchingBody, touchingStream } from '../util/timeouts.js';
import {
  loadGoogleCredentials,
  type GoogleCredentialsKind,
  type GoogleEndpoints,
  type LoadedGoogleCredentials,
} from './google-auth.js';

export * from './drive-errors.js';

export interface GoogleDriveOptions {
  /** Destination name, default 'drive'. */
  name?: string;
  /** authorized_user or service_account JSON. */
  credentialsPath: string;
  /** Default 'litekeep-backups'; created when missing. */
  folderName?: string;
  /** Wins over folderName. Never created: a missing id is an error. */
  folderId?: string;
  /** Only list/remove files whose appProperties.source equals this, when given. */
  sourceName?: string;
  /**
   * This machine (appProperties.host of its copies): only its files are ever removed, by id, and a file of the
   * same name from it with other bytes is never joined by a second one. Default: the system host name.
   */
  host?: string;
  /** Retention moves files to the trash (default) instead of deleting them outright. */
  trash?: boolean;
  /** Bytes per resumable-upload request, a multiple of 256 KiB, default 8 MiB. */
  chunkSize?: number;
  /** Per request (and per chunk without progress), default 6. */
  maxAttempts?: number;
  /** First backoff delay, doubled per attempt with jitter, default 1000. */
  retryBaseMs?: number;
  /** files.list page size, default 1000 (Drive's maximum). */
  pageSize?: number;
  /** A request or download with no byte moving either way for this long fails (and is retried); default 30 s. */
  idleTimeoutMs?: number;
  /** The run's signal: every request stops when it fires. */
  signal?: AbortSignal;
  /** Test-only overrides. */
  endpoints?: GoogleEndpoints;
}

const DEFAULT_API_ROOT = 'https://www.googleapis.com/';
const FOLDER_MIME = 'application/vnd.google-apps.folder';
const UPLOAD_QUANTUM = 256 * 1024;
const DEFAULT_CHUNK = 8 * 1024 * 1024;
const MAX_RETRY_DELAY_MS = 60_000;
/** A server asking for more than this is treated as down: bounded waits beat a backup run that hangs. */
const MAX_RETRY_AFTER_MS = 5 * 60_000;
const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
const FILE_FIELDS =
  'id,name,mimeType,size,md5Checksum,sha256Checksum,webViewLink,modifiedTime,trashed,appProperties';
/** Drive counts key and value together against this limit, in UTF-8 bytes. */
const APP_PROPERTY_LIMIT = 124;

interface DriveFile {
  id: string;
  name: string;
  mimeType?: string;
  size?: string;
  md5Checksum?: string;
  sha256Checksum?: string;
  webViewLink?: string;
  modifiedTime?: string;
  trashed?: boolean;
  appProperties?: Record<string, string>;
}

interface HttpResult {
  status: number;
  headers: { get(name: string): string | null };
  data: unknown;
}

interface RequestSpec {
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: string;
  params?: Record<string, string | number | boolean>;
  headers?: Record<string, string>;
  data?: unknown;
  stream?: boolean;
  label: string;
}

interface Counter {
  retries: number;
}

class SessionGone extends Error {}

/** Retryable: the request never got an HTTP answer (connection refused, reset, timeout). */
class NetworkFailure extends Error {}

function errorInfo(data: unknown): { reason?: string; message?: string } {
  let body = data;
  if (typeof data === 'string') {
    try {
      body = JSON.parse(data);
    } catch {
      return { message: data.slice(0, 200) || undefined };
    }
  }
  const error = (body as { error?: unknown } | undefined)?.error;
  if (error && typeof error === 'object') {
    const e = error as { message?: string; errors?: { reason?: string }[]; status?: string };
    return { reason: e.errors?.[0]?.reason ?? e.status, message: e.message };
  }
  if (typeof error === 'string') return { reason: error };
  return {};
}

function asJson<T>(data: unknown): T {
  if (typeof data === 'string') return (data ? JSON.parse(data) : {}) as T;
  return data as T;
}

function escapeQuery(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/'/g, "\\'");
}

function truncateUtf8(value: string, maxBytes: number): string {
  if (Buffer.byteLength(value) <= maxBytes) return value;
  let out = '';
  for (const ch of value) {
    if (Buffer.byteLength(out + ch) > maxBytes) break;
    out += ch;
  }
  return out;
}

/** The value Drive will actually hold for `key`, so that filters compare like with like. */
export function appPropertyValue(key: string, value: string): string {
  return truncateUtf8(value, APP_PROPERTY_LIMIT - Buffer.byteLength(key));
}

export function buildAppProperties(metadata: ArtifactMetadata): Record<string, string> {
  const entries: [string, string | number | undefined][] = [
    ['litekeep', '1'],
    ['sha256', metadata.sha256],
    ['bytes', metadata.bytes],
    ['plainSha256', metadata.plainSha256],
    ['plainBytes', metadata.plainBytes],
    ['source', metadata.sourceName],
    ['backupTime', metadata.backupTime],
    ['compression', metadata.compression],
    ['encryption', metadata.encryption],
    ['version', metadata.litekeepVersion],
    ['host', metadata.host],
    ['trigger', metadata.trigger],
    ['journalMode', metadata.journalMode],
  ];
  const out: Record<string, string> = {};
  for (const [key, value] of entries)
    if (value !== undefined && value !== '') out[key] = appPropertyValue(key, String(value));
  return out;
}

export function parseAppProperties(props: Record<string, string> | undefined): Partial<ArtifactMetadata> {
  if (!props) return {};
  const num = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined);
  const meta: Partial<ArtifactMetadata> = {
    sha256: props.sha256,
    bytes: num(props.bytes),
    plainSha256: props.plainSha256,
    plainBytes: num(props.plainBytes),
    sourceName: props.source,
    backupTime: props.backupTime,
    compression: props.compression as ArtifactMetadata['compression'] | undefined,
    encryption: props.encryption as ArtifactMetadata['encryption'] | undefined,
    litekeepVersion: props.version,
    host: props.host,
    trigger: props.trigger,
    journalMode: props.journalMode,
  };
  for (const key of Object.keys(meta) as (keyof ArtifactMetadata)[])
    if (meta[key] === undefined) delete meta[key];
  return meta;
}

function toRemoteObject(file: DriveFile): RemoteObject {
  const metadata = parseAppProperties(file.appProperties);
  return {
    name: file.name,
    id: file.id,
    bytes: Number(file.size ?? 0),
    metadata,
    host: metadata.host,
    ...(file.webViewLink ? { link: file.webViewLink } : {}),
    ...(file.modifiedTime ? { modifiedTime: file.modifiedTime } : {}),
  };
}

function retryAfterMs(value: string | null): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - Date.now();
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS) : undefined;
}

async function readFully(handle: FileHandle, buffer: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesRead } = await handle.read(buffer, done, buffer.length - done, position + done);
    if (bytesRead === 0)
      throw new DriveError(
        'The local file shrank while it was being uploaded: something else is writing it; back up to a fresh file.',
      );
    done += bytesRead;
  }
}

/** `Range: bytes=0-N` from a 308 → the next offset to send; no header means nothing was kept. */
function confirmedOffset(res: HttpResult): number {
  const m = /bytes=0-(\d+)/.exec(res.headers.get('range') ?? '');
  return m ? Number(m[1]) + 1 : 0;
}

/**
 * A Google Drive folder as a litekeep destination: resumable chunked uploads with resume-on-failure,
 * checksums verified against what Drive computed, and litekeep's metadata in appProperties.
 */
export class GoogleDriveDestination implements Destination {
  readonly name: string;
  readonly type = 'google-drive';
  private readonly apiRoot: string;
  private readonly chunkSize: number;
  private readonly maxAttempts: number;
  private readonly retryBaseMs: number;
  private readonly idleTimeoutMs: number;
  private authPromise?: Promise<LoadedGoogleCredentials>;
  private folderPromise?: Promise<string | undefined>;
  private kind?: GoogleCredentialsKind;

  readonly host: string;

  constructor(private readonly options: GoogleDriveOptions) {
    this.name = options.name ?? 'drive';
    this.host = options.host ?? os.hostname();
    const root = options.endpoints?.apiRootUrl ?? DEFAULT_API_ROOT;
    this.apiRoot = root.endsWith('/') ? root : `${root}/`;
    this.chunkSize = options.chunkSize ?? DEFAULT_CHUNK;
    if (!Number.isInteger(this.chunkSize) || this.chunkSize <= 0 || this.chunkSize % UPLOAD_QUANTUM !== 0)
      throw new DriveError(
        `Google Drive chunkSize ${options.chunkSize} is not a positive multiple of 256 KiB (262144 bytes): use e.g. 8388608 (8 MiB).`,
      );
    this.maxAttempts = Math.max(1, options.maxAttempts ?? 6);
    this.retryBaseMs = Math.max(0, options.retryBaseMs ?? 1000);
    this.idleTimeoutMs = Math.max(1, options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS);
  }

  /** Loads the credentials; also tells the caller about the service-account quota caveat. */
  async credentials(): Promise<LoadedGoogleCredentials> {
    this.authPromise ??= loadGoogleCredentials(this.options.credentialsPath, this.options.endpoints, {
      tokenTimeoutMs: this.idleTimeoutMs,
    });
    try {
      const loaded = await this.authPromise;
      this.kind = loaded.kind;
      return loaded;
    } catch (err) {
      this.authPromise = undefined;
      throw err;
    }
  }

  // ---------------------------------------------------------------- HTTP

  /**
   * One HTTP exchange; statuses are returned, only a missing answer or a refused token throws. Bounded by an
   * idle timeout, not a total one: a long upload or download is fine as long as bytes keep moving, and a
   * server that stalls (before the answer or in the middle of a download) fails after `idleTimeoutMs`.
   */
  private async send(spec: RequestSpec, callSignal?: AbortSignal): Promise<HttpResult> {
    const signal = callSignal ?? this.options.signal;
    const { client } = await this.credentials();
    const idle = new AbortController();
    const stalled = () =>
      new NetworkFailure(
        `Google Drive ${spec.label} stalled: no data for ${formatDuration(this.idleTimeoutMs)} (idleTimeout)`,
      );
    const timer = idleTimer(this.idleTimeoutMs, () => idle.abort(stalled()));
    const headers = { ...spec.headers };
    let data = spec.data;
    if (Buffer.isBuffer(data)) {
      headers['Content-Length'] = String(data.length);
      data = touchingBody(data, timer);
    }
    const opts: gaxios.GaxiosOptions = {
      url: spec.url,
      method: spec.method ?? 'GET',
      params: spec.params,
      headers,
      data,
      responseType: spec.stream ? 'stream' : 'text',
      validateStatus: () => true,
      retry: false,
      signal: signal ? AbortSignal.any([signal, idle.signal]) : idle.signal,
      timeout: 0,
    };
    try {
      const res = await client.request(opts);
      if (spec.stream && res.data instanceof Readable) {
        const body = res.data;
        const watched = touchingStream(timer);
        timer.touch();
        body.on('error', (error) => watched.destroy(idle.signal.aborted ? idle.signal.reason : error));
        idle.signal.addEventListener('abort', () => watched.destroy(idle.signal.reason), { once: true });
        watched.on('close', () => {
          timer.stop();
          body.destroy();
        });
        body.pipe(watched);
        return { status: res.status, headers: res.headers, data: watched };
      }
      timer.stop();
      return { status: res.status, headers: res.headers, data: res.data };
    } catch (err) {
      timer.stop();
      if (signal?.aborted) throw signal.reason;
      if (idle.signal.aborted) throw idle.signal.reason;
      const response = (err as { response?: { status?: number; data?: unknown } }).response;
      if (response) {
        // Only the token endpoint can answer with an error here (validateStatus accepts everything else).
        const info = errorInfo(response.data);
        const data = asJsonSafe(response.data);
        if (info.reason === 'invalid_grant' || (err as Error).message === 'invalid_grant')
          throw new DriveAuthRevokedError(data?.error_description, { cause: err });
        if ((response.status ?? 0) >= 500)
          throw new NetworkFailure(`token endpoint answered ${response.status}`);
        throw new DriveRequestError(
          `Google refused to issue an access token (${response.status} ${info.reason ?? ''}${info.message ? `: ${info.message}` : ''}): re-authorize with \`litekeep auth google\`.`,
          response.status,
          info.reason,
          { cause: err },
        );
      }
      if (err instanceof DriveError) throw err;
      throw new NetworkFailure((err as Error).message, { cause: err });
    }
  }

  private isRetryable(res: HttpResult): boolean {
    if (res.status === 429 || res.status >= 500) return true;
    if (res.status === 403) {
      const { reason } = errorInfo(res.data);
      return reason === 'rateLimitExceeded' || reason === 'userRateLimitExceeded';
    }
    return false;
  }

  private delayFor(failures: number, res?: HttpResult): number {
    const hinted = res ? retryAfterMs(res.headers.get('retry-after')) : undefined;
    if (hinted !== undefined) return hinted;
    const exp = Math.min(this.retryBaseMs * 2 ** (failures - 1), MAX_RETRY_DELAY_MS);
    // Jitter keeps several litekeep instances from retrying in lockstep against the same quota.
    return exp / 2 + Math.random() * (exp / 2);
  }

  private async drain(res: HttpResult): Promise<HttpResult> {
    if (res.data instanceof Readable || (res.data && typeof (res.data as Readable).pipe === 'function')) {
      const parts: Buffer[] = [];
      for await (const part of res.data as Readable) parts.push(Buffer.from(part as Buffer));
      return { ...res, data: Buffer.concat(parts).toString('utf8') };
    }
    return res;
  }

  private failure(res: HttpResult, label: string): DriveError {
    const { reason, message } = errorInfo(res.data);
    if (reason === 'storageQuotaExceeded')
      return new DriveQuotaExceededError(this.kind === 'service_account', { cause: new Error(message) });
    if (res.status === 401)
      return new DriveRequestError(
        `Google Drive ${label} was refused (401 ${reason ?? 'unauthorized'}): re-authorize with \`litekeep auth google\`.`,
        res.status,
        reason,
      );
    return new DriveRequestError(
      `Google Drive ${label} failed (${res.status}${reason ? ` ${reason}` : ''}${message ? `: ${message}` : ''}): check the folder and credentials, or try again later.`,
      res.status,
      reason,
    );
  }

  /**
   * A request with bounded retries for 5xx, 429, rate-limit 403s and network errors (exponential backoff with
   * jitter, or the server's Retry-After). Other statuses are returned for the caller to interpret.
   */
  private async call(spec: RequestSpec, counter?: Counter, callSignal?: AbortSignal): Promise<HttpResult> {
    const signal = callSignal ?? this.options.signal;
    let refreshed = false;
    for (let attempt = 1; ; attempt++) {
      let res: HttpResult | undefined;
      let lastError = '';
      try {
        res = await this.send(spec, signal);
        if (res.status === 401 && !refreshed) {
          // An access token revoked before its expiry: drop it and let the client fetch a fresh one, once.
          refreshed = true;
          await this.dropAccessToken();
          attempt--;
          continue;
        }
        if (!this.isRetryable(res)) return res;
        res = await this.drain(res);
        lastError = `${res.status} ${errorInfo(res.data).reason ?? ''}`.trim();
      } catch (err) {
        if (!(err instanceof NetworkFailure)) throw err;
        lastError = err.message;
      }
      if (attempt >= this.maxAttempts)
        throw new DriveRequestError(
          `Google Drive ${spec.label} failed ${attempt} times (last: ${lastError}): check the network, or try again later.`,
          res?.status,
        );
      if (counter) counter.retries++;
      await sleep(this.delayFor(attempt, res), signal);
    }
  }

  private async dropAccessToken(): Promise<void> {
    const { client } = await this.credentials();
    const { refresh_token } = client.credentials;
    client.setCredentials(refresh_token ? { refresh_token } : {});
  }

  private async json<T>(spec: RequestSpec, counter?: Counter, signal?: AbortSignal): Promise<T> {
    const res = await this.call(spec, counter, signal);
    if (res.status < 200 || res.status >= 300) throw this.failure(res, spec.label);
    return asJson<T>(res.data);
  }

  private filesUrl(id?: string): string {
    return `${this.apiRoot}drive/v3/files${id ? `/${encodeURIComponent(id)}` : ''}`;
  }

  private async listFiles(q: string, signal?: AbortSignal): Promise<DriveFile[]> {
    const files: DriveFile[] = [];
    let pageToken: string | undefined;
    do {
      const page = await this.json<{ files?: DriveFile[]; nextPageToken?: string }>(
        {
          url: this.filesUrl(),
          params: {
            q,
            fields: `nextPageToken,files(${FILE_FIELDS})`,
            pageSize: this.options.pageSize ?? 1000,
            spaces: 'drive',
            supportsAllDrives: true,
            includeItemsFromAllDrives: true,
            ...(pageToken ? { pageToken } : {}),
          },
          label: 'listing',
        },
        undefined,
        signal,
      );
      files.push(...(page.files ?? []));
      pageToken = page.nextPageToken;
    } while (pageToken);
    return files;
  }

  // ---------------------------------------------------------------- folder

  /** The folder id; with `create`, a missing named folder is created (once, even under concurrent puts). */
  private async folder(create: boolean): Promise<string | undefined> {
    if (this.options.folderId) return this.options.folderId;
    if (!this.folderPromise) {
      const p = this.findOrCreateFolder(create);
      this.folderPromise = p;
      p.then(
        (id) => {
          if (!id && this.folderPromise === p) this.folderPromise = undefined;
        },
        () => {
          if (this.folderPromise === p) this.folderPromise = undefined;
        },
      );
    }
    const id = await this.folderPromise;
    if (id || !create) return id;
    this.folderPromise = undefined;
    return this.folder(true);
  }

  private async findOrCreateFolder(create: boolean): Promise<string | undefined> {
    const name = this.options.folderName ?? 'litekeep-backups';
    const found = await this.listFiles(
      `name = '${escapeQuery(name)}' and mimeType = '${FOLDER_MIME}' and trashed = false`,
    );
    if (found.length > 0) return found[0].id;
    if (!create) return undefined;
    const made = await this.json<DriveFile>({
      method: 'POST',
      url: this.filesUrl(),
      params: { fields: 'id', supportsAllDrives: true },
      data: { name, mimeType: FOLDER_MIME },
      label: `creating folder ${name}`,
    });
    return made.id;
  }

  // ---------------------------------------------------------------- upload

  async put(
    localPath: string,
    name: string,
    metadata: ArtifactMetadata,
    options: PutOptions = {},
  ): Promise<PutResult> {
    const started = Date.now();
    const counter: Counter = { retries: 0 };
    const total = (await fsStat(localPath)).size;
    // Drive takes any number of files with one name: a second copy from this host must be the same bytes.
    const existing = await this.stat(name);
    if (existing) {
      if (existing.metadata?.sha256 === metadata.sha256 && existing.bytes === total) {
        return {
          id: existing.id,
          ...(existing.link ? { link: existing.link } : {}),
          bytes: total,
          attempts: 1,
          durationMs: Date.now() - started,
        };
      }
      throw new DriveError(
        `${this.name} already holds a different ${name} from host '${this.host}' (sha256 ` +
          `${existing.metadata?.sha256?.slice(0, 12) ?? 'unknown'}…): another machine uses this host name — ` +
          `give each machine its own 'host' setting.`,
      );
    }
    const appProperties = buildAppProperties(metadata);
    const { file, sha256, md5 } = await this.upload(localPath, name, total, appProperties, counter, options);
    await this.verifyUploaded(file, name, total, sha256, md5, metadata.sha256, options.signal);
    return {
      id: file.id,
      ...(file.webViewLink ? { link: file.webViewLink } : {}),
      bytes: total,
      attempts: 1 + counter.retries,
      durationMs: Date.now() - started,
    };
  }

  private async upload(
    localPath: string,
    name: string,
    total: number,
    appProperties: Record<string, string>,
    counter: Counter,
    options: PutOptions,
  ): Promise<{ file: DriveFile; sha256: string; md5: string }> {
    for (let restarts = 0; ; restarts++) {
      const session = await this.startSession(name, total, appProperties, counter, options.signal);
      try {
        return await this.sendChunks(session, localPath, total, counter, options);
      } catch (err) {
        // Drive forgets sessions after about a week or on server trouble: start over a bounded number of times.
        if (err instanceof SessionGone && restarts < 2) {
          counter.retries++;
          continue;
        }
        if (err instanceof SessionGone)
          throw new DriveRequestError(
            `Google Drive kept discarding the upload session of ${name}: try again later.`,
          );
        throw err;
      }
    }
  }

  private async startSession(
    name: string,
    total: number,
    appProperties: Record<string, string>,
    counter: Counter,
    signal?: AbortSignal,
  ): Promise<string> {
    for (let recreated = false; ; recreated = true) {
      const folderId = (await this.folder(true))!;
      const res = await this.call(
        {
          method: 'POST',
          url: `${this.apiRoot}upload/drive/v3/files`,
          params: { uploadType: 'resumable', fields: FILE_FIELDS, supportsAllDrives: true },
          headers: {
            'X-Upload-Content-Type': 'application/octet-stream',
            'X-Upload-Content-Length': String(total),
          },
          data: { name, parents: [folderId], mimeType: 'application/octet-stream', appProperties },
          label: `upload of ${name}`,
        },
        counter,
        signal,
      );
      if (res.status === 404) {
        // The folder was deleted since we looked it up: a named folder is simply made again.
        if (this.options.folderId) throw new DriveFolderNotFoundError(this.options.folderId);
        if (!recreated) {
          this.folderPromise = undefined;
          continue;
        }
      }
      if (res.status === 403 && errorInfo(res.data).reason === 'storageQuotaExceeded')
        throw new DriveQuotaExceededError(this.kind === 'service_account');
      if (res.status < 200 || res.status >= 300) throw this.failure(res, `upload of ${name}`);
      const location = res.headers.get('location');
      if (!location)
        throw new DriveRequestError(
          `Google Drive did not return an upload session for ${name} (no Location header): check apiRootUrl points at the Drive API.`,
          res.status,
        );
      return location;
    }
  }

  private async sendChunks(
    session: string,
    localPath: string,
    total: number,
    counter: Counter,
    options: PutOptions,
  ): Promise<{ file: DriveFile; sha256: string; md5: string }> {
    const { signal } = options;
    const handle = await open(localPath, 'r');
    const sha = createHash('sha256');
    const md5 = createHash('md5');
    // Hash each byte once, as it is first read, even when a resume re-reads part of the file.
    let hashed = 0;
    let offset = 0;
    let failures = 0;
    let reauthorized = false;
    const finish = async (res: HttpResult) => {
      if (hashed < total) {
        const rest = Buffer.allocUnsafe(Math.min(this.chunkSize, total - hashed));
        while (hashed < total) {
          const part = rest.subarray(0, Math.min(rest.length, total - hashed));
          await readFully(handle, part, hashed);
          sha.update(part);
          md5.update(part);
          hashed += part.length;
        }
      }
      options.onProgress?.(total);
      return { file: asJson<DriveFile>(res.data), sha256: sha.digest('hex'), md5: md5.digest('hex') };
    };
    try {
      for (;;) {
        signal?.throwIfAborted();
        if (offset > hashed)
          throw new DriveRequestError(
            `Google Drive claims to hold ${offset} bytes but only ${hashed} were sent: try the upload again.`,
          );
        let res: HttpResult | undefined;
        let lastError = '';
        try {
          if (total === 0 || offset >= total) {
            // Nothing left to send: Drive confirmed every byte (a 308 covering all of them) but has not
            // answered with the file yet. Ask for it; an empty range is not a valid chunk.
            res = await this.send(
              {
                method: 'PUT',
                url: session,
                headers: { 'Content-Range': `bytes */${total}` },
                label: 'upload status query',
              },
              signal,
            );
          } else {
            const length = Math.min(this.chunkSize, total - offset);
            const chunk = Buffer.allocUnsafe(length);
            await readFully(handle, chunk, offset);
            if (offset + length > hashed) {
              const fresh = chunk.subarray(hashed - offset);
              sha.update(fresh);
              md5.update(fresh);
              hashed = offset + length;
            }
            res = await this.send(
              {
                method: 'PUT',
                url: session,
                headers: {
                  'Content-Range': `bytes ${offset}-${offset + length - 1}/${total}`,
                  'Content-Type': 'application/octet-stream',
                },
                data: chunk,
                label: 'upload',
              },
              signal,
            );
          }
        } catch (err) {
          if (!(err instanceof NetworkFailure)) throw err;
          lastError = err.message;
        }
        if (res) {
          if (res.status === 200 || res.status === 201) return await finish(res);
          if (res.status === 308) {
            const next = confirmedOffset(res);
            // Asked with everything sent, and still no file: wait and ask again, a bounded number of times.
            const unfinished = total > 0 && next === total && offset === total;
            if (next > offset) failures = 0;
            offset = next;
            options.onProgress?.(offset);
            if (!unfinished) continue;
            lastError = '308 with every byte confirmed but no file';
          }
          if (res.status === 404 || res.status === 410) throw new SessionGone();
          if (res.status === 403 && errorInfo(res.data).reason === 'storageQuotaExceeded')
            throw new DriveQuotaExceededError(this.kind === 'service_account');
          // A long upload can outlive its access token: fetch a fresh one once, then ask where to resume.
          if (res.status === 401 && !reauthorized) {
            reauthorized = true;
            await this.dropAccessToken();
          } else if (res.status !== 308 && !this.isRetryable(res)) throw this.failure(res, 'upload');
          if (res.status !== 308) lastError = `${res.status} ${errorInfo(res.data).reason ?? ''}`.trim();
        }
        failures++;
        if (failures >= this.maxAttempts)
          throw new DriveRequestError(
            `Google Drive upload failed ${failures} times at byte ${offset} (last: ${lastError}): check the network, or try again later.`,
            res?.status,
          );
        counter.retries++;
        await sleep(this.delayFor(failures, res), signal);
        // The failed request may have delivered part of the chunk: ask the session where to continue.
        const status = await this.call(
          {
            method: 'PUT',
            url: session,
            headers: { 'Content-Range': `bytes */${total}` },
            label: 'upload status query',
          },
          counter,
          signal,
        );
        if (status.status === 200 || status.status === 201) return await finish(status);
        if (status.status === 404 || status.status === 410) throw new SessionGone();
        if (status.status !== 308) throw this.failure(status, 'upload status query');
        const next = confirmedOffset(status);
        if (next > offset) failures = 0;
        offset = next;
        options.onProgress?.(offset);
      }
    } finally {
      await handle.close();
    }
  }

  private async verifyUploaded(
    uploaded: DriveFile,
    name: string,
    total: number,
    localSha256: string,
    localMd5: string,
    declaredSha256: string | undefined,
    signal?: AbortSignal,
  ): Promise<void> {
    let file = uploaded;
    if (!file.sha256Checksum && !file.md5Checksum) {
      file = await this.json<DriveFile>(
        {
          url: this.filesUrl(file.id),
          params: { fields: FILE_FIELDS, supportsAllDrives: true },
          label: `reading ${name}`,
        },
        undefined,
        signal,
      );
    }
    let mismatch: [string, string, string] | undefined;
    if (declaredSha256 && declaredSha256 !== localSha256)
      mismatch = [declaredSha256, localSha256, 'The sha256 of the local file read during upload'];
    else if (file.size !== undefined && Number(file.size) !== total)
      mismatch = [String(total), String(file.size), 'The size Google Drive reports'];
    else if (file.sha256Checksum) {
      if (file.sha256Checksum !== localSha256)
        mismatch = [localSha256, file.sha256Checksum, 'The sha256 Google Drive reports'];
    } else if (file.md5Checksum) {
      if (file.md5Checksum !== localMd5)
        mismatch = [localMd5, file.md5Checksum, 'The md5 Google Drive reports'];
    } else mismatch = [localSha256, 'nothing', 'The checksum Google Drive reports'];
    if (!mismatch) return;
    // A copy we cannot vouch for must not be mistaken for a backup later, not even from the trash.
    await this.call({
      method: 'DELETE',
      url: this.filesUrl(file.id),
      params: { supportsAllDrives: true },
      label: 'delete',
    }).catch(() => undefined);
    throw new DriveChecksumMismatchError(name, mismatch[0], mismatch[1], mismatch[2], 'run the backup again');
  }

  // ---------------------------------------------------------------- list / stat / get / remove

  private ownQuery(folderId: string): string {
    let q = `'${escapeQuery(folderId)}' in parents and trashed = false and appProperties has { key='litekeep' and value='1' }`;
    if (this.options.sourceName !== undefined)
      q += ` and appProperties has { key='source' and value='${escapeQuery(appPropertyValue('source', this.options.sourceName))}' }`;
    return q;
  }

  private isOwn(file: DriveFile): boolean {
    const props = file.appProperties ?? {};
    if (props.litekeep !== '1' || file.trashed || !parseBackupName(file.name)) return false;
    return (
      this.options.sourceName === undefined ||
      props.source === appPropertyValue('source', this.options.sourceName)
    );
  }

  private async ownFiles(name?: string): Promise<DriveFile[]> {
    const folderId = await this.folder(false);
    if (!folderId) return [];
    let q = this.ownQuery(folderId);
    if (name !== undefined) q = `name = '${escapeQuery(name)}' and ${q}`;
    return (await this.listFiles(q)).filter((f) => this.isOwn(f) && (name === undefined || f.name === name));
  }

  async list(): Promise<RemoteObject[]> {
    const files = await this.ownFiles();
    return files.map(toRemoteObject).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** This host's newest copy of `name` (files without a host are from before litekeep recorded it: ours). */
  async stat(name: string): Promise<RemoteObject | undefined> {
    const files = (await this.ownFiles(name)).filter((f) => isOwnedBy(toRemoteObject(f), this.host));
    // Drive allows several files with one name; the newest is the one a restore should use.
    files.sort((a, b) => (b.modifiedTime ?? '').localeCompare(a.modifiedTime ?? ''));
    return files[0] ? toRemoteObject(files[0]) : undefined;
  }

  async get(object: RemoteObject, options: { signal?: AbortSignal } = {}): Promise<Readable> {
    const name = object.name;
    const res = await this.call(
      {
        url: this.filesUrl(object.id),
        params: { alt: 'media', supportsAllDrives: true },
        stream: true,
        label: `download of ${name}`,
      },
      undefined,
      options.signal,
    );
    if (res.status === 404) throw new DriveFileNotFoundError(name);
    if (res.status !== 200) throw this.failure(await this.drain(res), `download of ${name}`);
    const body = res.data;
    if (body instanceof Readable) return body;
    if (body && typeof (body as ReadableStream).getReader === 'function')
      return Readable.fromWeb(body as import('node:stream/web').ReadableStream);
    return body as Readable;
  }

  /** Trashes (or deletes) one file by id; refuses another host's. */
  async remove(object: RemoteObject): Promise<void> {
    const name = object.name;
    if (!parseBackupName(name)) throw new Error(`refusing to remove ${name}: not a litekeep backup name`);
    if (!isOwnedBy(object, this.host))
      throw new Error(`refusing to remove ${name} (${object.id}): it belongs to host '${object.host}'`);
    const res = await this.call(
      this.options.trash === false
        ? {
            method: 'DELETE',
            url: this.filesUrl(object.id),
            params: { supportsAllDrives: true },
            label: `delete of ${name}`,
          }
        : {
            method: 'PATCH',
            url: this.filesUrl(object.id),
            params: { fields: 'id,trashed', supportsAllDrives: true },
            data: { trashed: true },
            label: `trashing ${name}`,
          },
    );
    // Gone already (someone else pruned it) is what we wanted.
    if (res.status !== 404 && (res.status < 200 || res.status >= 300))
      throw this.failure(res, this.options.trash === false ? `delete of ${name}` : `trashing ${name}`);
  }

  // ---------------------------------------------------------------- incremental repositories (issue 14)

  private uploaders?: Map<string, GoogleDriveDestination>;

  /**
   * Raw files and folders for src/repository/stores/drive.ts, through this destination's HTTP layer (auth,
   * retries, resumable uploads, checksum verification, error messages). Full-file backups never use it.
   */
  repositoryAccess(): DriveRepositoryAccess {
    return {
      folderLabel: this.options.folderId ?? this.options.folderName ?? 'litekeep-backups',
      folderId: () => this.folder(true) as Promise<string>,
      list: (q) => this.listFiles(q),
      createFolder: async (name, parent, appProperties) =>
        (
          await this.json<DriveFile>({
            method: 'POST',
            url: this.filesUrl(),
            params: { fields: 'id', supportsAllDrives: true },
            data: { name, mimeType: FOLDER_MIME, parents: [parent], appProperties },
            label: `creating folder ${name}`,
          })
        ).id,
      upload: async (localPath, name, parentId, appProperties, signal) => {
        // Uploads go into the destination's folder: one per parent folder, sharing these credentials' settings.
        this.uploaders ??= new Map();
        let uploader = this.uploaders.get(parentId);
        if (!uploader) {
          uploader = new GoogleDriveDestination({ ...this.options, folderId: parentId });
          this.uploaders.set(parentId, uploader);
        }
        const total = (await fsStat(localPath)).size;
        const counter: Counter = { retries: 0 };
        const { file, sha256, md5 } = await uploader.upload(localPath, name, total, appProperties, counter, {
          signal,
        });
        await uploader.verifyUploaded(file, name, total, sha256, md5, undefined, signal);
        return { id: file.id, sha256 };
      },
      download: (id, name) => this.get({ id, name, bytes: 0 }),
      remove: async (id, name) => {
        const res = await this.call(
          this.options.trash === false
            ? {
                method: 'DELETE',
                url: this.filesUrl(id),
                params: { supportsAllDrives: true },
                label: `delete of ${name}`,
              }
            : {
                method: 'PATCH',
                url: this.filesUrl(id),
                params: { fields: 'id,trashed', supportsAllDrives: true },
                data: { trashed: true },
                label: `trashing ${name}`,
              },
        );
        if (res.status !== 404 && (res.status < 200 || res.status >= 300))
          throw this.failure(res, `removal of ${name}`);
      },
    };
  }
}

/** What a repository on Drive needs of the destination's HTTP layer (see repositoryAccess). */
export interface DriveRepositoryAccess {
  /** The configured folder (id or name), for messages. */
  folderLabel: string;
  /** This destination's folder (created when missing, unless it is a configured folderId). */
  folderId(): Promise<string>;
  /** Files matching a Drive query, every page. */
  list(q: string): Promise<DriveFileInfo[]>;
  createFolder(name: string, parent: string, appProperties: Record<string, string>): Promise<string>;
  /** A resumable upload into folder `parentId`, verified against Drive's checksum. */
  upload(
    localPath: string,
    name: string,
    parentId: string,
    appProperties: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<{ id: string; sha256: string }>;
  download(id: string, name: string): Promise<Readable>;
  /** Trashes (or, with trash: false, deletes) a file by id; one that is gone already is fine. */
  remove(id: string, name: string): Promise<void>;
}

export type DriveFileInfo = DriveFile;

function asJsonSafe(data: unknown): { error?: string; error_description?: string } | undefined {
  try {
    return asJson(data);
  } catch {
    return undefined;
  }
}

export interface DownloadVerifiedResult {
  path: string;
  bytes: number;
  sha256: string;
}

/**
 * Streams a remote backup to `toPath` (temp file, fsync, rename, fsync folder) and checks its sha256 against
 * the metadata stored beside it. On mismatch nothing is left at `toPath` and the partial file is removed.
 */
export async function downloadVerified(
  dest: Destination,
  name: string,
  toPath: string,
): Promise<DownloadVerifiedResult> {
  const info = await dest.stat(name);
  if (!info) throw new DriveFileNotFoundError(name);
  const expected = info.metadata?.sha256;
  if (!expected)
    throw new DriveError(
      `${name} on ${dest.name} carries no sha256 in its metadata, so it cannot be verified: restore from a backup litekeep uploaded.`,
    );
  const temp = tempPathBeside(toPath);
  const hash = createHash('sha256');
  let bytes = 0;
  try {
    const source = await dest.get(info);
    await pipeline(
      source,
      new Transform({
        transform(chunk: Buffer, _enc, done) {
          hash.update(chunk);
          bytes += chunk.length;
          done(null, chunk);
        },
      }),
      createWriteStream(temp, { flags: 'wx', mode: 0o600 }),
    );
    const actual = hash.digest('hex');
    if (actual !== expected)
      throw new DriveChecksumMismatchError(
        name,
        expected,
        actual,
        'The sha256 of the downloaded copy',
        'restore another backup, or download again if the network is flaky',
      );
    const handle = await open(temp, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, toPath);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dirname(toPath));
  return { path: toPath, bytes, sha256: expected };
}

export interface UploadBackupToDriveOptions extends GoogleDriveOptions {
  /** Name on Drive, default the local file's base name. */
  remoteName?: string;
  /** Facts to store; computed from the file (sha256, size, time) and its name where absent. */
  metadata?: Partial<ArtifactMetadata>;
  signal?: AbortSignal;
}

/** The library entry point of the Python seed: upload one file, get its id and link back. */
export async function uploadBackupToDrive(
  path: string,
  options: UploadBackupToDriveOptions,
): Promise<{ id: string; webViewLink?: string }> {
  const remoteName = options.remoteName ?? basename(path);
  const hash = createHash('sha256');
  for await (const part of createReadStream(path)) hash.update(part as Buffer);
  const info = await fsStat(path);
  const parsed = parseBackupName(remoteName);
  const metadata: ArtifactMetadata = {
    sha256: hash.digest('hex'),
    bytes: info.size,
    sourceName: options.sourceName ?? 'litekeep',
    backupTime: info.mtime.toISOString(),
    compression: parsed?.compression ?? 'none',
    encryption: parsed?.encryption ?? 'none',
    litekeepVersion: VERSION,
    ...options.metadata,
  };
  const result = await new GoogleDriveDestination(options).put(path, remoteName, metadata, {
    signal: options.signal,
  });
  return { id: result.id, ...(result.link ? { webViewLink: result.link } : {}) };
}
