import { afterEach, describe, expect, it } from 'vitest';
import {
  evaluateHealth,
  HttpConfigError,
  startHttpServer,
  type DaemonStatus,
  type DatabaseStatus,
  type HttpServerHandle,
} from '../../src/scheduler/index.js';

const servers: HttpServerHandle[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function serve(getStatus: () => DaemonStatus | Promise<DaemonStatus>, listen = '127.0.0.1:0') {
  const server = await startHttpServer({ listen, getStatus });
  servers.push(server);
  return server;
}

function database(overrides: Partial<DatabaseStatus> = {}): DatabaseStatus {
  return {
    name: 'app',
    backupsOnDisk: 0,
    bytesOnDisk: 0,
    runsByStatus: {},
    newestBackupOk: false,
    ...overrides,
  };
}

const HOUR = 3_600_000;

/**
 * The Prometheus text exposition format, line by line: comments `# HELP name text` / `# TYPE name type`,
 * samples `name{label="value",...} number`, blank lines. Returns the samples; throws on any other line.
 */
function parsePrometheus(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  const samples: { name: string; labels: Record<string, string>; value: number }[] = [];
  const typed = new Set<string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$/.exec(line);
    if (help) continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      typed.add(type[1]);
      continue;
    }
    const sample =
      /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\})? ([-+]?(?:\d+(?:\.\d+)?(?:e[-+]?\d+)?|NaN|Inf))$/.exec(
        line,
      );
    if (!sample) throw new Error(`not a Prometheus text line: ${JSON.stringify(line)}`);
    if (!typed.has(sample[1])) throw new Error(`sample before its # TYPE line: ${line}`);
    const labels: Record<string, string> = {};
    for (const match of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[match[1]] = match[2];
    }
    samples.push({ name: sample[1], labels, value: Number(sample[3]) });
  }
  return samples;
}

