import { describe, expect, it } from 'vitest';
import {
  RotationPolicy,
  applySafetyRails,
  planRetention,
  type Decision,
  type RetentionPlan,
} from '../../src/retention/index.js';
import { formatZoned, zonedToDate } from '../../src/util/time.js';

interface B {
  id: string;
  time: Date;
}

const BERLIN = 'Europe/Berlin';
const NEW_YORK = 'America/New_York';

function at(iso: string, id = iso): B {
  return { id, time: new Date(iso) };
}

/** One backup per local day at hh:mm in `zone`, from `last` going back `days` days. */
function dailyBackups(last: string, days: number, zone: string, hour = 3, minute = 0): B[] {
  const [y, m, d] = last.split('-').map(Number);
  const out: B[] = [];
  for (let i = 0; i < days; i++) {
    const day = new Date(Date.UTC(y, m - 1, d - i));
    const time = zonedToDate(
      {
        year: day.getUTCFullYear(),
        month: day.getUTCMonth() + 1,
        day: day.getUTCDate(),
        hour,
        minute,
        second: 0,
      },
      zone,
    );
    out.push({ id: `b-${day.toISOString().slice(0, 10)}-${hour}${minute}`, time });
  }
  return out;
}

/** Local wall-clock date of each kept backup, with its reasons, newest first. */
function keptLocal(plan: RetentionPlan<B>, zone: string, withTime = false): [string, string[]][] {
  return plan.keep.map((d) => [formatZoned(d.backup.time, zone).slice(0, withTime ? 16 : 10), d.reasons]);
}

/** Deterministic Fisher–Yates so a failure can be reproduced. */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

const ids = (ds: Decision<B>[]) => ds.map((d) => d.backup.id);

describe('the seed example: daily backups, 7 daily / 4 weekly / 12 monthly', () => {
  const backups = dailyBackups('2026-03-01', 400, BERLIN);
  const plan = planRetention(backups, { daily: 7, weekly: 4, monthly: 12 }, { timeZone: BERLIN });

  it('keeps exactly the newest of each of the last 7 days, 4 ISO weeks and 12 months (20 files)', () => {
    expect(keptLocal(plan, BERLIN)).toEqual([
      ['2026-03-01', ['daily 2026-03-01', 'weekly 2026-W09', 'monthly 2026-03']],
      ['2026-02-28', ['daily 2026-02-28', 'monthly 2026-02']],
      ['2026-02-27', ['daily 2026-02-27']],
      ['2026-02-26', ['daily 2026-02-26']],
      ['2026-02-25', ['daily 2026-02-25']],
      ['2026-02-24', ['daily 2026-02-24']],
      ['2026-02-23', ['daily 2026-02-23']],
      ['2026-02-22', ['weekly 2026-W08']],
      ['2026-02-15', ['weekly 2026-W07']],
      ['2026-02-08', ['weekly 2026-W06']],
      ['2026-01-31', ['monthly 2026-01']],
      ['2025-12-31', ['monthly 2025-12']],
      ['2025-11-30', ['monthly 2025-11']],
      ['2025-10-31', ['monthly 2025-10']],
      ['2025-09-30', ['monthly 2025-09']],
      ['2025-08-31', ['monthly 2025-08']],
      ['2025-07-31', ['monthly 2025-07']],
      ['2025-06-30', ['monthly 2025-06']],
      ['2025-05-31', ['monthly 2025-05']],
      ['2025-04-30', ['monthly 2025-04']],
    ]);
  });

  it('removes every other backup, newest first, with no reasons, and passes the objects through', () => {
    expect(plan.keep).toHaveLength(20);
    expect(plan.remove).toHaveLength(380);
    expect(plan.remove.every((d) => d.reasons.length === 0)).toBe(true);
    const times = plan.remove.map((d) => d.backup.time.getTime());
    expect(times).toEqual([...times].sort((a, b) => b - a));
    expect(formatZoned(plan.remove[0].backup.time, BERLIN)).toBe('2026-02-21 03:00:00');
    expect(backups).toContain(plan.keep[5].backup);
  });

  it('RotationPolicy() mirrors the seed defaults and gives the same plan', () => {
    const seed = new RotationPolicy();
    expect(seed.toPolicy()).toEqual({ daily: 7, weekly: 4, monthly: 12 });
    expect([seed.dailyKeep, seed.weeklyKeep, seed.monthlyKeep]).toEqual([7, 4, 12]);
    expect(ids(seed.plan(backups, { timeZone: BERLIN }).keep)).toEqual(ids(plan.keep));
    expect(new RotationPolicy(2, 0, 0).plan(backups, { timeZone: BERLIN }).keep).toHaveLength(2);
    expect(new RotationPolicy({ yearly: 2 }).toPolicy()).toEqual({ yearly: 2 });
  });
});

