import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { countRows, makeDatabase } from '../helpers/db.js';
import {
  backupFiles,
  getJson,
  healthUrl,
  msg,
  spawnDaemon,
  tempFiles,
  workspaceFiles,
  type DaemonChild,
  daemonTempDir,
  killDaemons,
  removeDaemonDirs,
} from './daemon-helpers.js';

afterAll(removeDaemonDirs);
afterEach(killDaemons);
let daemon: DaemonChild | undefined;

function workspace(rows = 50) {
  const dir = daemonTempDir('litekeep-daemon-cli-');
  const w = workspaceFiles(dir);
  makeDatabase(w.db, rows);
  const env = {
    DATABASE_URL: `sqlite:///app.db`,
    BACKUP_DIR: w.backups,
    LITEKEEP_COMPRESSION_ALGORITHM: 'none',
  };
  return { dir, ...w, env };
}

/** Value of one Prometheus sample, e.g. `litekeep_runs_total{database="app",status="ok"}`. */
function sample(metrics: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of metrics.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const labelText = line.slice(name.length + 1, line.indexOf('}'));
    const got = Object.fromEntries(
      labelText.split(',').map((pair) => {
        const [key, value] = pair.split('=');
        return [key, JSON.parse(value) as string];
      }),
    );
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(line.split(' ').pop());
  }
  return undefined;
}

