import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI_SOURCE, cleanEnv, runCli, TSX_LOADER } from '../helpers/cli.js';
import { filesIn, makeDatabase, tempDir } from '../helpers/db.js';
import { makeLargeDatabase } from '../integration/daemon-helpers.js';

const backupsIn = (dir: string) => filesIn(dir).filter((f) => f.startsWith('backup-'));

describe('a backup folder belongs to one database', () => {
  it("refuses a second database in the same folder, and keeps the first one's backups", async () => {
    const dir = tempDir('litekeep-shared-');
    makeDatabase(path.join(dir, 'app.db'), 30);
    makeDatabase(path.join(dir, 'other.db'), 40);
    // The seed's default puts every database of a workspace into <AI_WORKSPACE>/backups/database.
    const env = { AI_WORKSPACE: path.join(dir, 'ws') };
    const first = await runCli(['backup', '--db', 'app.db', '--json'], { cwd: dir, env });
    expect(first.code).toBe(0);
    const folder = path.join(dir, 'ws', 'backups', 'database');
    const before = backupsIn(folder);
    expect(before).toHaveLength(1);
    const second = await runCli(['backup', '--db', 'other.db'], { cwd: dir, env });
    expect(second.code).toBe(2);
    expect(second.stderr.trim().split('\n')).toHaveLength(1);
    expect(second.stderr).toMatch(/already holds backups of .*app\.db; give each database its own folder/);
    expect(backupsIn(folder)).toEqual(before);
    // Nor does prune for the other database touch them.
    const prune = await runCli(['prune', '--db', 'other.db', '--keep-last', '1', '--json'], {
      cwd: dir,
      env,
    });
    expect(prune.code).toBe(0);
    expect(JSON.parse(prune.stdout).unrecognized).toEqual(before);
    expect(backupsIn(folder)).toEqual(before);
  });
});

describe('bad sources leave the backup folder as it was', () => {
  it('does not create the folder for a missing database', async () => {
    const dir = tempDir('litekeep-nofolder-');
    const r = await runCli(['backup', '--db', 'missing.db', '--dir', 'bk'], { cwd: dir });
    expect(r.code).toBe(2);
    expect(fs.existsSync(path.join(dir, 'bk'))).toBe(false);
  });

  it('redacts a password in a wrong DATABASE_URL', async () => {
    const r = await runCli(['backup'], { env: { DATABASE_URL: 'postgres://admin:s3cretPW@db.example/app' } });
    expect(r.code).toBe(2);
    expect(r.stderr).not.toContain('s3cretPW');
    expect(r.stderr).toMatch(/malformed database location 'postgres:\/\/\*\*\*@db\.example\/app'/);
  });
});

describe('the catalog', () => {
  it('is rebuilt from the files when it was deleted', async () => {
    const dir = tempDir('litekeep-lostcatalog-');
    makeDatabase(path.join(dir, 'app.db'), 30);
    const env = { DATABASE_URL: 'sqlite:///app.db', BACKUP_DIR: path.join(dir, 'b') };
    expect((await runCli(['backup'], { cwd: dir, env })).code).toBe(0);
    fs.rmSync(path.join(dir, 'b', '.litekeep'), { recursive: true });
    expect((await runCli(['backup', '--no-prune'], { cwd: dir, env })).code).toBe(0);
    const list = JSON.parse((await runCli(['list', '--json'], { cwd: dir, env })).stdout);
    expect(list.backups).toHaveLength(2);
    expect(list.backups.every((b: { inCatalog: boolean; sha256?: string }) => b.inCatalog && b.sha256)).toBe(
      true,
    );
  });
});

describe('a backup killed half-way', () => {
  it('leaves no backup file; the next run removes its temp files and succeeds', async () => {
    const dir = tempDir('litekeep-killed-');
    const db = path.join(dir, 'big.db');
    makeLargeDatabase(db, 120);
    const out = path.join(dir, 'b');
    const child = spawn(
      process.execPath,
      ['--import', TSX_LOADER, CLI_SOURCE, 'backup', '--db', db, '--dir', out, '--compression', 'gzip'],
      { env: cleanEnv(), stdio: 'ignore' },
    );
    // Kill it once its temp file exists: somewhere in the middle of the snapshot or the compression.
    for (let i = 0; i < 400 && !filesIn(out).some((f) => f.endsWith('.tmp')); i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    child.kill('SIGKILL');
    await new Promise((r) => child.on('close', r));
    expect(backupsIn(out)).toEqual([]);
    // The snapshot child may outlive its parent for a moment: wait until nothing grows any more.
    await new Promise((r) => setTimeout(r, 1500));
    const r = await runCli(['backup', '--db', db, '--dir', out, '--compression', 'none', '--json']);
    expect(r.code).toBe(0);
    expect(filesIn(out).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(backupsIn(out)).toEqual([JSON.parse(r.stdout).file]);
  });
});