describe('daylight-saving changes', () => {
  it('Berlin spring forward: 00:30 and 23:30 backups land in their local days', () => {
    // 2026-03-29 02:00 CET -> 03:00 CEST. UTC instants written out so the test does not trust our helpers.
    const backups = [
      at('2026-03-27T23:30:00Z', '03-28 00:30'),
      at('2026-03-28T22:30:00Z', '03-28 23:30'),
      at('2026-03-28T23:30:00Z', '03-29 00:30'),
      at('2026-03-29T21:30:00Z', '03-29 23:30'),
      at('2026-03-29T22:30:00Z', '03-30 00:30'),
      at('2026-03-30T21:30:00Z', '03-30 23:30'),
    ];
    const plan = planRetention(backups, { daily: 10 }, { timeZone: BERLIN });
    expect(plan.keep.map((d) => [d.backup.id, d.reasons])).toEqual([
      ['03-30 23:30', ['daily 2026-03-30']],
      ['03-29 23:30', ['daily 2026-03-29']],
      ['03-28 23:30', ['daily 2026-03-28']],
    ]);
    expect(ids(plan.remove)).toEqual(['03-30 00:30', '03-29 00:30', '03-28 00:30']);
  });

  it('Berlin fall back: the repeated 02:30 is one local hour and one local day', () => {
    // 2026-10-25 03:00 CEST -> 02:00 CET: 02:30 happens at 00:30Z and again at 01:30Z.
    const backups = [
      at('2026-10-24T22:30:00Z', '10-25 00:30'),
      at('2026-10-25T00:30:00Z', '10-25 02:30 CEST'),
      at('2026-10-25T01:30:00Z', '10-25 02:30 CET'),
      at('2026-10-25T22:30:00Z', '10-25 23:30'),
    ];
    const daily = planRetention(backups, { daily: 5 }, { timeZone: BERLIN });
    expect(ids(daily.keep)).toEqual(['10-25 23:30']);
    const hourly = planRetention(backups, { hourly: 5 }, { timeZone: BERLIN });
    expect(hourly.keep.map((d) => [d.backup.id, d.reasons])).toEqual([
      ['10-25 23:30', ['hourly 2026-10-25 23h']],
      ['10-25 02:30 CET', ['hourly 2026-10-25 02h']],
      ['10-25 00:30', ['hourly 2026-10-25 00h']],
    ]);
  });

  it('New York spring forward and fall back: days split at local midnight, not UTC midnight', () => {
    // 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
    const backups = [
      at('2026-03-08T04:30:00Z', '03-07 23:30'),
      at('2026-03-08T05:30:00Z', '03-08 00:30'),
      at('2026-03-09T03:30:00Z', '03-08 23:30'),
      at('2026-03-09T04:30:00Z', '03-09 00:30'),
      at('2026-11-01T03:30:00Z', '10-31 23:30'),
      at('2026-11-01T04:30:00Z', '11-01 00:30'),
      at('2026-11-01T06:30:00Z', '11-01 01:30 EST'),
      at('2026-11-02T04:30:00Z', '11-01 23:30'),
      at('2026-11-02T05:30:00Z', '11-02 00:30'),
    ];
    const plan = planRetention(shuffled(backups, 7), { daily: 20 }, { timeZone: NEW_YORK });
    expect(plan.keep.map((d) => [d.backup.id, d.reasons])).toEqual([
      ['11-02 00:30', ['daily 2026-11-02']],
      ['11-01 23:30', ['daily 2026-11-01']],
      ['10-31 23:30', ['daily 2026-10-31']],
      ['03-09 00:30', ['daily 2026-03-09']],
      ['03-08 23:30', ['daily 2026-03-08']],
      ['03-07 23:30', ['daily 2026-03-07']],
    ]);
    // In UTC the same backups would bucket differently: the zone really is applied.
    const utc = planRetention(backups, { daily: 20 }, { timeZone: 'UTC' });
    expect(ids(utc.keep)).not.toEqual(ids(plan.keep));
  });
});

