import http from 'node:http';
import net from 'node:net';
import { Counter, Gauge, Registry } from 'prom-client';
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
export interface DatabaseStatus {
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
  return { body: await registry.metrics(), contentType: registry.contentType };
}

export interface HttpServerOptions {
  /** `host:port`, `[v6]:port` or a bare port (then 127.0.0.1). Default `127.0.0.1:9300`; port 0 picks one. */
  listen?: string;
  /** Allow a non-loopback address. Off by default: the endpoints show backup times and sizes to anyone. */
  allowRemote?: boolean;
  getStatus: () => DaemonStatus | Promise<DaemonStatus>;
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

function sendJson(res: http.ServerResponse, code: number, body: unknown, head: boolean): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(code, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(head ? undefined : text);
}

/**
 * `/healthz` (200 or 503 with the reason, JSON) and `/metrics` (Prometheus text) for the daemon. Binds to
 * loopback unless `allowRemote` is set.
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
  const log = options.logger;

  const server = http.createServer((req, res) => {
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) {
      res.setHeader('allow', 'GET, HEAD');
      sendJson(res, 405, { error: `method ${req.method} not allowed: use GET` }, false);
      return;
    }
    const pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    void (async () => {
      try {
        if (pathname === '/healthz') {
          const report = evaluateHealth(await options.getStatus());
          // Degraded answers 503 too: a monitor that only looks at the status code must hear about it.
          sendJson(res, report.healthy ? 200 : 503, { checkedAt: new Date().toISOString(), ...report }, head);
        } else if (pathname === '/metrics') {
          const { body, contentType } = await renderMetrics(await options.getStatus());
          res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
          res.end(head ? undefined : body);
        } else if (pathname === '/') {
          sendJson(res, 200, { service: 'litekeep', endpoints: ['/healthz', '/metrics'] }, head);
        } else {
          sendJson(res, 404, { error: `no such endpoint ${pathname}: use /healthz or /metrics` }, head);
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
  log?.info({ url }, 'health and metrics served');
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