describe('health and metrics server', () => {
  it('/healthz flips 503 → 200 → 503 as the status changes', async () => {
    let status: DaemonStatus = { maxAgeMs: 26 * HOUR, databases: [database()] };
    const server = await serve(() => status);
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    let response = await fetch(`${server.url}/healthz`);
    expect(response.status).toBe(503);
    expect(response.headers.get('content-type')).toContain('application/json');
    let body = (await response.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ status: 'unhealthy', reason: 'app: no backup yet' });

    const now = new Date();
    status = {
      ...status,
      databases: [database({ newestBackupTime: now, lastSuccess: now, newestBackupOk: true })],
    };
    response = await fetch(`${server.url}/healthz`);
    expect(response.status).toBe(200);
    body = (await response.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ status: 'ok', databases: [{ name: 'app', healthy: true }] });

    const old = new Date(Date.now() - 30 * HOUR);
    status = {
      ...status,
      databases: [database({ newestBackupTime: old, lastSuccess: old, newestBackupOk: true })],
    };
    response = await fetch(`${server.url}/healthz`);
    expect(response.status).toBe(503);
    expect(((await response.json()) as { reason: string }).reason).toMatch(
      /app: the newest backup is 1d6h.* old, older than maxAge 1d2h/,
    );

    status = {
      ...status,
      databases: [database({ newestBackupTime: now, newestBackupOk: false, lastFailureError: 'disk full' })],
    };
    response = await fetch(`${server.url}/healthz`);
    expect(response.status).toBe(503);
    expect(((await response.json()) as { reason: string }).reason).toBe(
      'app: the newest backup failed: disk full',
    );
  });

  it('/metrics serves Prometheus text with every gauge, labelled by database', async () => {
    const success = new Date('2025-06-10T03:00:05Z');
    const failure = new Date('2025-06-09T03:00:07Z');
    const server = await serve(() => ({
      maxAgeMs: 26 * HOUR,
      databases: [
        database({
          name: 'app',
          lastSuccess: success,
          lastFailure: failure,
          lastFailureError: 'upload failed',
          lastDurationMs: 1500,
          lastBytes: 123_456,
          backupsOnDisk: 7,
          bytesOnDisk: 900_000,
          runsByStatus: { ok: 10, failed: 2, partial: 1 },
          newestBackupTime: success,
          newestBackupOk: true,
          destinations: [
            {
              name: 'bucket',
              type: 's3',
              newestCopyTime: success,
              lastSuccess: success,
              lastFailure: failure,
              lastFailureError: 'SlowDown',
              lastAttemptFailed: false,
              missing: 2,
              uploadsByStatus: { ok: 9, failed: 3 },
            },
          ],
        }),
        database({ name: 'we"ird\\name' }),
      ],
    }));
    const response = await fetch(`${server.url}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    const samples = parsePrometheus(text);
    const value = (name: string, labels: Record<string, string>) =>
      samples.find(
        (sample) =>
          sample.name === name && Object.entries(labels).every(([key, val]) => sample.labels[key] === val),
      )?.value;
    const app = { database: 'app' };
    expect(value('litekeep_last_success_timestamp_seconds', app)).toBe(success.getTime() / 1000);
    expect(value('litekeep_last_failure_timestamp_seconds', app)).toBe(failure.getTime() / 1000);
    expect(value('litekeep_last_duration_seconds', app)).toBe(1.5);
    expect(value('litekeep_last_backup_bytes', app)).toBe(123_456);
    expect(value('litekeep_backups_on_disk', app)).toBe(7);
    expect(value('litekeep_backups_on_disk_bytes', app)).toBe(900_000);
    expect(value('litekeep_runs_total', { database: 'app', status: 'ok' })).toBe(10);
    expect(value('litekeep_runs_total', { database: 'app', status: 'failed' })).toBe(2);
    expect(value('litekeep_runs_total', { database: 'app', status: 'partial' })).toBe(1);
    expect(value('litekeep_backups_on_disk', { database: 'we\\"ird\\\\name' })).toBe(0);
    expect(value('litekeep_max_age_seconds', {})).toBe(26 * 3600);
    const bucket = { database: 'app', destination: 'bucket' };
    expect(value('litekeep_destination_newest_copy_timestamp_seconds', bucket)).toBe(
      success.getTime() / 1000,
    );
    expect(value('litekeep_destination_last_success_timestamp_seconds', bucket)).toBe(
      success.getTime() / 1000,
    );
    expect(value('litekeep_destination_last_failure_timestamp_seconds', bucket)).toBe(
      failure.getTime() / 1000,
    );
    expect(value('litekeep_destination_missing_copies', bucket)).toBe(2);
    expect(value('litekeep_destination_uploads_total', { ...bucket, status: 'failed' })).toBe(3);
    expect(value('litekeep_destination_uploads_total', { ...bucket, status: 'ok' })).toBe(9);
    for (const name of [
      'litekeep_last_success_timestamp_seconds',
      'litekeep_healthy',
      'litekeep_destination_newest_copy_timestamp_seconds',
      'litekeep_destination_missing_copies',
      'litekeep_destination_healthy',
    ]) {
      expect(text).toContain(`# TYPE ${name} gauge`);
    }
    // Counts that only grow are counters, as Prometheus' rate() expects.
    expect(text).toContain('# TYPE litekeep_runs_total counter');
    expect(text).toContain('# TYPE litekeep_destination_uploads_total counter');
  });

  it('answers HEAD, 404 for unknown paths, 405 for other methods, 503 when the status cannot be read', async () => {
    const server = await serve(() => {
      throw new Error('catalog locked');
    });
    expect((await fetch(`${server.url}/nope`)).status).toBe(404);
    expect((await fetch(`${server.url}/healthz`, { method: 'POST' })).status).toBe(405);
    const response = await fetch(`${server.url}/healthz`);
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ reason: 'cannot read status: catalog locked' });
    const healthy = await serve(() => ({
      maxAgeMs: HOUR,
      databases: [database({ newestBackupTime: new Date(), newestBackupOk: true })],
    }));
    const head = await fetch(`${healthy.url}/healthz`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
  });

  it('refuses a non-loopback address unless allowRemote is set', async () => {
    await expect(
      startHttpServer({ listen: '0.0.0.0:0', getStatus: () => ({ maxAgeMs: 1, databases: [] }) }),
    ).rejects.toThrow(HttpConfigError);
    await expect(
      startHttpServer({ listen: '0.0.0.0:0', getStatus: () => ({ maxAgeMs: 1, databases: [] }) }),
    ).rejects.toThrow(/not a loopback address/);
    const remote = await startHttpServer({
      listen: '0.0.0.0:0',
      allowRemote: true,
      getStatus: () => ({ maxAgeMs: 1, databases: [] }),
    });
    servers.push(remote);
    const port = new URL(remote.url).port;
    const response = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ reason: 'no databases configured' });
  });

  it('reports a port in use and a malformed address as one-line errors', async () => {
    const first = await serve(() => ({ maxAgeMs: 1, databases: [] }));
    await expect(serve(() => ({ maxAgeMs: 1, databases: [] }), `127.0.0.1:${first.port}`)).rejects.toThrow(
      /EADDRINUSE/,
    );
    await expect(serve(() => ({ maxAgeMs: 1, databases: [] }), 'localhost:port')).rejects.toThrow(
      /invalid listen address/,
    );
  });

  it('evaluateHealth needs every database healthy', () => {
    const now = new Date('2025-06-10T12:00:00Z');
    const report = evaluateHealth(
      {
        maxAgeMs: 26 * HOUR,
        databases: [
          database({ name: 'a', newestBackupTime: new Date('2025-06-10T03:00:00Z'), newestBackupOk: true }),
          database({ name: 'b' }),
        ],
      },
      now,
    );
    expect(report.healthy).toBe(false);
    expect(report.status).toBe('unhealthy');
    expect(report.reason).toBe('b: no backup yet');
    expect(report.databases[0]).toMatchObject({ name: 'a', healthy: true, ageSeconds: 9 * 3600 });
  });

  it('evaluateHealth is degraded when the local backups are fine but a destination is stale or failing', () => {
    const now = new Date('2025-06-10T12:00:00Z');
    const fresh = new Date('2025-06-10T03:00:00Z');
    const destination = {
      type: 's3',
      lastAttemptFailed: false,
      missing: 0,
      uploadsByStatus: {},
    };
    const report = evaluateHealth(
      {
        maxAgeMs: 26 * HOUR,
        databases: [
          database({
            name: 'a',
            newestBackupTime: fresh,
            newestBackupOk: true,
            backupsOnDisk: 3,
            destinations: [
              { ...destination, name: 'ok', newestCopyTime: fresh },
              { ...destination, name: 'old', newestCopyTime: new Date('2025-06-08T03:00:00Z') },
              {
                ...destination,
                name: 'failing',
                newestCopyTime: fresh,
                lastAttemptFailed: true,
                lastFailureError: 'AccessDenied',
              },
              { ...destination, name: 'empty' },
            ],
          }),
        ],
      },
      now,
    );
    expect(report).toMatchObject({ healthy: false, status: 'degraded' });
    expect(report.databases[0].healthy).toBe(true);
    expect(report.databases[0].destinations.map((d) => [d.name, d.healthy])).toEqual([
      ['ok', true],
      ['old', false],
      ['failing', false],
      ['empty', false],
    ]);
    expect(report.reason).toBe(
      'a on old: its newest copy is 2d9h old, older than maxAge 1d2h; ' +
        'a on failing: its last upload failed: AccessDenied; a on empty: it holds no copy yet',
    );
  });
});