describe('ISO weeks across a new year', () => {
  it('2026-12-31 and 2027-01-01 share 2026-W53; 2027-01-04 starts 2027-W01', () => {
    const backups = ['2026-12-28', '2026-12-31', '2027-01-01', '2027-01-03', '2027-01-04'].map((d) =>
      at(`${d}T12:00:00Z`, d),
    );
    const plan = planRetention(backups, { weekly: 5 }, { timeZone: 'UTC' });
    expect(plan.keep.map((d) => [d.backup.id, d.reasons])).toEqual([
      ['2027-01-04', ['weekly 2027-W01']],
      ['2027-01-03', ['weekly 2026-W53']],
    ]);
    const withoutSunday = planRetention(
      backups.filter((b) => b.id !== '2027-01-03'),
      { weekly: 5 },
      { timeZone: 'UTC' },
    );
    expect(withoutSunday.keep.map((d) => [d.backup.id, d.reasons])).toEqual([
      ['2027-01-04', ['weekly 2027-W01']],
      ['2027-01-01', ['weekly 2026-W53']],
    ]);
  });

  it('2020-12-31 is 2020-W53 and 2021-01-03 too; 2024-12-30 belongs to 2025-W01', () => {
    const plan = planRetention(
      [at('2020-12-31T12:00:00Z', 'a'), at('2021-01-03T12:00:00Z', 'b'), at('2024-12-30T12:00:00Z', 'c')],
      { weekly: 3, yearly: 3 },
      { timeZone: 'UTC' },
    );
    expect(plan.keep.map((d) => [d.backup.id, d.reasons])).toEqual([
      ['c', ['weekly 2025-W01', 'yearly 2024']],
      ['b', ['weekly 2020-W53', 'yearly 2021']],
      ['a', ['yearly 2020']],
    ]);
  });
});

describe('irregular backups', () => {
  // Several per day, then gaps of weeks, times in Berlin.
  const backups = [
    at('2026-02-20T06:00:00Z', 'feb20-a'),
    at('2026-02-20T12:00:00Z', 'feb20-b'),
    at('2026-02-20T18:00:00Z', 'feb20-c'),
    at('2026-02-19T09:00:00Z', 'feb19-a'),
    at('2026-02-19T21:00:00Z', 'feb19-b'), // 22:00 Berlin, still Feb 19
    at('2026-02-19T23:30:00Z', 'feb20-early'), // 00:30 Berlin on Feb 20
    at('2026-01-28T10:00:00Z', 'jan28'),
    at('2026-01-05T10:00:00Z', 'jan05'),
    at('2026-01-04T10:00:00Z', 'jan04'),
    at('2025-11-11T10:00:00Z', 'nov11'),
  ];
  const policy = { daily: 3, weekly: 3, monthly: 3 };

  it('keeps the newest of each bucket and skips empty periods', () => {
    const plan = planRetention(backups, policy, { timeZone: BERLIN });
    expect(plan.keep.map((d) => [d.backup.id, d.reasons])).toEqual([
      ['feb20-c', ['daily 2026-02-20', 'weekly 2026-W08', 'monthly 2026-02']],
      ['feb19-b', ['daily 2026-02-19']],
      ['jan28', ['daily 2026-01-28', 'weekly 2026-W05', 'monthly 2026-01']],
      ['jan05', ['weekly 2026-W02']],
      ['nov11', ['monthly 2025-11']],
    ]);
    expect(ids(plan.remove)).toEqual(['feb20-b', 'feb20-a', 'feb20-early', 'feb19-a', 'jan04']);
  });

  it('gives the same plan whatever the input order', () => {
    const expected = planRetention(backups, policy, { timeZone: BERLIN });
    for (const seed of [1, 2, 3, 42, 1234]) {
      const plan = planRetention(shuffled(backups, seed), policy, { timeZone: BERLIN });
      expect(ids(plan.keep)).toEqual(ids(expected.keep));
      expect(ids(plan.remove)).toEqual(ids(expected.remove));
      expect(plan.keep.map((d) => d.reasons)).toEqual(expected.keep.map((d) => d.reasons));
    }
  });

  it('breaks equal times by id, treating a higher -N suffix as newer', () => {
    const time = '2026-02-20T02:00:00Z';
    const same = [
      at(time, 'backup-2026-02-20-030000.db.zst'),
      at(time, 'backup-2026-02-20-030000-2.db.zst'),
      at(time, 'backup-2026-02-20-030000-10.db.zst'),
    ];
    for (const seed of [1, 2, 3]) {
      const plan = planRetention(shuffled(same, seed), { daily: 1 }, { timeZone: BERLIN });
      expect(ids(plan.keep)).toEqual(['backup-2026-02-20-030000-10.db.zst']);
      expect(ids(plan.remove)).toEqual([
        'backup-2026-02-20-030000-2.db.zst',
        'backup-2026-02-20-030000.db.zst',
      ]);
    }
    const opaque = planRetention([at(time, 'x1'), at(time, 'x2')], { last: 1 }, { timeZone: BERLIN });
    expect(ids(opaque.keep)).toEqual(['x2']);
  });
});

