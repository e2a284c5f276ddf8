import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { EXIT, LitekeepError } from '../util/errors.js';
import { formatDuration } from '../util/duration.js';
import { isProcessAlive } from '../util/process.js';

export { isProcessAlive };

/** What a lock file says about the run that holds it. */
export interface LockHolder {
  pid: number;
  host: string;
  /** ISO-8601, UTC. */
  startedAt: string;
  purpose: string;
}

export interface LockOptions {
  /** How long to wait for a live holder to let go before failing (default 0: fail at once). */
  waitMs?: number;
  /** How often to look again while waiting (default 250 ms). */
  pollMs?: number;
  /** Shown to whoever finds the lock taken, e.g. "scheduled backup" or "manual backup". */
  purpose?: string;
  /** Stops waiting early; the promise then rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface Lock {
  readonly path: string;
  readonly holder: LockHolder;
  /** Removes the lock file, but only while it is still ours. Safe to call twice. */
  release(): Promise<void>;
  releaseSync(): void;
}

/** Another run holds the lock (exit code 1). */
export class LockHeldError extends LitekeepError {
  override name = 'LockHeldError';
  constructor(
    readonly lockPath: string,
    readonly holder: LockHolder,
    waitedMs: number,
  ) {
    const sameHost = holder.host === os.hostname();
    super(
      `another run holds ${lockPath}: pid ${holder.pid} on host ${holder.host}, started ${holder.startedAt}, ` +
        `purpose "${holder.purpose}"; waited ${formatDuration(waitedMs)} — ` +
        (sameHost
          ? 'let it finish, or raise lockWait to wait longer'
          : `let it finish, raise lockWait, or delete the file if pid ${holder.pid} no longer runs on ${holder.host}`),
      { exitCode: EXIT.failed, stage: 'lock' },
    );
  }
}

/** A lock file that exists but holds no readable JSON is from a writer killed between create and write. */
const UNREADABLE_STALE_MS = 10_000;
/** The takeover guard is held for a few milliseconds; one this old was left by a killed process. */
const GUARD_STALE_MS = 10_000;

/** Locks this process holds, released on exit. */
const heldHere = new Map<string, Lock>();
let exitHookInstalled = false;

type LockState =
  | { kind: 'free' }
  | { kind: 'held'; holder: LockHolder; fingerprint: string; mtimeMs: number }
  | { kind: 'unreadable'; fingerprint: string; mtimeMs: number };

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

async function inspect(lockPath: string): Promise<LockState> {
  let raw: string;
  let stat: fs.Stats;
  try {
    // fstat and read through one descriptor, so the fingerprint describes the content we read.
    const handle = await fsp.open(lockPath, 'r');
    try {
      stat = await handle.stat();
      raw = await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'free' };
    throw lockIoError(lockPath, 'read', error);
  }
  const fingerprint = `${stat.ino}:${stat.mtimeMs}:${raw}`;
  const holder = parseHolder(raw);
  return holder
    ? { kind: 'held', holder, fingerprint, mtimeMs: stat.mtimeMs }
    : { kind: 'unreadable', fingerprint, mtimeMs: stat.mtimeMs };
}

/** Who holds the lock at `lockPath`, or undefined when nobody does. */
export async function readLockHolder(lockPath: string): Promise<LockHolder | undefined> {
  const state = await inspect(path.resolve(lockPath));
  if (state.kind === 'free') return undefined;
  if (state.kind === 'held') return state.holder;
  return {
    pid: 0,
    host: 'unknown',
    startedAt: new Date(state.mtimeMs).toISOString(),
    purpose: 'unknown (lock file being written, or left unreadable)',
  };
}

function isStale(state: Exclude<LockState, { kind: 'free' }>): boolean {
  if (state.kind === 'unreadable') return Date.now() - state.mtimeMs > UNREADABLE_STALE_MS;
  const { holder } = state;
  // A pid on another host cannot be checked from here: only a person can decide that lock is stale.
  if (holder.host !== os.hostname()) return false;
  // Our own pid, written before this process started: an earlier process that had the same pid (pid 1 in a
  // restarted container). Comparing times rather than asking "do we hold it" stays right while another
  // acquire in this same process is between creating the file and recording it.
  if (holder.pid === process.pid) return Date.parse(holder.startedAt) < performance.timeOrigin;
  return !isProcessAlive(holder.pid);
}

function lockIoError(lockPath: string, action: string, error: unknown): LitekeepError {
  const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
  return new LitekeepError(
    `cannot ${action} lock file ${lockPath}: ${code}; check that its folder exists and is writable by this user`,
    { exitCode: EXIT.failed, stage: 'lock', cause: error },
  );
}

async function tryCreate(lockPath: string, holder: LockHolder): Promise<boolean> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(lockPath, 'wx', 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw lockIoError(lockPath, 'create', error);
  }
  try {
    await handle.writeFile(JSON.stringify(holder) + '\n');
    await handle.sync();
  } catch (error) {
    await handle.close().catch(() => {});
    await fsp.unlink(lockPath).catch(() => {});
    throw lockIoError(lockPath, 'write', error);
  }
  await handle.close();
  return true;
}

