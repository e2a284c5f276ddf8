import { continues, resetsFrom, type SegmentMetadata } from './segment.js';

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

/** A commit in the WAL: its generation (salts, checkpoint sequence) and its commit frame. */
export interface WalMark {
  generation: { salt1: number; salt2: number; checkpointSequence: number };
  frame: number;
}

/** A commit the shipper shipped: with the shipper's epoch, which orders it among every segment shipped. */
export interface CommitRef extends WalMark {
  epoch: number;
}

/**
 * A commit named by id, as `restore --at` and `verify --at` take it: `<epoch>-<checkpoint sequence>-<salt-1>-
 * <commit frame>` in hex, the first three as in segment names (src/pitr/shipper.ts), so within one repository it
 * names one commit. A segment's name names its last commit.
 */
export interface CommitId {
  epoch: number;
  checkpointSequence: number;
  salt1: number;
  frame: number;
}

const hex8 = (n: number) => n.toString(16).padStart(8, '0');

export function formatCommitId(c: CommitId): string {
  return [c.epoch, c.checkpointSequence, c.salt1, c.frame].map(hex8).join('-');
}

/** The commit a commit id or a segment name names (its last commit), or undefined for anything else. */
export function parseCommitId(text: string): CommitId | undefined {
  const m = /^([0-9a-f]{8})-([0-9a-f]{8})-([0-9a-f]{8})-(?:[0-9a-f]{8}-)?([0-9a-f]{8})(?:\.lkwal)?$/i.exec(
    text.trim(),
  );
  if (!m) return undefined;
  const [epoch, checkpointSequence, salt1, frame] = m.slice(1).map((h) => parseInt(h, 16));
  return { epoch, checkpointSequence, salt1, frame };
}

export function commitIdOfRef(ref: CommitRef): CommitId {
  return {
    epoch: ref.epoch,
    checkpointSequence: ref.generation.checkpointSequence,
    salt1: ref.generation.salt1,
    frame: ref.frame,
  };
}

/** The id of commit frame `frame` of the segment's generation. */
export function commitIdAt(m: SegmentMetadata, frame: number): CommitId {
  return {
    epoch: m.epoch,
    checkpointSequence: m.generation.checkpointSequence,
    salt1: m.generation.salt1,
    frame,
  };
}

/** Whether commit frame `frame` of the segment's generation is the commit `id` names. */
export function isCommit(id: CommitId, m: SegmentMetadata, frame: number): boolean {
  return formatCommitId(commitIdAt(m, frame)) === formatCommitId(id);
}

/**
 * Whether replay from `base` can stop exactly after commit `id`: the commit comes after everything the base's
 * capture may hold (its `walEndAfter`); otherwise the base may already hold later commits.
 */
export function reachableFrom(base: BaseSnapshot, id: CommitId): boolean {
  const end = base.walEndAfter;
  if (!end) return true;
  const g = end.generation;
  if (g.salt1 === id.salt1 && g.checkpointSequence === id.checkpointSequence) return id.frame >= end.frame;
  return id.checkpointSequence > g.checkpointSequence || id.epoch > (base.shippedBefore?.epoch ?? 0);
}

export interface BaseSnapshot {
  id: string;
  /** The last commit shipped before the capture began; undefined when nothing had been shipped. */
  shippedBefore: CommitRef | undefined;
  /** The WAL's last commit, read right after the capture; undefined when the WAL held none. */
  walEndAfter: WalMark | undefined;
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
  /**
   * With a commit asked for: whether the plan ends exactly after it. `inBase` when it lies inside the base's
   * capture (the base may hold later commits: an older base is needed to stop exactly there).
   */
  exact?: 'reached' | 'inBase';
}

/** `stoppedByGap.segment` when the commits a base holds were not all shipped (no segment to name). */
export const NOT_SHIPPED = '(not shipped yet)';

export interface RecoveryWindow {
  from: number;
  to: number;
}

const sameSalts = (a: WalMark['generation'], b: WalMark['generation']) =>
  a.salt1 === b.salt1 && a.salt2 === b.salt2;

/**
 * Segments in the order they were shipped: by epoch, generation (checkpoint sequence), then first frame. A group
 * shipped again after a kill starts where the first attempt started and reaches at least as far (committed
 * frames of a generation never change), so of segments starting at the same frame only the longest is kept.
 */
export function inShippingOrder(segments: StoredSegment[]): StoredSegment[] {
  const sorted = [...segments].sort(
    (a, b) =>
      a.metadata.epoch - b.metadata.epoch ||
      a.metadata.generation.checkpointSequence - b.metadata.generation.checkpointSequence ||
      a.metadata.firstFrame - b.metadata.firstFrame ||
      b.metadata.lastFrame - a.metadata.lastFrame,
  );
  const kept: StoredSegment[] = [];
  for (const segment of sorted) {
    const last = kept.at(-1)?.metadata;
    const m = segment.metadata;
    if (
      last &&
      last.epoch === m.epoch &&
      sameSalts(last.generation, m.generation) &&
      last.firstFrame === m.firstFrame
    )
      continue;
    kept.push(segment);
  }
  return kept;
}

