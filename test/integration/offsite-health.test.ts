import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { makeDatabase } from '../helpers/db.js';
import { s3DestinationEntry, startS3Server, type S3TestServer } from '../servers/s3-server.js';
import {
  backupFiles,
  daemonTempDir,
  getJson,
  healthUrl,
  killDaemons,
  msg,
  removeDaemonDirs,
  spawnDaemon,
} from './daemon-helpers.js';

/** JSON read back from the CLI; the expectations below check its shape. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

let s3: S3TestServer;
beforeAll(async () => {
  s3 = await startS3Server();
});
afterEach(killDaemons);
afterAll(async () => {
  removeDaemonDirs();
  await s3?.close();
});

/** Value of one Prometheus sample, e.g. `litekeep_destination_healthy{database="app",destination="bucket"}`. */
function sample(metrics: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of metrics.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const got = Object.fromEntries(
      [...line.slice(name.length + 1, line.indexOf('}')).matchAll(/(\w+)="([^"]*)"/g)].map((m) => [
        m[1],
        m[2],
      ]),
    );
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(line.split(' ').pop());
  }
  return undefined;
}

const CLOSED = 'http://127.0.0.1:1';

function workspace() {
  const dir = daemonTempDir('litekeep-offsite-health-');
  makeDatabase(path.join(dir, 'app.db'), 30);
  const config = {
    database: 'app.db',
    backupDir: 'backups',
    compression: { algorithm: 'none' },
    retention: { last: 10 },
    destinations: [
      s3DestinationEntry(s3, {
        prefix: `hosts/${path.basename(dir)}`,
        endpoint: CLOSED,
        retention: { last: 2 },
      }),
      { name: 'usb', type: 'local', path: 'usb' },
    ],
  };
  const file = path.join(dir, 'litekeep.yml');
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
  return {
    dir,
    reachBucket: () => fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace(CLOSED, s3.endpoint)),
  };
}

describe('off-site failures are visible to monitoring', () => {
  it('every upload to one destination failing: /healthz degraded, destination metrics, status --max-age fails, the log says why', async () => {
    const w = workspace();
    for (let i = 0; i < 3; i++) {
      const r = await runCli(['backup', '--json'], { cwd: w.dir });
      expect(r.code, r.stderr).toBe(3);
    }

    const daemon = spawnDaemon(['--schedule', '*/2 * * * * *', '--http', '127.0.0.1:0'], {
      cwd: w.dir,
      env: { LITEKEEP_CATCH_UP: 'false', LITEKEEP_VERIFY: 'never' },
    });
    const url = await healthUrl(daemon);
    const partial = await daemon.waitFor(msg('backup of app partly done'), 30_000);
    // The log line names what failed and why, not only "partly done".
    expect(String(partial.msg)).toMatch(
      /^backup of app partly done: upload to bucket failed: .*cannot reach S3 endpoint http:\/\/127\.0\.0\.1:1 \(ECONNREFUSED\)/,
    );
    const health = await getJson(`${url}/healthz`);
    expect(health.status).toBe(503);
    expect(health.body.status).toBe('degraded');
    expect(String(health.body.reason)).toMatch(
      /^app on bucket: its last upload failed: .*ECONNREFUSED.*; it holds no copy yet$/,
    );
    const [db] = health.body.databases as Json[];
    expect(db.healthy).toBe(true);
    expect(db.destinations.find((d: Json) => d.name === 'usb')).toMatchObject({ healthy: true, missing: 0 });

    const metrics = await (await fetch(`${url}/metrics`)).text();
    const bucket = { database: 'app', destination: 'bucket' };
    const usb = { database: 'app', destination: 'usb' };
    expect(sample(metrics, 'litekeep_destination_healthy', bucket)).toBe(0);
    expect(sample(metrics, 'litekeep_destination_healthy', usb)).toBe(1);
    expect(
      sample(metrics, 'litekeep_destination_uploads_total', { ...bucket, status: 'failed' }),
    ).toBeGreaterThanOrEqual(4);
    expect(sample(metrics, 'litekeep_destination_missing_copies', bucket)).toBe(2);
    expect(sample(metrics, 'litekeep_destination_missing_copies', usb)).toBe(0);
    expect(sample(metrics, 'litekeep_destination_last_failure_timestamp_seconds', bucket)).toBeGreaterThan(0);
    expect(sample(metrics, 'litekeep_destination_newest_copy_timestamp_seconds', bucket)).toBeUndefined();
    expect(sample(metrics, 'litekeep_destination_newest_copy_timestamp_seconds', usb)).toBeGreaterThan(0);
    expect(metrics).toContain('# TYPE litekeep_runs_total counter');
    daemon.process.kill('SIGTERM');
    expect((await daemon.exited).code, daemon.stderr()).toBe(0);

    const stale = await runCli(['status', '--max-age', '26h', '--json'], { cwd: w.dir });
    expect(stale.code, stale.stderr).toBe(1);
    const s = JSON.parse(stale.stdout) as Json;
    expect(s.stale).toBe(true);
    const byName = Object.fromEntries(s.destinations.map((d: Json) => [d.destination, d]));
    expect(byName.bucket).toMatchObject({ stale: true, lastAttemptFailed: true, missingCount: 2 });
    expect(byName.bucket.staleReason).toMatch(/its last upload failed: .*; it holds no copy yet/);
    expect(byName.usb).toMatchObject({ stale: false, missingCount: 0, lastAttemptFailed: false });
    expect(byName.usb.lastSuccess.file).toBe(byName.usb.newest);
    const human = await runCli(['status', '--max-age', '26h'], { cwd: w.dir });
    expect(human.code).toBe(1);
    expect(human.stdout).toMatch(
      /bucket \(s3\): unreachable: .*\n(?:.*\n)*? {4}last success: never\n {4}missing 2: /,
    );
    expect(human.stdout).toMatch(/ {4}STALE: its last upload failed/);

    // The bucket is back: status and sync agree on what is missing (its own retention keeps the last 2).
    w.reachBucket();
    const before = JSON.parse((await runCli(['status', '--json'], { cwd: w.dir })).stdout) as Json;
    const missing = before.destinations.find((d: Json) => d.destination === 'bucket').missing as string[];
    expect(missing).toHaveLength(2);
    const sync = await runCli(['sync', '--json'], { cwd: w.dir });
    expect(sync.code, sync.stderr).toBe(0);
    const synced = JSON.parse(sync.stdout).destinations.find((d: Json) => d.destination === 'bucket');
    expect(synced.caughtUp).toEqual(missing);
    const healthy = await runCli(['status', '--max-age', '26h', '--json'], { cwd: w.dir });
    expect(healthy.code, healthy.stdout).toBe(0);
    const after = JSON.parse(healthy.stdout).destinations.find((d: Json) => d.destination === 'bucket');
    expect(after).toMatchObject({ stale: false, missingCount: 0, copies: 2, lastAttemptFailed: false });
    expect(after.lastError).toBeDefined();
    // The two it lacked were the newest on disk (the daemon, every 2 s, may have made more than one).
    const onDisk = backupFiles(path.join(w.dir, 'backups'));
    expect(new Set(missing)).toEqual(new Set(onDisk.slice(-2)));
  });
});
