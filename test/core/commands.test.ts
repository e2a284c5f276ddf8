import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/index.js';
import { runCli } from '../helpers/cli.js';
import { makeDatabase, tempDir } from '../helpers/db.js';

function workspace() {
  const dir = tempDir('litekeep-cmd-');
  const db = path.join(dir, 'app.db');
  makeDatabase(db, 100);
  const env = { DATABASE_URL: 'sqlite:///app.db', BACKUP_DIR: path.join(dir, 'backups') };
  return { dir, db, env, backups: env.BACKUP_DIR };
}

describe('list, status, history', () => {
  it('list shows backups newest first, including files the catalog does not know', async () => {
    const w = workspace();
    expect((await runCli(['backup', '--json'], { cwd: w.dir, env: w.env })).code).toBe(0);
    // Without --no-prune the daily rule would keep only the newest of today's two.
    expect((await runCli(['backup', '--json', '--no-prune'], { cwd: w.dir, env: w.env })).code).toBe(0);
    // A backup copied in by hand: on disk, unknown to the catalog.
    const [first] = fs.readdirSync(w.backups).filter((f) => f.startsWith('backup-'));
    fs.copyFileSync(path.join(w.backups, first), path.join(w.backups, 'backup-2020-01-01-000000.db.zst'));
    fs.writeFileSync(path.join(w.backups, 'backup-garbage.db'), 'x');
    const r = await runCli(['list', '--json'], { cwd: w.dir, env: w.env });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.backups).toHaveLength(3);
    const times = out.backups.map((b: { time: string }) => b.time);
    expect([...times].sort().reverse()).toEqual(times);
    expect(out.backups[2]).toMatchObject({ name: 'backup-2020-01-01-000000.db.zst', inCatalog: false });
    expect(out.backups[0].inCatalog).toBe(true);
    expect(out.unrecognized).toEqual(['backup-garbage.db']);
    const human = await runCli(['list'], { cwd: w.dir, env: w.env });
    expect(human.stdout).toMatch(/not in catalog/);
    expect(human.stderr).toMatch(/unrecognised file left alone: backup-garbage\.db/);
  });

  it('status reports counts and sizes, and --max-age fails when the newest backup is too old', async () => {
    const w = workspace();
    const none = await runCli(['status', '--max-age', '26h', '--json'], { cwd: w.dir, env: w.env });
    expect(none.code).toBe(1);
    expect(JSON.parse(none.stdout)).toMatchObject({ count: 0, stale: true, staleReason: 'no backup found' });
    expect((await runCli(['backup'], { cwd: w.dir, env: w.env })).code).toBe(0);
    const fresh = await runCli(['status', '--max-age', '26h', '--json'], { cwd: w.dir, env: w.env });
    expect(fresh.code).toBe(0);
    const s = JSON.parse(fresh.stdout);
    expect(s).toMatchObject({ count: 1, stale: false });
    expect(s.totalBytes).toBe(fs.statSync(path.join(w.backups, s.newest.name)).size);
    expect(s.lastSuccess.file).toBe(s.newest.name);
    await new Promise((r) => setTimeout(r, 1100));
    const stale = await runCli(['status', '--max-age', '1s'], { cwd: w.dir, env: w.env });
    expect(stale.code).toBe(1);
    expect(stale.stdout).toMatch(/STALE: newest backup is .* old, more than 1\.0 s/);
    const bad = await runCli(['status', '--max-age', 'soon'], { cwd: w.dir, env: w.env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--max-age 'soon' is not a duration/);
  });

  it('history records failed and successful runs with their error', async () => {
    const w = workspace();
    expect((await runCli(['backup'], { cwd: w.dir, env: w.env })).code).toBe(0);
    fs.writeFileSync(w.db, 'now it is not a database');
    const failed = await runCli(['backup'], { cwd: w.dir, env: w.env });
    expect(failed.code).toBe(2);
    const r = await runCli(['history', '--runs', '--json'], { cwd: w.dir, env: w.env });
    const runs = JSON.parse(r.stdout).events;
    expect(runs.map((e: { status: string }) => e.status)).toEqual(['failed', 'ok']);
    expect(runs[0].error).toMatch(/is not a SQLite database/);
    expect(runs[0].stage).toBe('snapshot');
    const human = await runCli(['history'], { cwd: w.dir, env: w.env });
    expect(human.stdout).toMatch(/run #2 schedule: failed .* is not a SQLite database/);
  });
});

describe('the catalog', () => {
  it('is rebuilt from the files on disk when it is unreadable, and backups keep working', async () => {
    const w = workspace();
    expect((await runCli(['backup'], { cwd: w.dir, env: w.env })).code).toBe(0);
    const catalogFile = path.join(w.backups, '.litekeep', 'catalog.db');
    for (const suffix of ['-wal', '-shm']) fs.rmSync(catalogFile + suffix, { force: true });
    fs.writeFileSync(catalogFile, 'garbage, not a database at all'.repeat(200));
    const r = await runCli(['backup', '--json'], { cwd: w.dir, env: w.env });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.warnings.join(' ')).toMatch(/catalog was unreadable and was rebuilt/);
    const aside = fs.readdirSync(path.join(w.backups, '.litekeep')).filter((f) => f.includes('.unreadable-'));
    expect(aside).toHaveLength(1);
    const catalog = Catalog.open(w.backups);
    const files = catalog.listBackups().map((b) => b.file);
    catalog.close();
    const onDisk = fs.readdirSync(w.backups).filter((f) => f.startsWith('backup-'));
    expect(files.sort()).toEqual(onDisk.sort());
  });

  it('has versioned migrations', () => {
    const dir = tempDir();
    const catalog = Catalog.open(dir);
    expect(catalog.schemaVersion).toBeGreaterThanOrEqual(1);
    catalog.close();
    expect(fs.statSync(path.join(dir, '.litekeep', 'catalog.db')).mode & 0o777).toBe(0o600);
  });
});

