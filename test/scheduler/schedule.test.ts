import { describe, expect, it } from 'vitest';
import {
  catchUpDecision,
  DurationError,
  formatDuration,
  needsCatchUp,
  nextRuns,
  parseDuration,
  previousRun,
  ScheduleError,
  validateSchedule,
} from '../../src/scheduler/index.js';

function berlinClock(date: Date): string {
  return new Intl.DateTimeFormat('en-GB', {
    timeZone: 'Europe/Berlin',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
  }).format(date);
}

describe('nextRuns / validateSchedule', () => {
  it('gives 03:00 Berlin local times for "0 3 * * *", across the spring DST change', () => {
    const runs = nextRuns('0 3 * * *', 'Europe/Berlin', 5, new Date('2025-03-28T12:00:00Z'));
    expect(runs).toHaveLength(5);
    for (const run of runs) expect(berlinClock(run)).toBe('03:00:00');
    // CET (UTC+1) before 30 March, CEST (UTC+2) from then on.
    expect(runs.map((run) => run.toISOString())).toEqual([
      '2025-03-29T02:00:00.000Z',
      '2025-03-30T01:00:00.000Z',
      '2025-03-31T01:00:00.000Z',
      '2025-04-01T01:00:00.000Z',
      '2025-04-02T01:00:00.000Z',
    ]);
  });

  it('accepts 6 fields (seconds first)', () => {
    const runs = nextRuns('*/10 * * * * *', 'UTC', 3, new Date('2025-01-01T00:00:01Z'));
    expect(runs.map((run) => run.toISOString())).toEqual([
      '2025-01-01T00:00:10.000Z',
      '2025-01-01T00:00:20.000Z',
      '2025-01-01T00:00:30.000Z',
    ]);
  });

  it.each(['61 * * * *', '0 3 * *', 'every night', '0 0 3 * * * 2030', ''])(
    'rejects %j with a one-line ScheduleError naming the accepted form',
    (expression) => {
      let error: unknown;
      try {
        validateSchedule(expression, 'UTC');
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ScheduleError);
      const message = (error as Error).message;
      expect(message).toContain(`"${expression}"`.replace('""', '') || 'empty');
      expect(message).toContain('5 fields');
      expect(message).toContain('6 with seconds');
      expect(message).not.toContain('\n');
      expect((error as ScheduleError).exitCode).toBe(2);
      expect(() => nextRuns(expression, 'UTC', 1)).toThrow(ScheduleError);
    },
  );

  it('rejects an unknown time zone (croner alone would accept it until the first run)', () => {
    expect(() => validateSchedule('0 3 * * *', 'Mars/Olympus_Mons')).toThrow(
      /unknown time zone "Mars\/Olympus_Mons"/,
    );
    expect(() => nextRuns('0 3 * * *', 'Mars/Olympus_Mons', 1)).toThrow(ScheduleError);
  });
});

describe('needsCatchUp', () => {
  const daily = { expression: '0 3 * * *', timeZone: 'UTC' };

  it('is false at 02:00 when the newest success is yesterday 03:00', () => {
    expect(
      needsCatchUp({
        ...daily,
        newestSuccess: new Date('2025-06-09T03:00:00Z'),
        now: new Date('2025-06-10T02:00:00Z'),
      }),
    ).toBe(false);
  });

  it('is true at 04:00 when the newest success is yesterday 03:00 (today 03:00 was missed)', () => {
    expect(
      needsCatchUp({
        ...daily,
        newestSuccess: new Date('2025-06-09T03:00:00Z'),
        now: new Date('2025-06-10T04:00:00Z'),
      }),
    ).toBe(true);
  });

  it('is true when there is no successful backup at all', () => {
    expect(needsCatchUp({ ...daily, now: new Date('2025-06-10T04:00:00Z') })).toBe(true);
  });

  it('is false when today 03:00 ran (a few seconds late) and now is 04:00', () => {
    expect(
      needsCatchUp({
        ...daily,
        newestSuccess: new Date('2025-06-10T03:00:04Z'),
        now: new Date('2025-06-10T04:00:00Z'),
      }),
    ).toBe(false);
  });

  it('reads the slot in the configured zone', () => {
    // 03:00 in Berlin in June is 01:00 UTC: at 02:00 UTC that slot has passed, while 03:00 UTC has not.
    const input = {
      expression: '0 3 * * *',
      timeZone: 'Europe/Berlin',
      newestSuccess: new Date('2025-06-09T05:00:00Z'),
      now: new Date('2025-06-10T02:00:00Z'),
    };
    expect(needsCatchUp(input)).toBe(true);
    expect(catchUpDecision(input).previousSlot?.toISOString()).toBe('2025-06-10T01:00:00.000Z');
    expect(needsCatchUp({ ...input, timeZone: 'UTC' })).toBe(false);
  });

  it('counts a run exactly at the slot as covering it', () => {
    expect(previousRun('0 3 * * *', 'UTC', new Date('2025-06-10T03:00:00Z'))?.toISOString()).toBe(
      '2025-06-10T03:00:00.000Z',
    );
  });
});

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['90s', 90_000],
    ['30m', 1_800_000],
    ['26h', 93_600_000],
    ['7d', 604_800_000],
    ['1w', 604_800_000],
    ['1h30m', 5_400_000],
    [' 1.5h ', 5_400_000],
    ['0s', 0],
  ])('%j → %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', '10', 'h', '5x', '-5m', '1h 30 minutes', 'ms'])('rejects %j with a DurationError', (text) => {
    expect(() => parseDuration(text)).toThrow(DurationError);
    expect(() => parseDuration(text)).toThrow(/use a number followed by ms, s, m, h, d or w/);
  });

  it('passes milliseconds given as a number through and formats durations back', () => {
    expect(parseDuration(1234)).toBe(1234);
    expect(() => parseDuration(-1)).toThrow(DurationError);
    expect(formatDuration(93_784_000)).toBe('1d2h3m4s');
    expect(formatDuration(250)).toBe('250ms');
  });
});
