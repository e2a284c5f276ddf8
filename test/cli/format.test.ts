import { describe, expect, it } from 'vitest';
import { formatProgress } from '../../src/cli/progress.js';
import { durationAsWritten, parseDuration } from '../../src/util/duration.js';
import { closestMatch, didYouMean } from '../../src/util/suggest.js';
import { formatTime } from '../../src/util/time.js';

describe('did you mean', () => {
  it('finds the near miss, and nothing for what is far from every known value', () => {
    expect(closestMatch('lastest', ['latest', 'backup-2026-03-01-030000.db'])).toBe('latest');
    expect(closestMatch('LITEKEEP_TIMEZONE', ['LITEKEEP_TIME_ZONE', 'LITEKEEP_TIMEOUT'])).toBe(
      'LITEKEEP_TIME_ZONE',
    );
    expect(closestMatch('timezone', ['timeZone', 'database'])).toBe('timeZone');
    expect(closestMatch('backup-2026-03-01-03000.db.zst', ['backup-2026-03-01-030000.db.zst'])).toBe(
      'backup-2026-03-01-030000.db.zst',
    );
    expect(closestMatch('frobnicate', ['latest', 'timeZone'])).toBeUndefined();
    expect(closestMatch('latest', ['latest'])).toBeUndefined();
    expect(didYouMean('ofsite', ['offsite', 'usb'])).toBe(' (did you mean offsite?)');
    expect(didYouMean('zzz', ['offsite'])).toBe('');
  });
});

describe('durations and times as people read them', () => {
  it('shows a configured duration in the unit it was most likely written in, and reads back the same', () => {
    for (const [ms, text] of [
      [93_600_000, '26h'],
      [600_000, '10m'],
      [10_000, '10s'],
      [604_800_000, '1w'],
      [86_400_000, '1d'],
      [0, '0s'],
      [1500, '1500ms'],
    ] as const) {
      expect(durationAsWritten(ms)).toBe(text);
      expect(parseDuration(text)).toBe(ms);
    }
  });

  it('one time format: wall clock in the zone, and the zone', () => {
    const at = new Date('2026-03-01T02:00:00Z');
    expect(formatTime(at, 'Europe/Berlin')).toBe('2026-03-01 03:00:00 Europe/Berlin');
    expect(formatTime(at, 'UTC')).toBe('2026-03-01 02:00:00 UTC');
  });
});

describe('the progress line', () => {
  const MiB = 1024 * 1024;
  it('has the share, the bytes, the rate and the time left once the size is known', () => {
    expect(formatProgress({ label: 'compress', bytes: 10 * MiB, total: 40 * MiB, elapsedMs: 2000 })).toBe(
      'compress   25%  10.0 MiB of 40.0 MiB  5.0 MiB/s  ETA 6.0 s',
    );
    expect(
      formatProgress({ label: 'upload to offsite', bytes: 40 * MiB, total: 40 * MiB, elapsedMs: 4000 }),
    ).toBe('upload to offsite  100%  40.0 MiB of 40.0 MiB  10.0 MiB/s');
  });

  it('says only what it knows: no rate at the very start, no share without a size', () => {
    expect(formatProgress({ label: 'snapshot', bytes: MiB, total: 4 * MiB, elapsedMs: 10 })).toBe(
      'snapshot   25%  1.0 MiB of 4.0 MiB',
    );
    expect(formatProgress({ label: 'download', bytes: 3 * MiB, elapsedMs: 1000 })).toBe(
      'download  3.0 MiB  3.0 MiB/s',
    );
    // A copy that comes out bigger than the estimate never shows more than 100%.
    expect(formatProgress({ label: 'snapshot', bytes: 5 * MiB, total: 4 * MiB, elapsedMs: 10 })).toMatch(
      /^snapshot {2}100%/,
    );
  });
});
