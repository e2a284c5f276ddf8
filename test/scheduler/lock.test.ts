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

function describeHolder(file: string, holder: object): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(holder));
}

describe('acquireLock', () => {
  it('holds lock.db (0600, folder 0700), describes {pid, host, startedAt, purpose} and removes that on release', async () => {
    const file = path.join(dir, 'state', 'lock');
    const lock = await acquireLock(file, { purpose: 'manual backup' });
    expect(fs.statSync(`${file}.db`).mode & 0o777).toBe(0o600);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    const content = JSON.parse(fs.readFileSync(file, 'utf8'));
    expect(content).toMatchObject({ pid: process.pid, host: os.hostname(), purpose: 'manual backup' });
    expect(new Date(content.startedAt).getTime()).toBeGreaterThan(Date.now() - 60_000);
    expect(await readLockHolder(file)).toMatchObject({ pid: process.pid });
    await lock.release();
    expect(fs.existsSync(file)).toBe(false);
    expect(await readLockHolder(file)).toBeUndefined();
    // Released for real: it can be taken again at once.
    await (await acquireLock(file)).release();
  });

  it('a second taker in another process fails, naming the holder pid, host, start and purpose', async () => {
    const file = path.join(dir, 'lock');
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
    } finally {
      await lock.release();
    }
  });

  it('waits up to waitMs for a holder in another process, then takes the lock', async () => {
    const file = path.join(dir, 'lock');
    const child = runFixture('lock-child.ts', [file, '800', '0']);
    await child.waitForLine((line) => line.includes('"acquired"'));
    await expect(acquireLock(file, { waitMs: 0 })).rejects.toThrow(LockHeldError);
    const lock = await acquireLock(file, { waitMs: 15_000, pollMs: 50 });
    expect((await readLockHolder(file))?.pid).toBe(process.pid);
    await lock.release();
    expect((await child.exited).code).toBe(0);
  });

  it('a holder killed with SIGKILL leaves nothing that blocks: the kernel let go with the process', async () => {
    const file = path.join(dir, 'lock');
    const child = runFixture('lock-child.ts', [file, '600000', '0']);
    await child.waitForLine((line) => line.includes('"acquired"'));
    await expect(acquireLock(file)).rejects.toThrow(LockHeldError);
    child.process.kill('SIGKILL');
    await child.exited;
    // Its description is still there, naming a pid that is gone; it decides nothing.
    expect(JSON.parse(fs.readFileSync(file, 'utf8')).pid).toBe(child.process.pid);
    const lock = await acquireLock(file);
    expect((await readLockHolder(file))?.pid).toBe(process.pid);
    await lock.release();
  });

  it.each([
    [
      'another host (the container was recreated with a new name)',
      { pid: process.pid, host: 'old-container' },
    ],
    ['a live, unrelated pid on this host (reused after a reboot)', { pid: 1, host: os.hostname() }],
    ['our own pid, from an earlier life', { pid: process.pid, host: os.hostname() }],
  ])('a description left by %s never blocks', async (_label, holder) => {
    const file = path.join(dir, 'lock');
    describeHolder(file, { ...holder, startedAt: '2020-01-01T00:00:00.000Z', purpose: 'previous life' });
    const lock = await acquireLock(file);
    expect(await readLockHolder(file)).toMatchObject({ pid: process.pid, purpose: 'backup' });
    await lock.release();
  });

  it('two acquires racing inside one process: exactly one wins', async () => {
    const file = path.join(dir, 'lock');
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => acquireLock(file)));
    const won = results.filter((result) => result.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const result of results) {
      if (result.status === 'rejected') expect(result.reason).toBeInstanceOf(LockHeldError);
    }
    await (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof acquireLock>>>).value.release();
  });

  it('release leaves a description alone that is no longer ours', async () => {
    const file = path.join(dir, 'lock');
    const lock = await acquireLock(file);
    const other = { pid: 999_999, host: 'other', startedAt: new Date().toISOString(), purpose: 'other' };
    fs.writeFileSync(file, JSON.stringify(other));
    await lock.release();
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual(other);
  });

  it('in one process, a second acquire of a held lock fails (one run at a time)', async () => {
    const file = path.join(dir, 'lock');
    const lock = await acquireLock(file);
    await expect(acquireLock(file, { waitMs: 100, pollMs: 20 })).rejects.toThrow(/another run holds/);
    await lock.release();
  });

  it('several processes racing for the lock: exactly one wins', async () => {
    const file = path.join(dir, 'lock');
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
    // Released by the winner: only the lock database stays.
    expect(fs.readdirSync(dir)).toEqual(['lock.db']);
  });
});
