import { isValidTimeZone, zonedParts, zonedToDate } from '../util/time.js';

/** The count rules, in the order their reasons are listed (restic's order). */
export const COUNT_RULES = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
export type CountRule = (typeof COUNT_RULES)[number];

export type RetentionPolicy = { [K in CountRule]?: number } & {
  /** Keep everything no older than this duration before the newest backup, e.g. `30d`, `1y2m`. */
  within?: string;
  /**
   * Keep every backup of the `manual` series no older than this, on top of the rules (a backup taken by hand
   * before a risky change, and the one after it, both survive the day).
   */
  manual?: string;
  /**
   * The window of second-level recovery on destinations that hold WAL segments: segments (and the base snapshot
   * they start from) are kept so that every moment this close to now can be restored; `0h` keeps none.
   */
  pitr?: string;
};

/** The duration keys, which take `within`'s form. */
export const DURATION_RULES = ['within', 'manual', 'pitr'] as const;

export const DEFAULT_RETENTION: Readonly<RetentionPolicy> = Object.freeze({
  daily: 7,
  weekly: 4,
  monthly: 12,
});

/** Bad retention input; exit code 2 (bad usage or configuration), like every other config error. */
export class RetentionPolicyError extends Error {
  override name = 'RetentionPolicyError';
  readonly exitCode = 2;
  constructor(
    message: string,
    /** The policy key at fault (`daily`, `within`, `timeZone`, ...), when there is one. */
    readonly key?: string,
  ) {
    super(message);
  }
}

export interface ParsedWithin {
  years: number;
  months: number;
  weeks: number;
  days: number;
  hours: number;
  /** The duration written canonically, e.g. `1y2m`; used in reasons. */
  text: string;
}

export const WITHIN_FORM = 'a duration made of numbers with units y, m, w, d, h (e.g. 30d, 12h, 2w, 1y2m)';
const WITHIN_UNITS = ['y', 'm', 'w', 'd', 'h'] as const;
const UNIT_FIELD = { y: 'years', m: 'months', w: 'weeks', d: 'days', h: 'hours' } as const;

/**
 * Parses a `within` duration. `m` is months, as in restic; there are no minutes because backups this close
 * together are better kept with `last` or `hourly`. Each unit may appear once, in any order.
 */
export function parseWithin(text: string): ParsedWithin {
  const compact = String(text).replace(/\s+/g, '').toLowerCase();
  const parsed: ParsedWithin = { years: 0, months: 0, weeks: 0, days: 0, hours: 0, text: '' };
  const seen = new Set<string>();
  const token = /(\d+)([ymwdh])/y;
  let at = 0;
  while (at < compact.length) {
    token.lastIndex = at;
    const m = token.exec(compact);
    if (!m || seen.has(m[2]) || !Number.isSafeInteger(Number(m[1]))) {
      throw new RetentionPolicyError(`Invalid within duration "${text}": use ${WITHIN_FORM}.`, 'within');
    }
    seen.add(m[2]);
    parsed[UNIT_FIELD[m[2] as keyof typeof UNIT_FIELD]] = Number(m[1]);
    at = token.lastIndex;
  }
  if (seen.size === 0) {
    throw new RetentionPolicyError(`Invalid within duration "${text}": use ${WITHIN_FORM}.`, 'within');
  }
  parsed.text = WITHIN_UNITS.filter((u) => seen.has(u))
    .map((u) => `${parsed[UNIT_FIELD[u]]}${u}`)
    .join('');
  return parsed;
}

export function isZeroWithin(parsed: ParsedWithin): boolean {
  return parsed.years + parsed.months + parsed.weeks + parsed.days + parsed.hours === 0;
}

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/**
 * `date` minus `parsed`: years, months, weeks and days move the wall clock in `timeZone` (so `1d` across a DST
 * switch is 23 or 25 hours), hours are exact. A day that does not exist in the target month is clamped to the
 * month's last day (31 March − 1m = 28/29 February), which keeps at least as much as Go's normalisation would.
 */
export function subtractWithin(date: Date, parsed: ParsedWithin, timeZone: string): Date {
  let ms = date.getTime();
  if (parsed.years || parsed.months || parsed.weeks || parsed.days) {
    const p = zonedParts(date, timeZone);
    const monthIndex = p.year * 12 + (p.month - 1) - parsed.years * 12 - parsed.months;
    const year = Math.floor(monthIndex / 12);
    const month = monthIndex - year * 12 + 1;
    const day = Math.min(p.day, daysInMonth(year, month));
    const shifted = new Date(Date.UTC(year, month - 1, day - parsed.weeks * 7 - parsed.days));
    const wall = zonedToDate(
      {
        year: shifted.getUTCFullYear(),
        month: shifted.getUTCMonth() + 1,
        day: shifted.getUTCDate(),
        hour: p.hour,
        minute: p.minute,
        second: p.second,
      },
      timeZone,
    );
    ms = wall.getTime() + date.getUTCMilliseconds();
  }
  return new Date(ms - parsed.hours * 3600_000);
}