/** Whether the segment holds frames shipped after `from`. */
function isAfter(from: CommitRef, m: SegmentMetadata): boolean {
  if (m.epoch !== from.epoch) return m.epoch > from.epoch;
  if (sameSalts(from.generation, m.generation)) return m.lastFrame > from.frame;
  return m.generation.checkpointSequence > from.generation.checkpointSequence;
}

/** Index of the first segment replay starts with for this base, or -1 when none follows it. */
function firstAfter(base: BaseSnapshot, ordered: StoredSegment[]): number {
  const from = base.shippedBefore;
  if (from) return ordered.findIndex((s) => isAfter(from, s.metadata));
  // Nothing shipped before the capture: replay can only start at the first frame of the generation the
  // capture ended in (every frame from there on is a page image at or after the base's).
  const end = base.walEndAfter;
  if (!end) return -1;
  return ordered.findIndex(
    (s) => sameSalts(end.generation, s.metadata.generation) && s.metadata.firstFrame === 1,
  );
}

/**
 * Whether the segment may start replay for `base`: it holds the frame right after the base's shipped commit
 * (same epoch and generation), or begins the very next generation after a proven reset, or the base had
 * nothing shipped before it and this is the first segment shipped after a start.
 */
function startsCleanly(base: BaseSnapshot, segment: SegmentMetadata): boolean {
  const from = base.shippedBefore;
  if (!from) return segment.firstFrame === 1;
  if (segment.epoch !== from.epoch) return false;
  if (sameSalts(from.generation, segment.generation)) return segment.firstFrame <= from.frame + 1;
  // A reset crossed from the base's own generation only when that generation ended at the base's shipped frame.
  return resetsFrom(segment, from.generation, from.frame);
}

/**
 * The plan for the state at `target`: the newest base finished by then, and the segments after it up to then.
 * With `commit` (whose commit `target` is the time litekeep saw it), the replay ends exactly after that commit,
 * not after every commit seen by then.
 */
export function planRecovery(
  bases: BaseSnapshot[],
  segments: StoredSegment[],
  target: number,
  commit?: CommitId,
): RecoveryPlan | undefined {
  const base = [...bases]
    .filter((b) => b.finishedAt <= target)
    .sort((a, b) => b.finishedAt - a.finishedAt)[0];
  if (!base) return undefined;
  const ordered = inShippingOrder(segments);
  const steps: ReplayStep[] = [];
  let reaches = base.finishedAt;
  const end = base.walEndAfter;
  const from = base.shippedBefore;
  // Whether replay has covered every commit the base may hold: until then, every commit is replayed.
  let covered =
    !end || (from !== undefined && sameSalts(end.generation, from.generation) && end.frame <= from.frame);
  const alone = (segment: string): RecoveryPlan => ({
    base,
    steps: [],
    reaches: base.finishedAt,
    stoppedByGap: { after: base.finishedAt, segment },
  });
  const start = firstAfter(base, ordered);
  let previous: SegmentMetadata | undefined;
  for (let i = Math.max(start, 0); start >= 0 && i < ordered.length; i++) {
    const segment = ordered[i];
    const m = segment.metadata;
    const wanted = !covered || m.commits[0].seenAt <= target;
    const whole = previous ? continues(previous, m) : startsCleanly(base, m);
    if (!whole) {
      // A gap before the base's end: replaying part of what it holds could put back older pages.
      if (!covered) return alone(segment.id);
      // A gap only matters if what lies beyond it was asked for.
      if (wanted) return { base, steps, reaches, stoppedByGap: { after: reaches, segment: segment.id } };
      break;
    }
    if (!wanted) break;
    let through: number | undefined;
    let taken = 0;
    let hit = false;
    for (const c of m.commits) {
      const forEnd = !covered;
      if (forEnd && end && sameSalts(end.generation, m.generation) && c.frame >= end.frame) covered = true;
      if (!forEnd && c.seenAt > target) break;
      through = c.frame;
      taken++;
      if (c.seenAt <= target) reaches = Math.max(reaches, c.seenAt);
      if (commit && isCommit(commit, m, c.frame)) {
        hit = true;
        break;
      }
    }
    steps.push({ segment, throughFrame: through! });
    if (hit) return { base, steps, reaches, exact: covered ? 'reached' : 'inBase' };
    if (taken < m.commits.length) break;
    previous = m;
  }
  if (!covered) return alone(NOT_SHIPPED);
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
