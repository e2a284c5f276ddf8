import { describe, expect, it } from 'vitest';
import {
  DEFAULT_RETENTION,
  RetentionPolicyError,
  RotationPolicy,
  assertUsablePolicy,
  describePolicy,
  isEffectivelyEmpty,
  parseRetentionPolicy,
  parseWithin,
  subtractWithin,
  validateTimeZone,
} from '../../src/retention/index.js';

function errorOf(fn: () => unknown): RetentionPolicyError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(RetentionPolicyError);
    return error as RetentionPolicyError;
  }
  throw new Error('expected a RetentionPolicyError');
}

describe('parseRetentionPolicy', () => {
  it('accepts numbers and numeric strings and skips unset values', () => {
    expect(
      parseRetentionPolicy(
        { daily: '7', weekly: 4, monthly: ' 12 ', yearly: '', hourly: undefined, last: null, within: '30D' },
        'env',
      ),
    ).toEqual({ daily: 7, weekly: 4, monthly: 12, within: '30d' });
    expect(parseRetentionPolicy({ daily: 0 }, 'env')).toEqual({ daily: 0 });
  });

  it.each([
    ['daily', -1],
    ['weekly', 1.5],
    ['monthly', 'abc'],
    ['hourly', '-1'],
    ['yearly', '1.5'],
    ['last', true],
  ])('rejects %s = %j naming the key, the source and the accepted form', (key, value) => {
    const error = errorOf(() => parseRetentionPolicy({ [key]: value }, 'LITEKEEP_RETENTION_X'));
    expect(error.key).toBe(key);
    expect(error.exitCode).toBe(2);
    expect(error.message).toContain(`retention ${key}`);
    expect(error.message).toContain('LITEKEEP_RETENTION_X');
    expect(error.message).toContain('whole number');
    expect(error.message).not.toContain('\n');
  });

  it('rejects an unknown rule such as fortnightly, listing the known ones', () => {
    const error = errorOf(() =>
      parseRetentionPolicy({ daily: 7, fortnightly: 2 }, 'config file litekeep.yaml'),
    );
    expect(error.key).toBe('fortnightly');
    expect(error.message).toMatch(/"fortnightly" in config file litekeep\.yaml/);
    expect(error.message).toContain('last, hourly, daily, weekly, monthly, yearly, within');
  });

  it.each(['3x', '3', 'd', '1d1d', '-3d', '1.5d', 30])('rejects the within duration %j', (within) => {
    const error = errorOf(() => parseRetentionPolicy({ within }, '--keep-within'));
    expect(error.key).toBe('within');
    expect(error.message).toContain('within');
    expect(error.message).toContain('--keep-within');
    expect(error.message).toContain('30d, 12h, 2w, 1y2m');
  });
});

describe('parseWithin and subtractWithin', () => {
  it('reads every unit, in any order, and writes it canonically', () => {
    expect(parseWithin('1y2m')).toEqual({ years: 1, months: 2, weeks: 0, days: 0, hours: 0, text: '1y2m' });
    expect(parseWithin('12h3d 2w')).toEqual({
      years: 0,
      months: 0,
      weeks: 2,
      days: 3,
      hours: 12,
      text: '2w3d12h',
    });
    expect(() => parseWithin('3x')).toThrow(RetentionPolicyError);
    expect(() => parseWithin('')).toThrow(/within duration ""/);
  });

  it('subtracts months by the calendar and clamps to the end of a shorter month', () => {
    const at = (iso: string) => new Date(iso);
    expect(subtractWithin(at('2025-03-31T10:00:00Z'), parseWithin('1m'), 'UTC').toISOString()).toBe(
      '2025-02-28T10:00:00.000Z',
    );
    expect(subtractWithin(at('2024-02-29T10:00:00Z'), parseWithin('1y'), 'UTC').toISOString()).toBe(
      '2023-02-28T10:00:00.000Z',
    );
    expect(subtractWithin(at('2026-01-15T10:00:00.250Z'), parseWithin('2m'), 'UTC').toISOString()).toBe(
      '2025-11-15T10:00:00.250Z',
    );
    // One local day across New York's spring forward is 23 hours; 24h is 24 hours.
    const newest = at('2026-03-08T16:00:00Z'); // 12:00 EDT
    expect(subtractWithin(newest, parseWithin('1d'), 'America/New_York').toISOString()).toBe(
      '2026-03-07T17:00:00.000Z',
    );
    expect(subtractWithin(newest, parseWithin('24h'), 'America/New_York').toISOString()).toBe(
      '2026-03-07T16:00:00.000Z',
    );
  });
});

describe('zones, emptiness and descriptions', () => {
  it('validateTimeZone accepts IANA names and rejects Mars/Olympus naming the source', () => {
    expect(validateTimeZone('Europe/Berlin', 'config')).toBe('Europe/Berlin');
    const error = errorOf(() => validateTimeZone('Mars/Olympus', 'LITEKEEP_TIME_ZONE'));
    expect(error.key).toBe('timeZone');
    expect(error.message).toMatch(/"Mars\/Olympus" in LITEKEEP_TIME_ZONE.*IANA/);
  });

  it('isEffectivelyEmpty and assertUsablePolicy agree on what keeps nothing by rule', () => {
    for (const empty of [{}, { daily: 0, weekly: 0, monthly: 0 }, { within: '0d' }]) {
      expect(isEffectivelyEmpty(empty)).toBe(true);
      expect(() => assertUsablePolicy(empty)).toThrow(/keeps nothing by rule.*daily: 7/);
    }
    for (const usable of [DEFAULT_RETENTION, { last: 1 }, { daily: 0, within: '2w' }]) {
      expect(isEffectivelyEmpty(usable)).toBe(false);
      expect(() => assertUsablePolicy(usable)).not.toThrow();
    }
  });

  it('describePolicy gives a short human text', () => {
    expect(describePolicy(DEFAULT_RETENTION)).toBe('7 daily, 4 weekly, 12 monthly');
    expect(describePolicy({ last: 3, hourly: 24, yearly: 0, within: '30d' })).toBe(
      'last 3, 24 hourly, within 30d',
    );
    expect(describePolicy({})).toMatch(/keep everything/);
  });

  it('DEFAULT_RETENTION is 7/4/12 and cannot be changed by accident', () => {
    expect(DEFAULT_RETENTION).toEqual({ daily: 7, weekly: 4, monthly: 12 });
    expect(Object.isFrozen(DEFAULT_RETENTION)).toBe(true);
  });

  it('RotationPolicy validates its counts', () => {
    expect(new RotationPolicy(14, 8, 24).toPolicy()).toEqual({ daily: 14, weekly: 8, monthly: 24 });
    expect(() => new RotationPolicy(-1)).toThrow(/retention daily -1 in RotationPolicy/);
    expect(() => new RotationPolicy({ within: '3x' })).toThrow(/within/);
  });
});
