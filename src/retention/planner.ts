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
  /**
   * The series the backup belongs to (restic's `--group-by`): each group gets the whole policy on its own.
   * litekeep uses `manual` and `scheduled`; undefined is one series of its own.
   */
  group?: string;
  /** Known good: verified, or passed its checks when it was made and not failed since. */
  good?: boolean;
  /** Why it must not count toward any rule (its newest verification failed): kept aside, never counted. */
  failed?: string;
}

/**
 * One backup and why it is kept (`daily 2026-02-27`, `last 1`, `newest good backup`, ...). For a removed
 * backup `reasons` is empty and `notKept` says, rule by rule, why none of them kept it.
 */
export interface Decision<T extends Dated> {
  backup: T;
  reasons: string[];
  notKept?: string[];
}

export interface RetentionPlan<T extends Dated> {
  /** Newest first. */
  keep: Decision<T>[];
  /** Newest first. */
  remove: Decision<T>[];
  /** Backups dated after `now` (a wrong clock): kept, counted by no rule. Newest first. */
  future: T[];
  /** Backups whose newest verification failed: kept aside, counted by no rule. Newest first. */
  failed: T[];
}

export interface PlanOptions {
  /** IANA zone whose calendar defines hours, days, weeks, months and years; default the system zone. */
  timeZone?: string;
  /**
   * The present. Backups after it are set aside as dated in the future, and `within` (and `manual`) measure
   * from the earlier of it and the newest backup, so that one backup named years ahead cannot push every
   * other one out. Without it the planner trusts the backups' times (restic's behaviour).
   */
  now?: Date;
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
 * duration before the newest backup. Each group is planned on its own; backups marked `failed`, or dated after
 * `now`, are kept without counting. `manual` keeps every backup of the `manual` group within that span.
 * Pure: no I/O, no clock.
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
  const now = options.now?.getTime();
  const future = now === undefined ? [] : sorted.filter((b) => b.time.getTime() > now);
  const failed = sorted.filter((b) => b.failed !== undefined && !future.includes(b));
  const plan: RetentionPlan<T> = { keep: [], remove: [], future, failed };
  for (const b of future) plan.keep.push({ backup: b, reasons: ['dated in the future: not counted'] });
  for (const b of failed) plan.keep.push({ backup: b, reasons: [`not counted: ${b.failed}`] });
  const countable = sorted.filter((b) => !future.includes(b) && !failed.includes(b));

  if (isEffectivelyEmpty(rules)) {
    plan.keep.push(...countable.map((backup) => ({ backup, reasons: ['no policy'] })));
  } else {
    const groups = new Map<string | undefined, T[]>();
    for (const b of countable) groups.set(b.group, [...(groups.get(b.group) ?? []), b]);
    // `manual` is an age: measured from the newest backup of any series (or now, if that is earlier), so that
    // manual backups age while backups go on, and none ages out while none are taken.
    const newest = countable[0]?.time.getTime();
    const manualReference = newest === undefined ? undefined : Math.min(newest, now ?? newest);
    for (const members of groups.values()) {
      const planned = planGroup(members, rules, timeZone, now, manualReference);
      plan.keep.push(...planned.keep);
      plan.remove.push(...planned.remove);
    }
  }
  plan.keep.sort((a, b) => compareNewestFirst(a.backup, b.backup));
  plan.remove.sort((a, b) => compareNewestFirst(a.backup, b.backup));
  return plan;
}