describe('config', () => {
  it('prints each value with its source and redacts secrets', async () => {
    const w = workspace();
    fs.writeFileSync(
      path.join(w.dir, 'litekeep.yml'),
      'retention:\n  daily: 3\nnotify:\n  ntfy:\n    topic: t\n    token: tk_verysecret\n',
    );
    const r = await runCli(['config'], { cwd: w.dir, env: { ...w.env, LITEKEEP_PASSPHRASE: 'p4ss' } });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/retention\.daily\s+3\s+config file .*litekeep\.yml/);
    expect(r.stdout).toMatch(/backupDir\s+.*backups\s+environment \(BACKUP_DIR\)/);
    expect(r.stdout).toMatch(/notify\.ntfy\.token\s+\*\*\*/);
    expect(r.stdout).not.toContain('tk_verysecret');
    expect(r.stdout).not.toContain('p4ss');
    const bad = await runCli(['config'], { cwd: w.dir, env: { ...w.env, LITEKEEP_RETENTION_DAILY: '-2' } });
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toMatch(
      /^litekeep: invalid retention\.daily '-2' from environment \(LITEKEEP_RETENTION_DAILY\)/,
    );
  });
});

describe('demo', () => {
  it('creates a demo database when none is configured and backs it up', async () => {
    const dir = tempDir('litekeep-demo-');
    const r = await runCli(['demo'], { cwd: dir });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/created a demo database at .*demo\/app\.db/);
    expect(r.stdout).toMatch(/restore with: litekeep restore backup-/);
    const backups = fs.readdirSync(path.join(dir, 'demo', 'backups')).filter((f) => f.startsWith('backup-'));
    expect(backups).toHaveLength(1);
  });
});

describe('destinations in the config file', () => {
  it('are checked at start (exit 2), and a local destination path is relative to the config file', async () => {
    const w = workspace();
    fs.mkdirSync(path.join(w.dir, 'etc'));
    const cfg = path.join(w.dir, 'etc', 'litekeep.yml');
    fs.writeFileSync(cfg, 'destinations:\n  - { name: usb, type: local, path: usb, colour: blue }\n');
    const bad = await runCli(['backup', '--config', cfg], { cwd: w.dir, env: w.env });
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toMatch(
      /^litekeep: unknown key 'destinations\[0\]\.colour' for a local destination/,
    );
    expect(fs.existsSync(w.backups)).toBe(false);
    fs.writeFileSync(cfg, 'destinations:\n  - { name: usb, type: local, path: usb }\n');
    const r = await runCli(['backup', '--config', cfg, '--json'], { cwd: w.dir, env: w.env });
    expect(r.code).toBe(0);
    const file = JSON.parse(r.stdout).file;
    expect(fs.existsSync(path.join(w.dir, 'etc', 'usb', 'app', os.hostname(), file))).toBe(true);
  });
});
