import { Cron, type CronOptions } from 'croner';
import { EXIT, LitekeepError } from '../util/errors.js';
import { isValidTimeZone } from '../util/time.js';

export const DEFAULT_SCHEDULE = '0 3 * * *';

/** A cron expression or time zone that cannot be used; a configuration error (exit code 2). */
export class ScheduleError extends LitekeepError {
  override name = 'ScheduleError';
  constructor(message: string) {
    super(message, { exitCode: EXIT.usage });
  }
}

const ACCEPTED_FORM =
  'use 5 fields "minute hour day-of-month month day-of-week" (e.g. "0 3 * * *" for 03:00 daily) ' +
  'or 6 with seconds first (e.g. "0 0 3 * * *")';

/** Options shared by every croner instance we create, so validation and the daemon agree on the syntax. */
export function cronOptions(timeZone: string): CronOptions {
  // Seven fields (years) are refused: nobody schedules backups by year, and a typo there would be silent.
  return { timezone: timeZone, mode: '5-or-6-parts' };
}

/**
 * Throws a ScheduleError for an expression croner cannot parse or a zone Intl does not know. croner itself
 * accepts a bad zone until the first time it computes a run (PACKAGES.md), so the zone is checked here.
 */
export function validateSchedule(expression: string, timeZone: string): void {
  if (typeof expression !== 'string' || expression.trim() === '') {
    throw new ScheduleError(`empty schedule: ${ACCEPTED_FORM}`);
  }
  if (!isValidTimeZone(timeZone)) {
    throw new ScheduleError(
      `unknown time zone "${timeZone}" for schedule "${expression}": use an IANA name such as Europe/Berlin or UTC`,
    );
  }
  let cron: Cron;
  try {
    cron = new Cron(expression, cronOptions(timeZone));
  } catch (error) {
    const reason = (error instanceof Error ? error.message : String(error))
      .split('\n')[0]
      .replace(/^CronPattern:\s*/, '');
    throw new ScheduleError(`invalid schedule "${expression}" (${reason}): ${ACCEPTED_FORM}`);
  }
  if (cron.nextRun(new Date()) === null) {
    throw new ScheduleError(`schedule "${expression}" never runs again: ${ACCEPTED_FORM}`);
  }
}

function cronFor(expression: string, timeZone: string): Cron {
  validateSchedule(expression, timeZone);
  return new Cron(expression, cronOptions(timeZone));
}

/** The next `n` run times strictly after `from` (default now): the body of `litekeep schedule --next n`. */
export function nextRuns(expression: string, timeZone: string, n: number, from: Date = new Date()): Date[] {
  return cronFor(expression, timeZone).nextRuns(n, from);
}

/** The most recent scheduled time at or before `at`, or undefined when the schedule never ran before it. */
export function previousRun(expression: string, timeZone: string, at: Date): Date | undefined {
  // croner excludes a run exactly at the reference instant; one millisecond later includes it.
  const [previous] = cronFor(expression, timeZone).previousRuns(1, new Date(at.getTime() + 1));
  return previous;
}

export interface CatchUpInput {
  /** Time of the newest successful backup, if any. */
  newestSuccess?: Date;
  expression: string;
  timeZone: string;
  now: Date;
}

export interface CatchUpDecision {
  needed: boolean;
  /** The scheduled slot the newest backup is compared with. */
  previousSlot?: Date;
  reason: string;
}

/**
 * Whether the daemon should run at once: there is no successful backup, or the newest one is older than the
 * last scheduled slot before `now` (the daemon was down, or the run at that slot failed). A pure function.
 */
export function catchUpDecision(input: CatchUpInput): CatchUpDecision {
  const previousSlot = previousRun(input.expression, input.timeZone, input.now);
  if (!input.newestSuccess) {
    return { needed: true, previousSlot, reason: 'no successful backup yet' };
  }
  if (!previousSlot) {
    return { needed: false, reason: 'the schedule has no slot before now' };
  }
  if (input.newestSuccess.getTime() < previousSlot.getTime()) {
    return {
      needed: true,
      previousSlot,
      reason: `newest successful backup (${input.newestSuccess.toISOString()}) is older than the slot at ${previousSlot.toISOString()}`,
    };
  }
  return {
    needed: false,
    previousSlot,
    reason: `newest successful backup (${input.newestSuccess.toISOString()}) covers the slot at ${previousSlot.toISOString()}`,
  };
}

export function needsCatchUp(input: CatchUpInput): boolean {
  return catchUpDecision(input).needed;
}
