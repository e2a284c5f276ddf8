import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/index.js';
import { acquireLock } from '../../src/scheduler/index.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCli } from '../helpers/cli.js';
import { runFixture, type Child } from '../scheduler/helpers.js';
import { startRecorder } from '../servers/http-recorder.js';
import { makeDatabase } from '../helpers/db.js';
import {
  backupFiles,
  getJson,
  healthUrl,
  makeLargeDatabase,
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
/** Lock holders spawned by a test, killed after it. */
const stuck: Child[] = [];
afterEach(() => {
  for (const child of stuck.splice(0)) child.process.kill('SIGKILL');
});
let daemon: DaemonChild | undefined;

function workspace() {
  const dir = daemonTempDir('litekeep-daemon-lock-');
  const w = workspaceFiles(dir);
  return {
    dir,
    ...w,
    lock: path.join(w.backups, '.litekeep', 'lock'),
    env: { DATABASE_URL: 'sqlite:///app.db', BACKUP_DIR: w.backups } as Record<string, string>,
  };
}

describe('one run at a time per database, across processes', () => {
  it('a manual backup during the daemon’s backup fails with exit 1 naming the daemon’s pid', async () => {
    const w = workspace();
    // gzip of incompressible data keeps the daemon's run busy for seconds: room for the manual one to start.
    makeLargeDatabase(w.db, 150);
    daemon = spawnDaemon([], { cwd: w.dir, env: { ...w.env, LITEKEEP_COMPRESSION_ALGORITHM: 'gzip' } });
    await daemon.waitFor(msg('run started'), 20_000);

    const manual = await runCli(['backup', '--json'], { cwd: w.dir, env: w.env });
    const done = await daemon.waitFor((r) => String(r.msg).startsWith('backup of app'), 60_000);

    expect(manual.code, manual.stderr).toBe(1);
    const out = JSON.parse(manual.stdout) as { status: string; stage: string; error: string };
    expect(out).toMatchObject({ status: 'failed', stage: 'lock' });
    expect(out.error).toContain(`pid ${daemon.process.pid} on host ${os.hostname()}`);
    expect(out.error).toMatch(/started \d{4}-\d\d-\d\dT/);
    expect(out.error).toContain('catch-up backup of app');

    expect(done).toMatchObject({ status: 'ok', database: 'app' });
    // Only the daemon's backup came out of the overlap.
    expect(backupFiles(w.backups)).toEqual([done.file]);
    expect(tempFiles(w.backups)).toEqual([]);

    daemon.process.kill('SIGTERM');
    expect((await daemon.exited).code, daemon.stderr()).toBe(0);
    expect(fs.existsSync(w.lock)).toBe(false);
    // The refused manual run did not count as a failed run (it never started).
    const catalog = Catalog.open(w.backups);
    expect(catalog.runsByStatus()).toEqual({ ok: 1 });
    catalog.close();
  });

  it('the daemon’s own run that finds the lock held logs a clear line and keeps running', async () => {
    const w = workspace();
    makeDatabase(w.db, 40);
    // Another process's run (this test process stands in for a manual backup) holds the lock.
    const held = await acquireLock(w.lock, { purpose: 'manual backup of app' });
    daemon = spawnDaemon(['--schedule', '*/2 * * * * *'], { cwd: w.dir, env: w.env });
    const skipped = await daemon.waitFor(msg('backup of app skipped'), 20_000);
    expect(skipped.level).toBe(40);
    expect(String(skipped.msg)).toContain(`pid ${process.pid}`);
    expect(String(skipped.msg)).toContain('manual backup of app');
    expect(backupFiles(w.backups)).toEqual([]);

    await held.release();
    const done = await daemon.waitFor(msg('backup of app done'), 20_000);
    expect(backupFiles(w.backups)).toContain(done.file);
    // The first successful run also proves the backup restores (verify: weekly, none yet), under the lock.
    const verified = await daemon.waitFor(msg('verified backup-'), 20_000);
    expect(verified).toMatchObject({ database: 'app', source: 'local', status: 'ok' });
    // Skips are not failures: nothing at error level, no failed run in the catalog.
    expect(daemon.records.filter((r) => (r.level ?? 0) >= 50)).toEqual([]);
    daemon.process.kill('SIGTERM');
    expect((await daemon.exited).code, daemon.stderr()).toBe(0);
    const catalog = Catalog.open(w.backups);
    expect(catalog.runsByStatus().failed).toBeUndefined();
    catalog.close();
  });

  it.each([
    [
      'another host (the container was recreated under a new name)',
      () => ({ pid: process.pid, host: 'old-web-7f9c' }),
    ],
    ['a live pid unrelated to litekeep (reused after a reboot)', () => ({ pid: 1, host: os.hostname() })],
  ])('a lock description left by %s does not block the next backup', async (_label, who) => {
    const w = workspace();
    makeDatabase(w.db, 20);
    fs.mkdirSync(path.dirname(w.lock), { recursive: true, mode: 0o700 });
    fs.writeFileSync(
      w.lock,
      JSON.stringify({ ...who(), startedAt: '2026-01-01T03:00:00.000Z', purpose: 'schedule backup of app' }),
    );
    const r = await runCli(['backup', '--json', '--compression', 'none'], { cwd: w.dir, env: w.env });
    expect(r.code, r.stderr).toBe(0);
    expect(backupFiles(w.backups)).toHaveLength(1);
    expect(fs.existsSync(w.lock)).toBe(false);
  });

  it('a run that holds the lock longer than runTimeout is a failure: recorded, notified, in status and /healthz', async () => {
    const w = workspace();
    makeDatabase(w.db, 20);
    const ntfy = await startRecorder();
    const env = { ...w.env, LITEKEEP_NOTIFY_NTFY_SERVER: ntfy.url, LITEKEEP_NOTIFY_NTFY_TOPIC: 'stuck' };
    try {
      const first = await runCli(['backup', '--json'], { cwd: w.dir, env });
      expect(first.code, first.stderr).toBe(0);
      // A run that hangs while holding the lock (a stuck mount, a process stopped with SIGSTOP...).
      const holder = runFixture('lock-child.ts', [w.lock, '600000', '0']);
      stuck.push(holder);
      await holder.waitForLine((line) => line.includes('"acquired"'));
      const since = Date.parse(JSON.parse(fs.readFileSync(w.lock, 'utf8')).startedAt);
      // Held for longer than the 1 s runTimeout of the runs below.
      while (Date.now() - since < 1_500) await sleep(50);
      const limited = { ...env, LITEKEEP_RUN_TIMEOUT: '1s' };

      const blocked = await runCli(['backup', '--json'], { cwd: w.dir, env: limited });
      expect(blocked.code, blocked.stderr).toBe(1);
      const out = JSON.parse(blocked.stdout) as { status: string; stage: string; error: string };
      expect(out).toMatchObject({ status: 'failed', stage: 'lock' });
      expect(out.error).toMatch(
        new RegExp(`^a run seems stuck: pid ${holder.process.pid} on host .* longer than runTimeout 1s`),
      );
      const catalog = Catalog.open(w.backups);
      expect(catalog.runsByStatus()).toEqual({ ok: 1, failed: 1 });
      catalog.close();
      const alert = ntfy.requests.filter((r) => r.path === '/stuck').at(-1)!;
      expect(alert.headers.priority).toBe('high');
      expect(alert.body).toContain('a run seems stuck');
      const status = JSON.parse((await runCli(['status', '--json'], { cwd: w.dir, env: limited })).stdout);
      expect(status.lastFailure.error).toContain('a run seems stuck');

      daemon = spawnDaemon(['--schedule', '*/2 * * * * *', '--http', '127.0.0.1:0'], {
        cwd: w.dir,
        env: { ...limited, LITEKEEP_CATCH_UP: 'false' },
      });
      const url = await healthUrl(daemon);
      const failed = await daemon.waitFor(msg('backup of app failed'), 20_000);
      expect(failed.level).toBe(50);
      expect(String(failed.msg)).toContain('a run seems stuck');
      const health = await getJson(`${url}/healthz`);
      expect(health.status).toBe(503);
      expect(String(health.body.reason)).toContain('a run seems stuck');
      daemon.process.kill('SIGTERM');
      expect((await daemon.exited).code, daemon.stderr()).toBe(0);
    } finally {
      await ntfy.close();
    }
  });

  it('a lock left by a killed process is taken over by the next backup', async () => {
    const w = workspace();
    makeDatabase(w.db, 20);
    // The pid of a process that has exited: what a SIGKILLed backup leaves in its lock file.
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
    const deadPid = Number(gone.stdout.toString());
    fs.mkdirSync(path.dirname(w.lock), { recursive: true, mode: 0o700 });
    fs.writeFileSync(
      w.lock,
      JSON.stringify({
        pid: deadPid,
        host: os.hostname(),
        startedAt: '2020-01-01T00:00:00.000Z',
        purpose: 'x',
      }),
    );
    const r = await runCli(['backup', '--json', '--compression', 'none'], { cwd: w.dir, env: w.env });
    expect(r.code, r.stderr).toBe(0);
    expect(backupFiles(w.backups)).toHaveLength(1);
    expect(fs.existsSync(w.lock)).toBe(false);
  });
});
