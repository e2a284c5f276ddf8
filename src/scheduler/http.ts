import crypto from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import type { Gauge } from 'prom-client';
import type { ReplicationReading } from '../pitr/standing.js';
import { EXIT, LitekeepError, oneLine } from '../util/errors.js';
import { formatDuration } from '../util/duration.js';
import type { LogSink } from './logger.js';

/** What the daemon knows about one off-site destination of a database, read from the catalog. */
export interface DestinationHealthInput {
  name: string;
  type: string;
  /** When the newest backup held there was taken. */
  newestCopyTime?: Date;
  lastSuccess?: Date;
  lastFailure?: Date;
  lastFailureError?: string;
  /** Whether the newest upload attempt there failed. */
  lastAttemptFailed: boolean;
  /** Local backups it lacks that its retention would keep. */
  missing: number;
  /** Upload attempts recorded there, by status. */
  uploadsByStatus: Record<string, number>;
}

/**
 * Why a destination needs attention, or undefined: its newest upload attempt failed, or its newest copy is
 * older than `maxAgeMs` (or it has none while there are local backups). `status` and `/healthz` both judge by it.
 */
export function destinationProblem(
  d: Pick<DestinationHealthInput, 'newestCopyTime' | 'lastAttemptFailed' | 'lastFailureError'>,
  maxAgeMs: number | undefined,
  hasLocalBackups: boolean,
  now: Date = new Date(),
): string | undefined {
  const problems: string[] = [];
  if (d.lastAttemptFailed)
    problems.push(`its last upload failed: ${oneLine(d.lastFailureError ?? 'unknown error')}`);
  if (maxAgeMs !== undefined) {
    if (!d.newestCopyTime) {
      if (hasLocalBackups) problems.push('it holds no copy yet');
    } else {
      const ageMs = now.getTime() - d.newestCopyTime.getTime();
      if (ageMs > maxAgeMs) {
        problems.push(
          `its newest copy is ${formatDuration(ageMs)} old, older than maxAge ${formatDuration(maxAgeMs)}`,
        );
      }
    }
  }
  return problems.length ? problems.join('; ') : undefined;
}

/** What the daemon knows about one database, read from its catalog. */
/** Its replication (`replication`, `replicator`, `walBytes`): the reading status and the page share. */
export interface DatabaseStatus extends ReplicationReading {
  name: string;
  lastSuccess?: Date;
  lastFailure?: Date;
  lastFailureError?: string;
  lastDurationMs?: number;
  lastBytes?: number;
  backupsOnDisk: number;
  bytesOnDisk: number;
  /** Count of runs per status as the catalog records them (`ok`, `failed`, `partial`, ...). */
  runsByStatus: Record<string, number>;
  /** Time of the newest backup run, successful or not. */
  newestBackupTime?: Date;
  /** Whether that newest run succeeded. */
  newestBackupOk: boolean;
  /** Its off-site destinations. */
  destinations?: DestinationHealthInput[];
}

export interface DaemonStatus {
  /** `/healthz` fails when the newest successful backup is older than this. */
  maxAgeMs: number;
  databases: DatabaseStatus[];
}

export interface DestinationHealth {
  name: string;
  healthy: boolean;
  reason: string;
  newestCopyTime?: string;
  lastSuccess?: string;
  lastFailure?: string;
  missing: number;
}

export interface DatabaseHealth {
  name: string;
  /** The local backups: the newest succeeded and is younger than maxAge. */
  healthy: boolean;
  reason: string;
  newestBackupTime?: string;
  ageSeconds?: number;
  destinations: DestinationHealth[];
}

export interface HealthReport {
  /** Everything is fine: local backups and every destination. */
  healthy: boolean;
  /** `degraded`: the local backups are fine, but a destination is stale or its last upload failed. */
  status: 'ok' | 'degraded' | 'unhealthy';
  /** Empty when healthy; otherwise every failing database's and destination's reason, joined. */
  reason: string;
  maxAgeSeconds: number;
  databases: DatabaseHealth[];
}