describe('hourly', () => {
  it('hourly: 24 keeps the newest backup of each of the last 24 local hours', () => {
    const backups: B[] = [];
    const end = Date.parse('2026-03-01T12:45:00Z');
    // Every 30 minutes for three days: two per hour.
    for (let t = end; t > end - 3 * 86400_000; t -= 1800_000)
      backups.push({ id: `t${t}`, time: new Date(t) });
    const plan = planRetention(backups, { hourly: 24 }, { timeZone: BERLIN });
    expect(plan.keep).toHaveLength(24);
    expect(plan.keep.map((d) => formatZoned(d.backup.time, BERLIN).slice(11, 16))).toEqual(
      plan.keep.map(() => expect.stringMatching(/:45$/)),
    );
    expect(plan.keep[0].reasons).toEqual(['hourly 2026-03-01 13h']);
    expect(plan.keep[23].reasons).toEqual(['hourly 2026-02-28 14h']);
    expect(plan.remove).toHaveLength(backups.length - 24);
  });
});

describe('a machine that was off for a while', () => {
  it('counts only periods that hold a backup', () => {
    // Daily backups, but none from 2025-12-20 to 2026-02-05 (all of January missing): January is skipped, not counted.
    const backups = dailyBackups('2026-02-20', 200, BERLIN).filter((b) => {
      const day = formatZoned(b.time, BERLIN).slice(0, 10);
      return day < '2025-12-20' || day > '2026-02-05';
    });
    const plan = planRetention(backups, { daily: 3, weekly: 3, monthly: 4 }, { timeZone: BERLIN });
    expect(keptLocal(plan, BERLIN)).toEqual([
      ['2026-02-20', ['daily 2026-02-20', 'weekly 2026-W08', 'monthly 2026-02']],
      ['2026-02-19', ['daily 2026-02-19']],
      ['2026-02-18', ['daily 2026-02-18']],
      ['2026-02-15', ['weekly 2026-W07']],
      ['2026-02-08', ['weekly 2026-W06']],
      ['2025-12-19', ['monthly 2025-12']],
      ['2025-11-30', ['monthly 2025-11']],
      ['2025-10-31', ['monthly 2025-10']],
    ]);
  });
});

