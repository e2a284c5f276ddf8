import type { Repository } from '../repository/repository.js';
import type { SnapshotInfo } from '../repository/snapshots.js';
import { shortId } from '../repository/ids.js';
import { oneLine } from '../util/errors.js';
import { inShippingOrder, NOT_SHIPPED, planRecovery, recoveryWindows, type StoredSegment } from './plan.js';
import { baseOf } from './retention.js';
import { continues } from './segment.js';
import { parseSegmentName } from './shipper.js';
import { RepositorySegments } from './stored.js';

/** What `litekeep check` found of a repository's WAL segments. */
export interface WalCheckReport {
  segments: number;
  bytes: number;
  /** Segments downloaded, decoded and checked (with --read-data). */
  read: number;
  /** Where second-level recovery starts by policy (the newest horizon), when retention.pitr collected any. */
  recoverableFrom?: string;
  /** The stretches restorable to the second (with --read-data); what lies between two is a gap. */
  windows?: { from: string; to: string }[];
  /** Gaps the shipper recorded (the app's checkpoint reset the WAL before litekeep read it; with --read-data). */
  recordedGaps?: number;
}

const MAX_PROBLEMS = 20;

/**
 * Checks the segments of a repository: by name, that no segment within a WAL generation is missing or overlaps
 * another, and that the base the newest horizon names still exists; with `readData`, every segment is read and
 * checked (decryption, zstd, sha256, SQLite's checksum chain, name and repository), each must follow the one
 * before it within an epoch, and the recoverable windows are worked out. Problems go to `problems`.
 */
export async function checkSegments(
  repo: Repository,
  snapshots: SnapshotInfo[],
  problems: string[],
  options: { readData?: boolean; signal?: AbortSignal } = {},
): Promise<WalCheckReport | undefined> {
  const stored = new RepositorySegments(repo);
  const sizes = await stored.sizes();
  const horizon = (await stored.horizons()).at(-1);
  if (sizes.size === 0 && !horizon) return undefined;
  const report: WalCheckReport = {
    segments: sizes.size,
    bytes: [...sizes.values()].reduce((a, b) => a + b, 0),
    read: 0,
    ...(horizon ? { recoverableFrom: horizon.from } : {}),
  };
  const found: string[] = [];
  const problem = (text: string) => {
    if (found.length < MAX_PROBLEMS) found.push(text);
    else if (found.length === MAX_PROBLEMS) found.push('more WAL segment problems not shown');
  };
  if (horizon && !snapshots.some((s) => s.id === horizon.base))
    problem(
      `the base snapshot point-in-time recovery starts from (${shortId(horizon.base)}, per wal/horizon-${shortId(horizon.base)}…) is missing`,
    );
  for (const text of holesByName([...sizes.keys()])) problem(text);

  if (options.readData && repo.encrypted && !repo.canReadData)
    problem('WAL segments are encrypted: pass --identity FILE (or LITEKEEP_AGE_IDENTITY) to read them');
  else if (options.readData) {
    const read: StoredSegment[] = [];
    for (const name of [...sizes.keys()].sort()) {
      options.signal?.throwIfAborted();
      try {
        const { metadata } = await stored.read(name);
        // Only the first and last commit are needed for windows: memory stays small over many segments.
        const commits = [metadata.commits[0], metadata.commits.at(-1)!];
        read.push({ id: name, metadata: { ...metadata, commits } });
        report.read++;
      } catch (error) {
        problem(oneLine(error));
      }
    }
    const ordered = inShippingOrder(read);
    for (let i = 1; i < ordered.length; i++) {
      const previous = ordered[i - 1].metadata;
      const next = ordered[i].metadata;
      if (previous.epoch === next.epoch && !continues(previous, next))
        problem(
          `WAL segment ${ordered[i].id} does not follow ${ordered[i - 1].id} (frames or a generation missing between them)`,
        );
    }
    report.recordedGaps = ordered.filter((s) => s.metadata.after === 'gap').length;
    const bases = snapshots.flatMap((s) => baseOf(s) ?? []);
    // Each base inside the kept window must replay on until a recorded gap or the last segment shipped.
    const from = horizon ? Date.parse(horizon.from) : -Infinity;
    const byId = new Map(ordered.map((s) => [s.id, s.metadata]));
    for (const base of bases.filter((b) => b.finishedAt >= from)) {
      const stop = planRecovery([base], ordered, Infinity)?.stoppedByGap;
      if (!stop) continue;
      const shippedSince = ordered.some((s) => s.metadata.commits.at(-1)!.seenAt > base.finishedAt);
      const broken = stop.segment === NOT_SHIPPED ? shippedSince : byId.get(stop.segment)?.after !== 'gap';
      if (broken)
        problem(
          `base snapshot ${shortId(base.id)} cannot be replayed past ${new Date(stop.after).toISOString()}: ` +
            (stop.segment === NOT_SHIPPED
              ? 'the segments that start its replay are missing'
              : `WAL segment ${stop.segment} does not follow what comes before it (segments missing)`),
        );
    }
    report.windows = recoveryWindows(bases, ordered)
      .filter((w) => w.to > w.from)
      .map((w) => ({ from: new Date(w.from).toISOString(), to: new Date(w.to).toISOString() }));
  }
  problems.push(...found);
  return report;
}

/** Holes and overlaps inside one WAL generation, seen from names alone (a segment lost or written over). */
function holesByName(names: string[]): string[] {
  const groups = new Map<string, { name: string; first: number; last: number }[]>();
  for (const name of names) {
    const n = parseSegmentName(name)!;
    const key = `${n.epoch}-${n.checkpointSequence}-${n.salt1}`;
    const list = groups.get(key) ?? [];
    list.push({ name, first: n.firstFrame, last: n.lastFrame });
    groups.set(key, list);
  }
  const problems: string[] = [];
  for (const list of groups.values()) {
    // A group shipped again after a kill starts at the same frame and reaches as far or further: keep the longest.
    list.sort((a, b) => a.first - b.first || b.last - a.last);
    let previous: (typeof list)[number] | undefined;
    for (const s of list) {
      if (previous && s.first === previous.first) continue;
      if (previous && s.first > previous.last + 1)
        problems.push(
          `WAL segment(s) missing: frames ${previous.last + 1}–${s.first - 1} between ${previous.name} and ${s.name}`,
        );
      else if (previous && s.first <= previous.last)
        problems.push(`WAL segment ${s.name} overlaps ${previous.name}: one of them is not what was shipped`);
      previous = s;
    }
  }
  return problems;
}
