import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { acquireLock, LockHeldError, readLockHolder } from '../../src/scheduler/index.js';
import { jsonLines, runFixture } from './helpers.js';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'litekeep-lock-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', '']);
  return child.pid!;
}

function writeLock(file: string, holder: object): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(holder));
}

describe('acquireLock', () => {
  it('writes {pid, host, startedAt, purpose} with mode 0600 in a new 0700 folder and removes it on release', async () => {
    const file = path.join(dir, 'state', 'db.lock');
    const lock = await acquireLock(file, { purpose: 'manual backup' });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    const content = JSON.parse(fs.readFileSync(file, 'utf8'));
    expect(content).toMatchObject({ pid: process.pid, host: os.hostname(), purpose: 'manual backup' });
    expect(new Date(content.startedAt).getTime()).toBeGreaterThan(Date.now() - 60_000);
    expect(await readLockHolder(file)).toMatchObject({ pid: process.pid });
    await lock.release();
    expect(fs.existsSync(file)).toBe(false);
    expect(await readLockHolder(file)).toBeUndefined();
  });

  it('a second taker in another process fails, naming the holder pid, host, start and purpose', async () => {
    const file = path.join(dir, 'db.lock');
    const lock = await acquireLock(file, { purpose: 'scheduled backup' });
    try {
      const child = runFixture('lock-child.ts', [file, '0', '0']);
      const { code } = await child.exited;
      const [event] = jsonLines(child.lines);
      expect(code, child.stderr()).toBe(3);
      expect(event).toMatchObject({ event: 'held', holderPid: process.pid });
      const message = String(event.message);
      expect(message).toContain(`pid ${process.pid}`);
      expect(message).toContain(os.hostname());
      expect(message).toContain(lock.holder.startedAt);
      expect(message).toContain('scheduled backup');
      expect(message).not.toContain('\n');
      expect(fs.existsSync(file)).toBe(true);
    } finally {
      await lock.release();
    }
  });

  it('waits up to waitMs for a holder in another process, then takes the lock', async () => {
    const file = path.join(dir, 'db.lock');
    const child = runFixture('lock-child.ts', [file, '800', '0']);
    await child.waitForLine((line) => line.includes('"acquired"'));
    await expect(acquireLock(file, { waitMs: 0 })).rejects.toThrow(LockHeldError);
    const lock = await acquireLock(file, { waitMs: 15_000, pollMs: 50 });
    expect((await readLockHolder(file))?.pid).toBe(process.pid);
    await lock.release();
    expect((await child.exited).code).toBe(0);
  });

  it('takes over a stale lock left by a process that no longer exists', async () => {
    const file = path.join(dir, 'db.lock');
    const pid = deadPid();
    writeLock(file, {
      pid,
      host: os.hostname(),
      startedAt: '2020-01-01T00:00:00.000Z',
      purpose: 'killed run',
    });
    const lock = await acquireLock(file);
    expect((await readLockHolder(file))?.pid).toBe(process.pid);
    await lock.release();
  });

  it('takes over a lock naming our own pid from before this process started (a restarted container)', async () => {
    const file = path.join(dir, 'db.lock');
    const earlier = new Date(Date.now() - 3_600_000).toISOString();
    writeLock(file, { pid: process.pid, host: os.hostname(), startedAt: earlier, purpose: 'previous life' });
    const lock = await acquireLock(file);
    expect((await readLockHolder(file))?.purpose).toBe('backup');
    await lock.release();
  });

  it('two acquires racing inside one process: exactly one wins', async () => {
    const file = path.join(dir, 'db.lock');
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => acquireLock(file)));
    const won = results.filter((result) => result.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const result of results) {
      if (result.status === 'rejected') expect(result.reason).toBeInstanceOf(LockHeldError);
    }
    await (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof acquireLock>>>).value.release();
  });

  it('does not take over a lock held by another host, and says how to clear it', async () => {
    const file = path.join(dir, 'db.lock');
    writeLock(file, {
      pid: 1,
      host: 'elsewhere.example',
      startedAt: '2020-01-01T00:00:00.000Z',
      purpose: 'x',
    });
    const error = await acquireLock(file).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockHeldError);
    expect((error as Error).message).toMatch(/elsewhere\.example.*delete the file/);
  });

  it('release leaves a lock alone that is no longer ours', async () => {
    const file = path.join(dir, 'db.lock');
    const lock = await acquireLock(file);
    const other = { pid: 999_999, host: 'other', startedAt: new Date().toISOString(), purpose: 'other' };
    fs.writeFileSync(file, JSON.stringify(other));
    await lock.release();
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual(other);
  });

  it('in one process, a second acquire of a held lock fails (one run at a time)', async () => {
    const file = path.join(dir, 'db.lock');
    const lock = await acquireLock(file);
    await expect(acquireLock(file, { waitMs: 100, pollMs: 20 })).rejects.toThrow(/another run holds/);
    await lock.release();
  });

  it.each([
    ['a free lock', false],
    ['a stale lock', true],
  ])('several processes racing for %s: exactly one wins', async (_label, stale) => {
    const file = path.join(dir, 'db.lock');
    if (stale) {
      writeLock(file, {
        pid: deadPid(),
        host: os.hostname(),
        startedAt: '2020-01-01T00:00:00Z',
        purpose: 'dead',
      });
    }
    const children = Array.from({ length: 4 }, () =>
      runFixture('lock-child.ts', [file, '1500', '0', 'sync']),
    );
    await Promise.all(children.map((child) => child.waitForLine((line) => line.includes('"ready"'))));
    for (const child of children) child.process.stdin!.write('go\n');
    await Promise.all(children.map((child) => child.exited));
    const events = children.map((child) => jsonLines(child.lines)[1]);
    const winners = events.filter((event) => event?.event === 'acquired');
    const losers = events.filter((event) => event?.event === 'held');
    expect(winners, JSON.stringify(events)).toHaveLength(1);
    expect(losers).toHaveLength(3);
    for (const loser of losers) expect(loser.holderPid).toBe(winners[0].pid);
    // Released by the winner; no takeover guard left behind.
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});