describe('within, last and yearly', () => {
  const hourlyTill = (endIso: string, hours: number) =>
    Array.from({ length: hours }, (_, i) => {
      const time = new Date(Date.parse(endIso) - i * 3600_000);
      return { id: time.toISOString(), time };
    });

  it('within counts back from the newest backup, not from now, boundary included (h)', () => {
    const backups = hourlyTill('2020-06-01T12:00:00Z', 48);
    const plan = planRetention(backups, { within: '12h' }, { timeZone: 'UTC' });
    expect(plan.keep).toHaveLength(13);
    expect(plan.keep.at(-1)!.backup.id).toBe('2020-06-01T00:00:00.000Z');
    expect(plan.keep.every((d) => d.reasons.join() === 'within 12h')).toBe(true);
  });

  it('within in days follows the local calendar across a DST switch (d)', () => {
    // 2026-03-29 12:00 CEST minus one local day is 2026-03-28 12:00 CET: 23 hours earlier.
    const backups = [
      at('2026-03-29T10:00:00Z', 'newest'),
      at('2026-03-28T11:00:00Z', 'exactly 1d'),
      at('2026-03-28T10:30:00Z', '23.5h before'),
    ];
    const plan = planRetention(backups, { within: '1d' }, { timeZone: BERLIN });
    expect(ids(plan.keep)).toEqual(['newest', 'exactly 1d']);
    expect(ids(plan.remove)).toEqual(['23.5h before']);
  });

  it('within in weeks, months and years (w, m, y) and combined', () => {
    const backups = dailyBackups('2024-03-31', 800, 'UTC', 12);
    const oldestKept = (within: string) =>
      formatZoned(planRetention(backups, { within }, { timeZone: 'UTC' }).keep.at(-1)!.backup.time, 'UTC');
    expect(oldestKept('2w')).toBe('2024-03-17 12:00:00');
    expect(oldestKept('1m')).toBe('2024-02-29 12:00:00'); // 31 March - 1 month: clamped to the month's end
    expect(oldestKept('1y')).toBe('2023-03-31 12:00:00');
    expect(oldestKept('1y1m')).toBe('2023-02-28 12:00:00');
    expect(oldestKept('1m1w2d')).toBe('2024-02-20 12:00:00');
    expect(oldestKept('1d12h')).toBe('2024-03-30 12:00:00');
    const plan = planRetention(backups, { within: '2w' }, { timeZone: 'UTC' });
    expect(plan.keep).toHaveLength(15);
    expect(plan.keep[0].reasons).toEqual(['within 2w']);
  });

  it('last n keeps the n newest whatever their buckets, with ordinals', () => {
    const backups = [
      at('2026-01-01T10:00:00Z', 'a'),
      at('2026-01-01T10:00:01Z', 'b'),
      at('2025-01-01T10:00:00Z', 'c'),
    ];
    const plan = planRetention(backups, { last: 2, daily: 1 }, { timeZone: 'UTC' });
    expect(plan.keep.map((d) => [d.backup.id, d.reasons])).toEqual([
      ['b', ['last 1', 'daily 2026-01-01']],
      ['a', ['last 2']],
    ]);
    expect(ids(plan.remove)).toEqual(['c']);
  });

  it('yearly keeps the newest backup of each of the last n years', () => {
    const backups = dailyBackups('2026-03-01', 5 * 366, BERLIN);
    const plan = planRetention(backups, { yearly: 4 }, { timeZone: BERLIN });
    expect(keptLocal(plan, BERLIN)).toEqual([
      ['2026-03-01', ['yearly 2026']],
      ['2025-12-31', ['yearly 2025']],
      ['2024-12-31', ['yearly 2024']],
      ['2023-12-31', ['yearly 2023']],
    ]);
  });

  it('within and count rules add up, each with its reason', () => {
    const backups = hourlyTill('2026-03-01T12:00:00Z', 72);
    const plan = planRetention(backups, { daily: 3, within: '3h' }, { timeZone: 'UTC' });
    expect(plan.keep.map((d) => [d.backup.id, d.reasons])).toEqual([
      ['2026-03-01T12:00:00.000Z', ['daily 2026-03-01', 'within 3h']],
      ['2026-03-01T11:00:00.000Z', ['within 3h']],
      ['2026-03-01T10:00:00.000Z', ['within 3h']],
      ['2026-03-01T09:00:00.000Z', ['within 3h']],
      ['2026-02-28T23:00:00.000Z', ['daily 2026-02-28']],
      ['2026-02-27T23:00:00.000Z', ['daily 2026-02-27']],
    ]);
  });
});

