import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { CLI_SOURCE, cleanEnv, TSX_LOADER } from '../helpers/cli.js';
import { compareBackupNamesNewestFirst, parseBackupName } from '../../src/naming.js';
import { tempDir } from '../helpers/db.js';

export type LogRecord = Record<string, unknown> & { msg?: string; level?: number };

export interface DaemonChild {
  process: ChildProcess;
  /** Every JSON log line seen on stdout so far. */
  records: LogRecord[];
  stdout: () => string;
  stderr: () => string;
  /** The first log record (already seen or future) that satisfies `test`. */
  waitFor(test: (record: LogRecord) => boolean, timeoutMs?: number): Promise<LogRecord>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL when still running (test cleanup). */
  kill(): void;
}

const running = new Set<DaemonChild>();
const madeDirs: string[] = [];

/** Kills every daemon this file spawned and not yet stopped; for afterEach. */
export function killDaemons(): void {
  for (const daemon of running) daemon.kill();
  running.clear();
}

/** A temp folder removed by `removeDaemonDirs` (afterAll). */
export function daemonTempDir(prefix: string): string {
  const dir = tempDir(prefix);
  madeDirs.push(dir);
  return dir;
}

export function removeDaemonDirs(): void {
  for (const dir of madeDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

/** `litekeep daemon ...` from source in its own process, stdout a pipe (so the logs are JSON lines). */
export function spawnDaemon(args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }): DaemonChild {
  const child = spawn(process.execPath, ['--import', TSX_LOADER, CLI_SOURCE, 'daemon', ...args], {
    cwd: options.cwd,
    env: { ...cleanEnv(), ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const records: LogRecord[] = [];
  let stdout = '';
  let stderr = '';
  let buffer = '';
  const waiters = new Set<() => void>();
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    buffer += chunk;
    const parts = buffer.split('\n');
    buffer = parts.pop() ?? '';
    for (const line of parts) {
      try {
        records.push(JSON.parse(line) as LogRecord);
      } catch {
        // Not a log record: kept in stdout() for the failure message.
      }
    }
    for (const wake of waiters) wake();
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      for (const wake of waiters) wake();
      resolve({ code, signal });
    }),
  );
  const describe = () => `stdout:\n${stdout}\nstderr:\n${stderr}`;
  const daemon: DaemonChild = {
    process: child,
    records,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
    waitFor(test, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = records.find(test);
          if (found) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve(found);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            clearTimeout(timer);
            waiters.delete(check);
            reject(new Error(`daemon exited before the expected log line\n${describe()}`));
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting for a log line\n${describe()}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
  };
  running.add(daemon);
  return daemon;
}

export const msg = (text: string) => (record: LogRecord) => String(record.msg ?? '').includes(text);

/** The URL of the daemon's health server, from its log line (asked for port 0). */
export async function healthUrl(daemon: DaemonChild): Promise<string> {
  const record = await daemon.waitFor((r) => typeof r.url === 'string');
  return String(record.url);
}

export async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** Backup files in a folder (litekeep's names, not temp files nor the catalog folder). */
/** The backup files in `dir`, oldest first as litekeep orders them (`…-2` taken in the same second comes after). */
export function backupFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((n) => parseBackupName(n) !== undefined)
    .sort((a, b) => compareBackupNamesNewestFirst(parseBackupName(b)!, parseBackupName(a)!));
}

export function tempFiles(dir: string): string[] {
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => n.startsWith('.') && n.endsWith('.tmp')) : [];
}

/**
 * A database of about `megabytes` MB of random (incompressible) blobs, built in a few big transactions: large
 * enough that a snapshot, its integrity check and hashing take seconds, so a signal lands mid-backup.
 */
export function makeLargeDatabase(file: string, megabytes: number): void {
  const db = new Database(file);
  db.pragma('journal_mode = wal');
  db.exec('CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL)');
  const insert = db.prepare(
    'WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?) ' +
      'INSERT INTO blobs (data) SELECT randomblob(1048576) FROM n',
  );
  for (let done = 0; done < megabytes; done += 25) insert.run(Math.min(25, megabytes - done));
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}

export function integrityOf(file: string): string {
  const db = new Database(file, { readonly: true });
  try {
    return String(db.pragma('integrity_check', { simple: true }));
  } finally {
    db.close();
  }
}

export const workspaceFiles = (dir: string) => ({
  db: path.join(dir, 'app.db'),
  backups: path.join(dir, 'backups'),
});
