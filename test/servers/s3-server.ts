import fs from 'node:fs';
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { S3Client } from '@aws-sdk/client-s3';

/** The part of s3rver 3.7.1 used here (it ships no types). */
interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: Server;
}
type S3rverClass = new (options: Record<string, unknown>) => S3rverInstance;

const require = createRequire(import.meta.url);

/** A multipart upload the server holds: created, and neither completed nor (wholly) aborted. */
export interface OpenUpload {
  key: string;
  uploadId: string;
  initiated: Date;
  /** Parts stored for it: what a real S3 bills for until the upload is aborted. */
  parts: number;
  /**
   * Aborted while a part was still in flight, and that part was stored afterwards: gone from listings, but its
   * parts still take space (and money), as S3 documents; only another abort frees them.
   */
  zombie: boolean;
}

/** One request as the server answered it, in the order the answers were finished. */
export interface S3Request {
  method: string;
  /** Path and query as received. */
  url: string;
  status: number;
  /** `CreateMultipartUpload`, `UploadPart`, `AbortMultipartUpload`, ... or `Other`. */
  operation: string;
}

export interface S3TestServer {
  /** `http://127.0.0.1:<port>`, no trailing slash; use with forcePathStyle. */
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** s3rver's data folder: objects live at `<dir>/<bucket>/<key>._S3rver_object`. */
  dir: string;
  /** Every answered request, in order. */
  requests: S3Request[];
  /** Multipart uploads the server holds now (including zombies), oldest first. */
  openUploads(): OpenUpload[];
  close(): Promise<void>;
}

interface TrackedUpload {
  key: string;
  uploadId: string;
  initiated: Date;
  state: 'open' | 'completed' | 'aborted';
  partsInFlight: number;
}

const XML = 'application/xml';

/** The S3 operation a request asks for, by method, path and query (path-style addressing). */
export function s3Operation(method: string, url: string, headers: http.IncomingHttpHeaders = {}): string {
  const parsed = new URL(url, 'http://127.0.0.1');
  const key = parsed.pathname.split('/').slice(2).join('/');
  const query = parsed.searchParams;
  const uploadId = query.get('uploadId');
  if (method === 'POST' && query.has('uploads') && key) return 'CreateMultipartUpload';
  if (method === 'PUT' && uploadId && query.has('partNumber')) return 'UploadPart';
  if (method === 'POST' && uploadId) return 'CompleteMultipartUpload';
  if (method === 'DELETE' && uploadId) return 'AbortMultipartUpload';
  if (method === 'GET' && query.has('uploads') && !key) return 'ListMultipartUploads';
  if (method === 'PUT' && key && !headers['x-amz-copy-source']) return 'PutObject';
  if (method === 'GET' && key) return 'GetObject';
  if (method === 'HEAD' && key) return 'HeadObject';
  if (method === 'DELETE' && key) return 'DeleteObject';
  if (method === 'GET' && !key) return 'ListObjects';
  return 'Other';
}

