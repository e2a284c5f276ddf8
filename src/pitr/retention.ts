import type { SnapshotInfo } from '../repository/snapshots.js';
import { parseWithin, subtractWithin } from '../retention/policy.js';
import type { BaseSnapshot } from './plan.js';
import { parseSegmentName } from './shipper.js';

/**
 * Retention of WAL segments (`retention.pitr`): pure planning, no I/O. Every moment of the window (from now
 * minus `pitr` to now) stays recoverable to the second: the base that serves the window's start (the newest
 * base finished by then, the anchor) is kept whatever the snapshot rules say, and so is every segment that may
 * follow it. Segments before the anchor's replay start serve no moment of the window (moments before it are
 * served by the snapshots alone) and are collected. Decided from segment names alone, so an encrypted
 * repository is collected without its identity.
 */

/** A base snapshot with whether it may anchor the window (its newest verification here did not fail). */
export interface RetainedBase extends BaseSnapshot {
  usable: boolean;
}

export interface PitrRetentionPlan {
  /** Now minus `pitr`: second-level recovery is kept from here on (or from the anchor's end, when later). */
  windowStart: number;
  /** The base that serves the window's start; undefined when no usable base exists (then nothing goes). */
  anchor?: BaseSnapshot;
  /** Segments no moment of the window needs, in shipping order (collected oldest first). */
  collectable: string[];
}

/** Where the window of `pitr` (e.g. `7d`) starts at `now`, in the zone's calendar (as `within` counts). */
export function pitrWindowStart(now: Date, pitr: string, timeZone: string): number {
  return subtractWithin(now, parseWithin(pitr), timeZone).getTime();
}

/** The base a snapshot is for point-in-time recovery: one whose manifest records where it stood in the WAL. */
export function baseOf(s: SnapshotInfo): BaseSnapshot | undefined {
  const wal = s.body.wal;
  if (!wal) return undefined;
  return {
    id: s.id,
    shippedBefore: wal.shippedBefore,
    walEndAfter: wal.walEndAfter,
    finishedAt: Date.parse(wal.finishedAt),
  };
}

/** Whether a segment, by its name alone, may hold frames shipped after the base's `shippedBefore`. */
export function mayFollow(base: BaseSnapshot, name: string): boolean {
  const n = parseSegmentName(name);
  if (!n) return true;
  const from = base.shippedBefore;
  if (!from) return true;
  if (n.epoch !== from.epoch) return n.epoch > from.epoch;
  if (n.checkpointSequence !== from.generation.checkpointSequence)
    return n.checkpointSequence > from.generation.checkpointSequence;
  return n.salt1 !== from.generation.salt1 || n.lastFrame > from.frame;
}

function shippingOrder(a: string, b: string): number {
  const x = parseSegmentName(a)!;
  const y = parseSegmentName(b)!;
  return (
    x.epoch - y.epoch ||
    x.checkpointSequence - y.checkpointSequence ||
    x.firstFrame - y.firstFrame ||
    x.lastFrame - y.lastFrame
  );
}

/**
 * What `retention.pitr` keeps and collects. The segment shipped last is never collected: a shipper that starts
 * afresh numbers its epoch after the highest one stored, which must not go back below the anchor's.
 */
export function planPitrRetention(
  bases: RetainedBase[],
  segmentNames: string[],
  windowStart: number,
): PitrRetentionPlan {
  const usable = bases.filter((b) => b.usable).sort((a, b) => a.finishedAt - b.finishedAt);
  const anchor = usable.filter((b) => b.finishedAt <= windowStart).at(-1) ?? usable[0];
  if (!anchor) return { windowStart, collectable: [] };
  const ordered = segmentNames.filter((n) => parseSegmentName(n)).sort(shippingOrder);
  const last = ordered.at(-1);
  const collectable = ordered.filter((name) => name !== last && !mayFollow(anchor, name));
  return { windowStart, anchor, collectable };
}
