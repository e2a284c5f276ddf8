/**
 * A small, real HTTP server on loopback speaking the subset of Google Drive v3 (and Google's OAuth endpoints)
 * that litekeep uses, with faults that can be switched on: the things a real Drive does on a bad night.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export const UPLOAD_QUANTUM = 256 * 1024;
export const FOLDER_MIME = 'application/vnd.google-apps.folder';

export interface StoredFile {
  id: string;
  name: string;
  mimeType: string;
  parents: string[];
  appProperties: Record<string, string>;
  trashed: boolean;
  bytes: Buffer;
  createdTime: string;
  modifiedTime: string;
}

export interface LoggedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  /** Body bytes the server actually received (for dropped chunks: before the drop). */
  bodyBytes: number;
  status?: number;
}

export interface DriveFaults {
  /**
   * Answer the Nth data-carrying chunk PUT (1-based, counted over the server's life) with this status, and the
   * error reason Drive gives (default rateLimitExceeded for 429, backendError otherwise).
   */
  chunkErrors: { chunk: number; status: number; retryAfter?: string; reason?: string }[];
  /**
   * At the Nth chunk PUT the upload session expires, as Drive's do (after a week, or on server trouble): that
   * request and every later one for the session get `status` (404 or 410), and the bytes are gone.
   */
  expireSessions: { chunk: number; status: 404 | 410 }[];
  /**
   * When the Nth chunk PUT delivers the last bytes, answer 308 with a Range covering all of them instead of
   * the finished file (Drive does this while it finalizes); a status query then gets the file.
   */
  confirmAllWith308: number[];
  /** Downloads (alt=media) send their headers and the first `afterBytes` bytes, then nothing, ever. */
  stallDownloads?: { afterBytes: number };
  /** Destroy the connection of the Nth chunk PUT after this many body bytes arrived. */
  dropChunks: { chunk: number; afterBytes: number }[];
  /** Every refresh_token grant fails with invalid_grant. */
  invalidGrant: boolean;
  /** Starting an upload fails with 403 storageQuotaExceeded. */
  quotaExceeded: boolean;
  /** Files report checksums that do not match their bytes. */
  wrongChecksum: boolean;
}

export interface DriveServerOptions {
  clientId?: string;
  clientSecret?: string;
}

export interface DriveServer {
  /** API root, like `https://www.googleapis.com/`. */
  url: string;
  tokenUrl: string;
  authUrl: string;
  clientId: string;
  clientSecret: string;
  files: Map<string, StoredFile>;
  requests: LoggedRequest[];
  faults: DriveFaults;
  /** Refresh tokens the server will honour. */
  refreshTokens: Set<string>;
  /** Query strings of every authorize request (to check scope and PKCE). */
  authorizations: Record<string, string>[];
  /** A refresh token for a test's credentials file, as if the user had authorized before. */
  issueRefreshToken(): string;
  /** Seed a file directly (e.g. a foreign one in litekeep's folder). */
  addFile(file: Partial<StoredFile> & { name: string }): StoredFile;
  /** Delete like Drive does: the file and everything inside it. */
  deleteFile(id: string): void;
  filesNamed(name: string): StoredFile[];
  /** How many data-carrying chunk PUTs arrived. */
  chunkPuts(): number;
  close(): Promise<void>;
}

interface Session {
  id: string;
  /** Set when the session expired: the status every request for it gets. */
  expired?: 404 | 410;
  metadata: Record<string, unknown>;
  total?: number;
  parts: Buffer[];
  offset: number;
  fields?: string;
  file?: StoredFile;
}