/**
 * Healthy when every database's newest backup succeeded and is younger than `maxAgeMs`. A pure function, so
 * `litekeep status` can give the same verdict as `/healthz`.
 */
export function evaluateHealth(status: DaemonStatus, now: Date = new Date()): HealthReport {
  const maxAgeSeconds = Math.round(status.maxAgeMs / 1000);
  if (status.databases.length === 0) {
    return {
      healthy: false,
      status: 'unhealthy',
      reason: 'no databases configured',
      maxAgeSeconds,
      databases: [],
    };
  }
  const iso = (d: Date | undefined) => d?.toISOString();
  const databases = status.databases.map((db): DatabaseHealth => {
    const newest = db.newestBackupTime ?? db.lastSuccess;
    const destinations = (db.destinations ?? []).map((d): DestinationHealth => {
      const problem = destinationProblem(d, status.maxAgeMs, db.backupsOnDisk > 0, now);
      return {
        name: d.name,
        healthy: !problem,
        reason: problem ?? 'ok',
        newestCopyTime: iso(d.newestCopyTime),
        lastSuccess: iso(d.lastSuccess),
        lastFailure: iso(d.lastFailure),
        missing: d.missing,
      };
    });
    const base = { name: db.name, newestBackupTime: newest?.toISOString(), destinations };
    if (!newest) return { ...base, healthy: false, reason: 'no backup yet' };
    const ageMs = now.getTime() - newest.getTime();
    const ageSeconds = Math.round(ageMs / 1000);
    if (!db.newestBackupOk) {
      const why = db.lastFailureError ? `: ${oneLine(db.lastFailureError)}` : '';
      return { ...base, ageSeconds, healthy: false, reason: `the newest backup failed${why}` };
    }
    if (ageMs > status.maxAgeMs) {
      return {
        ...base,
        ageSeconds,
        healthy: false,
        reason: `the newest backup is ${formatDuration(ageMs)} old, older than maxAge ${formatDuration(status.maxAgeMs)}`,
      };
    }
    return { ...base, ageSeconds, healthy: true, reason: 'ok' };
  });
  const reasons: string[] = [];
  for (const db of databases) {
    if (!db.healthy) reasons.push(`${db.name}: ${db.reason}`);
    for (const d of db.destinations) if (!d.healthy) reasons.push(`${db.name} on ${d.name}: ${d.reason}`);
  }
  const localOk = databases.every((db) => db.healthy);
  return {
    healthy: reasons.length === 0,
    status: reasons.length === 0 ? 'ok' : localOk ? 'degraded' : 'unhealthy',
    reason: reasons.join('; '),
    maxAgeSeconds,
    databases,
  };
}

const seconds = (date: Date | undefined) => (date ? date.getTime() / 1000 : undefined);

/**
 * Prometheus text for one status. A fresh Registry per scrape: the values come from the catalog each time,
 * nothing accumulates in this process, and the global registry stays untouched.
 */
