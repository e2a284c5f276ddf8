import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BackupManager } from '../../src/backup/manager.js';
import { loadConfig } from '../../src/config/index.js';
import { restoreBackup } from '../../src/restore/index.js';
import { runCli } from '../helpers/cli.js';
import { countRows, filesIn, makeDatabase } from '../helpers/db.js';
import {
  backup,
  backupPageDigest,
  contents,
  leaveStaleWal,
  pageImageDigest,
  restore,
  snapshotFiles,
  workspace,
} from './helpers.js';
import { readIdentityFile } from '../../src/pipeline/index.js';

describe('restore --at', () => {
  it('picks the newest backup taken at or before the time, in the configured time zone, across midnight', async () => {
    const w = workspace(10);
    // Config by environment, as a deployment would have it; the CLI child runs with TZ=UTC, in which all
    // three backups fall on 2 March: only the configured zone puts the first two on 1 March.
    const env = {
      DATABASE_URL: `sqlite:///${w.db}`,
      BACKUP_DIR: w.backups,
      LITEKEEP_TIME_ZONE: 'America/New_York',
    };
    const target = loadConfig({ cwd: w.dir, env }).databases[0];
    const manager = new BackupManager(target);
    const names: string[] = [];
    for (const [now, rows] of [
      ['2026-03-02T03:30:00Z', 10], // 22:30 on 1 March in New York
      ['2026-03-02T04:50:00Z', 20], // 23:50 on 1 March
      ['2026-03-02T05:10:00Z', 30], // 00:10 on 2 March
    ] as const) {
      if (rows > 10) makeDatabase(w.db, 10);
      names.push((await manager.createBackup({ now: new Date(now) })).file);
    }
    manager.close();
    expect(names[1]).toMatch(/^backup-2026-03-01-235000\.db/);

    const pick = async (at: string) => {
      const r = await runCli(['restore', '--at', at, '--dry-run', '--json'], { cwd: w.dir, env });
      expect(r.stderr).toBe('');
      return JSON.parse(r.stdout).backup as string;
    };
    expect(await pick('2026-03-01')).toBe(names[1]);
    expect(await pick('2026-03-02 00:09')).toBe(names[1]);
    expect(await pick('2026-03-02 00:10')).toBe(names[2]);
    expect(await pick('2026-03-02T03:40:00Z')).toBe(names[0]);

    const r = await runCli(['restore', '--at', '2026-03-01'], { cwd: w.dir, env });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(
      `restored ${names[1]} from local (taken 2026-03-01 23:50:00 America/New_York)`,
    );
    expect(countRows(w.db)).toBe(20);

    const early = await runCli(['restore', '--at', '2026-02-28'], { cwd: w.dir, env });
    expect(early.code).toBe(1);
    expect(early.stderr).toMatch(
      /no backup in local was taken at or before .*; the oldest is from 2026-03-02T03:30:00/,
    );
    const bad = await runCli(['restore', '--at', 'last tuesday'], { cwd: w.dir, env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--at 'last tuesday' is not a time or a commit id; use 2026-03-01/);
    expect(countRows(w.db)).toBe(20);
  });
});

describe('encrypted backups', () => {
  it('restore needs the identity: missing is a usage error, a wrong one fails cleanly, the right one restores', async () => {
    const w = workspace(150);
    const key = await runCli(['keygen', 'key.txt'], { cwd: w.dir });
    expect(key.code).toBe(0);
    const recipient = /recipient: (age1\S+)/.exec(key.stdout)![1];
    expect((await runCli(['keygen', 'other.txt'], { cwd: w.dir })).code).toBe(0);
    const b = await backup(w, [], { LITEKEEP_ENCRYPTION_RECIPIENTS: recipient });
    expect(b.file).toMatch(/\.db\.zst\.age$/);
    makeDatabase(w.db, 5);
    const before = snapshotFiles(w.db);
    const untouched = () => {
      expect(snapshotFiles(w.db)).toEqual(before);
      expect(filesIn(w.dir).filter((f) => f.includes('restore'))).toEqual([]);
    };

    const missing = await restore(w, ['latest']);
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim()).toBe(
      `litekeep: ${b.file} is encrypted; pass --identity FILE (or LITEKEEP_AGE_IDENTITY) or set LITEKEEP_PASSPHRASE`,
    );
    untouched();

    const wrong = await restore(w, ['latest', '--identity', path.join(w.dir, 'other.txt')]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr.trim().split('\n')).toHaveLength(1);
    expect(wrong.stderr).toMatch(/cannot decrypt with the given identity/);
    untouched();

    const noKey = await runCli(['verify', ...w.args], { cwd: w.dir });
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toMatch(/is encrypted; pass --identity FILE/);

    const v = await runCli(['verify', ...w.args], {
      cwd: w.dir,
      env: { LITEKEEP_AGE_IDENTITY: path.join(w.dir, 'key.txt') },
    });
    expect(v.stdout).toMatch(/^ok .*fingerprint match/);

    const ok = await restore(w, ['latest', '--identity', path.join(w.dir, 'key.txt')]);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(pageImageDigest(w.db)).toBe(
      await backupPageDigest(b.path, await readIdentityFile(path.join(w.dir, 'key.txt'))),
    );
    expect(countRows(w.db)).toBe(150);
  });
});

describe('restoreBackup (library)', () => {
  it('replaces a live WAL database through SQLite, keeping a whole safety copy, and says how', async () => {
    const w = workspace(100);
    const b = await backup(w, ['--compression', 'none']);
    await leaveStaleWal(w.db, 40);
    const target = loadConfig({
      cwd: w.dir,
      env: { DATABASE_URL: `sqlite:///${w.db}`, BACKUP_DIR: w.backups },
    }).databases[0];
    const steps: string[] = [];
    const result = await restoreBackup(target, { name: b.file, onStep: (s) => steps.push(s) });
    expect(result).toMatchObject({
      backup: b.file,
      source: 'local',
      target: w.db,
      dryRun: false,
      method: 'sqlite-backup-api',
      journalMode: 'wal',
      warnings: [],
    });
    expect(pageImageDigest(w.db)).toBe(pageImageDigest(b.path));
    expect(steps.filter((s) => s.startsWith('kept the current database'))).toHaveLength(1);
    // The WAL's committed rows are in the safety copy, folded into one file.
    expect(fs.existsSync(`${result.safetyCopy}-wal`)).toBe(false);
    expect(contents(result.safetyCopy!)).toMatchObject({ integrity: 'ok', rows: 140 });

    // Into a path where nothing is yet: a new file, in the journal mode the source had.
    const fresh = path.join(w.dir, 'fresh.db');
    const copy = await restoreBackup(target, { name: b.file, to: fresh });
    expect(copy).toMatchObject({ method: 'new-file', journalMode: 'wal' });
    expect(copy.safetyCopy).toBeUndefined();
    expect(pageImageDigest(fresh)).toBe(pageImageDigest(b.path));
  });
});
