import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { parseBackupName } from '../../src/naming.js';
import { restoreArtifactToFile } from '../../src/pipeline/index.js';
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

export const APP = path.resolve(__dirname, 'fixtures', 'app.mjs');

/** An application process with its database open, driven line by line. */
export interface App {
  child: ChildProcess;
  /** Sends one command and resolves with the app's one-line answer. */
  ask(command: string): Promise<string>;
  quit(): Promise<void>;
}

/**
 * Starts the app fixture with `db` open; `wrap` puts a command in front of node (e.g. `unshare -pf
 * --mount-proc`, so that the app lives in a PID namespace of its own).
 */
export function startApp(db: string, options: { journalMode?: string; wrap?: string[] } = {}): Promise<App> {
  const argv = [...(options.wrap ?? []), process.execPath, APP, db, options.journalMode ?? 'wal'];
  const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
  const waiting: ((line: string) => void)[] = [];
  let buffer = '';
  child.stdout!.on('data', (d: Buffer) => {
    buffer += d.toString();
    for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 1);
      waiting.shift()?.(line);
    }
  });
  const next = () => new Promise<string>((resolve) => waiting.push(resolve));
  const app: App = {
    child,
    ask: (command) => {
      const answer = next();
      child.stdin!.write(`${command}\n`);
      return answer;
    },
    quit: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.on('close', () => resolve());
        child.stdin!.end();
      }),
  };
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    void next().then((line) =>
      line === 'ready' ? resolve(app) : reject(new Error(`app said ${line} instead of ready`)),
    );
  });
}

/**
 * sha256 of a database's pages with the header fields SQLite itself rewrites when it copies pages into another
 * file (journal-mode bytes, change counter, schema cookie, version-valid-for and SQLite version): equal for two
 * files that hold the same pages.
 */
export function pageImageDigest(file: string): string {
  const bytes = fs.readFileSync(file);
  for (const [from, to] of [
    [18, 20],
    [24, 28],
    [40, 44],
    [92, 100],
  ])
    bytes.fill(0, from, to);
  return crypto.createHash('sha256').update(bytes).digest('hex');
}

/** Whether this machine lets the tests make PID namespaces (root with util-linux's unshare). */
export function canUnshare(): boolean {
  if (process.getuid?.() !== 0) return false;
  return spawnSync('unshare', ['-pf', '--mount-proc', 'true']).status === 0;
}

/** pageImageDigest of the database inside a backup file (decoded with litekeep's own reader). */
export async function backupPageDigest(artifact: string, identities?: string[]): Promise<string> {
  const parsed = parseBackupName(path.basename(artifact))!;
  const plain = path.join(path.dirname(artifact), `.digest-${process.pid}-${Date.now()}.db`);
  try {
    await restoreArtifactToFile(artifact, plain, {
      compression: parsed.compression,
      encrypted: parsed.encryption === 'age',
      identities,
    });
    return pageImageDigest(plain);
  } finally {
    fs.rmSync(plain, { force: true });
  }
}