const COUNT_FORM = 'a whole number of 0 or more (e.g. 7)';

function parseCount(key: string, value: unknown, source: string): number {
  let n: number | undefined;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'string' && /^\s*[-+]?\d+(\.\d*)?\s*$/.test(value)) n = Number(value);
  if (n === undefined || !Number.isSafeInteger(n) || n < 0) {
    throw new RetentionPolicyError(
      `Invalid retention ${key} ${JSON.stringify(value)} in ${source}: use ${COUNT_FORM}.`,
      key,
    );
  }
  return n;
}

/**
 * Reads a policy from loose input (config file, env vars, CLI flags), so numeric strings are accepted.
 * Absent, null and empty-string values mean "rule not set". Throws RetentionPolicyError naming key and source.
 */
export function parseRetentionPolicy(raw: Record<string, unknown>, source: string): RetentionPolicy {
  const policy: RetentionPolicy = {};
  for (const [key, value] of Object.entries(raw)) {
    if (value === undefined || value === null || value === '') continue;
    if ((COUNT_RULES as readonly string[]).includes(key)) {
      policy[key as CountRule] = parseCount(key, value, source);
    } else if ((DURATION_RULES as readonly string[]).includes(key)) {
      const rule = key as (typeof DURATION_RULES)[number];
      const invalid = () =>
        new RetentionPolicyError(
          `Invalid retention ${rule} ${JSON.stringify(value)} in ${source}: use ${WITHIN_FORM}.`,
          rule,
        );
      if (typeof value !== 'string') throw invalid();
      try {
        policy[rule] = parseWithin(value).text;
      } catch {
        throw invalid();
      }
    } else {
      throw new RetentionPolicyError(
        `Unknown retention rule "${key}" in ${source}: use ${[...COUNT_RULES, ...DURATION_RULES].join(', ')}.`,
        key,
      );
    }
  }
  return policy;
}

/** Returns the zone unchanged, or throws naming the source. */
export function validateTimeZone(timeZone: string, source: string): string {
  if (typeof timeZone !== 'string' || timeZone === '' || !isValidTimeZone(timeZone)) {
    throw new RetentionPolicyError(
      `Unknown time zone ${JSON.stringify(timeZone)} in ${source}: use an IANA name such as Europe/Berlin or UTC.`,
      'timeZone',
    );
  }
  return timeZone;
}

/** Whether the policy has no rule that keeps anything: every count 0 or absent and no (non-zero) within. */
export function isEffectivelyEmpty(policy: RetentionPolicy): boolean {
  if (COUNT_RULES.some((rule) => (policy[rule] ?? 0) > 0)) return false;
  if (policy.within === undefined || policy.within === '') return true;
  try {
    return isZeroWithin(parseWithin(policy.within));
  } catch {
    // A malformed within is not "empty": the caller must see its own parse error, not a silent keep-all.
    return false;
  }
}

/**
 * The commands refuse a policy that names no rule: the planner keeps everything for it, which would make
 * `prune` a silent no-op where the user most likely mistyped.
 */
export function assertUsablePolicy(policy: RetentionPolicy): void {
  if (isEffectivelyEmpty(policy)) {
    throw new RetentionPolicyError(
      `Retention policy ${JSON.stringify(policy)} keeps nothing by rule (every count is 0 and no within): ` +
        `set at least one of ${COUNT_RULES.join(', ')} above 0 or a within duration, e.g. daily: 7.`,
    );
  }
}

/**
 * A destination's retention: its own rules, or the database's when it has none. The database's `manual` and
 * `pitr` windows apply unless the destination sets its own. Pure: what `destinationPolicy` and status both use.
 */
export function destinationRetention(local: RetentionPolicy, own?: RetentionPolicy): RetentionPolicy {
  if (!own) return local;
  return {
    ...(local.manual ? { manual: local.manual } : {}),
    ...(local.pitr ? { pitr: local.pitr } : {}),
    ...own,
  };
}

/** Short human text, e.g. `7 daily, 4 weekly, 12 monthly` or `last 3, within 30d`. */
export function describePolicy(policy: RetentionPolicy): string {
  const parts: string[] = [];
  for (const rule of COUNT_RULES) {
    const n = policy[rule] ?? 0;
    if (n > 0) parts.push(rule === 'last' ? `last ${n}` : `${n} ${rule}`);
  }
  if (policy.within) parts.push(`within ${policy.within}`);
  if (!parts.length) return 'keep everything (no retention rule)';
  if (policy.manual) parts.push(`manual backups within ${policy.manual}`);
  return parts.join(', ');
}