interface PendingCode {
  clientId: string;
  redirectUri: string;
  challenge: string;
  method: string;
  scope: string;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const newId = () => randomBytes(18).toString('base64url');
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const md5 = (b: Buffer | string) => createHash('md5').update(b).digest('hex');

// ---------------------------------------------------------------- the q language (the clauses litekeep uses)

type Clause = (f: StoredFile) => boolean;
const STR = `'((?:[^'\\\\]|\\\\.)*)'`;
const unescape = (s: string) => s.replace(/\\(.)/g, '$1');
const CLAUSES: [RegExp, (m: RegExpExecArray) => Clause][] = [
  [new RegExp(`name\\s*=\\s*${STR}`, 'y'), (m) => (f) => f.name === unescape(m[1])],
  [new RegExp(`mimeType\\s*=\\s*${STR}`, 'y'), (m) => (f) => f.mimeType === unescape(m[1])],
  [new RegExp(`mimeType\\s*!=\\s*${STR}`, 'y'), (m) => (f) => f.mimeType !== unescape(m[1])],
  [new RegExp(`${STR}\\s+in\\s+parents`, 'y'), (m) => (f) => f.parents.includes(unescape(m[1]))],
  [/trashed\s*=\s*(true|false)/y, (m) => (f) => f.trashed === (m[1] === 'true')],
  [
    new RegExp(
      `appProperties\\s+has\\s*\\{\\s*key\\s*=\\s*${STR}\\s+and\\s+value\\s*=\\s*${STR}\\s*\\}`,
      'y',
    ),
    (m) => (f) => f.appProperties[unescape(m[1])] === unescape(m[2]),
  ],
];

export function parseQuery(q: string): Clause {
  const clauses: Clause[] = [];
  let pos = 0;
  const skip = () => {
    while (pos < q.length && /\s/.test(q[pos])) pos++;
  };
  for (;;) {
    skip();
    let matched = false;
    for (const [re, make] of CLAUSES) {
      re.lastIndex = pos;
      const m = re.exec(q);
      if (m) {
        clauses.push(make(m));
        pos = re.lastIndex;
        matched = true;
        break;
      }
    }
    if (!matched)
      throw new HttpError(400, 'invalid', `Invalid Value (unsupported query at: ${q.slice(pos)})`);
    skip();
    if (pos >= q.length) break;
    const and = /and\s+/y;
    and.lastIndex = pos;
    if (!and.exec(q))
      throw new HttpError(400, 'invalid', `Invalid Value (expected 'and' at: ${q.slice(pos)})`);
    pos = and.lastIndex;
  }
  return (f) => clauses.every((c) => c(f));
}

// ---------------------------------------------------------------- partial responses (`fields`)

function splitTop(spec: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of spec) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(current.trim());
      current = '';
    } else current += ch;
  }
  if (current.trim()) out.push(current.trim());
  return out;
}

function pick(value: Record<string, unknown>, spec: string): Record<string, unknown> {
  if (spec.trim() === '*') return value;
  const out: Record<string, unknown> = {};
  for (const item of splitTop(spec)) {
    const m = /^([A-Za-z0-9]+)(?:\((.*)\))?$/.exec(item);
    if (!m) throw new HttpError(400, 'invalidParameter', `Invalid field selection ${item}`);
    const [, key, sub] = m;
    if (!(key in value)) continue;
    const v = value[key];
    if (sub !== undefined && Array.isArray(v))
      out[key] = v.map((e) => pick(e as Record<string, unknown>, sub));
    else if (sub !== undefined && v && typeof v === 'object')
      out[key] = pick(v as Record<string, unknown>, sub);
    else out[key] = v;
  }
  return out;
}

// ---------------------------------------------------------------- server

