import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { BackupManager } from '../../src/backup/manager.js';
import { Catalog } from '../../src/catalog/index.js';
import { loadConfig } from '../../src/config/index.js';
import { RotationPolicy } from '../../src/retention/index.js';
import { runCli } from '../helpers/cli.js';
import {
  backupFiles,
  daysBetween,
  env,
  nameOf,
  ONLY_RULES,
  removeWorkspaces,
  workspace,
} from './prune-helpers.js';

afterAll(removeWorkspaces);

describe('litekeep backup with retention', () => {
  it('prunes after a successful backup and says how many were rotated; --no-prune skips', async () => {
    const w = workspace(daysBetween('2020-01-01', '2020-01-05'));
    const base = ['backup', '--db', w.db, '--dir', w.backups, '--compression', 'none'];
    const onlyLast = { ...env, ...ONLY_RULES };
    let r = await runCli([...base, '--no-prune', '--json'], { cwd: w.dir, env: onlyLast });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'ok', rotated: 0, removed: [] });
    expect(backupFiles(w.backups)).toHaveLength(6);

    r = await runCli([...base, '--keep-last', '2', '--json'], { cwd: w.dir, env: onlyLast });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.rotated).toBe(5);
    expect(out.removed.sort()).toEqual(daysBetween('2020-01-01', '2020-01-05').map(nameOf));
    expect(backupFiles(w.backups)).toHaveLength(2);
    expect(backupFiles(w.backups)).toContain(out.file);

    r = await runCli([...base, '--keep-last', '1'], { cwd: w.dir, env: onlyLast });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('rotated 2 old backups');
    expect(backupFiles(w.backups)).toHaveLength(1);
    const catalog = Catalog.open(w.backups);
    expect(catalog.listRuns(1)[0]).toMatchObject({ status: 'ok', rotated: 2 });
    catalog.close();
  });

  it('never removes the backup it just made, even behind a file named in the future', async () => {
    const w = workspace(['2020-01-01', '2099-01-01']);
    const r = await runCli(
      ['backup', '--db', w.db, '--dir', w.backups, '--compression', 'none', '--keep-last', '1', '--json'],
      { cwd: w.dir, env: { ...env, ...ONLY_RULES } },
    );
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.removed).toEqual([nameOf('2020-01-01')]);
    expect(backupFiles(w.backups)).toEqual([out.file, nameOf('2099-01-01')].sort());
  });

  it.each([
    ['missing', 2, (db: string) => fs.rmSync(db)],
    ['not SQLite', 2, (db: string) => fs.writeFileSync(db, Buffer.alloc(8192, 0x5a))],
    [
      'with a corrupt page',
      1,
      (db: string) => {
        const fd = fs.openSync(db, 'r+');
        fs.writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, 4096); // page 2: the items table
        fs.closeSync(fd);
      },
    ],
  ])('removes nothing when the new backup fails (source %s)', async (_kind, code, spoil) => {
    const days = daysBetween('2020-01-01', '2020-01-30');
    const w = workspace(days);
    spoil(w.db);
    const r = await runCli(['backup', '--db', w.db, '--dir', w.backups, '--keep-last', '1', '--json'], {
      cwd: w.dir,
      env: { ...env, ...ONLY_RULES },
    });
    expect(r.code).toBe(code);
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'failed', rotated: 0, removed: [] });
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(backupFiles(w.backups)).toEqual(days.map(nameOf));
  });

  it.each([
    [['--keep-daily', '0', '--keep-weekly', '0', '--keep-monthly', '0'], {}, /keeps nothing by rule/],
    [
      [],
      { LITEKEEP_RETENTION_WITHIN: '3x' },
      /invalid retention\.within '3x' from environment \(LITEKEEP_RETENTION_WITHIN\): expected a duration/,
    ],
  ])('rejects an unusable policy %j %j before backing up (exit 2)', async (args, extraEnv, message) => {
    const days = daysBetween('2020-01-01', '2020-01-10');
    const w = workspace(days);
    const r = await runCli(['backup', '--db', w.db, '--dir', w.backups, ...args], {
      cwd: w.dir,
      env: { ...env, ...extraEnv },
    });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(message);
    expect(backupFiles(w.backups)).toEqual(days.map(nameOf));
  });
});

describe('library: RotationPolicy and BackupManager.rotateBackups()', () => {
  it('backs up at fixed times and rotates with the given policy, returning what it deleted', async () => {
    const w = workspace();
    const resolved = loadConfig({
      cwd: w.dir,
      env: { DATABASE_URL: w.db, BACKUP_DIR: w.backups, LITEKEEP_TIME_ZONE: 'UTC' },
      overrides: { 'compression.algorithm': 'none' },
    });
    const manager = new BackupManager(resolved.databases[0]);
    try {
      const made: string[] = [];
      for (const day of daysBetween('2021-02-01', '2021-02-10')) {
        made.push((await manager.createBackup({ now: new Date(`${day}T03:00:00Z`) })).file);
      }
      expect(made).toEqual(daysBetween('2021-02-01', '2021-02-10').map(nameOf));
      const policy = new RotationPolicy(3, 0, 0);
      expect([policy.dailyKeep, policy.weeklyKeep, policy.monthlyKeep]).toEqual([3, 0, 0]);
      const deleted = await manager.rotateBackups(policy);
      expect(deleted.sort()).toEqual(made.slice(0, 7));
      expect(backupFiles(w.backups)).toEqual(made.slice(7));
      // With the configured default 7/4/12, the three left are all kept.
      expect(await manager.rotateBackups()).toEqual([]);
      expect(manager.catalog.getBackup(made[0])?.deletedAt).toBeTruthy();
    } finally {
      manager.close();
    }
  });
});
