import type { DatabaseTarget } from '../config/index.js';
import { humanBytes, humanDuration } from '../util/fs.js';
import type { ReplicationStatus, ReplicatorInfo } from './capture.js';

/**
 * What is wrong with a database's replication, judged from what status reads (`replicationReadingOf`): the one
 * judgement `litekeep status`, the status page and its JSON share. Pure: the same reading gives the same
 * problems.
 */

/**
 * In cooperative mode only litekeep's checkpoints let the WAL be reset: a WAL this large says they have not for
 * a while (litekeep down, a destination failing, or an app that never pauses between commits).
 */
export const COOPERATIVE_WAL_WARN_BYTES = 64 * 1024 * 1024;

/**
 * Lag that is a problem: a minute, or ten intervals when the interval is longer. A pass ships within one
 * interval of a commit; a replicator that has shipped nothing for this long while commits wait is stuck or
 * failing (the lag of a healthy one stays within an interval or two).
 */
export const LAG_PROBLEM_MIN_MS = 60_000;
export const lagProblemMs = (intervalMs: number): number => Math.max(LAG_PROBLEM_MIN_MS, 10 * intervalMs);

export interface ReplicationReading {
  replication?: ReplicationStatus[];
  /** Who replicates now; null: nobody (asked only where replication is configured or ever ran). */
  replicator?: ReplicatorInfo | null;
  /** Cooperative mode: the `-wal` file's size. */
  walBytes?: number;
}

export interface ReplicationSettings {
  /** `replicate.enabled`: the daemon is meant to follow the database. */
  enabled: boolean;
  mode: 'follow' | 'cooperative';
  intervalMs: number;
}

export interface ReplicationJudgement {
  /** Problems of the database as a whole: nobody replicating it, a cooperative WAL that is not reset. */
  problems: string[];
  /** Problems per destination (every destination of the reading, an empty list when it is fine). */
  destinations: { destination: string; problems: string[] }[];
}

/** A database's replication settings as the judgement needs them. */
export function replicationSettingsOf(target: DatabaseTarget): ReplicationSettings {
  const r = target.settings.replicate;
  return { enabled: r.enabled, mode: r.mode, intervalMs: r.interval ?? 1000 };
}

/** Whether the cooperative WAL is past the size that says litekeep's checkpoints have not reset it lately. */
export const walIsLarge = (walBytes: number | undefined): boolean =>
  walBytes !== undefined && walBytes > COOPERATIVE_WAL_WARN_BYTES;

export function judgeReplication(
  name: string,
  settings: ReplicationSettings,
  reading: ReplicationReading,
  now: number,
): ReplicationJudgement {
  const problems: string[] = [];
  if (settings.enabled && reading.replicator === null)
    problems.push(
      `replicate is configured but no process replicates ${name} now: nothing committed since the last shipment can be recovered to the second (start litekeep daemon or litekeep replicate)`,
    );
  if (walIsLarge(reading.walBytes))
    problems.push(
      `the WAL is ${humanBytes(reading.walBytes!)}: in cooperative mode only litekeep's checkpoints let it be reset; is litekeep replicating and every destination reachable? (an app that never pauses between commits keeps it from resetting too)`,
    );
  const limit = lagProblemMs(settings.intervalMs);
  const destinations = (reading.replication ?? []).map((r) => {
    const own: string[] = [];
    if (r.lagMs !== undefined && r.lagMs > limit)
      own.push(
        `commits have waited ${humanDuration(r.lagMs)} to be shipped, more than ${humanDuration(limit)}`,
      );
    const latest = r.recentGaps.at(-1);
    // A gap inside the retention.pitr window leaves moments the policy promises unrecoverable to the second;
    // one before the window no longer matters. Without a known window every gap counts.
    if (latest && (r.windowFrom === undefined || latest > r.windowFrom))
      own.push(
        `a gap ${humanDuration(Math.max(0, now - Date.parse(latest)))} ago (the WAL was reset before litekeep read it): moments in it cannot be restored to the second`,
      );
    return { destination: r.destination, problems: own };
  });
  return { problems, destinations };
}

/** How far shipping to a destination is behind the WAL, in words (status and the page say it alike). */
/**
 * Where recovery to the second ends for a destination: `now` when shipping is caught up, else the last shipment
 * (its time, when there was one).
 */
export function recoverableUntil(
  r: Pick<ReplicationStatus, 'framesBehind' | 'lastShippedAt'>,
): 'now' | string | undefined {
  return r.framesBehind === 0 ? 'now' : r.lastShippedAt;
}

/** How status and the page describe a cooperative WAL of a reasonable size. */
export const COOPERATIVE_WAL_NOTE = 'cooperative mode: litekeep checkpoints it';

export function shippingBehind(r: Pick<ReplicationStatus, 'framesBehind'>): string {
  if (r.framesBehind === 0) return 'caught up';
  if (r.framesBehind !== undefined) return `${r.framesBehind} frames behind`;
  return 'the WAL was reset since the last shipment';
}
