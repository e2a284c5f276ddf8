import { planRetention, type Dated, type PlanOptions, type RetentionPlan } from './planner.js';
import { DEFAULT_RETENTION, parseRetentionPolicy, type RetentionPolicy } from './policy.js';

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

  plan<T extends Dated>(backups: readonly T[], options: PlanOptions = {}): RetentionPlan<T> {
    return planRetention(backups, this.#policy, options);
  }
}
