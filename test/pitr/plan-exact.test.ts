import { describe, expect, it } from 'vitest';
import {
  formatCommitId,
  parseCommitId,
  planRecovery,
  type BaseSnapshot,
  type StoredSegment,
} from '../../src/pitr/plan.js';
import type { SegmentMetadata } from '../../src/pitr/segment.js';

/** Planning a restore that ends exactly after one commit (`--at` a commit id): pure, on hand-made metadata. */

const generation = { salt1: 0x5e1f0a2b, salt2: 7, checkpointSequence: 3, bigEndianChecksum: false };

/** Segment k holds frames 10k+1..10k+10 with commits at frames 10k+4, 10k+7, 10k+10, all seen at `seenAt`. */
function segment(k: number, seenAt: number): StoredSegment {
  const first = 10 * k + 1;
  const metadata: SegmentMetadata = {
    database: 'app',
    host: 'h',
    pageSize: 4096,
    epoch: 0,
    generation,
    firstFrame: first,
    lastFrame: first + 9,
    startChecksum: [k, k],
    endChecksum: [k + 1, k + 1],
    commits: [3, 6, 9].map((d) => ({ frame: first + d, pages: 10, seenAt })),
    after: k === 0 ? 'start' : 'continuation',
  };
  return { id: `segment-${k}`, metadata };
}

const segments = [segment(0, 1000), segment(1, 2000), segment(2, 3000)];
const mark = (frame: number) => ({ generation, frame });

describe('planning to a commit', () => {
  it('stops right after the commit, not after the later ones seen at the same moment', () => {
    const base: BaseSnapshot = {
      id: 'b',
      shippedBefore: { ...mark(10), epoch: 0 },
      walEndAfter: mark(10),
      finishedAt: 1500,
    };
    const commit = { epoch: 0, checkpointSequence: 3, salt1: generation.salt1, frame: 17 };
    const plan = planRecovery([base], segments, 2000, commit)!;
    expect(plan.exact).toBe('reached');
    expect(plan.steps.map((s) => [s.segment.id, s.throughFrame])).toEqual([['segment-1', 17]]);
    // By time alone, every commit seen at 2000 is replayed.
    const byTime = planRecovery([base], segments, 2000)!;
    expect(byTime.steps.map((s) => s.throughFrame)).toEqual([20]);
    expect(byTime.exact).toBeUndefined();
  });

  it('says when the commit lies inside the base capture (the base may hold later commits)', () => {
    const base: BaseSnapshot = {
      id: 'b',
      shippedBefore: { ...mark(10), epoch: 0 },
      walEndAfter: mark(20),
      finishedAt: 1500,
    };
    const inside = planRecovery([base], segments, 2000, {
      epoch: 0,
      checkpointSequence: 3,
      salt1: generation.salt1,
      frame: 14,
    })!;
    expect(inside.exact).toBe('inBase');
    // At the base's own end it is exact: replay through walEndAfter is the base's state at that commit.
    const atEnd = planRecovery([base], segments, 2000, {
      epoch: 0,
      checkpointSequence: 3,
      salt1: generation.salt1,
      frame: 20,
    })!;
    expect(atEnd.exact).toBe('reached');
  });

  it('reads commit ids and segment names, and nothing else', () => {
    const id = { epoch: 1, checkpointSequence: 3, salt1: 0x5e1f0a2b, frame: 42 };
    expect(formatCommitId(id)).toBe('00000001-00000003-5e1f0a2b-0000002a');
    expect(parseCommitId('00000001-00000003-5e1f0a2b-0000002a')).toEqual(id);
    // A segment's name names its last commit.
    expect(parseCommitId('00000001-00000003-5e1f0a2b-00000020-0000002a.lkwal')).toEqual(id);
    expect(parseCommitId('00000001-00000003-5e1f0a2b-00000020-0000002a')).toEqual(id);
    for (const bad of ['2026-12-01', '1-3-5e1f0a2b-2a', '00000001-00000003-5e1f0a2b', 'latest'])
      expect(parseCommitId(bad)).toBeUndefined();
  });
});
