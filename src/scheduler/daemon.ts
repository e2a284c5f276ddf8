import os from 'node:os';
import { Cron } from 'croner';
import { oneLine } from '../util/errors.js';
import { systemTimeZone } from '../util/time.js';
import { formatDuration } from '../util/duration.js';
import type { LogSink } from './logger.js';
import { catchUpDecision, cronOptions, DEFAULT_SCHEDULE, validateSchedule } from './schedule.js';

/** What started a run: the schedule, the catch-up after start, or a person (the status page's "back up now"). */
export type RunTrigger = 'schedule' | 'catch-up' | 'manual';
export type RunOutcome = 'completed' | 'failed' | 'aborted' | 'skipped' | 'stopped';

export interface DaemonOptions {
  /** Cron expression, 5 fields or 6 with seconds (default `0 3 * * *`). */
  expression?: string;
  /** IANA zone the expression is read in (default: the system's). */
  timeZone?: string;
  /** Run once shortly after start when the newest success missed its slot (default true). */
  catchUp?: boolean;
  /** How long after start to look for a missed slot (default 5 s; below one minute). */
  catchUpDelayMs?: number;
  /**
   * The backup run. It must honour `signal`: when it fires, stop, remove temp files and reject. It is expected
   * to take the database lock itself, as a manual `litekeep backup` does.
   */
  runTask: (trigger: RunTrigger, signal: AbortSignal) => Promise<unknown>;
  /** Time of the newest successful backup (from the catalog), for catch-up. */
  getNewestSuccess: () => Date | undefined | Promise<Date | undefined>;
  logger?: LogSink;
  /** After aborting, how long to wait for the task to clean up before giving up on it (default 10 s). */
  abortGraceMs?: number;
}

export interface DaemonHandle {
  /** Stops scheduling; waits for a running task up to `timeoutMs` (default: no limit), then aborts it. */
  stop(options?: { timeoutMs?: number }): Promise<void>;
  /** Stops scheduling and fires the running task's AbortSignal; resolves when it settled (or after the grace). */
  abort(): Promise<void>;
  /** The next scheduled run, or null once stopped. */
  nextRun(): Date | null;
  /** Whether a task is running now. */
  running(): boolean;
  /** Runs the task now unless one is running (then logs the skip): what a tick does. */
  trigger(trigger?: RunTrigger): Promise<RunOutcome>;
}

export const SKIPPED_MESSAGE = 'skipped: previous run still in progress';

const silentLogger: LogSink = { debug() {}, info() {}, warn() {}, error() {} };

class DaemonStopError extends Error {
  override name = 'AbortError';
}

