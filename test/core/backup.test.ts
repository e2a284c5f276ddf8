import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { BackupManager } from '../../src/backup/manager.js';
import { Catalog } from '../../src/catalog/index.js';
import { loadConfig } from '../../src/config/index.js';
import { parseBackupName } from '../../src/naming.js';
import { runCli } from '../helpers/cli.js';
import { countRows, filesIn, makeDatabase, tempDir } from '../helpers/db.js';
import { canMount, mountTmpfs } from '../helpers/mount.js';

const fixture = (name: string) => path.resolve(__dirname, '..', 'fixtures', name);
const cleanups: (() => void)[] = [];
afterAll(() => cleanups.forEach((f) => f()));

function workspace(rows = 300) {
  const dir = tempDir('litekeep-core-');
  const db = path.join(dir, 'app.db');
  makeDatabase(db, rows);
  return { dir, db, backups: path.join(dir, 'backups') };
}

describe('litekeep backup', () => {
  it('writes a checked, private backup and records it', async () => {
    const w = workspace();
    const r = await runCli(['backup', '--db', w.db, '--dir', w.backups, '--json', '--compression', 'none'], {
      cwd: w.dir,
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ status: 'ok', mode: 'vacuum', integrity: 'ok', compression: 'none' });
    expect(parseBackupName(out.file)).toBeDefined();
    expect(out.path).toBe(path.join(w.backups, out.file));
    expect(fs.statSync(out.path).size).toBe(out.bytes);
    expect(fs.statSync(out.path).mode & 0o777).toBe(0o600);
    expect(fs.statSync(w.backups).mode & 0o777).toBe(0o700);
    expect(countRows(out.path)).toBe(300);
    expect(out.sha256).toMatch(/^[0-9a-f]{64}$/);
    // No temp files, only the backup and the catalog folder.
    expect(filesIn(w.backups)).toEqual(['.litekeep', out.file]);
    const catalog = Catalog.open(w.backups);
    const record = catalog.getBackup(out.file)!;
    expect(record).toMatchObject({ sha256: out.sha256, integrity: 'ok', mode: 'vacuum', pageSize: 4096 });
    expect(record.fingerprint?.tables).toEqual({ items: 300 });
    // Run without a terminal (as cron would), the CLI records a scheduled run.
    expect(catalog.listRuns()[0]).toMatchObject({ status: 'ok', trigger: 'schedule', backupFile: out.file });
    catalog.close();
  });

  it('--no-vacuum uses the online backup API and gives a stand-alone (non-WAL) file', async () => {
    const w = workspace();
    const r = await runCli([
      'backup',
      '--db',
      w.db,
      '--dir',
      w.backups,
      '--no-vacuum',
      '--json',
      '--compression',
      'none',
    ]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.mode).toBe('backup-api');
    const copy = new Database(out.path, { readonly: true });
    expect(copy.pragma('journal_mode', { simple: true })).toBe('delete');
    copy.close();
    expect(countRows(out.path)).toBe(300);
  });

  it('keeps two backups taken in the same second', async () => {
    const w = workspace(10);
    const resolved = loadConfig({
      cwd: w.dir,
      env: { DATABASE_URL: `sqlite:///${'app.db'}`, BACKUP_DIR: w.backups },
    });
    const manager = new BackupManager(resolved.databases[0]);
    const now = new Date('2026-03-01T03:00:00Z');
    const a = await manager.createBackup({ now });
    const b = await manager.createBackup({ now });
    manager.close();
    expect(a.file).not.toBe(b.file);
    expect(fs.existsSync(a.path) && fs.existsSync(b.path)).toBe(true);
    expect(parseBackupName(b.file)?.sequence).toBe(1);
  });

  it('prints a human summary with file, size, duration, integrity and checksum', async () => {
    const w = workspace();
    const r = await runCli(['backup', '--db', w.db, '--dir', w.backups]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/backup of app written: .*backup-\d{4}-\d{2}-\d{2}-\d{6}\.db/);
    expect(r.stdout).toMatch(/size .*took .*integrity ok/);
    expect(r.stdout).toMatch(/sha256 [0-9a-f]{64}/);
  });
});