describe('empty policy, empty input and safety rails', () => {
  const backups = dailyBackups('2026-03-01', 10, BERLIN);

  it('an empty or all-zero policy keeps everything', () => {
    for (const policy of [{}, { daily: 0, weekly: 0 }, { within: '0d' }]) {
      const plan = planRetention(shuffled(backups, 5), policy, { timeZone: BERLIN });
      expect(plan.remove).toEqual([]);
      expect(ids(plan.keep)).toEqual(backups.map((b) => b.id));
      expect(plan.keep.every((d) => d.reasons.join() === 'no policy')).toBe(true);
    }
  });

  it('plans nothing for no backups', () => {
    expect(planRetention([], { daily: 7, within: '3d' }, { timeZone: BERLIN })).toEqual({
      keep: [],
      remove: [],
      future: [],
      failed: [],
    });
  });

  it('rejects a bad zone, a hand-built negative count and a backup without a valid time', () => {
    expect(() => planRetention(backups, { daily: 1 }, { timeZone: 'Mars/Olympus' })).toThrow(/Mars\/Olympus/);
    expect(() => planRetention(backups, { daily: -1 }, { timeZone: BERLIN })).toThrow(/daily/);
    expect(() =>
      planRetention([{ id: 'x', time: new Date('nope') }], { daily: 1 }, { timeZone: BERLIN }),
    ).toThrow(/"x"/);
  });

  it('applySafetyRails moves the newest backup back to keep, and leaves a sound plan alone', () => {
    const [newest, second, third] = dailyBackups('2026-03-01', 3, BERLIN);
    const broken: RetentionPlan<B> = {
      future: [],
      failed: [],
      keep: [{ backup: second, reasons: ['daily 2026-02-28'] }],
      remove: [
        { backup: newest, reasons: [] },
        { backup: third, reasons: [] },
      ],
    };
    const fixed = applySafetyRails(broken);
    expect(fixed.keep.map((d) => [d.backup.id, d.reasons])).toEqual([
      [newest.id, ['newest']],
      [second.id, ['daily 2026-02-28']],
    ]);
    expect(ids(fixed.remove)).toEqual([third.id]);
    expect(ids(broken.remove)).toEqual([newest.id, third.id]);

    const sound = planRetention(backups, { daily: 2 }, { timeZone: BERLIN });
    const railed = applySafetyRails(sound);
    expect(ids(railed.keep)).toEqual(ids(sound.keep));
    expect(ids(railed.remove)).toEqual(ids(sound.remove));
  });
});