export async function renderMetrics(
  status: DaemonStatus,
  now: Date = new Date(),
): Promise<{ body: string; contentType: string }> {
  // Loaded on the first scrape: `status` and every backup run use this module's health rules, never metrics.
  const { Counter, Gauge, Registry } = await import('prom-client');
  const registry = new Registry();
  const gauge = (name: string, help: string, labelNames: string[] = ['database']) =>
    new Gauge({ name, help, labelNames, registers: [registry] });
  const lastSuccess = gauge(
    'litekeep_last_success_timestamp_seconds',
    'Unix time of the last successful backup.',
  );
  const lastFailure = gauge(
    'litekeep_last_failure_timestamp_seconds',
    'Unix time of the last failed backup.',
  );
  const lastDuration = gauge('litekeep_last_duration_seconds', 'Duration of the last backup run in seconds.');
  const lastBytes = gauge('litekeep_last_backup_bytes', 'Size in bytes of the last backup as stored.');
  const onDisk = gauge('litekeep_backups_on_disk', 'Number of backups in the local store.');
  const onDiskBytes = gauge('litekeep_backups_on_disk_bytes', 'Total size in bytes of the local backups.');
  const runs = new Counter({
    name: 'litekeep_runs_total',
    help: 'Backup runs recorded in the catalog, by status.',
    labelNames: ['database', 'status'],
    registers: [registry],
  });
  const destinationLabels = ['database', 'destination'];
  const newestCopy = gauge(
    'litekeep_destination_newest_copy_timestamp_seconds',
    'Unix time at which the newest backup held by the destination was taken.',
    destinationLabels,
  );
  const destinationSuccess = gauge(
    'litekeep_destination_last_success_timestamp_seconds',
    'Unix time of the last successful upload to the destination.',
    destinationLabels,
  );
  const destinationFailure = gauge(
    'litekeep_destination_last_failure_timestamp_seconds',
    'Unix time of the last failed upload to the destination.',
    destinationLabels,
  );
  const destinationMissing = gauge(
    'litekeep_destination_missing_copies',
    'Local backups the destination lacks that its retention would keep.',
    destinationLabels,
  );
  const destinationHealthy = gauge(
    'litekeep_destination_healthy',
    '1 when the newest upload to the destination succeeded and its newest copy is younger than maxAge.',
    destinationLabels,
  );
  const uploads = new Counter({
    name: 'litekeep_destination_uploads_total',
    help: 'Upload attempts to the destination recorded in the catalog, by status.',
    labelNames: ['database', 'destination', 'status'],
    registers: [registry],
  });
  const healthy = gauge(
    'litekeep_healthy',
    '1 when the newest local backup succeeded and is younger than maxAge (destinations: litekeep_destination_healthy).',
  );
  const maxAge = new Gauge({
    name: 'litekeep_max_age_seconds',
    help: 'The configured maxAge that /healthz checks against.',
    registers: [registry],
  });
  maxAge.set(status.maxAgeMs / 1000);

  const health = evaluateHealth(status, now);
  for (const db of status.databases) {
    const labels = { database: db.name };
    const setIf = (metric: Gauge, value: number | undefined) => {
      if (value !== undefined && Number.isFinite(value)) metric.set(labels, value);
    };
    setIf(lastSuccess, seconds(db.lastSuccess));
    setIf(lastFailure, seconds(db.lastFailure));
    setIf(lastDuration, db.lastDurationMs === undefined ? undefined : db.lastDurationMs / 1000);
    setIf(lastBytes, db.lastBytes);
    onDisk.set(labels, db.backupsOnDisk);
    onDiskBytes.set(labels, db.bytesOnDisk);
    for (const [runStatus, count] of Object.entries(db.runsByStatus)) {
      // Finished runs only: a running one turns into another status, and a counter must never go down.
      if (runStatus === 'running') continue;
      runs.inc({ database: db.name, status: runStatus }, count);
    }
    const dbHealth = health.databases.find((entry) => entry.name === db.name);
    healthy.set(labels, dbHealth?.healthy ? 1 : 0);
    for (const d of db.destinations ?? []) {
      const dl = { database: db.name, destination: d.name };
      const put = (metric: Gauge, value: number | undefined) => {
        if (value !== undefined && Number.isFinite(value)) metric.set(dl, value);
      };
      put(newestCopy, seconds(d.newestCopyTime));
      put(destinationSuccess, seconds(d.lastSuccess));
      put(destinationFailure, seconds(d.lastFailure));
      destinationMissing.set(dl, d.missing);
      destinationHealthy.set(dl, dbHealth?.destinations.find((x) => x.name === d.name)?.healthy ? 1 : 0);
      for (const [uploadStatus, count] of Object.entries(d.uploadsByStatus)) {
        uploads.inc({ ...dl, status: uploadStatus }, count);
      }
    }
  }
  const replicationLag = gauge(
    'litekeep_replication_lag_seconds',
    'Seconds the oldest commit not shipped yet may have waited: 0 when every commit in the WAL is shipped.',
    destinationLabels,
  );
  const replicationBehind = gauge(
    'litekeep_replication_frames_behind',
    'Committed WAL frames not shipped to the destination yet.',
    destinationLabels,
  );
  const replicationLast = gauge(
    'litekeep_replication_last_ship_timestamp_seconds',
    'Unix time of the last WAL segment shipped to the destination.',
    destinationLabels,
  );
  const replicationOwed = gauge(
    'litekeep_replication_base_owed',
    '1 while a base snapshot is owed after a gap or a fresh start (recovery since then waits for it).',
    destinationLabels,
  );
  const segmentsShipped = new Counter({
    name: 'litekeep_replication_segments_shipped_total',
    help: 'WAL segments shipped to the destination since its shipping state began.',
    labelNames: destinationLabels,
    registers: [registry],
  });
  const bytesShipped = new Counter({
    name: 'litekeep_replication_bytes_shipped_total',
    help: 'Bytes of WAL segments stored on the destination since its shipping state began.',
    labelNames: destinationLabels,
    registers: [registry],
  });
  const replicationGaps = new Counter({
    name: 'litekeep_replication_gaps_total',
    help: "Gaps found since the destination's shipping state began (the WAL was reset before litekeep read it).",
    labelNames: destinationLabels,
    registers: [registry],
  });
  const recoverableFrom = gauge(
    'litekeep_replication_recoverable_from_timestamp_seconds',
    'Unix time from which every moment can be restored to the second (absent while a base snapshot is owed).',
    destinationLabels,
  );
  const replicationActive = gauge(
    'litekeep_replication_active',
    '1 while some process (this one or another) replicates the database, 0 when none does.',
    ['database'],
  );
  const replicationElsewhere = gauge(
    'litekeep_replication_by_other_process',
    "1 while another process (litekeep replicate, another daemon) replicates the database: this one does not ship it, and the lag figures are that process's.",
    ['database'],
  );
  const walSize = gauge(
    'litekeep_replication_wal_bytes',
    "Cooperative replication: bytes of the -wal file (only litekeep's checkpoints let it be reset; it grows while litekeep is down).",
  );
  for (const db of status.databases) {
    if (db.walBytes !== undefined) walSize.set({ database: db.name }, db.walBytes);
    if (db.replicator !== undefined) {
      replicationActive.set({ database: db.name }, db.replicator ? 1 : 0);
      replicationElsewhere.set({ database: db.name }, db.replicator && !db.replicator.thisProcess ? 1 : 0);
    }
    for (const r of db.replication ?? []) {
      const dl = { database: db.name, destination: r.destination };
      if (r.lagMs !== undefined) replicationLag.set(dl, r.lagMs / 1000);
      if (r.framesBehind !== undefined) replicationBehind.set(dl, r.framesBehind);
      if (r.lastShippedAt) replicationLast.set(dl, Date.parse(r.lastShippedAt) / 1000);
      replicationOwed.set(dl, r.baseOwedSince ? 1 : 0);
      segmentsShipped.inc(dl, r.segmentsShipped);
      bytesShipped.inc(dl, r.bytesShipped);
      replicationGaps.inc(dl, r.gaps);
      if (r.recoverableFrom) recoverableFrom.set(dl, Date.parse(r.recoverableFrom) / 1000);
    }
  }
  return { body: await registry.metrics(), contentType: registry.contentType };
}

