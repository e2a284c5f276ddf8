import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  runBackupTask,
  scheduleBackupTask,
  statusFromCatalog,
  loadConfig,
  type RunBackupResult,
} from '../../src/index.js';
import { cleanEnv, TSX_LOADER } from '../helpers/cli.js';
import { countRows, makeDatabase, tempDir } from '../helpers/db.js';
import { backupFiles, tempFiles } from './daemon-helpers.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

function workspace(rows = 30) {
  const dir = tempDir('litekeep-daemon-lib-');
  dirs.push(dir);
  const db = path.join(dir, 'app.db');
  makeDatabase(db, rows);
  const backups = path.join(dir, 'backups');
  // Retention off: per-second backups of one day would otherwise be thinned to one by the daily rule.
  const env = { DATABASE_URL: 'sqlite:///app.db', BACKUP_DIR: backups, LITEKEEP_PRUNE: 'false' };
  return { dir, db, backups, env };
}

interface Logged {
  level: string;
  fields: Record<string, unknown>;
  msg?: string;
}

function memoryLogger() {
  const lines: Logged[] = [];
  const at =
    (level: string) =>
    (fields: object, msg?: string): void => {
      lines.push({ level, fields: fields as Record<string, unknown>, msg });
    };
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } };
}

const waitFor = async (test: () => boolean, timeoutMs: number) => {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
};

describe('embedding: scheduleBackupTask and runBackupTask', () => {
  it('runBackupTask runs the whole task once and returns its result', async () => {
    const w = workspace(25);
    const [result] = await runBackupTask({ cwd: w.dir, env: w.env });
    expect(result).toMatchObject({ database: 'app', status: 'ok', exitCode: 0 });
    expect(backupFiles(w.backups)).toEqual([result.backup!.file]);
    expect(result.backup!.path).toBe(path.join(w.backups, result.backup!.file));
    expect(fs.statSync(result.backup!.path).size).toBe(result.backup!.bytes);
  });

  it('a per-second schedule in this process makes backups until stop()', async () => {
    const w = workspace(30);
    const runs: RunBackupResult[] = [];
    const { lines, logger } = memoryLogger();
    const schedule = scheduleBackupTask({
      cwd: w.dir,
      env: { ...w.env, LITEKEEP_CATCH_UP: 'false', LITEKEEP_COMPRESSION_ALGORITHM: 'none' },
      schedule: '* * * * * *',
      logger,
      onRun: (result) => runs.push(result),
    });
    try {
      const next = schedule.nextRun();
      expect(next).toBeInstanceOf(Date);
      expect(next!.getTime() - Date.now()).toBeLessThanOrEqual(1_000);
      await waitFor(() => runs.filter((r) => r.status === 'ok').length >= 2, 20_000);
    } finally {
      await schedule.stop();
    }
    expect(schedule.nextRun()).toBeNull();
    expect(schedule.running()).toBe(false);
    const made = runs.filter((r) => r.status === 'ok').map((r) => r.backup!.file);
    const onDisk = backupFiles(w.backups);
    for (const file of made) expect(onDisk).toContain(file);
    expect(countRows(path.join(w.backups, made[0]))).toBe(30);
    expect(tempFiles(w.backups)).toEqual([]);
    // One log line per run with the database, status and file.
    const done = lines.filter((l) => l.msg?.startsWith('backup of app done'));
    expect(done.length).toBe(made.length);
    expect(done[0].fields).toMatchObject({
      database: 'app',
      status: 'ok',
      file: made[0],
      trigger: 'schedule',
    });

    // Nothing runs after stop().
    const count = backupFiles(w.backups).length;
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    expect(backupFiles(w.backups).length).toBe(count);

    const status = await statusFromCatalog(loadConfig({ cwd: w.dir, env: w.env }).databases, 60_000);
    expect(status.databases[0]).toMatchObject({ name: 'app', backupsOnDisk: count, newestBackupOk: true });
    expect(status.databases[0].runsByStatus.ok).toBe(made.length);
  });

  it('is silent inside a host app unless the app passes a logger', async () => {
    const host = (env: NodeJS.ProcessEnv) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
        const w = workspace(10);
        const child = spawn(
          process.execPath,
          ['--import', TSX_LOADER, path.join(__dirname, 'fixtures', 'host-app.ts')],
          { cwd: w.dir, env: { ...cleanEnv(), ...w.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
        );
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });
    // The catch-up run (there is no backup yet) happens, and litekeep prints nothing of its own.
    const quiet = await host({});
    expect(quiet.code).toBe(0);
    expect(quiet.stdout).toBe('{"app":"done","status":"ok"}\n');
    expect(quiet.stderr).toBe('');
    // With a logger, the same run is logged through it.
    const logged = await host({ HOST_LOGGER: 'console' });
    expect(logged.code).toBe(0);
    expect(logged.stdout).toMatch(/backup of app done: backup-/);
    expect(logged.stdout.trim().split('\n').pop()).toBe('{"app":"done","status":"ok"}');
  });

  it('statusFromCatalog reads a folder without backups without creating it', async () => {
    const w = workspace(1);
    const status = await statusFromCatalog(loadConfig({ cwd: w.dir, env: w.env }).databases, 60_000);
    expect(status.databases[0]).toMatchObject({ name: 'app', backupsOnDisk: 0, newestBackupOk: false });
    expect(fs.existsSync(w.backups)).toBe(false);
  });
});
