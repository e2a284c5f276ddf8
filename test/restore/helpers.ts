import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { runCli, type CliResult } from '../helpers/cli.js';
import { makeDatabase, tempDir } from '../helpers/db.js';

export const WAL_WRITER = path.resolve(__dirname, 'fixtures', 'wal-writer.mjs');

export interface Workspace {
  dir: string;
  db: string;
  backups: string;
  /** `--db DB --dir BACKUPS` */
  args: string[];
}

export function workspace(rows = 300, prefix = 'litekeep-restore-'): Workspace {
  const dir = tempDir(prefix);
  const db = path.join(dir, 'app.db');
  makeDatabase(db, rows);
  const backups = path.join(dir, 'backups');
  return { dir, db, backups, args: ['--db', db, '--dir', backups] };
}

export async function backup(w: Workspace, extra: string[] = [], env: NodeJS.ProcessEnv = {}) {
  const r = await runCli(['backup', ...w.args, '--json', ...extra], { cwd: w.dir, env });
  if (r.code !== 0) throw new Error(`backup failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as {
    file: string;
    path: string;
    sha256: string;
    plainSha256: string;
    plainBytes: number;
  };
}

export function restore(w: Workspace, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return runCli(['restore', ...args, ...w.args], { cwd: w.dir, env });
}

export function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** The bytes of a database and its side files, to prove that nothing changed. */
export function snapshotFiles(db: string): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const suffix of ['', '-wal', '-journal']) {
    out[suffix || 'db'] = fs.existsSync(db + suffix) ? sha256(db + suffix) : null;
  }
  return out;
}

/** What an application would see when it opens the database: integrity and the rows of `items`. */
export function contents(
  file: string,
  options: { asApplication?: boolean } = {},
): { integrity: string; rows: number; digest: string } {
  // An application opens read-write: that is what replays (or tears over) whatever -wal lies beside the file.
  const db = new Database(file, { readonly: !options.asApplication, fileMustExist: true });
  try {
    const integrity = db.pragma('integrity_check', { simple: true }) as string;
    const all = db.prepare('SELECT id, name, hex(payload) AS p FROM items ORDER BY id').all();
    return {
      integrity,
      rows: all.length,
      digest: crypto.createHash('sha256').update(JSON.stringify(all)).digest('hex'),
    };
  } finally {
    db.close();
  }
}

/** Runs the WAL writer fixture in "crash" mode: committed and uncommitted frames left in the -wal file. */
export function leaveStaleWal(db: string, rows: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WAL_WRITER, db, String(rows), 'crash'], { stdio: 'ignore' });
    child.on('error', reject);
    child.on('close', (_code, signal) =>
      signal === 'SIGKILL' ? resolve() : reject(new Error('writer was not killed')),
    );
  });
}

/** Runs the WAL writer fixture in "hold" mode; resolves once it has the database open. */
export function holdOpen(db: string, rows: number): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WAL_WRITER, db, String(rows), 'hold'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    child.on('error', reject);
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) resolve(child);
    });
  });
}

export function release(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.on('close', () => resolve());
    child.stdin!.end();
  });
}

export { makeDatabase, tempDir };
