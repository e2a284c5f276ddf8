import { afterEach, describe, expect, it } from 'vitest';
import {
  createLogger,
  SKIPPED_MESSAGE,
  startDaemon,
  type DaemonHandle,
  type RunTrigger,
} from '../../src/scheduler/index.js';
import { sleep, waitUntil } from './helpers.js';

/** A real pino logger whose JSON lines are kept for the assertions. */
function recordingLogger() {
  const records: Record<string, unknown>[] = [];
  const logger = createLogger({
    pretty: false,
    level: 'debug',
    destination: { write: (chunk: string) => records.push(JSON.parse(chunk) as Record<string, unknown>) },
  });
  const messages = () => records.map((record) => String(record.msg));
  return { logger, records, messages };
}

const handles: DaemonHandle[] = [];
afterEach(async () => {
  await Promise.all(handles.splice(0).map((handle) => handle.abort()));
});
function start(...args: Parameters<typeof startDaemon>): DaemonHandle {
  const handle = startDaemon(...args);
  handles.push(handle);
  return handle;
}

describe('startDaemon', () => {
  it('runs the task on a per-second schedule', async () => {
    const triggers: RunTrigger[] = [];
    const handle = start({
      expression: '* * * * * *',
      timeZone: 'UTC',
      catchUp: false,
      getNewestSuccess: () => undefined,
      runTask: async (trigger) => {
        triggers.push(trigger);
      },
    });
    expect(handle.nextRun()).toBeInstanceOf(Date);
    await sleep(3_300);
    expect(triggers.length).toBeGreaterThanOrEqual(2);
    expect(new Set(triggers)).toEqual(new Set(['schedule']));
    await handle.stop();
    expect(handle.nextRun()).toBeNull();
    const after = triggers.length;
    await sleep(1_300);
    expect(triggers.length).toBe(after);
  });

  it('catches up once after an outage (newest success long ago)', async () => {
    const { logger, messages } = recordingLogger();
    const triggers: RunTrigger[] = [];
    start({
      expression: '0 3 * * *',
      timeZone: 'UTC',
      catchUpDelayMs: 50,
      getNewestSuccess: async () => new Date(Date.now() - 10 * 86_400_000),
      logger,
      runTask: async (trigger) => {
        triggers.push(trigger);
      },
    });
    await waitUntil(() => triggers.length > 0, 5_000);
    await sleep(500);
    expect(triggers).toEqual(['catch-up']);
    expect(messages().some((message) => message.startsWith('catch-up: newest successful backup'))).toBe(true);
  });

  it('does not catch up when the newest success is recent, nor when catch-up is off', async () => {
    const triggers: RunTrigger[] = [];
    const { logger, messages } = recordingLogger();
    const common = {
      expression: '0 3 * * *',
      timeZone: 'UTC',
      catchUpDelayMs: 20,
      runTask: async (trigger: RunTrigger) => {
        triggers.push(trigger);
      },
    };
    start({ ...common, getNewestSuccess: () => new Date(), logger });
    start({ ...common, catchUp: false, getNewestSuccess: () => undefined });
    await waitUntil(() => messages().some((message) => message.includes('covers the slot')), 5_000);
    await sleep(300);
    expect(triggers).toEqual([]);
  });

  it('catches up when there is no backup at all', async () => {
    const triggers: RunTrigger[] = [];
    start({
      expression: '0 3 * * *',
      timeZone: 'UTC',
      catchUpDelayMs: 0,
      getNewestSuccess: () => undefined,
      runTask: async (trigger) => {
        triggers.push(trigger);
      },
    });
    await waitUntil(() => triggers.length > 0, 5_000);
    expect(triggers).toEqual(['catch-up']);
  });

  it('two overlapping triggers produce one run and a clear message', async () => {
    const { logger, records } = recordingLogger();
    let runs = 0;
    const handle = start({
      expression: '0 3 * * *',
      timeZone: 'UTC',
      catchUp: false,
      getNewestSuccess: () => undefined,
      logger,
      runTask: async () => {
        runs += 1;
        await sleep(300);
      },
    });
    const outcomes = await Promise.all([handle.trigger('schedule'), handle.trigger('catch-up')]);
    expect(outcomes).toEqual(['completed', 'skipped']);
    expect(runs).toBe(1);
    const skipped = records.filter((record) => record.msg === SKIPPED_MESSAGE);
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toMatchObject({ level: 40, trigger: 'catch-up', runningTrigger: 'schedule' });
    expect(SKIPPED_MESSAGE).toBe('skipped: previous run still in progress');
  });

  it('a tick during a long run is skipped, never run concurrently', async () => {
    const { logger, messages } = recordingLogger();
    let concurrent = 0;
    let maxConcurrent = 0;
    let runs = 0;
    const handle = start({
      expression: '* * * * * *',
      timeZone: 'UTC',
      catchUp: false,
      getNewestSuccess: () => undefined,
      logger,
      runTask: async () => {
        runs += 1;
        concurrent += 1;
        maxConcurrent = Math.max(maxConcurrent, concurrent);
        await sleep(2_200);
        concurrent -= 1;
      },
    });
    await waitUntil(() => messages().includes(SKIPPED_MESSAGE), 8_000);
    expect(handle.running()).toBe(true);
    await handle.stop();
    expect(maxConcurrent).toBe(1);
    expect(runs).toBeGreaterThanOrEqual(1);
  });

  it('a task that throws is logged and the daemon keeps going', async () => {
    const { logger, records } = recordingLogger();
    let calls = 0;
    const handle = start({
      expression: '0 3 * * *',
      timeZone: 'UTC',
      catchUp: false,
      getNewestSuccess: () => undefined,
      logger,
      runTask: async () => {
        calls += 1;
        if (calls === 1) throw new Error('disk full: free space in /backups');
      },
    });
    expect(await handle.trigger()).toBe('failed');
    expect(await handle.trigger()).toBe('completed');
    const failure = records.find((record) => String(record.msg).startsWith('run failed'));
    expect(failure).toMatchObject({ level: 50, msg: 'run failed: disk full: free space in /backups' });
    expect(handle.nextRun()).toBeInstanceOf(Date);
  });

  it('a synchronous throw does not leave the daemon thinking a run is in progress', async () => {
    const handle = start({
      expression: '0 3 * * *',
      timeZone: 'UTC',
      catchUp: false,
      getNewestSuccess: () => undefined,
      runTask: (() => {
        throw new Error('boom');
      }) as () => Promise<unknown>,
    });
    expect(await handle.trigger()).toBe('failed');
    expect(handle.running()).toBe(false);
    expect(await handle.trigger()).toBe('failed');
  });

  it('stop() waits for the running task; after the timeout it fires the abort signal', async () => {
    let finished = false;
    const graceful = start({
      expression: '0 3 * * *',
      timeZone: 'UTC',
      catchUp: false,
      getNewestSuccess: () => undefined,
      runTask: async () => {
        await sleep(400);
        finished = true;
      },
    });
    void graceful.trigger();
    await graceful.stop({ timeoutMs: 10_000 });
    expect(finished).toBe(true);
    expect(await graceful.trigger()).toBe('stopped');

    let aborted = false;
    const stubborn = start({
      expression: '0 3 * * *',
      timeZone: 'UTC',
      catchUp: false,
      getNewestSuccess: () => undefined,
      runTask: (_trigger, signal) =>
        new Promise((_resolve, reject) => {
          signal.addEventListener('abort', () => {
            aborted = true;
            reject(signal.reason);
          });
        }),
    });
    const outcome = stubborn.trigger();
    await stubborn.stop({ timeoutMs: 100 });
    expect(aborted).toBe(true);
    expect(await outcome).toBe('aborted');
  });

  it('refuses a bad schedule and a catch-up delay of a minute or more', () => {
    const base = { getNewestSuccess: () => undefined, runTask: async () => {} };
    expect(() => startDaemon({ ...base, expression: '61 * * * *', timeZone: 'UTC' })).toThrow(
      /invalid schedule/,
    );
    expect(() => startDaemon({ ...base, timeZone: 'UTC', catchUpDelayMs: 60_000 })).toThrow(/0 to 59999 ms/);
  });
});