describe('series, verification and the clock', () => {
  type G = B & { group?: string; good?: boolean; failed?: string };
  const local = (day: string, time: string) =>
    zonedToDate(
      {
        year: Number(day.slice(0, 4)),
        month: Number(day.slice(5, 7)),
        day: Number(day.slice(8, 10)),
        hour: Number(time.slice(0, 2)),
        minute: Number(time.slice(3, 5)),
        second: 0,
      },
      BERLIN,
    );

  it('manual backups are a series of their own: the nightly one and both manual ones survive the day', () => {
    const nightly: G[] = dailyBackups('2026-03-10', 10, BERLIN).map((b) => ({ ...b, group: 'scheduled' }));
    const before: G = { id: 'manual-1400', time: local('2026-03-10', '14:00'), group: 'manual' };
    const after: G = { id: 'manual-1500', time: local('2026-03-10', '15:00'), group: 'manual' };
    const policy = { daily: 7, weekly: 4, monthly: 12, manual: '7d' };
    const plan = planRetention([...nightly, before, after], policy, { timeZone: BERLIN });
    const kept = ids(plan.keep);
    expect(kept).toContain(before.id);
    expect(kept).toContain(after.id);
    expect(kept).toContain(nightly[0].id);
    // The scheduled series is exactly what it would be without any manual backup.
    const alone = planRetention(nightly, policy, { timeZone: BERLIN });
    expect(kept.filter((id) => !id.startsWith('manual'))).toEqual(ids(alone.keep));
    expect(plan.keep.find((d) => d.backup.id === before.id)!.reasons).toEqual(['manual within 7d']);
    // Without grouping (one series), the manual 15:00 backup takes that day's daily slot: the 03:00 one goes.
    const flat = planRetention(
      [...nightly, before, after].map(({ id, time }) => ({ id, time })),
      { daily: 7, weekly: 4, monthly: 12 },
      { timeZone: BERLIN },
    );
    expect(ids(flat.remove)).toContain(nightly[0].id);
  });

  it('manual backups older than the manual span are thinned by the rules like any series', () => {
    const manual: G[] = [0, 1, 2].map((i) => ({
      id: `m${i}`,
      time: local('2026-02-01', `1${i}:00`),
      group: 'manual',
    }));
    const nightly: G = { id: 'nightly', time: local('2026-03-01', '03:00'), group: 'scheduled' };
    const now = local('2026-03-01', '12:00');
    const plan = planRetention([nightly, ...manual], { daily: 7, manual: '7d' }, { timeZone: BERLIN, now });
    expect(ids(plan.keep)).toEqual(['nightly', 'm2']);
    expect(plan.remove.map((d) => d.notKept)).toEqual([
      ['daily: 2026-02-01 already kept by a newer backup', 'manual: older than 7d'],
      ['daily: 2026-02-01 already kept by a newer backup', 'manual: older than 7d'],
    ]);
    // While no backup at all is taken, manual backups do not age out.
    const idle = planRetention(manual, { daily: 7, manual: '7d' }, { timeZone: BERLIN, now });
    expect(ids(idle.keep)).toEqual(['m2', 'm1', 'm0']);
  });

  it('backups whose newest verification failed count toward no rule and are kept aside', () => {
    const backups: G[] = dailyBackups('2026-03-03', 3, BERLIN);
    // The two newest failed verification: with them not counted, daily 2 keeps the two good ones.
    backups[0].failed = 'failed verification: sha256 differs';
    backups[1].failed = 'failed verification: integrity';
    const extra = dailyBackups('2026-02-28', 1, BERLIN)[0];
    const plan = planRetention([...backups, extra], { daily: 2 }, { timeZone: BERLIN });
    expect(plan.failed.map((b) => b.id)).toEqual([backups[0].id, backups[1].id]);
    expect(ids(plan.remove)).toEqual([]);
    expect(plan.keep.find((d) => d.backup.id === backups[2].id)!.reasons).toEqual(['daily 2026-03-01']);
    expect(plan.keep.find((d) => d.backup.id === extra.id)!.reasons).toEqual(['daily 2026-02-28']);
    expect(plan.keep.find((d) => d.backup.id === backups[0].id)!.reasons).toEqual([
      'not counted: failed verification: sha256 differs',
    ]);
  });

  it('a backup dated in the future is reported and cannot push the history out through within', () => {
    const now = local('2026-03-10', '12:00');
    const past: G[] = dailyBackups('2026-03-10', 20, BERLIN);
    const future: G = { id: 'future', time: local('2027-03-10', '03:00') };
    const plan = planRetention([future, ...past], { within: '30d' }, { timeZone: BERLIN, now });
    expect(plan.future.map((b) => b.id)).toEqual(['future']);
    expect(ids(plan.remove)).toEqual([]);
    expect(plan.keep).toHaveLength(21);
    // Without `now` the planner trusts the times, as restic does: the future backup is the reference.
    const naive = planRetention([future, ...past], { within: '30d' }, { timeZone: BERLIN });
    expect(naive.remove).toHaveLength(20);
  });

  it('the newest known-good backup is never removed, however many newer ones the rules prefer', () => {
    const backups: G[] = dailyBackups('2026-03-05', 5, BERLIN);
    backups[4].good = true;
    const plan = applySafetyRails(planRetention(backups, { last: 2 }, { timeZone: BERLIN }));
    expect(ids(plan.keep)).toEqual([backups[0].id, backups[1].id, backups[4].id]);
    expect(plan.keep.at(-1)!.reasons).toEqual(['newest good backup']);
  });
});
