import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/index.js';
import { acquireLock } from '../../src/scheduler/index.js';
import { runCli } from '../helpers/cli.js';
import { makeDatabase } from '../helpers/db.js';
import {
  backupFiles,
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