describe('bad input gets one clear line, a non-zero exit, and loses nothing', () => {
  async function expectFailure(args: string[], code: number, pattern: RegExp, env: NodeJS.ProcessEnv = {}) {
    const r = await runCli(args, { env });
    expect(r.code).toBe(code);
    const lines = r.stderr.trim().split('\n');
    expect(lines.length).toBe(1);
    expect(r.stderr).toMatch(pattern);
    return r;
  }

  it('a missing database', async () => {
    const w = workspace();
    await expectFailure(
      ['backup', '--db', path.join(w.dir, 'nope.db'), '--dir', w.backups],
      2,
      /database not found: .*nope\.db; check DATABASE_URL/,
    );
  });

  it('a folder instead of a database', async () => {
    const w = workspace();
    await expectFailure(
      ['backup', '--db', w.dir, '--dir', w.backups],
      2,
      /is a folder, not a SQLite database/,
    );
  });

  it('a text file instead of a database', async () => {
    const w = workspace();
    const text = path.join(w.dir, 'notes.txt');
    fs.writeFileSync(text, 'hello, not sqlite\n');
    await expectFailure(['backup', '--db', text, '--dir', w.backups], 2, /is not a SQLite database/);
  });

  it('a malformed DATABASE_URL', async () => {
    await expectFailure(
      ['backup'],
      2,
      /malformed database location 'sqlite:\/\/app.db' from environment \(DATABASE_URL\)/,
      {
        DATABASE_URL: 'sqlite://app.db',
      },
    );
  });

  it('an unknown flag', async () => {
    await expectFailure(['backup', '--frobnicate'], 2, /unknown option '--frobnicate'/);
  });

  it('no database configured at all: says which folder and files were looked at', async () => {
    const dir = tempDir();
    const r = await runCli(['backup'], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(
      `no database configured: looked at no config file (litekeep.yml, litekeep.yaml or litekeep.json in ${dir}), ` +
        `no .env file in ${dir} and the environment (no DATABASE_URL); set DATABASE_URL=sqlite:///path/to/app.db`,
    );
    // A .env that is there but names no database, and a config file without one, are named as such.
    fs.writeFileSync(path.join(dir, '.env'), 'DATABSE_URL=sqlite:///app.db\n');
    fs.writeFileSync(path.join(dir, 'litekeep.yml'), 'timeZone: UTC\n');
    const named = await runCli(['list'], { cwd: dir });
    expect(named.code).toBe(2);
    expect(named.stderr).toContain(
      `looked at config file ${path.join(dir, 'litekeep.yml')} (no database: or databases:), ` +
        `env file ${path.join(dir, '.env')} (no DATABASE_URL)`,
    );
  });

  it('a database held under an exclusive lock by another process: waits, then a clear error', async () => {
    const w = workspace();
    fs.mkdirSync(w.backups);
    const holder = spawn(
      process.execPath,
      [
        '-e',
        `const D=require('better-sqlite3');const d=new D(${JSON.stringify(w.db)});d.pragma('journal_mode=delete');` +
          `d.exec('BEGIN EXCLUSIVE');d.prepare("insert into items(name) values ('x')").run();` +
          `process.stdout.write('locked\\n');setTimeout(()=>{},60000)`,
      ],
      { cwd: path.resolve(__dirname, '..', '..') },
    );
    cleanups.push(() => holder.kill('SIGKILL'));
    await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
    const r = await runCli(['backup', '--db', w.db, '--dir', w.backups], {
      env: { LITEKEEP_BUSY_TIMEOUT: '1s' },
    });
    holder.kill('SIGKILL');
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(
      /is locked by another process \(waited 1 s\); retry when its writer is done, or raise busyTimeout/,
    );
    expect(filesIn(w.backups).filter((f) => !f.startsWith('.litekeep'))).toEqual([]);
  });

  it.runIf(canMount())('a backup folder that is not writable', async () => {
    const w = workspace();
    const ro = mountTmpfs({ sizeKb: 256, readOnly: true });
    cleanups.push(ro.unmount);
    await expectFailure(
      ['backup', '--db', w.db, '--dir', path.join(ro.dir, 'sub')],
      1,
      /backup folder .* is not writable .*choose another --dir/,
    );
    expect(fs.readdirSync(ro.dir)).toEqual([]);
  });

  it.runIf(canMount())('a full disk: no temp file left, older backups untouched', async () => {
    const w = workspace(5);
    const small = mountTmpfs({ sizeKb: 1200 });
    cleanups.push(small.unmount);
    // A first backup, while the database is small, fits.
    const first = await runCli([
      'backup',
      '--db',
      w.db,
      '--dir',
      small.dir,
      '--json',
      '--compression',
      'none',
    ]);
    expect(first.code).toBe(0);
    // Then the database grows to about 1 MB.
    makeDatabase(w.db, 5000);
    const before = filesIn(small.dir).filter((f) => f.startsWith('backup-'));
    const firstBytes = fs.readFileSync(path.join(small.dir, before[0]));
    // Fill the disk so that the big one cannot fit.
    const filler = path.join(small.dir, 'filler');
    try {
      fs.writeFileSync(filler, Buffer.alloc(700 * 1024));
    } catch {
      // may already be full
    }
    const r = await runCli(['backup', '--db', w.db, '--dir', small.dir, '--compression', 'none']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /disk full while writing the backup into .*free space there or choose another --dir/,
    );
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    const after = filesIn(small.dir).filter((f) => f !== 'filler' && f !== '.litekeep');
    expect(after).toEqual(before);
    expect(fs.readFileSync(path.join(small.dir, before[0]))).toEqual(firstBytes);
  });
});

describe('live writes during the backup', () => {
  for (const journalMode of ['wal', 'delete'] as const) {
    for (const vacuum of [true, false]) {
      it(`gives a committed prefix of the writer's sequence (${journalMode}, ${vacuum ? 'VACUUM INTO' : 'backup API'})`, async () => {
        const dir = tempDir('litekeep-live-');
        const db = path.join(dir, 'live.db');
        const writer = spawn(process.execPath, [fixture('writer.mjs'), db, journalMode], {
          cwd: path.resolve(__dirname, '..', '..'),
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        writer.stdout.on('data', (d: Buffer) => (out += d.toString()));
        // Rows are committed and the writer goes on writing while the backup runs.
        await new Promise<void>((resolve) => writer.stdout.once('data', () => resolve()));
        const args = ['backup', '--db', db, '--dir', path.join(dir, 'b'), '--json', '--compression', 'none'];
        if (!vacuum) args.push('--no-vacuum');
        // A rollback-journal database under a writer that never pauses can keep a reader waiting for a long
        // while on a busy machine: a generous bound on that wait, so that only a torn copy fails this test.
        const r = await runCli(args, { env: { LITEKEEP_BUSY_TIMEOUT: '60s' }, timeoutMs: 100_000 });
        writer.kill('SIGTERM');
        const exit = await new Promise<number>((resolve) => writer.on('close', (c) => resolve(c ?? 1)));
        const final = JSON.parse(out.trim().split('\n').pop()!);
        expect(final.errors).toEqual([]);
        expect(exit).toBe(0);
        expect(r.code).toBe(0);
        const backup = JSON.parse(r.stdout).path;
        const copy = new Database(backup, { readonly: true });
        const { n, max, min } = copy
          .prepare('SELECT COUNT(*) AS n, MAX(n) AS max, MIN(n) AS min FROM seq')
          .get() as {
          n: number;
          max: number;
          min: number;
        };
        copy.close();
        expect(n).toBeGreaterThan(0);
        expect(min).toBe(1);
        expect(max).toBe(n); // no gaps: a prefix
        expect(n % 5).toBe(0); // whole transactions only
        expect(n).toBeLessThanOrEqual(final.committed);
      }, 120_000);
    }
  }
});