/** What the server knows about a request before a route answers it. */
export interface RequestContext {
  pathname: string;
  /** A HEAD request: answer with headers only. */
  head: boolean;
  /** The request carries the token (`Authorization: Bearer`, or Basic with the token as password). */
  authorized: boolean;
}

/**
 * More routes on the same server (the status page): answers the request and returns true when it is one of
 * its own, or returns false and leaves it to the server (which then answers 404 for an unknown path).
 */
export type RouteHandler = (
  req: http.IncomingMessage,
  res: http.ServerResponse,
  context: RequestContext,
) => boolean | Promise<boolean>;

export interface HttpServerOptions {
  /** `host:port`, `[v6]:port` or a bare port (then 127.0.0.1). Default `127.0.0.1:9300`; port 0 picks one. */
  listen?: string;
  /**
   * Allow a non-loopback address. Off by default: the endpoints show backup times and sizes to anyone. Needs a
   * `token`, which every request but `/healthz`'s verdict must then carry.
   */
  allowRemote?: boolean;
  /** The shared secret of the `Authorization` header (never logged or echoed). */
  token?: string;
  getStatus: () => DaemonStatus | Promise<DaemonStatus>;
  /** Routes served before the built-in ones. */
  routes?: RouteHandler;
  logger?: LogSink;
}