/**
 * Removes a stale lock under a short-lived guard file, re-reading it first: two processes that both saw the
 * same stale lock cannot both remove it, so the later one cannot delete a fresh lock the earlier one created.
 * Returns true when the stale lock is gone.
 */
async function removeStale(lockPath: string, fingerprint: string): Promise<boolean> {
  const guard = `${lockPath}.takeover`;
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(guard, 'wx', 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw lockIoError(guard, 'create', error);
    try {
      const stat = await fsp.stat(guard);
      if (Date.now() - stat.mtimeMs > GUARD_STALE_MS) await fsp.unlink(guard);
    } catch {
      // Gone already, or removed by another taker: either way try again on the next round.
    }
    return false;
  }
  try {
    const now = await inspect(lockPath);
    if (now.kind === 'free') return true;
    if (now.fingerprint === fingerprint) {
      await fsp.unlink(lockPath).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw lockIoError(lockPath, 'remove stale', error);
      });
      return true;
    }
    return false;
  } finally {
    await handle.close().catch(() => {});
    await fsp.unlink(guard).catch(() => {});
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A process.exit() in the middle of a run (second signal) must not leave a lock behind for others to judge.
  process.once('exit', () => {
    for (const lock of heldHere.values()) lock.releaseSync();
  });
}

function makeLock(lockPath: string, holder: LockHolder): Lock {
  let released = false;
  const isOurs = (raw: string): boolean => {
    const current = parseHolder(raw);
    return (
      current !== undefined &&
      current.pid === holder.pid &&
      current.host === holder.host &&
      current.startedAt === holder.startedAt
    );
  };
  const lock: Lock = {
    path: lockPath,
    holder,
    async release() {
      if (released) return;
      released = true;
      heldHere.delete(lockPath);
      try {
        if (isOurs(await fsp.readFile(lockPath, 'utf8'))) await fsp.unlink(lockPath);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw lockIoError(lockPath, 'release', error);
      }
    },
    releaseSync() {
      if (released) return;
      released = true;
      heldHere.delete(lockPath);
      try {
        if (isOurs(fs.readFileSync(lockPath, 'utf8'))) fs.unlinkSync(lockPath);
      } catch {
        // Best effort: this runs on the way out; a lock left behind is detected as stale by the next taker.
      }
    },
  };
  return lock;
}

/**
 * Takes the lock for one database: a file created exclusively (O_EXCL) holding `{pid, host, startedAt,
 * purpose}`, mode 0600, in a folder created 0700 when missing. The daemon and a manual `litekeep backup` both
 * take it, so only one run per database happens at a time, across processes. A lock left by a killed
 * process on this host is taken over; a live holder is waited for up to `waitMs`, then LockHeldError.
 */
export async function acquireLock(lockPath: string, options: LockOptions = {}): Promise<Lock> {
  const target = path.resolve(lockPath);
  const waitMs = Math.max(0, options.waitMs ?? 0);
  const pollMs = Math.max(10, options.pollMs ?? 250);
  const purpose = options.purpose ?? 'backup';
  const started = Date.now();
  const deadline = started + waitMs;
  let unreadableRetries = 0;
  let staleRetries = 0;

  const dir = path.dirname(target);
  try {
    const created = await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    if (created) await fsp.chmod(dir, 0o700);
  } catch (error) {
    throw lockIoError(target, 'create the folder of', error);
  }

  for (;;) {
    options.signal?.throwIfAborted();
    const holder: LockHolder = {
      pid: process.pid,
      host: os.hostname(),
      startedAt: new Date().toISOString(),
      purpose,
    };
    if (await tryCreate(target, holder)) {
      const lock = makeLock(target, holder);
      heldHere.set(target, lock);
      installExitHook();
      return lock;
    }
    const state = await inspect(target);
    if (state.kind === 'free') continue;
    if (isStale(state)) {
      if (await removeStale(target, state.fingerprint)) continue;
      // Another taker is removing it right now: look again in a moment, then report whoever won.
      if (staleRetries++ < 100) {
        await sleep(20);
        continue;
      }
    }
    if (state.kind === 'unreadable' && Date.now() - state.mtimeMs < 1000 && unreadableRetries++ < 20) {
      // Created a moment ago and not written yet: its holder is about to be readable.
      await sleep(50);
      continue;
    }
    if (Date.now() >= deadline) {
      const holderNow =
        state.kind === 'held' ? state.holder : ((await readLockHolder(target)) ?? holderUnknown());
      throw new LockHeldError(target, holderNow, Date.now() - started);
    }
    await sleep(Math.min(pollMs, Math.max(1, deadline - Date.now())), undefined, {
      signal: options.signal,
    });
  }
}

function holderUnknown(): LockHolder {
  return { pid: 0, host: 'unknown', startedAt: 'unknown', purpose: 'unknown' };
}
