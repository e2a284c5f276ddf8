import { continues, type SegmentMetadata } from './segment.js';

/**
 * Which base snapshot and which WAL segments bring a database to its state at a moment: pure planning, no I/O.
 *
 * Frames are page images, so replaying a commit the base already holds changes nothing. A base captured while
 * commits went on holds some commit Q that litekeep cannot name exactly; what it records is the last commit it
 * had shipped when the capture began (`shippedBefore`, at or before Q) and the WAL's last commit read right after
 * the capture ended (`walEndAfter`, at or after Q). Replay from the frame after `shippedBefore` through
 * `walEndAfter` brings the base to a state SQLite could have been in; a replay that stops earlier (a gap) could
 * leave pages older than the base's, so then the base is used alone. The base serves moments from `finishedAt`
 * on; every commit through `walEndAfter` was made by then, so it is replayed whenever the base is used.
 */

export interface CommitRef {
  generation: { salt1: number; salt2: number; checkpointSequence: number };
  frame: number;
}

export interface BaseSnapshot {
  id: string;
  /** The last commit shipped before the capture began; undefined when nothing had been shipped. */
  shippedBefore: CommitRef | undefined;
  /** The WAL's last commit, read right after the capture; undefined when the WAL held none. */
  walEndAfter: CommitRef | undefined;
  /** When the capture ended (and `walEndAfter` was read). */
  finishedAt: number;
}

export interface StoredSegment {
  id: string;
  metadata: SegmentMetadata;
}

export interface ReplayStep {
  segment: StoredSegment;
  /** Apply the segment's frames up to and including this frame index (a commit frame). */
  throughFrame: number;
}

export interface RecoveryPlan {
  base: BaseSnapshot;
  steps: ReplayStep[];
  /** When litekeep saw the last commit the plan replays (the base's `finishedAt` when it replays none). */
  reaches: number;
  /** Set when a gap stops replay before the moment asked for: the plan reaches the last whole point before it. */
  stoppedByGap?: { after: number; segment: string };
}

export interface RecoveryWindow {
  from: number;
  to: number;
}

const sameGeneration = (a: CommitRef['generation'], b: SegmentMetadata['generation']) =>
  a.salt1 === b.salt1 && a.salt2 === b.salt2;

/** Segments in the order they were shipped: by generation (checkpoint sequence), then by first frame. */
export function inShippingOrder(segments: StoredSegment[]): StoredSegment[] {
  return [...segments].sort(
    (a, b) =>
      a.metadata.generation.checkpointSequence - b.metadata.generation.checkpointSequence ||
      a.metadata.firstFrame - b.metadata.firstFrame,
  );
}

/** Index of the first segment replay starts with for this base, or -1 when none follows it. */
function firstAfter(base: BaseSnapshot, ordered: StoredSegment[]): number {
  const from = base.shippedBefore;
  if (!from) return ordered.length ? 0 : -1;
  return ordered.findIndex(
    (s) =>
      (sameGeneration(from.generation, s.metadata.generation) && s.metadata.lastFrame > from.frame) ||
      s.metadata.generation.checkpointSequence > from.generation.checkpointSequence,
  );
}

/**
 * Whether the segment at `index` may start replay for `base`: it holds the frame right after the base's
 * shipped commit (same generation), or begins the next generation after a proven reset, or the base had
 * nothing shipped before it and this is the first segment shipped after a start.
 */
function startsCleanly(base: BaseSnapshot, segment: SegmentMetadata): boolean {
  const from = base.shippedBefore;
  if (!from) return segment.after === 'start' || segment.firstFrame === 1;
  if (sameGeneration(from.generation, segment.generation)) return segment.firstFrame <= from.frame + 1;
  return segment.after === 'reset' && segment.firstFrame === 1;
}

/** Orders commits as SQLite made them: by WAL generation, then by frame. */
function compare(a: CommitRef, generation: CommitRef['generation'], frame: number): number {
  return a.generation.checkpointSequence - generation.checkpointSequence || a.frame - frame;
}

/** The plan for the state at `target`: the newest base finished by then, and the segments after it up to then. */
export function planRecovery(
  bases: BaseSnapshot[],
  segments: StoredSegment[],
  target: number,
): RecoveryPlan | undefined {
  const base = [...bases]
    .filter((b) => b.finishedAt <= target)
    .sort((a, b) => b.finishedAt - a.finishedAt)[0];
  if (!base) return undefined;
  const ordered = inShippingOrder(segments);
  const steps: ReplayStep[] = [];
  let reaches = base.finishedAt;
  const end = base.walEndAfter;
  // Whether replay has covered every commit the base may hold.
  let covered =
    !end ||
    (base.shippedBefore !== undefined &&
      compare(end, base.shippedBefore.generation, base.shippedBefore.frame) <= 0);
  const start = firstAfter(base, ordered);
  let previous: SegmentMetadata | undefined;
  for (let i = Math.max(start, 0); start >= 0 && i < ordered.length; i++) {
    const segment = ordered[i];
    const m = segment.metadata;
    const whole = previous ? continues(previous, m) : startsCleanly(base, m);
    const needed = m.commits.filter(
      (c) => c.seenAt <= target || (end !== undefined && compare(end, m.generation, c.frame) >= 0),
    );
    if (!whole) {
      if (!covered)
        return {
          base,
          steps: [],
          reaches: base.finishedAt,
          stoppedByGap: { after: base.finishedAt, segment: segment.id },
        };
      // A gap only matters if what lies beyond it was asked for.
      if (needed.length > 0)
        return { base, steps, reaches, stoppedByGap: { after: reaches, segment: segment.id } };
      break;
    }
    if (needed.length === 0) break;
    const through = needed.at(-1)!;
    steps.push({ segment, throughFrame: through.frame });
    for (const c of needed) if (c.seenAt <= target) reaches = Math.max(reaches, c.seenAt);
    if (end && compare(end, m.generation, through.frame) <= 0) covered = true;
    if (needed.length < m.commits.length) break;
    previous = m;
  }
  if (!covered)
    return {
      base,
      steps: [],
      reaches: base.finishedAt,
      stoppedByGap: { after: base.finishedAt, segment: '(not shipped yet)' },
    };
  return { base, steps, reaches };
}

/**
 * The moments recovery can reach to the second: from each base's end to the last commit replay reaches from it
 * without crossing a gap. Overlapping stretches are merged; what lies between two windows is a gap.
 */
export function recoveryWindows(bases: BaseSnapshot[], segments: StoredSegment[]): RecoveryWindow[] {
  const windows = bases
    .map((base) => ({ from: base.finishedAt, to: planRecovery([base], segments, Infinity)!.reaches }))
    .sort((a, b) => a.from - b.from);
  const merged: RecoveryWindow[] = [];
  for (const w of windows) {
    const last = merged.at(-1);
    if (last && w.from <= last.to) last.to = Math.max(last.to, w.to);
    else merged.push({ ...w });
  }
  return merged;
}
