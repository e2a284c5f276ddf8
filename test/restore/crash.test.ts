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

/** When to kill: on a line of the restore's output, or once its temp file beside the target holds this many bytes. */
interface KillPlan {
  marker?: string;
  tempBytes?: number;
}

/**
 * Runs `litekeep restore` and SIGKILLs it at the event the plan names (never after a fixed delay, so that a
 * slow or busy machine kills at the same points as a fast one). Resolves with its output once it has exited.
 */
function restoreKilled(w: Workspace, kill: KillPlan): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', TSX_LOADER, CLI_SOURCE, 'restore', 'latest', ...w.args],
      { cwd: w.dir, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    const stop = () => child.kill('SIGKILL');
    // The temp file grows as the backup is fetched and decoded into it: watch it until it is big enough.
    const watcher =
      kill.tempBytes !== undefined
        ? setInterval(() => {
            for (const name of fs.readdirSync(w.dir)) {
              if (!name.includes('.restore-') || !name.endsWith('.tmp')) continue;
              try {
                if (fs.statSync(path.join(w.dir, name)).size >= kill.tempBytes!) stop();
              } catch {
                // renamed or removed between the listing and the stat
              }
            }
          }, 5)
        : undefined;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (kill.marker && out.includes(kill.marker)) stop();
    });
    child.on('error', reject);
    child.on('close', () => {
      clearInterval(watcher);
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
    const made = await backup(w);
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

    // Kills at each step, and while the backup is being fetched into the temp file (a quarter, half, three
    // quarters and all of the database's bytes written).
    const dbBytes = made.plainBytes;
    expect(dbBytes).toBeGreaterThan(ROWS * 2048);
    const plans: KillPlan[] = [
      { marker: '- selected' },
      ...[0.25, 0.5, 0.75, 1].map((f) => ({ tempBytes: Math.round(dbBytes * f) })),
      { marker: '- fetched into' },
      { marker: '- kept the current database' },
      { marker: '- moved it into place' },
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
    // Killed before the safety copy, the old database stays; after the move, the new one is there.
    expect(seen[0]).toBe('old');
    expect(seen[seen.length - 1]).toBe('new');
    // Each restore is a process of its own, started a dozen times: a bound for a slow machine, not a speed test.
  }, 300_000);
});
