import { planRetention, type Dated, type PlanOptions, type RetentionPlan } from './planner.js';
import { DEFAULT_RETENTION, parseRetentionPolicy, type RetentionPolicy } from './policy.js';

/** A backup as `BackupManager.listBackups()` lists it: its file name and time. */
export interface NamedBackup {
  name: string;
  time: Date;
}

/**
 * The seed's `BackupRotationPolicy(daily_keep=7, weekly_keep=4, monthly_keep=12)`, kept so that code ported
 * from it reads the same: `new RotationPolicy()` is 7/4/12, `new RotationPolicy(14, 8, 24)` or
 * `new RotationPolicy({ hourly: 24, daily: 7 })` for anything else.
 */
export class RotationPolicy {
  readonly #policy: RetentionPolicy;

  constructor(policy: RetentionPolicy);
  constructor(daily?: number, weekly?: number, monthly?: number);
  constructor(dailyOrPolicy?: number | RetentionPolicy, weekly?: number, monthly?: number) {
    const raw =
      typeof dailyOrPolicy === 'object' && dailyOrPolicy !== null
        ? { ...dailyOrPolicy }
        : {
            daily: dailyOrPolicy ?? DEFAULT_RETENTION.daily,
            weekly: weekly ?? DEFAULT_RETENTION.weekly,
            monthly: monthly ?? DEFAULT_RETENTION.monthly,
          };
    this.#policy = parseRetentionPolicy(raw, 'RotationPolicy');
  }

  get dailyKeep(): number {
    return this.#policy.daily ?? 0;
  }

  get weeklyKeep(): number {
    return this.#policy.weekly ?? 0;
  }

  get monthlyKeep(): number {
    return this.#policy.monthly ?? 0;
  }

  toPolicy(): RetentionPolicy {
    return { ...this.#policy };
  }

  /**
   * Which backups the policy keeps and why. Takes what `BackupManager.listBackups()` returns (the listing, or its
   * `backups`), or any items with a `time` and an `id` or `name` (the decisions hold them, with `id` set to the
   * name where they had none).
   */
  plan<T extends Dated>(
    backups: readonly T[] | { backups: readonly T[] },
    options?: PlanOptions,
  ): RetentionPlan<T>;
  plan<T extends NamedBackup>(
    backups: readonly T[] | { backups: readonly T[] },
    options?: PlanOptions,
  ): RetentionPlan<T & Dated>;
  plan(
    backups: readonly (Dated | NamedBackup)[] | { backups: readonly (Dated | NamedBackup)[] },
    options: PlanOptions = {},
  ): RetentionPlan<Dated> {
    const list = 'backups' in backups ? backups.backups : backups;
    // A name is as good an id as any: backup names are unique in their folder.
    const items = list.map((b) => ('id' in b ? b : { ...b, id: b.name }));
    return planRetention(items, this.#policy, options);
  }
}
