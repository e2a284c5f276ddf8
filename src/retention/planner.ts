import { compareBackupNamesNewestFirst, parseBackupName } from '../naming.js';
import { pad, systemTimeZone, zonedParts, type ZonedParts } from '../util/time.js';
import {
  COUNT_RULES,
  isEffectivelyEmpty,
  isZeroWithin,
  parseRetentionPolicy,
  parseWithin,
  subtractWithin,
  validateTimeZone,
  type CountRule,
  type RetentionPolicy,
} from './policy.js';

export interface Dated {
  id: string;
  time: Date;
}

/** One backup and the rules that keep it (`daily 2026-02-27`, `last 1`, ...); empty when it is removed. */
export interface Decision<T extends Dated> {
  backup: T;
  reasons: string[];
}

export interface RetentionPlan<T extends Dated> {
  /** Newest first. */
  keep: Decision<T>[];
  /** Newest first. */
  remove: Decision<T>[];
}

export interface PlanOptions {
  /** IANA zone whose calendar defines hours, days, weeks, months and years; default the system zone. */
  timeZone?: string;
}

/** ISO-8601 week-year and week of a calendar date: the week belongs to the year that holds its Thursday. */
export function isoWeek(year: number, month: number, day: number): { year: number; week: number } {
  const date = Date.UTC(year, month - 1, day);
  const mondayBased = (new Date(date).getUTCDay() + 6) % 7;
  const thursday = new Date(date + (3 - mondayBased) * 86400_000);
  const weekYear = thursday.getUTCFullYear();
  const week = Math.floor((thursday.getTime() - Date.UTC(weekYear, 0, 1)) / (7 * 86400_000)) + 1;
  return { year: weekYear, week };
}

function bucketOf(rule: Exclude<CountRule, 'last'>, p: ZonedParts): string {
  switch (rule) {
    case 'hourly':
      return `${p.year}-${pad(p.month)}-${pad(p.day)} ${pad(p.hour)}h`;
    case 'daily':
      return `${p.year}-${pad(p.month)}-${pad(p.day)}`;
    case 'weekly': {
      const w = isoWeek(p.year, p.month, p.day);
      return `${w.year}-W${pad(w.week)}`;
    }
    case 'monthly':
      return `${p.year}-${pad(p.month)}`;
    case 'yearly':
      return `${p.year}`;
  }
}

/**
 * Newest first; equal times are ordered by id so the plan never depends on input order. Two litekeep names
 * from the same second compare by their `-N` suffix (higher is newer), which plain string order gets wrong.
 */
export function compareNewestFirst(a: Dated, b: Dated): number {
  const dt = b.time.getTime() - a.time.getTime();
  if (dt !== 0) return dt;
  const na = parseBackupName(a.id);
  const nb = parseBackupName(b.id);
  if (na && nb) {
    const byName = compareBackupNamesNewestFirst(na, nb);
    if (byName !== 0) return byName;
  }
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/**
 * restic's rotation: walking newest to oldest, each count rule keeps a backup while it has count left and the
 * backup's bucket differs from the last bucket that rule kept; `within` keeps everything no older than the
 * duration before the newest backup. Pure: no I/O, no clock.
 */
export function planRetention<T extends Dated>(
  backups: readonly T[],
  policy: RetentionPolicy,
  options: PlanOptions = {},
): RetentionPlan<T> {
  const timeZone = validateTimeZone(options.timeZone ?? systemTimeZone(), 'the retention planner options');
  // Re-checked here because callers may build a policy by hand; a negative count must not mean "unlimited".
  const rules = parseRetentionPolicy({ ...policy }, 'the retention policy');
  for (const b of backups) {
    if (!(b.time instanceof Date) || Number.isNaN(b.time.getTime())) {
      throw new Error(
        `Backup "${b.id}" has no valid time: give every backup a Date before planning retention.`,
      );
    }
  }
  const sorted = [...backups].sort(compareNewestFirst);

  if (isEffectivelyEmpty(rules)) {
    return { keep: sorted.map((backup) => ({ backup, reasons: ['no policy'] })), remove: [] };
  }

  const remaining = new Map<CountRule, number>(COUNT_RULES.map((r) => [r, rules[r] ?? 0]));
  const lastBucket = new Map<CountRule, string>();
  const within = rules.within ? parseWithin(rules.within) : undefined;
  const cutoff =
    within && !isZeroWithin(within) && sorted.length > 0
      ? subtractWithin(sorted[0].time, within, timeZone).getTime()
      : undefined;

  const plan: RetentionPlan<T> = { keep: [], remove: [] };
  for (const backup of sorted) {
    const parts = zonedParts(backup.time, timeZone);
    const reasons: string[] = [];
    for (const rule of COUNT_RULES) {
      const left = remaining.get(rule) ?? 0;
      if (left <= 0) continue;
      if (rule === 'last') {
        const ordinal = (rules.last ?? 0) - left + 1;
        reasons.push(`last ${ordinal}`);
      } else {
        const bucket = bucketOf(rule, parts);
        if (bucket === lastBucket.get(rule)) continue;
        lastBucket.set(rule, bucket);
        reasons.push(`${rule} ${bucket}`);
      }
      remaining.set(rule, left - 1);
    }
    if (cutoff !== undefined && backup.time.getTime() >= cutoff) reasons.push(`within ${within!.text}`);
    (reasons.length ? plan.keep : plan.remove).push({ backup, reasons });
  }
  return plan;
}

/**
 * Defence in depth for the commands: whatever the policy or a future bug says, the newest backup is never
 * removed. Returns a new plan; the input is not changed.
 */
export function applySafetyRails<T extends Dated>(plan: RetentionPlan<T>): RetentionPlan<T> {
  if (plan.remove.length === 0) return { keep: [...plan.keep], remove: [...plan.remove] };
  const newestRemoved = [...plan.remove].sort((a, b) => compareNewestFirst(a.backup, b.backup))[0];
  const newestKept = [...plan.keep].sort((a, b) => compareNewestFirst(a.backup, b.backup))[0];
  if (newestKept && compareNewestFirst(newestKept.backup, newestRemoved.backup) <= 0) {
    return { keep: [...plan.keep], remove: [...plan.remove] };
  }
  const rescued: Decision<T> = {
    backup: newestRemoved.backup,
    reasons: [...newestRemoved.reasons, 'newest'],
  };
  return {
    keep: [rescued, ...plan.keep].sort((a, b) => compareNewestFirst(a.backup, b.backup)),
    remove: plan.remove.filter((d) => d !== newestRemoved),
  };
}
