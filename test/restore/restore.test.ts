import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/index.js';
import { runCli } from '../helpers/cli.js';
import { filesIn } from '../helpers/db.js';
import {
  backup,
  backupPageDigest,
  contents,
  holdOpen,
  leaveStaleWal,
  pageImageDigest,
  release,
  restore,
  snapshotFiles,
  workspace,
} from './helpers.js';

describe('litekeep restore', () => {
  it('restores the backup exactly over a database whose stale -wal holds frames, keeping the old one aside', async () => {
    const w = workspace(300);
    const b = await backup(w, ['--compression', 'zstd']);
    // After the backup the application wrote more, then died: 200 committed rows and an open transaction
    // sit in the -wal only.
    await leaveStaleWal(w.db, 200);
    expect(fs.statSync(`${w.db}-wal`).size).toBeGreaterThan(100_000);
    const before = snapshotFiles(w.db);

    const r = await restore(w, ['latest']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // Each step is visible, and the summary names the file, the source and when it was taken.
    expect(r.stdout).toMatch(
      /- selected backup-\S+\.db\.zst from local, taken \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\n/,
    );
    expect(r.stdout).toMatch(
      /- fetched into \S+ and verified: sha256 matches the record [0-9a-f]{12}…, integrity ok/,
    );
    expect(r.stdout).toMatch(
      /- kept the current database as \S+app\.db\.before-restore-\d{4}-\d\d-\d\d-\d{6}/,
    );
    expect(r.stdout).toContain(`- copied it into ${w.db} through SQLite's backup API`);
    expect(r.stdout).toContain(`restored ${b.file} from local (taken `);
    expect(r.stdout).toContain(`into ${w.db}`);
    expect(r.stdout).toMatch(/rows: items 300/);

    // The live file now holds the backup's pages (SQLite rewrote only its own header counters), still in WAL
    // mode as the application had it, with no -wal or -shm left beside it.
    expect(pageImageDigest(w.db)).toBe(await backupPageDigest(b.path));
    expect(fs.existsSync(`${w.db}-wal`)).toBe(false);
    expect(fs.existsSync(`${w.db}-shm`)).toBe(false);
    expect(contents(w.db)).toMatchObject({ integrity: 'ok', rows: 300 });

    // The safety copy is one file that opens as the database the application had: its WAL rows included.
    const safety = filesIn(w.dir).find((f) => /^app\.db\.before-restore-\d{4}-\d\d-\d\d-\d{6}$/.test(f))!;
    expect(safety).toBeDefined();
    expect(r.stdout).toContain(`previous database kept as ${path.join(w.dir, safety)}`);
    expect(fs.existsSync(path.join(w.dir, `${safety}-wal`))).toBe(false);
    expect(fs.statSync(path.join(w.dir, safety)).mode & 0o777).toBe(0o600);
    expect(contents(path.join(w.dir, safety))).toMatchObject({ integrity: 'ok', rows: 500 });
    expect(before['-wal']).not.toBeNull();
    // No temp files are left behind.
    expect(filesIn(w.dir).filter((f) => f.includes('.restore-'))).toEqual([]);

    // The catalog records the restore, and history shows it.
    const catalog = Catalog.open(w.backups);
    const restores = catalog.history().filter((e) => e.kind === 'restore');
    catalog.close();
    expect(restores).toHaveLength(1);
    expect(restores[0]).toMatchObject({
      backupFile: b.file,
      source: 'local',
      target: w.db,
      safetyCopy: path.join(w.dir, safety),
      status: 'ok',
    });
    const h = await runCli(['history', ...w.args], { cwd: w.dir });
    expect(h.stdout).toContain(`restore ${b.file} from local to ${w.db}: ok`);
  });

  it('refuses while another process has the database open, leaving it untouched; --force overrides', async () => {
    const w = workspace(100);
    await backup(w, ['--compression', 'none']);
    const holder = await holdOpen(w.db, 50);
    try {
      const before = snapshotFiles(w.db);
      expect(before['-wal']).not.toBeNull();
      const r = await restore(w, ['latest']);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(
        new RegExp(
          `is in use by pid ${holder.pid} \\(node, has app\\.db.*; see /proc/${holder.pid}/cmdline\\).*--force`,
        ),
      );
      expect(snapshotFiles(w.db)).toEqual(before);
      expect(filesIn(w.dir).filter((f) => f.includes('restore'))).toEqual([]);

      const forced = await restore(w, ['latest', '--force']);
      expect(forced.code).toBe(0);
      expect(forced.stdout).toMatch(
        new RegExp(`--force: restoring through SQLite although pid ${holder.pid}`),
      );
      expect(forced.stdout).toMatch(/restart it now/);
    } finally {
      await release(holder);
    }
    expect(contents(w.db)).toMatchObject({ integrity: 'ok', rows: 100 });
  });

  it('a backup with one flipped byte fails verify, and restore refuses it without touching the target', async () => {
    const w = workspace(200);
    const plain = await backup(w, ['--compression', 'none', '--no-prune']);
    const packed = await backup(w, ['--compression', 'zstd', '--no-prune']);
    for (const b of [plain, packed]) {
      const bytes = fs.readFileSync(b.path);
      bytes[Math.floor(bytes.length / 2)] ^= 0x01;
      fs.writeFileSync(b.path, bytes);
    }
    // Something the restore must not lose: rows written after the backups.
    await leaveStaleWal(w.db, 10);
    const before = snapshotFiles(w.db);
    const filesBefore = filesIn(w.dir);

    const v = await runCli(['verify', 'all', ...w.args], { cwd: w.dir });
    expect(v.code).toBe(1);
    expect(v.stdout).toMatch(
      new RegExp(`FAILED  app/${plain.file} from local: ${plain.file} from local is damaged: its sha256 is`),
    );
    expect(v.stdout).toMatch(new RegExp(`FAILED  app/${packed.file} from local: .*corrupt`));

    for (const b of [plain, packed]) {
      const r = await restore(w, [b.file]);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(
        b === plain ? /is damaged: its sha256 is .*restore another backup/ : /corrupt/,
      );
      expect(snapshotFiles(w.db)).toEqual(before);
      expect(filesIn(w.dir)).toEqual(filesBefore);
    }
    expect(contents(w.db).rows).toBe(210);

    const catalog = Catalog.open(w.backups);
    const events = catalog.history();
    catalog.close();
    expect(events.filter((e) => e.kind === 'verification' && e.status === 'failed')).toHaveLength(2);
    expect(events.filter((e) => e.kind === 'restore' && e.status === 'failed')).toHaveLength(2);
  });
});