export interface HttpServerHandle {
  /** e.g. `http://127.0.0.1:9300` (the real port when 0 was asked for). */
  url: string;
  port: number;
  close(): Promise<void>;
}

export class HttpConfigError extends LitekeepError {
  override name = 'HttpConfigError';
  constructor(message: string) {
    super(message, { exitCode: EXIT.usage });
  }
}

export function parseListen(listen: string): { host: string; port: number } {
  const text = listen.trim();
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d+)$/.exec(text) ?? /^()()(\d+)$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || !Number.isInteger(port) || port > 65535) {
    throw new HttpConfigError(
      `invalid listen address "${listen}": use host:port such as 127.0.0.1:9300, [::1]:9300 or a bare port`,
    );
  }
  return { host: match[1] || match[2] || '127.0.0.1', port };
}

export function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return net.isIPv4(v4) && v4.startsWith('127.');
}

/**
 * Whether a `Host` header names this machine's loopback interface. A server on loopback answers only to those:
 * a web page elsewhere that points its own host name at 127.0.0.1 (DNS rebinding) then gets nothing.
 */
export function isLoopbackHostHeader(hostHeader: string | undefined): boolean {
  if (hostHeader === undefined) return true;
  const match = /^(?:\[([^\]]+)\]|([^:]+))(?::\d+)?$/.exec(hostHeader.trim());
  if (!match) return false;
  const name = (match[1] ?? match[2]).toLowerCase().replace(/\.$/, '');
  return isLoopback(name) || name.endsWith('.localhost');
}

const digest = (text: string) => crypto.createHash('sha256').update(text, 'utf8').digest();

/** Constant-time comparison: hashing first makes both sides the same length, so not even that leaks. */
export function tokenMatches(given: string, token: string): boolean {
  return crypto.timingSafeEqual(digest(given), digest(token));
}

