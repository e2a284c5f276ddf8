import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { CLI_SOURCE, cleanEnv, TSX_LOADER, type CliResult } from '../helpers/cli.js';
import { filesIn } from '../helpers/db.js';
import {
  backup,
  canUnshare,
  contents,
  pageImageDigest,
  restore,
  snapshotFiles,
  startApp,
  workspace,
  type Workspace,
} from './helpers.js';

const UNSHARE = ['unshare', '-pf', '--mount-proc'];

/** `litekeep ARGS` inside a PID namespace of its own: it sees no other process in /proc. */
function restoreInOwnNamespace(w: Workspace, args: string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      UNSHARE[0],
      [
        ...UNSHARE.slice(1),
        process.execPath,
        '--import',
        TSX_LOADER,
        CLI_SOURCE,
        'restore',
        ...args,
        ...w.args,
      ],
      { cwd: w.dir, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

function addRows(file: string, names: string[]): void {
  const db = new Database(file);
  const insert = db.prepare('INSERT INTO items (name, payload) VALUES (?, ?)');
  for (const name of names) insert.run(name, Buffer.alloc(8));
  db.close();
}

function names(file: string): string[] {
  const db = new Database(file, { readonly: true, fileMustExist: true, timeout: 10_000 });
  try {
    return (db.prepare('SELECT name FROM items ORDER BY id').all() as { name: string }[]).map((r) => r.name);
  } finally {
    db.close();
  }
}

/** The journal mode a database file is in, read from its header without opening it (which would add files). */
function journalMode(file: string): string {
  const header = Buffer.alloc(20);
  const fd = fs.openSync(file, 'r');
  fs.readSync(fd, header, 0, 20, 0);
  fs.closeSync(fd);
  return header[18] === 2 && header[19] === 2 ? 'wal' : 'delete';
}

describe('restore over a live database goes through SQLite', () => {
  it.skipIf(!canUnshare())(
    'an app in another PID namespace, invisible in /proc: refused, then --force restores and the app keeps writing into the real database',
    async () => {
      const w = workspace(50);
      const b = await backup(w, ['--compression', 'zstd']);
      const restoredNames = names(w.db);
      addRows(w.db, ['written after the backup']);
      // The app runs in a PID namespace of its own (a sidecar container); litekeep in another one.
      const app = await startApp(w.db, { wrap: UNSHARE });
      try {
        expect(await app.ask('insert before the restore')).toBe('inserted');
        const before = snapshotFiles(w.db);

        const refused = await restoreInOwnNamespace(w, ['latest']);
        expect(refused.code).toBe(1);
        expect(refused.stderr.trim().split('\n')).toHaveLength(1);
        expect(refused.stderr).toMatch(
          /is in use by another connection \(SQLite reports it open or locked; the process is not visible from here\); stop it first, or pass --force/,
        );
        expect(snapshotFiles(w.db)).toEqual(before);

        const forced = await restoreInOwnNamespace(w, ['latest', '--force']);
        expect(forced.stderr).toBe('');
        expect(forced.code).toBe(0);
        expect(forced.stdout).toContain('copied it into');
        expect(forced.stdout).toMatch(/restart it now/);
        const safety = filesIn(w.dir).find((f) => f.includes('.before-restore-'))!;
        // The safety copy holds what the app had, the row it wrote a moment ago included.
        expect(names(path.join(w.dir, safety))).toEqual([
          ...restoredNames,
          'written after the backup',
          'before the restore',
        ]);

        // The app's connection, opened before the restore, now reads the restored rows and writes after them.
        expect(JSON.parse(await app.ask('names'))).toEqual(restoredNames);
        expect(await app.ask('insert after the restore')).toBe('inserted');
      } finally {
        await app.quit();
      }
      expect(contents(w.db, { asApplication: true }).integrity).toBe('ok');
      expect(names(w.db)).toEqual([...restoredNames, 'after the restore']);
      expect(journalMode(w.db)).toBe('wal');
      expect(b.file).toMatch(/\.db\.zst$/);
    },
  );

  it('an app in this namespace keeps its connection through a forced restore; its later rows land in the database', async () => {
    const w = workspace(40);
    await backup(w, ['--compression', 'none']);
    const restoredNames = names(w.db);
    const app = await startApp(w.db);
    try {
      expect(await app.ask('insert lost with the restore')).toBe('inserted');
      const refused = await restore(w, ['latest']);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(new RegExp(`is in use by pid ${app.child.pid} \\(node`));

      const forced = await restore(w, ['latest', '--force']);
      expect(forced.code).toBe(0);
      expect(forced.stdout).toMatch(
        new RegExp(`- --force: restoring through SQLite although pid ${app.child.pid} \\(node`),
      );
      expect(JSON.parse(await app.ask('names'))).toEqual(restoredNames);
      expect(await app.ask('insert kept after the restore')).toBe('inserted');
    } finally {
      await app.quit();
    }
    expect(contents(w.db, { asApplication: true }).integrity).toBe('ok');
    expect(names(w.db)).toEqual([...restoredNames, 'kept after the restore']);
  });

  it('a rollback-journal database with an idle app connection: refused (seen in /proc), --force restores and the app sees it', async () => {
    const w = workspace(30);
    // Rebuild the database in rollback (delete) mode, then back it up.
    const db = new Database(w.db);
    db.pragma('journal_mode = DELETE');
    db.close();
    const b = await backup(w, ['--compression', 'gzip']);
    const restoredNames = names(w.db);
    addRows(w.db, ['gone with the restore']);
    const app = await startApp(w.db, { journalMode: 'delete' });
    try {
      // Idle between transactions it holds no lock, so SQLite alone would not see it: /proc does.
      const refused = await restore(w, ['latest']);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(new RegExp(`is in use by pid ${app.child.pid} \\(node`));
      const r = await restore(w, ['latest', '--force']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/restart it now/);
      // Its next transaction reads the new content (the change counter moved).
      expect(JSON.parse(await app.ask('names'))).toEqual(restoredNames);
      expect(await app.ask('insert after')).toBe('inserted');
    } finally {
      await app.quit();
    }
    expect(journalMode(w.db)).toBe('delete');
    expect(names(w.db)).toEqual([...restoredNames, 'after']);
    expect(b.file).toMatch(/\.gz$/);
  });

  it('a file that is not a database is moved aside whole, and the restored file takes its owner and mode', async () => {
    const w = workspace(12);
    await backup(w, ['--compression', 'none']);
    fs.writeFileSync(w.db, Buffer.alloc(8192, 0x5a));
    fs.chmodSync(w.db, 0o664);
    const root = process.getuid?.() === 0;
    if (root) fs.chownSync(w.db, 65534, 65534);
    const r = await restore(w, ['latest']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/is not a usable SQLite database .*moved it aside as/);
    const stat = fs.statSync(w.db);
    expect(stat.mode & 0o777).toBe(0o664);
    if (root) expect([stat.uid, stat.gid]).toEqual([65534, 65534]);
    expect(contents(w.db)).toMatchObject({ integrity: 'ok', rows: 12 });
    const aside = filesIn(w.dir).find((f) => f.includes('.before-restore-'))!;
    expect(fs.readFileSync(path.join(w.dir, aside)).equals(Buffer.alloc(8192, 0x5a))).toBe(true);
  });

  it('keeps the journal mode: a WAL database restored into a new file comes back in WAL mode', async () => {
    const w = workspace(25);
    const b = await backup(w, ['--compression', 'zstd']);
    const to = path.join(w.dir, 'elsewhere', 'copy.db');
    const r = await restore(w, ['latest', '--to', to]);
    expect(r.code).toBe(0);
    expect(journalMode(to)).toBe('wal');
    expect(fs.existsSync(`${to}-wal`)).toBe(false);
    expect(contents(to)).toMatchObject({ integrity: 'ok', rows: 25 });
    // The bytes are the backup's pages (only the header's journal-mode bytes differ from the backup file).
    const plain = path.join(w.dir, 'plain.db');
    const unpacked = await restore(w, [b.file, '--to', plain]);
    expect(unpacked.code).toBe(0);
    expect(pageImageDigest(to)).toBe(pageImageDigest(plain));
    // Private, like every file litekeep makes.
    expect(fs.statSync(to).mode & 0o777).toBe(0o600);
  });
});

describe('restore while an application keeps writing', () => {
  it.each(['delete', 'wal'])(
    '%s mode: no committed row is lost — each is in the safety copy or in the restored database — and it stays whole',
    async (mode) => {
      const w = workspace(500);
      const db = new Database(w.db);
      db.pragma(`journal_mode = ${mode}`);
      db.close();
      await backup(w, ['--compression', 'zstd']);
      const restoredNames = names(w.db);
      const writer = spawn(
        process.execPath,
        [path.join(__dirname, 'fixtures', 'busy-writer.mjs'), w.db, mode],
        {
          stdio: ['pipe', 'pipe', 'inherit'],
        },
      );
      let out = '';
      writer.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const committed = () => Number(/committed (\d+)\n(?![\s\S]*committed)/.exec(out)?.[1] ?? 0);
      const until = (n: number) =>
        new Promise<void>((resolve) => {
          const check = () => (committed() >= n ? resolve() : setTimeout(check, 5));
          check();
        });
      await until(1);
      const r = await restore(w, ['latest', '--force']);
      // Let it write on the restored database for a moment (its own count says when), then stop it.
      await until(committed() + 50);
      writer.stdin!.end();
      await new Promise((resolve) => writer.on('close', resolve));
      const report = JSON.parse(out.trim().split('\n').pop()!) as { committed: number };
      // The app wrote right after the copy: litekeep may say so, and nothing else.
      expect(r.stderr).toMatch(
        /^((litekeep: )?warning: (the database changed right after the restore|could not re-read \S+ after the restore: database is locked)[^\n]*\n)?$/,
      );
      expect(r.code).toBe(0);
      expect(contents(w.db, { asApplication: true }).integrity).toBe('ok');
      const safety = path.join(
        w.dir,
        filesIn(w.dir).find((f) => f.includes('.before-restore-'))!,
      );
      expect(contents(safety, { asApplication: true }).integrity).toBe('ok');
      const before = names(safety).filter((n) => n.startsWith('w'));
      const after = names(w.db).filter((n) => n.startsWith('w'));
      // The restored database: the backup's rows, then what the app wrote after the restore.
      expect(names(w.db).slice(0, restoredNames.length)).toEqual(restoredNames);
      const all = Array.from({ length: report.committed }, (_, i) => `w${i}`);
      expect([...before, ...after]).toEqual(all);
      expect(after.length).toBeGreaterThan(0);
    },
  );
});