describe('litekeep schedule', () => {
  it('prints the next run times of the default, the config file, the environment and the flag', async () => {
    const w = workspace(1);
    const byDefault = await runCli(['schedule', '--next', '5', '--json'], { cwd: w.dir, env: w.env });
    expect(byDefault.code, byDefault.stderr).toBe(0);
    const runs = JSON.parse(byDefault.stdout) as { schedule: string; timeZone: string; next: string[] };
    expect(runs.schedule).toBe('0 3 * * *');
    expect(runs.next).toHaveLength(5);
    // TZ=UTC in the test env: 03:00 UTC on five consecutive days.
    for (const [i, iso] of runs.next.entries()) {
      expect(iso).toMatch(/T03:00:00\.000Z$/);
      if (i > 0) expect(Date.parse(iso) - Date.parse(runs.next[i - 1])).toBe(86_400_000);
    }

    fs.writeFileSync(path.join(w.dir, 'litekeep.yml'), 'schedule: "30 1 * * *"\ntimeZone: Europe/Berlin\n');
    const fromFile = await runCli(['schedule', '--next', '2', '--json'], { cwd: w.dir, env: w.env });
    const file = JSON.parse(fromFile.stdout) as { timeZone: string; next: string[] };
    expect(file.timeZone).toBe('Europe/Berlin');
    // 01:30 in Berlin is 23:30 or 00:30 UTC depending on daylight saving time.
    for (const iso of file.next) expect(iso).toMatch(/T(23|00):30:00\.000Z$/);

    const fromEnv = await runCli(['schedule', '--next', '3'], {
      cwd: w.dir,
      env: { ...w.env, LITEKEEP_SCHEDULE: '0 */6 * * *' },
    });
    expect(fromEnv.code, fromEnv.stderr).toBe(0);
    expect(fromEnv.stdout).toContain("schedule '0 */6 * * *' in Europe/Berlin, next 3 runs:");
    expect(fromEnv.stdout.trim().split('\n')).toHaveLength(4);

    const fromFlag = await runCli(['schedule', '--next', '1', '--json', '--schedule', '15 4 * * 1'], {
      cwd: w.dir,
      env: { ...w.env, LITEKEEP_SCHEDULE: '0 */6 * * *' },
    });
    const flag = JSON.parse(fromFlag.stdout) as { schedule: string; next: string[] };
    expect(flag.schedule).toBe('15 4 * * 1');
    expect(new Date(flag.next[0]).getUTCDay()).toBe(1);
  });

  it('refuses an invalid expression with exit 2, in `schedule` and at `daemon` start', async () => {
    const w = workspace(1);
    const bad = await runCli(['schedule', '--schedule', '61 3 * * *'], { cwd: w.dir, env: w.env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/invalid schedule "61 3 \* \* \*"/);

    const badEnv = await runCli(['daemon'], {
      cwd: w.dir,
      env: { ...w.env, LITEKEEP_SCHEDULE: 'every night' },
    });
    expect(badEnv.code).toBe(2);
    expect(badEnv.stderr).toMatch(/invalid schedule "every night"/);

    const badFlag = await runCli(['daemon', '--schedule', '* * *'], { cwd: w.dir, env: w.env });
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toMatch(/invalid schedule/);

    const badZone = await runCli(['daemon'], {
      cwd: w.dir,
      env: { ...w.env, LITEKEEP_TIME_ZONE: 'Mars/Olympus' },
    });
    expect(badZone.code).toBe(2);
    // Nothing ran: no backup folder content.
    expect(backupFiles(w.backups)).toEqual([]);
  });
});

describe('litekeep daemon: catch-up, /healthz, /metrics and logs', () => {
  it('catches up on first start, is healthy after it, and a restart with a fresh backup does not run again', async () => {
    const w = workspace(120);
    daemon = spawnDaemon(['--http', '127.0.0.1:0'], { cwd: w.dir, env: w.env });
    const url = await healthUrl(daemon);

    // Before the catch-up run (it starts a few seconds after start): no backup yet.
    const before = await getJson(`${url}/healthz`);
    expect(before.status).toBe(503);
    expect(String(before.body.reason)).toContain('no backup yet');

    const done = await daemon.waitFor(msg('backup of app done'), 20_000);
    expect(done).toMatchObject({ database: 'app', status: 'ok', trigger: 'catch-up' });
    expect(typeof done.file).toBe('string');
    expect(backupFiles(w.backups)).toEqual([done.file]);
    expect(countRows(path.join(w.backups, String(done.file)))).toBe(120);
    expect(tempFiles(w.backups)).toEqual([]);
    // Every stdout line is one JSON object (stdout is not a terminal).
    expect(daemon.stdout().trim().split('\n').length).toBe(daemon.records.length);
    await daemon.waitFor(msg('run finished'));

    const healthy = await getJson(`${url}/healthz`);
    expect(healthy.status, JSON.stringify(healthy.body)).toBe(200);
    expect(healthy.body).toMatchObject({ status: 'ok', healthy: true });

    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(sample(metrics, 'litekeep_backups_on_disk', { database: 'app' })).toBe(1);
    expect(sample(metrics, 'litekeep_runs_total', { database: 'app', status: 'ok' })).toBe(1);
    expect(sample(metrics, 'litekeep_runs_total', { database: 'app', status: 'failed' })).toBeUndefined();
    expect(sample(metrics, 'litekeep_healthy', { database: 'app' })).toBe(1);

    daemon.process.kill('SIGTERM');
    expect((await daemon.exited).code, daemon.stderr()).toBe(0);

    // Second start: the backup covers the last 03:00 slot, so no catch-up; it ages past maxAge=1s.
    daemon = spawnDaemon(['--http', '127.0.0.1:0'], {
      cwd: w.dir,
      env: { ...w.env, LITEKEEP_MAX_AGE: '1s' },
    });
    const url2 = await healthUrl(daemon);
    const decision = await daemon.waitFor(msg('catch-up:'), 20_000);
    expect(decision.needed).toBe(false);
    const stale = await getJson(`${url2}/healthz`);
    expect(stale.status).toBe(503);
    expect(String(stale.body.reason)).toContain('older than maxAge 1s');
    const metrics2 = await (await fetch(`${url2}/metrics`)).text();
    expect(sample(metrics2, 'litekeep_healthy', { database: 'app' })).toBe(0);
    expect(sample(metrics2, 'litekeep_runs_total', { database: 'app', status: 'ok' })).toBe(1);
    expect(backupFiles(w.backups)).toEqual([done.file]);
    expect(daemon.records.some(msg('run started'))).toBe(false);

    daemon.process.kill('SIGINT');
    expect((await daemon.exited).code, daemon.stderr()).toBe(0);
  });

  it('catchUp false: no run at start', async () => {
    const w = workspace(10);
    daemon = spawnDaemon(['--http', '127.0.0.1:0'], {
      cwd: w.dir,
      env: { ...w.env, LITEKEEP_CATCH_UP: 'false' },
    });
    const url = await healthUrl(daemon);
    await daemon.waitFor(msg('daemon started'));
    // Longer than the catch-up delay (5 s) would take to start a run.
    await new Promise((resolve) => setTimeout(resolve, 7_000));
    expect(daemon.records.some(msg('run started'))).toBe(false);
    expect(daemon.records.filter(msg('started'))).toHaveLength(1);
    expect(backupFiles(w.backups)).toEqual([]);
    expect((await getJson(`${url}/healthz`)).status).toBe(503);
    daemon.process.kill('SIGTERM');
    expect((await daemon.exited).code, daemon.stderr()).toBe(0);
  });

  it('a port in use is a configuration error (exit 2) and the process does not linger', async () => {
    const w = workspace(1);
    daemon = spawnDaemon(['--http', '127.0.0.1:0'], {
      cwd: w.dir,
      env: { ...w.env, LITEKEEP_CATCH_UP: 'false' },
    });
    const port = new URL(await healthUrl(daemon)).port;
    const second = await runCli(['daemon', '--http', `127.0.0.1:${port}`], {
      cwd: w.dir,
      env: w.env,
      timeoutMs: 20_000,
    });
    expect(second.code, second.stderr).toBe(2);
    expect(second.stderr).toContain('EADDRINUSE');
    daemon.process.kill('SIGTERM');
    expect((await daemon.exited).code).toBe(0);
  });
});