/** The restic walk over one series, newest first. */
function planGroup<T extends Dated>(
  sorted: T[],
  rules: RetentionPolicy,
  timeZone: string,
  now: number | undefined,
  manualReference: number | undefined,
): { keep: Decision<T>[]; remove: Decision<T>[] } {
  const remaining = new Map<CountRule, number>(COUNT_RULES.map((r) => [r, rules[r] ?? 0]));
  const lastBucket = new Map<CountRule, string>();
  // Measured from the newest backup, as restic does, unless that is later than the present.
  const reference =
    sorted.length === 0
      ? undefined
      : new Date(now === undefined ? sorted[0].time.getTime() : Math.min(now, sorted[0].time.getTime()));
  const cutoffOf = (text: string | undefined, from: Date | undefined) => {
    const within = text ? parseWithin(text) : undefined;
    return within && !isZeroWithin(within) && from
      ? { text: within.text, at: subtractWithin(from, within, timeZone).getTime() }
      : undefined;
  };
  const cutoff = cutoffOf(rules.within, reference);
  const manualCutoff = cutoffOf(
    rules.manual,
    manualReference === undefined ? undefined : new Date(manualReference),
  );

  const out: { keep: Decision<T>[]; remove: Decision<T>[] } = { keep: [], remove: [] };
  for (const backup of sorted) {
    const parts = zonedParts(backup.time, timeZone);
    const reasons: string[] = [];
    const notKept: string[] = [];
    for (const rule of COUNT_RULES) {
      const n = rules[rule] ?? 0;
      if (n <= 0) continue;
      const left = remaining.get(rule) ?? 0;
      if (left <= 0) {
        notKept.push(`${rule}: all ${n} kept by newer backups`);
        continue;
      }
      if (rule === 'last') {
        reasons.push(`last ${n - left + 1}`);
      } else {
        const bucket = bucketOf(rule, parts);
        if (bucket === lastBucket.get(rule)) {
          notKept.push(`${rule}: ${bucket} already kept by a newer backup`);
          continue;
        }
        lastBucket.set(rule, bucket);
        reasons.push(`${rule} ${bucket}`);
      }
      remaining.set(rule, left - 1);
    }
    if (cutoff !== undefined) {
      if (backup.time.getTime() >= cutoff.at) reasons.push(`within ${cutoff.text}`);
      else notKept.push(`older than within ${cutoff.text}`);
    }
    if (manualCutoff !== undefined && backup.group === 'manual') {
      if (backup.time.getTime() >= manualCutoff.at) reasons.push(`manual within ${manualCutoff.text}`);
      else notKept.push(`manual: older than ${manualCutoff.text}`);
    }
    if (reasons.length) out.keep.push({ backup, reasons });
    else out.remove.push({ backup, reasons, notKept });
  }
  return out;
}

/**
 * Defence in depth for the commands: whatever the policy or a future bug says, the newest backup and the
 * newest known-good backup are never removed. Returns a new plan; the input is not changed.
 */
export function applySafetyRails<T extends Dated>(plan: RetentionPlan<T>): RetentionPlan<T> {
  const keep = [...plan.keep];
  let remove = [...plan.remove];
  const rescue = (pick: (all: Decision<T>[]) => Decision<T> | undefined, reason: string) => {
    const all = [...keep, ...remove].sort((a, b) => compareNewestFirst(a.backup, b.backup));
    const chosen = pick(all);
    if (!chosen) return;
    const kept = keep.find((d) => d.backup === chosen.backup);
    if (kept) return;
    remove = remove.filter((d) => d !== chosen);
    keep.push({ backup: chosen.backup, reasons: [reason] });
    keep.sort((a, b) => compareNewestFirst(a.backup, b.backup));
  };
  rescue((all) => all[0], 'newest');
  rescue((all) => all.find((d) => d.backup.good === true), 'newest good backup');
  return { ...plan, keep, remove };
}

const DAY_MS = 86400_000;

/**
 * Why a backup run should hold its removals back, or undefined when it need not: the backup it just made is
 * dated more than `gapMs` (default 7 days) after the newest one before it — a clock set forward, or a machine
 * that was off — and the plan would remove more than half of the backups that were there. Then the history
 * waits for a person (`litekeep prune` applies the same plan on purpose) instead of vanishing in one run.
 */
export function holdAfterTimeGap(input: {
  made: Date;
  previousNewest?: Date;
  before: number;
  removing: number;
  gapMs?: number;
}): string | undefined {
  if (!input.previousNewest || input.removing === 0) return undefined;
  const gap = input.made.getTime() - input.previousNewest.getTime();
  if (gap <= (input.gapMs ?? 7 * DAY_MS) || input.removing * 2 <= input.before) return undefined;
  return (
    `this backup is dated ${Math.round(gap / DAY_MS)} days after the newest one before it (a clock set ` +
    `forward, or a long pause?) and retention would remove ${input.removing} of ${input.before} backups: ` +
    `nothing was removed — check the clock, then run 'litekeep prune' to apply the policy`
  );
}
