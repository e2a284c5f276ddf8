import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { EXIT, LitekeepError } from '../util/errors.js';
import { formatDuration } from '../util/duration.js';
import { isProcessAlive } from '../util/process.js';

export { isProcessAlive };

/** Who holds a lock, as its holder described itself. */
export interface LockHolder {
  pid: number;
  host: string;
  /** ISO-8601, UTC; `unknown` when the holder has not described itself. */
  startedAt: string;
  purpose: string;
}

export interface LockOptions {
  /** How long to wait for the holder to let go before failing (default 0: fail at once). */
  waitMs?: number;
  /** How often to look again while waiting (default 250 ms). */
  pollMs?: number;
  /** Shown to whoever finds the lock taken, e.g. "scheduled backup" or "manual backup". */
  purpose?: string;
  /** Stops waiting early; the promise then rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface Lock {
  /** The holder description file; the kernel lock is on `<path>.db`. */
  readonly path: string;
  readonly holder: LockHolder;
  /** Lets go of the lock and removes our description. Safe to call twice. */
  release(): Promise<void>;
  releaseSync(): void;
}

/** Another run holds the lock (exit code 1). */
export class LockHeldError extends LitekeepError {
  override name = 'LockHeldError';
  /** How long the holder has held it, when it said when it started. */
  readonly heldForMs?: number;
  constructor(
    readonly lockPath: string,
    readonly holder: LockHolder,
    waitedMs: number,
  ) {
    super(
      `another run holds ${lockPath}: pid ${holder.pid} on host ${holder.host}, started ${holder.startedAt}, ` +
        `purpose "${holder.purpose}"; waited ${formatDuration(waitedMs)} — let it finish, or raise lockWait to wait longer`,
      { exitCode: EXIT.failed, stage: 'lock' },
    );
    const started = Date.parse(holder.startedAt);
    if (Number.isFinite(started)) this.heldForMs = Math.max(0, Date.now() - started);
  }
}

/** Locks this process holds, let go on exit (the kernel would, but our descriptions should go too). */
const heldHere = new Set<Lock>();
let exitHookInstalled = false;

function lockIoError(lockPath: string, action: string, error: unknown): LitekeepError {
  const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
  return new LitekeepError(
    `cannot ${action} lock ${lockPath}: ${code}; check that its folder exists and is writable by this user ` +
      `(on a network share, that it supports file locks)`,
    { exitCode: EXIT.failed, stage: 'lock', cause: error },
  );
}

const isBusy = (error: unknown) => /^SQLITE_(BUSY|LOCKED)/.test((error as { code?: string }).code ?? '');

/**
 * One exclusive transaction on the lock database: SQLite takes a write lock (fcntl) on the file and keeps it
 * while the transaction is open. The kernel drops it when the process ends, however it ends. Returns the open
 * connection, or undefined when another connection (in this process or any other) holds it.
 */
function tryExclusive(dbPath: string): Database.Database | undefined {
  let db: Database.Database | undefined;
  try {
    // timeout 0: never block the event loop in SQLite's busy handler; waiting is done by polling here.
    db = new Database(dbPath, { timeout: 0 });
    // No fd of our own on this file, ever: closing one would drop every fcntl lock this process has on it.
    fs.chmodSync(dbPath, 0o600);
    db.exec('BEGIN EXCLUSIVE');
    return db;
  } catch (error) {
    db?.close();
    if (isBusy(error)) return undefined;
    throw lockIoError(dbPath, 'take the', error);
  }
}

function parseHolder(raw: string): LockHolder | undefined {
  try {
    const value = JSON.parse(raw) as Partial<LockHolder>;
    if (typeof value.pid !== 'number' || typeof value.host !== 'string') return undefined;
    return {
      pid: value.pid,
      host: value.host,
      startedAt: String(value.startedAt ?? 'unknown'),
      purpose: String(value.purpose ?? 'unknown'),
    };
  } catch {
    return undefined;
  }
}

function describedHolder(lockPath: string): LockHolder | undefined {
  try {
    return parseHolder(fs.readFileSync(lockPath, 'utf8'));
  } catch {
    return undefined;
  }
}

function holderUnknown(): LockHolder {
  return {
    pid: 0,
    host: 'unknown',
    startedAt: 'unknown',
    purpose: 'unknown (the holder has not described itself yet)',
  };
}

/**
 * The holder of a busy lock as described in its file. Just after a takeover the file may still describe the
 * previous holder, who is gone: then look again for a moment before saying "unknown".
 */
