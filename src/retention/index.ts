export {
  DEFAULT_RETENTION,
  DURATION_RULES,
  RetentionPolicyError,
  WITHIN_FORM,
  assertUsablePolicy,
  describePolicy,
  destinationRetention,
  isEffectivelyEmpty,
  parseRetentionPolicy,
  parseWithin,
  subtractWithin,
  validateTimeZone,
  type CountRule,
  type ParsedWithin,
  type RetentionPolicy,
} from './policy.js';
export {
  applySafetyRails,
  compareNewestFirst,
  holdAfterTimeGap,
  isoWeek,
  planRetention,
  type Dated,
  type Decision,
  type PlanOptions,
  type RetentionPlan,
} from './planner.js';
export { RotationPolicy, type NamedBackup } from './rotation.js';
