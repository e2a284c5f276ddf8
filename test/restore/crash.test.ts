import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { CLI_SOURCE, cleanEnv, TSX_LOADER } from '../helpers/cli.js';
import { filesIn, tempDir } from '../helpers/db.js';
import { backup, contents, leaveStaleWal, type Workspace } from './helpers.js';

const ROWS = 3000;

function addRows(file: string, rows: number, seed: number): void {
  const db = new Database(file);
  db.pragma('journal_mode = wal');
  db.exec('CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, payload BLOB)');
  const insert = db.prepare('INSERT INTO items (name, payload) VALUES (?, ?)');
  db.transaction(() => {
    // Incompressible payloads keep the artifact as large as the database: a restore that takes a while.
    for (let i = 0; i < rows; i++) insert.run(`row ${seed}-${i}`, crypto.randomBytes(2048));
  })();
  db.close();
}

/** Runs `litekeep restore` and SIGKILLs it when its output shows `marker`, or after `delayMs`. */
function restoreKilled(w: Workspace, kill: { marker?: string; delayMs?: number }): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', TSX_LOADER, CLI_SOURCE, 'restore', 'latest', ...w.args],
      { cwd: w.dir, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    const stop = () => child.kill('SIGKILL');
    const timer = kill.delayMs !== undefined ? setTimeout(stop, kill.delayMs) : undefined;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (kill.marker && out.includes(kill.marker)) stop();
    });
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

describe('a restore killed at any point', () => {
  it('leaves the target either the old or the new database, never a mix', async () => {
    const dir = tempDir('litekeep-crash-');
    const db = path.join(dir, 'app.db');
    const backups = path.join(dir, 'backups');
    const w: Workspace = { dir, db, backups, args: ['--db', db, '--dir', backups] };
    addRows(db, ROWS, 1);
    await backup(w);
    const fresh = contents(db);
    // The old database: more rows in the main file, and more again only in its -wal (plus an open
    // transaction's frames); the main file alone would be a third state, the mix we must never see.
    addRows(db, 200, 2);
    await leaveStaleWal(db, 150);
    const oldFiles = { db: fs.readFileSync(db), wal: fs.readFileSync(`${db}-wal`) };
    const setOld = () => {
      fs.writeFileSync(db, oldFiles.db);
      fs.writeFileSync(`${db}-wal`, oldFiles.wal);
      fs.rmSync(`${db}-shm`, { force: true });
      fs.rmSync(`${db}-journal`, { force: true });
    };
    setOld();
    const old = contents(db, { asApplication: true });
    expect(old.rows).toBe(ROWS + 350);
    expect(fresh.rows).toBe(ROWS);

    // One full run first, to spread the kills over its length (whatever this machine's speed).
    setOld();
    const started = Date.now();
    expect(await restoreKilled(w, {})).toContain('restored backup-');
    const full = Date.now() - started;
    const plans: { marker?: string; delayMs?: number }[] = [
      { marker: '- selected' },
      { marker: '- fetched into' },
      { marker: '- kept the current database' },
      ...[0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 1].map((f) => ({ delayMs: Math.round(full * f) })),
    ];
    const seen: string[] = [];
    for (const plan of plans) {
      setOld();
      const out = await restoreKilled(w, plan);
      const now = contents(db, { asApplication: true });
      expect(now.integrity, `${JSON.stringify(plan)} after:\n${out}`).toBe('ok');
      const state = now.digest === old.digest ? 'old' : now.digest === fresh.digest ? 'new' : 'mixed';
      expect(state, `${JSON.stringify(plan)}: ${now.rows} rows after:\n${out}`).not.toBe('mixed');
      seen.push(state);
    }
    // A restore that runs to the end afterwards cleans up the temp files the killed ones left.
    setOld();
    const done = await restoreKilled(w, {});
    expect(done).toContain('restored backup-');
    expect(contents(db, { asApplication: true }).digest).toBe(fresh.digest);
    expect(filesIn(dir).filter((f) => f.includes('.restore-'))).toEqual([]);
    expect(seen).toHaveLength(plans.length);
  });
});