export async function startDriveServer(options: DriveServerOptions = {}): Promise<DriveServer> {
  const clientId = options.clientId ?? 'test-client.apps.googleusercontent.com';
  const clientSecret = options.clientSecret ?? 'test-secret';
  const files = new Map<string, StoredFile>();
  const sessions = new Map<string, Session>();
  const codes = new Map<string, PendingCode>();
  const refreshTokens = new Set<string>();
  const accessTokens = new Set<string>();
  const requests: LoggedRequest[] = [];
  const authorizations: Record<string, string>[] = [];
  const faults: DriveFaults = {
    chunkErrors: [],
    expireSessions: [],
    confirmAllWith308: [],
    dropChunks: [],
    invalidGrant: false,
    quotaExceeded: false,
    wrongChecksum: false,
  };
  let chunkCounter = 0;
  let clock = Date.parse('2026-03-01T00:00:00Z');
  // A strictly increasing clock so "newest" is never a tie.
  const now = () => new Date((clock += 1000)).toISOString();
  let base = '';

  function resource(f: StoredFile): Record<string, unknown> {
    const folder = f.mimeType === FOLDER_MIME;
    const wrong = faults.wrongChecksum ? Buffer.concat([f.bytes, Buffer.from('!')]) : f.bytes;
    return {
      kind: 'drive#file',
      id: f.id,
      name: f.name,
      mimeType: f.mimeType,
      parents: f.parents,
      trashed: f.trashed,
      createdTime: f.createdTime,
      modifiedTime: f.modifiedTime,
      appProperties: f.appProperties,
      webViewLink: folder
        ? `https://drive.google.com/drive/folders/${f.id}`
        : `https://drive.google.com/file/d/${f.id}/view?usp=drivesdk`,
      ...(folder
        ? {}
        : { size: String(f.bytes.length), md5Checksum: md5(wrong), sha256Checksum: sha256(wrong) }),
    };
  }

  function addFile(partial: Partial<StoredFile> & { name: string }): StoredFile {
    const t = now();
    const file: StoredFile = {
      id: newId(),
      mimeType: 'application/octet-stream',
      parents: [],
      appProperties: {},
      trashed: false,
      bytes: Buffer.alloc(0),
      createdTime: t,
      modifiedTime: t,
      ...partial,
    };
    files.set(file.id, file);
    return file;
  }

  function deleteFile(id: string): void {
    files.delete(id);
    for (const f of [...files.values()]) if (f.parents.includes(id)) deleteFile(f.id);
  }

  function createFromMetadata(meta: Record<string, unknown>, bytes: Buffer): StoredFile {
    const parents = Array.isArray(meta.parents) ? (meta.parents as string[]) : [];
    for (const p of parents) if (!files.has(p)) throw new HttpError(404, 'notFound', `File not found: ${p}.`);
    return addFile({
      name: typeof meta.name === 'string' ? meta.name : 'Untitled',
      mimeType: typeof meta.mimeType === 'string' ? meta.mimeType : 'application/octet-stream',
      parents,
      appProperties: (meta.appProperties as Record<string, string>) ?? {},
      bytes,
    });
  }

  function checkParents(meta: Record<string, unknown>): void {
    const parents = Array.isArray(meta.parents) ? (meta.parents as string[]) : [];
    for (const p of parents) if (!files.has(p)) throw new HttpError(404, 'notFound', `File not found: ${p}.`);
  }

  function fileFields(query: Record<string, string>): string {
    return query.fields ?? 'kind,id,name,mimeType';
  }

  function json(
    res: ServerResponse,
    entry: LoggedRequest,
    status: number,
    body: unknown,
    headers = {},
  ): void {
    entry.status = status;
    res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', ...headers });
    res.end(JSON.stringify(body));
  }

  function empty(
    res: ServerResponse,
    entry: LoggedRequest,
    status: number,
    headers: Record<string, string> = {},
  ) {
    entry.status = status;
    res.writeHead(status, { 'content-length': '0', ...headers });
    res.end();
  }

  function readBody(req: IncomingMessage, entry: LoggedRequest): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      req.on('data', (c: Buffer) => {
        parts.push(c);
        entry.bodyBytes += c.length;
      });
      req.on('end', () => resolve(Buffer.concat(parts)));
      req.on('error', reject);
    });
  }

  function requireAuth(req: IncomingMessage): void {
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    if (!m || !accessTokens.has(m[1]))
      throw new HttpError(401, 'authError', 'Request had invalid authentication credentials.');
  }

  function issueTokens(withRefresh: boolean, scope: string) {
    const access = `ya29.${newId()}`;
    accessTokens.add(access);
    const out: Record<string, unknown> = {
      access_token: access,
      expires_in: 3599,
      scope,
      token_type: 'Bearer',
    };
    if (withRefresh) {
      const refresh = `1//${newId()}`;
      refreshTokens.add(refresh);
      out.refresh_token = refresh;
    }
    return out;
  }

  async function handleToken(req: IncomingMessage, res: ServerResponse, entry: LoggedRequest) {
    const form = new URLSearchParams((await readBody(req, entry)).toString('utf8'));
    const oauthError = (status: number, error: string, description: string) =>
      json(res, entry, status, { error, error_description: description });
    if (form.get('client_id') !== clientId || form.get('client_secret') !== clientSecret)
      return oauthError(401, 'invalid_client', 'The OAuth client was not found.');
    const grant = form.get('grant_type');
    if (grant === 'refresh_token') {
      const token = form.get('refresh_token') ?? '';
      if (faults.invalidGrant || !refreshTokens.has(token))
        return oauthError(400, 'invalid_grant', 'Token has been expired or revoked.');
      return json(res, entry, 200, issueTokens(false, 'https://www.googleapis.com/auth/drive.file'));
    }
    if (grant === 'authorization_code') {
      const code = form.get('code') ?? '';
      const pending = codes.get(code);
      codes.delete(code);
      if (!pending) return oauthError(400, 'invalid_grant', 'Malformed auth code.');
      if (form.get('redirect_uri') !== pending.redirectUri)
        return oauthError(400, 'redirect_uri_mismatch', 'Bad Request');
      const verifier = form.get('code_verifier') ?? '';
      const computed =
        pending.method === 'S256' ? createHash('sha256').update(verifier).digest('base64url') : verifier;
      if (!verifier || computed !== pending.challenge)
        return oauthError(400, 'invalid_grant', 'Missing code verifier.');
      return json(res, entry, 200, issueTokens(true, pending.scope));
    }
    return oauthError(400, 'unsupported_grant_type', `Invalid grant_type: ${grant}`);
  }

  function handleAuthorize(res: ServerResponse, entry: LoggedRequest, query: Record<string, string>) {
    authorizations.push(query);
    const redirect = query.redirect_uri ?? '';
    if (
      query.client_id !== clientId ||
      query.response_type !== 'code' ||
      !/^http:\/\/127\.0\.0\.1:\d+/.test(redirect)
    )
      throw new HttpError(400, 'invalid_request', 'Error 400: invalid_request');
    if (!query.code_challenge || query.code_challenge_method !== 'S256')
      throw new HttpError(400, 'invalid_request', 'PKCE with S256 is required');
    const code = `4/${newId()}`;
    codes.set(code, {
      clientId,
      redirectUri: redirect,
      challenge: query.code_challenge,
      method: query.code_challenge_method,
      scope: query.scope ?? '',
    });
    const target = new URL(redirect);
    if (query.state) target.searchParams.set('state', query.state);
    target.searchParams.set('code', code);
    target.searchParams.set('scope', query.scope ?? '');
    empty(res, entry, 302, { location: target.toString() });
  }

  function handleList(res: ServerResponse, entry: LoggedRequest, query: Record<string, string>) {
    const match = query.q ? parseQuery(query.q) : () => true;
    const all = [...files.values()].filter(match);
    const pageSize = Math.min(Number(query.pageSize ?? 100), 1000);
    const start = Number(query.pageToken ?? 0);
    const page = all.slice(start, start + pageSize);
    const body: Record<string, unknown> = {
      kind: 'drive#fileList',
      incompleteSearch: false,
      files: page.map(resource),
    };
    if (start + pageSize < all.length) body.nextPageToken = String(start + pageSize);
    json(
      res,
      entry,
      200,
      pick(body, query.fields ?? 'kind,incompleteSearch,nextPageToken,files(kind,id,name,mimeType)'),
    );
  }

  function parseMultipart(
    body: Buffer,
    contentType: string,
  ): { meta: Record<string, unknown>; media: Buffer } {
    const boundary = /boundary=("?)([^";]+)\1/.exec(contentType)?.[2];
    if (!boundary) throw new HttpError(400, 'badContent', 'Missing multipart boundary');
    const delimiter = Buffer.from(`--${boundary}`);
    const parts: Buffer[] = [];
    let pos = body.indexOf(delimiter);
    while (pos !== -1) {
      const next = body.indexOf(delimiter, pos + delimiter.length);
      if (next === -1) break;
      parts.push(body.subarray(pos + delimiter.length, next));
      pos = next;
    }
    const contents = parts.map((p) => {
      const headerEnd = p.indexOf('\r\n\r\n');
      let content = p.subarray(headerEnd + 4);
      if (content.subarray(-2).toString() === '\r\n') content = content.subarray(0, -2);
      return content;
    });
    if (contents.length < 2) throw new HttpError(400, 'badContent', 'Expected metadata and media parts');
    return { meta: JSON.parse(contents[0].toString('utf8')), media: contents[1] };
  }

  async function handleUploadStart(
    req: IncomingMessage,
    res: ServerResponse,
    entry: LoggedRequest,
    query: Record<string, string>,
  ) {
    const body = await readBody(req, entry);
    if (query.uploadType === 'multipart') {
      const { meta, media } = parseMultipart(body, req.headers['content-type'] ?? '');
      if (faults.quotaExceeded) throw quota();
      const file = createFromMetadata(meta, media);
      return json(res, entry, 200, pick(resource(file), fileFields(query)));
    }
    if (query.uploadType !== 'resumable') throw new HttpError(400, 'invalid', `Unsupported uploadType`);
    const meta = body.length ? (JSON.parse(body.toString('utf8')) as Record<string, unknown>) : {};
    if (faults.quotaExceeded) throw quota();
    checkParents(meta);
    const lengthHeader = req.headers['x-upload-content-length'];
    const session: Session = {
      id: newId(),
      metadata: meta,
      total: lengthHeader !== undefined ? Number(lengthHeader) : undefined,
      parts: [],
      offset: 0,
      fields: query.fields,
    };
    sessions.set(session.id, session);
    empty(res, entry, 200, {
      location: `${base}upload/drive/v3/files?uploadType=resumable&upload_id=${session.id}`,
    });
  }

  function quota(): HttpError {
    return new HttpError(403, 'storageQuotaExceeded', "The user's Drive storage quota has been exceeded.");
  }

  function complete(session: Session): StoredFile {
    if (!session.file) {
      checkParents(session.metadata);
      session.file = createFromMetadata(session.metadata, Buffer.concat(session.parts));
      session.parts = [];
    }
    return session.file;
  }

  function sessionState(res: ServerResponse, entry: LoggedRequest, session: Session) {
    if (session.file || (session.total !== undefined && session.offset === session.total)) {
      const file = complete(session);
      return json(res, entry, 200, pick(resource(file), session.fields ?? 'kind,id,name,mimeType'));
    }
    const headers: Record<string, string> =
      session.offset > 0 ? { range: `bytes=0-${session.offset - 1}` } : {};
    empty(res, entry, 308, headers);
  }

  async function handleChunk(
    req: IncomingMessage,
    res: ServerResponse,
    entry: LoggedRequest,
    query: Record<string, string>,
  ) {
    const session = sessions.get(query.upload_id ?? '');
    if (!session) {
      await readBody(req, entry);
      throw new HttpError(404, 'notFound', 'No such upload session.');
    }
    if (session.expired) {
      await readBody(req, entry);
      throw new HttpError(session.expired, 'notFound', 'The upload session has expired.');
    }
    const range = req.headers['content-range'] ?? '';
    const status = /^bytes \*\/(\d+|\*)$/.exec(range);
    if (status) {
      await readBody(req, entry);
      if (status[1] !== '*') session.total = Number(status[1]);
      return sessionState(res, entry, session);
    }
    const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(range);
    if (!m) {
      await readBody(req, entry);
      throw new HttpError(400, 'badContent', `Bad Content-Range: ${range}`);
    }
    const [start, end, total] = [Number(m[1]), Number(m[2]), Number(m[3])];
    if (end < start) {
      await readBody(req, entry);
      throw new HttpError(400, 'badContent', `Empty or inverted range in Content-Range: ${range}`);
    }
    const index = ++chunkCounter;
    const expiry = faults.expireSessions.find((f) => f.chunk === index);
    if (expiry) {
      await readBody(req, entry);
      session.expired = expiry.status;
      session.parts = [];
      throw new HttpError(expiry.status, 'notFound', 'The upload session has expired.');
    }
    const drop = faults.dropChunks.find((f) => f.chunk === index);
    if (drop) {
      // Take part of the body, keep what a real Drive would (whole 256 KiB units), then cut the line.
      await new Promise<void>((resolve) => {
        const got: Buffer[] = [];
        let n = 0;
        const onData = (c: Buffer) => {
          got.push(c);
          n += c.length;
          entry.bodyBytes = n;
          if (n < drop.afterBytes) return;
          req.off('data', onData);
          req.pause();
          if (start === session.offset) {
            // Counted up to afterBytes only, so the outcome does not depend on how the socket split the data.
            const taken = Math.min(n, drop.afterBytes);
            const keepTo = Math.floor((start + taken) / UPLOAD_QUANTUM) * UPLOAD_QUANTUM;
            const keep = Math.min(keepTo - start, taken, end - start + 1);
            if (keep > 0) {
              session.parts.push(Buffer.concat(got).subarray(0, keep));
              session.offset += keep;
            }
          }
          req.socket.destroy();
          resolve();
        };
        req.on('data', onData);
        req.on('end', resolve);
        req.on('error', () => resolve());
      });
      return;
    }
    const body = await readBody(req, entry);
    const injected = faults.chunkErrors.find((f) => f.chunk === index);
    if (injected) {
      const headers: Record<string, string> = injected.retryAfter
        ? { 'retry-after': injected.retryAfter }
        : {};
      throw new HttpError(
        injected.status,
        injected.reason ?? (injected.status === 429 ? 'rateLimitExceeded' : 'backendError'),
        injected.reason === 'userRateLimitExceeded' ? 'User Rate Limit Exceeded.' : 'Injected failure',
        headers,
      );
    }
    if (session.total !== undefined && session.total !== total)
      throw new HttpError(400, 'badContent', 'Total size changed during the upload');
    session.total = total;
    if (start !== session.offset)
      throw new HttpError(400, 'badContent', `Chunk starts at ${start}, session holds ${session.offset}`);
    if (body.length !== end - start + 1)
      throw new HttpError(
        400,
        'badContent',
        `Chunk has ${body.length} bytes, Content-Range says ${end - start + 1}`,
      );
    if (end + 1 < total && body.length % UPLOAD_QUANTUM !== 0)
      throw new HttpError(400, 'badContent', 'Chunks other than the last must be multiples of 256 KiB');
    if (end + 1 > total) throw new HttpError(400, 'badContent', 'Chunk goes past the total size');
    session.parts.push(body);
    session.offset += body.length;
    if (session.offset === total && faults.confirmAllWith308.includes(index)) {
      return empty(res, entry, 308, { range: `bytes=0-${total - 1}` });
    }
    sessionState(res, entry, session);
  }

  async function handleFile(
    req: IncomingMessage,
    res: ServerResponse,
    entry: LoggedRequest,
    id: string,
    query: Record<string, string>,
  ) {
    const file = files.get(id);
    if (!file) {
      await readBody(req, entry);
      throw new HttpError(404, 'notFound', `File not found: ${id}.`);
    }
    if (req.method === 'GET') {
      if (query.alt === 'media') {
        if (file.mimeType === FOLDER_MIME)
          throw new HttpError(
            403,
            'fileNotDownloadable',
            'Only files with binary content can be downloaded.',
          );
        entry.status = 200;
        res.writeHead(200, {
          'content-type': 'application/octet-stream',
          'content-length': file.bytes.length,
        });
        if (faults.stallDownloads) {
          // Headers and a little data, then silence: the connection stays open until the server closes.
          res.write(file.bytes.subarray(0, faults.stallDownloads.afterBytes));
          return;
        }
        return res.end(file.bytes);
      }
      return json(res, entry, 200, pick(resource(file), fileFields(query)));
    }
    if (req.method === 'PATCH') {
      const body = await readBody(req, entry);
      const patch = body.length ? (JSON.parse(body.toString('utf8')) as Record<string, unknown>) : {};
      if (typeof patch.trashed === 'boolean') file.trashed = patch.trashed;
      if (typeof patch.name === 'string') file.name = patch.name;
      if (patch.appProperties && typeof patch.appProperties === 'object')
        for (const [k, v] of Object.entries(patch.appProperties as Record<string, string | null>)) {
          if (v === null) delete file.appProperties[k];
          else file.appProperties[k] = v;
        }
      file.modifiedTime = now();
      return json(res, entry, 200, pick(resource(file), fileFields(query)));
    }
    if (req.method === 'DELETE') {
      await readBody(req, entry);
      deleteFile(id);
      return empty(res, entry, 204);
    }
    throw new HttpError(405, 'methodNotAllowed', 'Method not allowed');
  }

  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const query = Object.fromEntries(url.searchParams);
    const entry: LoggedRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query,
      headers: req.headers,
      bodyBytes: 0,
    };
    requests.push(entry);
    try {
      const path = url.pathname;
      if (path === '/token' && req.method === 'POST') return await handleToken(req, res, entry);
      if (path === '/auth' && req.method === 'GET') return handleAuthorize(res, entry, query);
      if (path === '/upload/drive/v3/files' && req.method === 'PUT')
        return await handleChunk(req, res, entry, query);
      requireAuth(req);
      if (path === '/upload/drive/v3/files' && req.method === 'POST')
        return await handleUploadStart(req, res, entry, query);
      if (path === '/drive/v3/files' && req.method === 'GET') return handleList(res, entry, query);
      if (path === '/drive/v3/files' && req.method === 'POST') {
        const body = await readBody(req, entry);
        const file = createFromMetadata(JSON.parse(body.toString('utf8') || '{}'), Buffer.alloc(0));
        return json(res, entry, 200, pick(resource(file), fileFields(query)));
      }
      const fileMatch = /^\/drive\/v3\/files\/([^/]+)$/.exec(path);
      if (fileMatch) return await handleFile(req, res, entry, decodeURIComponent(fileMatch[1]), query);
      throw new HttpError(404, 'notFound', `No route for ${req.method} ${path}`);
    } catch (err) {
      if (res.headersSent || req.socket.destroyed) return;
      if (!req.readableEnded) req.resume();
      if (err instanceof HttpError)
        return json(
          res,
          entry,
          err.status,
          {
            error: {
              code: err.status,
              message: err.message,
              errors: [{ domain: 'global', reason: err.reason, message: err.message }],
            },
          },
          err.headers,
        );
      json(res, entry, 500, {
        error: { code: 500, message: String(err), errors: [{ reason: 'internalError' }] },
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  base = `http://127.0.0.1:${port}/`;

  return {
    url: base,
    tokenUrl: `${base}token`,
    authUrl: `${base}auth`,
    clientId,
    clientSecret,
    files,
    requests,
    faults,
    refreshTokens,
    authorizations,
    issueRefreshToken() {
      const token = `1//${newId()}`;
      refreshTokens.add(token);
      return token;
    },
    addFile,
    deleteFile,
    filesNamed: (name) => [...files.values()].filter((f) => f.name === name),
    chunkPuts: () => chunkCounter,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------- test helpers

/** Writes an `authorized_user` file whose refresh token this server honours; returns its path. */
export async function writeAuthorizedUser(server: DriveServer, dir: string): Promise<string> {
  const { writeFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const path = join(dir, 'google-credentials.json');
  const body = {
    type: 'authorized_user',
    client_id: server.clientId,
    client_secret: server.clientSecret,
    refresh_token: server.issueRefreshToken(),
  };
  await writeFile(path, JSON.stringify(body), { mode: 0o600 });
  return path;
}