function xmlEscape(value: string): string {
  return value.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

function errorXml(code: string, message: string, extra = ''): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code>` +
    `<Message>${xmlEscape(message)}</Message>${extra}</Error>`
  );
}

/**
 * A real S3-compatible server on loopback: s3rver 3.7.1 (filesystem-backed; it knows the access key S3RVER and
 * rejects others, but does not verify SigV4 signatures themselves) behind a small proxy that adds what s3rver lacks and litekeep needs:
 *
 * - `ListMultipartUploads` and `AbortMultipartUpload` (s3rver answers 501 and 405). The proxy forwards each
 *   request first, so s3rver still checks its access key, and answers itself only where s3rver refuses the
 *   operation. Parts of an aborted upload are removed from s3rver's store; parts and completion of an unknown
 *   or aborted upload get 404 NoSuchUpload, as on S3. A part in flight when its upload is aborted is still
 *   stored when it arrives (S3 documents this): such an upload is a "zombie" in `openUploads()`.
 * - Conditional writes: `If-None-Match: *` on PutObject and CompleteMultipartUpload answers 412
 *   PreconditionFailed when the key exists, and 409 ConditionalRequestConflict while another conditional write
 *   of the same key is in progress.
 *
 * Other known gaps of s3rver: multipart objects get the whole-object MD5 as ETag; clients must send checksums
 * only when required, or streamed PUTs are stored with their aws-chunked framing.
 */
export async function startS3Server(options: { bucket?: string; port?: number } = {}): Promise<S3TestServer> {
  const S3rver = require('s3rver') as S3rverClass;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'litekeep-s3rver-'));
  const bucket = options.bucket ?? 'litekeep-test';
  const s3rver = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: dir,
    vhostBuckets: false,
    configureBuckets: [{ name: bucket }],
  });
  const upstream = await s3rver.run();
  const uploads = new Map<string, TrackedUpload>();
  const conditionalWrites = new Set<string>();
  const requests: S3Request[] = [];

  const uploadDir = (bucketName: string, uploadId: string) =>
    path.join(dir, bucketName, '._S3rver_uploads', uploadId);
  const objectExists = (bucketName: string, key: string) =>
    fs.existsSync(path.join(dir, bucketName, `${key}._S3rver_object`));
  const partsOf = (bucketName: string, uploadId: string): number => {
    try {
      return fs.readdirSync(uploadDir(bucketName, uploadId)).filter((f) => /^\d+$/.test(f)).length;
    } catch {
      return 0;
    }
  };

  const proxy = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const segments = url.pathname.split('/').slice(1);
    const bucketName = decodeURIComponent(segments[0] ?? '');
    const key = segments.slice(1).map(decodeURIComponent).join('/');
    const query = url.searchParams;
    const method = req.method ?? 'GET';
    const uploadId = query.get('uploadId');
    const operation = s3Operation(method, req.url ?? '/', req.headers);
    const log = (status: number) => requests.push({ method, url: req.url ?? '/', status, operation });

    const answer = (status: number, body = '', headers: Record<string, string> = {}) => {
      const send = () => {
        log(status);
        res.writeHead(status, {
          ...(body ? { 'content-type': XML } : {}),
          'content-length': String(Buffer.byteLength(body)),
          ...headers,
        });
        res.end(body);
      };
      // Read the request to its end first, so that the client sees the answer and not a reset connection.
      if (req.readableEnded) send();
      else {
        req.on('end', send);
        req.resume();
      }
    };

    /** Forwards to s3rver; with `collect`, hands the whole answer to `then` instead of streaming it back. */
    const forward = (
      then?: (status: number, headers: http.IncomingHttpHeaders, body: Buffer) => void,
      body?: Buffer,
    ) => {
      const up = http.request(
        { host: '127.0.0.1', port: upstream.port, method, path: req.url, headers: req.headers },
        (upRes) => {
          if (!then) {
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            upRes.pipe(res);
            upRes.on('end', () => log(upRes.statusCode ?? 502));
            return;
          }
          const chunks: Buffer[] = [];
          upRes.on('data', (c: Buffer) => chunks.push(c));
          upRes.on('end', () => then(upRes.statusCode ?? 502, upRes.headers, Buffer.concat(chunks)));
        },
      );
      up.on('error', () => res.destroy());
      // A client that drops its connection takes the forwarded request down with it, as with a real server.
      res.on('close', () => {
        if (!res.writableFinished) up.destroy();
      });
      if (body) up.end(body);
      else req.pipe(up);
    };
    const passBack = (status: number, headers: http.IncomingHttpHeaders, body: Buffer) => {
      log(status);
      res.writeHead(status, headers);
      res.end(body);
    };

    const tracked = uploadId ? uploads.get(uploadId) : undefined;
    const noSuchUpload = () =>
      answer(
        404,
        errorXml(
          'NoSuchUpload',
          'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.',
          `<UploadId>${xmlEscape(uploadId ?? '')}</UploadId>`,
        ),
      );

    switch (operation) {
      case 'CreateMultipartUpload':
        return forward((status, headers, body) => {
          const id = /<UploadId>([^<]+)<\/UploadId>/.exec(body.toString('utf8'))?.[1];
          if (status === 200 && id) {
            uploads.set(id, { key, uploadId: id, initiated: new Date(), state: 'open', partsInFlight: 0 });
          }
          passBack(status, headers, body);
        });
      case 'UploadPart': {
        if (!tracked || tracked.state !== 'open') return noSuchUpload();
        tracked.partsInFlight++;
        res.on('close', () => tracked.partsInFlight--);
        return forward();
      }
      case 'CompleteMultipartUpload': {
        if (!tracked || tracked.state !== 'open') return noSuchUpload();
        if (req.headers['if-none-match'] === '*' && objectExists(bucketName, key)) {
          return answer(
            412,
            errorXml('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold'),
          );
        }
        return forward((status, headers, body) => {
          if (status === 200 && !body.includes('<Error>')) tracked.state = 'completed';
          passBack(status, headers, body);
        });
      }
      case 'AbortMultipartUpload':
        // s3rver authenticates the request and then refuses the method (405): only then is it ours to answer.
        return forward((status, headers, body) => {
          if (status !== 405) return passBack(status, headers, body);
          // Aborting again is how S3 frees the parts of a zombie; anything else unknown is NoSuchUpload.
          const zombie = tracked?.state === 'aborted' && partsOf(bucketName, tracked.uploadId) > 0;
          if (!tracked || (tracked.state !== 'open' && !zombie)) return noSuchUpload();
          tracked.state = 'aborted';
          // Parts still arriving are stored when they arrive (as on S3): their upload then lingers as a zombie.
          if (tracked.partsInFlight === 0)
            fs.rmSync(uploadDir(bucketName, tracked.uploadId), { recursive: true, force: true });
          answer(204);
        });
      case 'ListMultipartUploads':
        return forward((status, headers, body) => {
          if (status !== 501) return passBack(status, headers, body);
          answer(200, listUploadsXml(bucketName, query));
        });
      case 'PutObject': {
        if (req.headers['if-none-match'] !== '*') return forward();
        const id = `${bucketName}/${key}`;
        if (conditionalWrites.has(id)) {
          return answer(
            409,
            errorXml(
              'ConditionalRequestConflict',
              'A conflicting conditional operation is currently in progress against this resource.',
            ),
          );
        }
        if (objectExists(bucketName, key)) {
          return answer(
            412,
            errorXml('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold'),
          );
        }
        conditionalWrites.add(id);
        res.on('close', () => conditionalWrites.delete(id));
        return forward();
      }
      default:
        return forward();
    }
  });

  function listUploadsXml(bucketName: string, query: URLSearchParams): string {
    const prefix = query.get('prefix') ?? '';
    const keyMarker = query.get('key-marker') ?? '';
    const idMarker = query.get('upload-id-marker') ?? '';
    const max = Math.min(Number(query.get('max-uploads') ?? 1000) || 1000, 1000);
    const all = [...uploads.values()]
      .filter((u) => u.state === 'open' && u.key.startsWith(prefix))
      .sort((a, b) =>
        a.key < b.key ? -1 : a.key > b.key ? 1 : a.initiated.getTime() - b.initiated.getTime(),
      )
      .filter((u) => {
        if (!keyMarker) return true;
        if (u.key > keyMarker) return true;
        return idMarker !== '' && u.key === keyMarker && u.uploadId > idMarker;
      });
    const page = all.slice(0, max);
    const truncated = all.length > page.length;
    const last = page.at(-1);
    const entries = page
      .map(
        (u) =>
          `<Upload><Key>${xmlEscape(u.key)}</Key><UploadId>${u.uploadId}</UploadId>` +
          `<Initiator><ID>S3RVER</ID><DisplayName>S3RVER</DisplayName></Initiator>` +
          `<Owner><ID>S3RVER</ID><DisplayName>S3RVER</DisplayName></Owner>` +
          `<StorageClass>STANDARD</StorageClass><Initiated>${u.initiated.toISOString()}</Initiated></Upload>`,
      )
      .join('');
    return (
      `<?xml version="1.0" encoding="UTF-8"?>\n` +
      `<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
      `<Bucket>${xmlEscape(bucketName)}</Bucket><KeyMarker>${xmlEscape(keyMarker)}</KeyMarker>` +
      `<UploadIdMarker>${xmlEscape(idMarker)}</UploadIdMarker>` +
      (truncated && last
        ? `<NextKeyMarker>${xmlEscape(last.key)}</NextKeyMarker><NextUploadIdMarker>${last.uploadId}</NextUploadIdMarker>`
        : '') +
      `<Prefix>${xmlEscape(prefix)}</Prefix><MaxUploads>${max}</MaxUploads>` +
      `<IsTruncated>${truncated}</IsTruncated>${entries}</ListMultipartUploadsResult>`
    );
  }

  await new Promise<void>((resolve) => proxy.listen(options.port ?? 0, '127.0.0.1', resolve));
  const port = (proxy.address() as AddressInfo).port;
  let closed = false;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    dir,
    requests,
    openUploads() {
      const out: OpenUpload[] = [];
      for (const u of uploads.values()) {
        const parts = partsOf(bucket, u.uploadId);
        if (u.state === 'open') out.push({ ...pick(u), parts, zombie: false });
        else if (u.state === 'aborted' && (parts > 0 || u.partsInFlight > 0))
          out.push({ ...pick(u), parts, zombie: true });
      }
      return out.sort((a, b) => a.initiated.getTime() - b.initiated.getTime());
    },
    async close() {
      if (closed) return;
      closed = true;
      // Keep-alive sockets from SDK clients would hold close() open until they time out.
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
      s3rver.httpServer?.closeAllConnections();
      await s3rver.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function pick(u: TrackedUpload): Pick<OpenUpload, 'key' | 'uploadId' | 'initiated'> {
  return { key: u.key, uploadId: u.uploadId, initiated: u.initiated };
}

/**
 * A `destinations:` entry of a litekeep config for this server: path-style, its key pair, checksums only when
 * required (s3rver would store aws-chunked framing), one attempt per request; `overrides` win.
 */
export function s3DestinationEntry(
  server: Pick<S3TestServer, 'endpoint' | 'bucket' | 'accessKeyId' | 'secretAccessKey'>,
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    name: 'bucket',
    type: 's3',
    bucket: server.bucket,
    endpoint: server.endpoint,
    region: 'us-east-1',
    accessKeyId: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
    checksumMode: 'when-required',
    maxAttempts: 1,
    ...overrides,
  };
}

/**
 * An S3 client of the test's own, independent of the code under test, to see (or plant) what the server holds.
 * Checksums only when required: s3rver would store aws-chunked framing inside the objects otherwise.
 */
export function rawS3Client(
  server: Pick<S3TestServer, 'endpoint' | 'accessKeyId' | 'secretAccessKey'>,
): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}