async function currentHolder(lockPath: string): Promise<LockHolder> {
  for (let tries = 0; ; tries++) {
    const holder = describedHolder(lockPath);
    const plausible =
      holder && (holder.host !== os.hostname() || holder.pid === process.pid || isProcessAlive(holder.pid));
    if (plausible) {
      // A holder describes itself within milliseconds of taking the lock: a description that still reads the
      // same a moment later is the holder's own (and not a dead holder's whose pid was reused meanwhile).
      await sleep(50);
      const again = describedHolder(lockPath);
      if (again && again.pid === holder.pid && again.startedAt === holder.startedAt) return holder;
      if (tries >= 20) return again ?? holderUnknown();
      continue;
    }
    if (tries >= 20) return holderUnknown();
    await sleep(25);
  }
}

/** Who holds the lock at `lockPath`, or undefined when nobody does (it asks the kernel, not the file). */
export async function readLockHolder(lockPath: string): Promise<LockHolder | undefined> {
  const target = path.resolve(lockPath);
  if (!fs.existsSync(`${target}.db`)) return undefined;
  const probe = tryExclusive(`${target}.db`);
  if (probe) {
    probe.exec('ROLLBACK');
    probe.close();
    return undefined;
  }
  return currentHolder(target);
}

/** Written beside the lock after it is taken: temp file, then rename, so a reader never sees half of it. */
function describe(lockPath: string, holder: LockHolder): void {
  const temp = `${lockPath}.${process.pid}.${Date.now().toString(36)}.tmp`;
  try {
    fs.writeFileSync(temp, JSON.stringify(holder) + '\n', { mode: 0o600, flag: 'wx' });
    fs.renameSync(temp, lockPath);
  } catch {
    // Only messages suffer: the kernel lock is what excludes other runs.
    fs.rmSync(temp, { force: true });
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const lock of heldHere) lock.releaseSync();
  });
}

function makeLock(lockPath: string, db: Database.Database, holder: LockHolder): Lock {
  let released = false;
  const releaseSync = () => {
    if (released) return;
    released = true;
    heldHere.delete(lock);
    // Still ours while the transaction is open, so nobody else can be describing themselves in the file.
    const current = describedHolder(lockPath);
    if (current && current.pid === holder.pid && current.startedAt === holder.startedAt) {
      fs.rmSync(lockPath, { force: true });
    }
    try {
      db.exec('ROLLBACK');
    } finally {
      db.close();
    }
  };
  const lock: Lock = {
    path: lockPath,
    holder,
    release: async () => releaseSync(),
    releaseSync,
  };
  heldHere.add(lock);
  return lock;
}

/**
 * Takes the lock of one database, held by the kernel: an exclusive SQLite transaction on `<lockPath>.db`
 * (mode 0600, folder created 0700), kept open until `release()`. It ends with its process however that ends
 * (killed, crashed, the machine or container gone), so a lock left behind never blocks anyone and no guess
 * about pids or host names is needed. `<lockPath>` describes the holder ({pid, host, startedAt, purpose}) for
 * messages. The daemon and a manual `litekeep backup` both take it, so only one run per database happens at a
 * time, across processes. A holder is waited for up to `waitMs`, then LockHeldError.
 */
export async function acquireLock(lockPath: string, options: LockOptions = {}): Promise<Lock> {
  const target = path.resolve(lockPath);
  const waitMs = Math.max(0, options.waitMs ?? 0);
  const pollMs = Math.max(10, options.pollMs ?? 250);
  const purpose = options.purpose ?? 'backup';
  const started = Date.now();
  const deadline = started + waitMs;

  const dir = path.dirname(target);
  try {
    const created = fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (created) fs.chmodSync(dir, 0o700);
  } catch (error) {
    throw lockIoError(target, 'create the folder of the', error);
  }

  for (;;) {
    options.signal?.throwIfAborted();
    const db = tryExclusive(`${target}.db`);
    if (db) {
      const holder: LockHolder = {
        pid: process.pid,
        host: os.hostname(),
        startedAt: new Date().toISOString(),
        purpose,
      };
      describe(target, holder);
      installExitHook();
      return makeLock(target, db, holder);
    }
    if (Date.now() >= deadline) {
      throw new LockHeldError(target, await currentHolder(target), Date.now() - started);
    }
    await sleep(Math.min(pollMs, Math.max(1, deadline - Date.now())), undefined, {
      signal: options.signal,
    });
  }
}