/** Resolves true when `promise` settles within `ms`, false otherwise. Never rejects. */
function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const settled = promise.then(
    () => true,
    () => true,
  );
  if (!Number.isFinite(ms)) return settled;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, ms));
  });
  return Promise.race([settled, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The daemon: runs `runTask` on a cron schedule, one run at a time (a tick during a run is skipped and
 * logged), catches up once after start when a slot was missed, and stops gracefully. The croner job keeps
 * the process alive until `stop()` or `abort()`.
 */
export function startDaemon(options: DaemonOptions): DaemonHandle {
  const expression = options.expression ?? DEFAULT_SCHEDULE;
  const timeZone = options.timeZone ?? systemTimeZone();
  const log = options.logger ?? silentLogger;
  const catchUpDelayMs = options.catchUpDelayMs ?? 5_000;
  const abortGraceMs = options.abortGraceMs ?? 10_000;
  validateSchedule(expression, timeZone);
  if (!Number.isFinite(catchUpDelayMs) || catchUpDelayMs < 0 || catchUpDelayMs >= 60_000) {
    throw new RangeError(
      `catch-up delay ${catchUpDelayMs} ms is out of range: use 0 to 59999 ms, so a missed backup is made within a minute of start`,
    );
  }

  let current:
    | { controller: AbortController; trigger: RunTrigger; startedAt: Date; done?: Promise<RunOutcome> }
    | undefined;
  let active = false;
  let stopping = false;
  let stopPromise: Promise<void> | undefined;
  let catchUpTimer: NodeJS.Timeout | undefined;

  async function execute(
    trigger: RunTrigger,
    controller: AbortController,
    startedAt: number,
  ): Promise<RunOutcome> {
    try {
      await options.runTask(trigger, controller.signal);
      log.info(
        { trigger, durationMs: Date.now() - startedAt, nextRun: job.nextRun() ?? undefined },
        'run finished',
      );
      return 'completed';
    } catch (error) {
      const durationMs = Date.now() - startedAt;
      if (controller.signal.aborted) {
        log.warn({ trigger, durationMs }, `run aborted: ${oneLine(controller.signal.reason)}`);
        return 'aborted';
      }
      log.error({ trigger, durationMs, err: error }, `run failed: ${oneLine(error)}`);
      return 'failed';
    } finally {
      active = false;
    }
  }

  function runOnce(trigger: RunTrigger): Promise<RunOutcome> {
    if (stopping) {
      log.info({ trigger }, 'skipped: the daemon is stopping');
      return Promise.resolve('stopped');
    }
    if (active) {
      log.warn(
        { trigger, runningTrigger: current?.trigger, runningSince: current?.startedAt.toISOString() },
        SKIPPED_MESSAGE,
      );
      return Promise.resolve('skipped');
    }
    // Marked busy before the task starts, so that a task failing synchronously still clears the flag after.
    active = true;
    const startedAt = new Date();
    const run: NonNullable<typeof current> = { controller: new AbortController(), trigger, startedAt };
    current = run;
    log.info({ trigger }, 'run started');
    run.done = execute(trigger, run.controller, startedAt.getTime());
    return run.done;
  }

  const job = new Cron(expression, cronOptions(timeZone), () => {
    // Not awaited: overlap is handled by runOnce (with a log line), not by croner's silent `protect`.
    void runOnce('schedule');
  });

  if (options.catchUp ?? true) {
    catchUpTimer = setTimeout(() => {
      catchUpTimer = undefined;
      void (async () => {
        let newestSuccess: Date | undefined;
        try {
          newestSuccess = await options.getNewestSuccess();
        } catch (error) {
          // Not knowing is treated as missing: an extra backup is cheaper than a missed one.
          log.error(
            { err: error },
            `catch-up: cannot read the newest backup (${oneLine(error)}); running anyway`,
          );
        }
        if (stopping) return;
        const decision = catchUpDecision({ newestSuccess, expression, timeZone, now: new Date() });
        log.info(
          { needed: decision.needed, previousSlot: decision.previousSlot },
          `catch-up: ${decision.reason}`,
        );
        if (decision.needed) await runOnce('catch-up');
      })();
    }, catchUpDelayMs);
  }

  log.info(
    { schedule: expression, timeZone, nextRun: job.nextRun() ?? undefined, catchUp: options.catchUp ?? true },
    'daemon started',
  );

  function halt(): void {
    stopping = true;
    job.stop();
    if (catchUpTimer) clearTimeout(catchUpTimer);
    catchUpTimer = undefined;
  }

  return {
    stop({ timeoutMs = Infinity } = {}) {
      stopPromise ??= (async () => {
        halt();
        const running = current;
        if (active && running?.done) {
          log.info(
            { trigger: running.trigger, timeoutMs: Number.isFinite(timeoutMs) ? timeoutMs : undefined },
            'stopping: waiting for the running backup to finish',
          );
          if (!(await settlesWithin(running.done, timeoutMs))) {
            log.warn(
              { timeoutMs },
              `stop timeout of ${formatDuration(timeoutMs)} reached: aborting the running backup`,
            );
            running.controller.abort(
              new DaemonStopError(`the daemon stopped after ${formatDuration(timeoutMs)}`),
            );
            await settlesWithin(running.done, abortGraceMs);
          }
        }
        log.info({}, 'daemon stopped');
      })();
      return stopPromise;
    },
    async abort() {
      halt();
      const running = current;
      if (!active || !running?.done) return;
      running.controller.abort(new DaemonStopError('the daemon was told to stop at once'));
      if (!(await settlesWithin(running.done, abortGraceMs))) {
        log.error({ abortGraceMs }, 'the aborted backup did not finish its cleanup in time');
      }
    },
    nextRun: () => (stopping ? null : job.nextRun()),
    running: () => active,
    trigger: (trigger = 'schedule') => runOnce(trigger),
  };
}

export interface SignalOptions {
  /** How long the first signal lets a running backup finish before aborting it. */
  stopTimeoutMs: number;
  /** Process exit, replaceable for tests (default `process.exit`). */
  exit?: (code: number) => void;
  logger?: LogSink;
  signals?: NodeJS.Signals[];
}

/**
 * First SIGTERM/SIGINT: finish the running backup (up to `stopTimeoutMs`, then abort), exit 0. A second
 * signal: abort at once and exit 128 + the signal number (130 for SIGINT, 143 for SIGTERM), as a shell would
 * report a process killed by it. Returns a function that removes the handlers.
 */
export function installSignalHandlers(handle: DaemonHandle, options: SignalOptions): () => void {
  const log = options.logger ?? silentLogger;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
  let received = 0;
  let exited = false;
  const exitOnce = (code: number) => {
    if (exited) return;
    exited = true;
    exit(code);
  };

  const onSignal = (signal: NodeJS.Signals) => {
    received += 1;
    if (received === 1) {
      log.info(
        { signal, stopTimeoutMs: options.stopTimeoutMs },
        handle.running()
          ? `${signal}: letting the running backup finish (up to ${formatDuration(options.stopTimeoutMs)}); send it again to abort`
          : `${signal}: stopping`,
      );
      handle.stop({ timeoutMs: options.stopTimeoutMs }).then(
        () => {
          if (received === 1) exitOnce(0);
        },
        (error: unknown) => {
          log.error({ err: error }, `stop failed: ${oneLine(error)}`);
          exitOnce(1);
        },
      );
      return;
    }
    if (received === 2) {
      log.warn({ signal }, `${signal} again: aborting the running backup`);
      const code = 128 + (os.constants.signals[signal] ?? 15);
      void handle.abort().finally(() => exitOnce(code));
    }
  };

  for (const signal of signals) process.on(signal, onSignal);
  return () => {
    for (const signal of signals) process.off(signal, onSignal);
  };
}