/** Whether an `Authorization` header carries the token: `Bearer <token>`, or Basic with it as the password. */
export function authorizationMatches(header: string | undefined, token: string | undefined): boolean {
  if (!header || !token) return false;
  const bearer = /^Bearer[ ]+(\S+)[ ]*$/i.exec(header);
  if (bearer) return tokenMatches(bearer[1], token);
  const basic = /^Basic[ ]+([A-Za-z0-9+/=]+)[ ]*$/i.exec(header);
  if (basic) {
    // Browsers ask for Basic credentials by themselves: any user name, the token as password.
    const decoded = Buffer.from(basic[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon >= 0 && tokenMatches(decoded.slice(colon + 1), token);
  }
  return false;
}

/**
 * Headers on every answer: nothing may frame, sniff or cache it, and a page may load nothing but what this
 * server itself serves (no inline script: the page's script is a file of its own).
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'cache-control': 'no-store',
};

export function sendJson(
  res: http.ServerResponse,
  code: number,
  body: unknown,
  head: boolean,
  headers: Record<string, string | string[]> = {},
): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(code, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(head ? undefined : text);
}

const BUILT_IN = new Set(['/healthz', '/metrics', '/']);

/**
 * `/healthz` (200 or 503 with the reason, JSON) and `/metrics` (Prometheus text) for the daemon, plus the
 * `routes` given (the status page). Binds to loopback unless `allowRemote` is set, which needs a `token`.
 */
export async function startHttpServer(options: HttpServerOptions): Promise<HttpServerHandle> {
  const listen = options.listen ?? '127.0.0.1:9300';
  const { host, port } = parseListen(listen);
  if (!isLoopback(host) && !options.allowRemote) {
    throw new HttpConfigError(
      `refusing to serve health and metrics on ${listen}: ${host} is not a loopback address; ` +
        'use 127.0.0.1:<port>, or pass --allow-remote to litekeep daemon (behind a firewall)',
    );
  }
  if (options.allowRemote && !options.token) {
    throw new HttpConfigError(
      'refusing --allow-remote without a token: anyone on the network could read the status; set ' +
        'LITEKEEP_HTTP_TOKEN or http.tokenFile to 16 or more random characters (e.g. from openssl rand -hex 32)',
    );
  }
  const log = options.logger;
  // Listening on loopback, only loopback names are answered; with --allow-remote the token guards instead.
  const checkHost = isLoopback(host);
  const readNeedsToken = options.allowRemote === true;

  const server = http.createServer((req, res) => {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
    const head = req.method === 'HEAD';
    const pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (checkHost && !isLoopbackHostHeader(req.headers.host)) {
      sendJson(
        res,
        421,
        { error: 'this server answers only to loopback names such as 127.0.0.1 and localhost' },
        head,
      );
      return;
    }
    const authorized = authorizationMatches(req.headers.authorization, options.token);
    if (req.headers.authorization !== undefined && !authorized) {
      log?.warn(
        { path: pathname, remote: req.socket.remoteAddress },
        'http request with a wrong token refused',
      );
    }
    // Anyone may learn the verdict (probes carry no header); everything else needs the token.
    if (readNeedsToken && !authorized && pathname !== '/healthz') {
      sendJson(
        res,
        401,
        { error: 'this server needs its token: send Authorization: Bearer <http token>' },
        head,
        { 'www-authenticate': ['Basic realm="litekeep", charset="UTF-8"', 'Bearer realm="litekeep"'] },
      );
      return;
    }
    void (async () => {
      try {
        if (options.routes && (await options.routes(req, res, { pathname, head, authorized }))) return;
        if (!BUILT_IN.has(pathname)) {
          sendJson(res, 404, { error: `no such endpoint ${pathname}: use /healthz or /metrics` }, head);
          return;
        }
        if (req.method !== 'GET' && !head) {
          sendJson(res, 405, { error: `method ${req.method} not allowed: use GET` }, false, {
            allow: 'GET, HEAD',
          });
          return;
        }
        if (pathname === '/healthz') {
          const report = evaluateHealth(await options.getStatus());
          const checkedAt = new Date().toISOString();
          // Degraded answers 503 too: a monitor that only looks at the status code must hear about it.
          const code = report.healthy ? 200 : 503;
          if (readNeedsToken && !authorized) sendJson(res, code, { checkedAt, status: report.status }, head);
          else sendJson(res, code, { checkedAt, ...report }, head);
        } else if (pathname === '/metrics') {
          const { body, contentType } = await renderMetrics(await options.getStatus());
          res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
          res.end(head ? undefined : body);
        } else {
          sendJson(res, 200, { service: 'litekeep', endpoints: ['/healthz', '/metrics'] }, head);
        }
      } catch (error) {
        log?.error({ err: error, path: pathname }, `status request failed: ${oneLine(error)}`);
        // A status that cannot be read is itself unhealthy: 503 keeps alerting on it.
        if (!res.headersSent)
          sendJson(res, 503, { status: 'unhealthy', reason: `cannot read status: ${oneLine(error)}` }, head);
        else res.destroy();
      }
    })();
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      reject(
        new HttpConfigError(
          `cannot listen on ${listen}: ${error.code ?? error.message}; ` +
            (error.code === 'EADDRINUSE'
              ? 'another process uses that port, choose another one'
              : 'check the address'),
        ),
      );
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  // The daemon's lifetime is held by its schedule, not by this server.
  server.unref();

  const address = server.address() as net.AddressInfo;
  const urlHost =
    address.family === 'IPv6' || address.address.includes(':') ? `[${address.address}]` : address.address;
  const url = `http://${urlHost}:${address.port}`;
  // One line says where everything is.
  const page = options.routes ? `status page on ${url}/, ` : '';
  log?.info({ url }, `${page}health and metrics on ${url}/healthz and ${url}/metrics`);
  return {
    url,
    port: address.port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}
