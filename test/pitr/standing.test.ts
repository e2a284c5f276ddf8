import { describe, expect, it } from 'vitest';
import type { ReplicationStatus } from '../../src/pitr/capture.js';
import {
  COOPERATIVE_WAL_WARN_BYTES,
  judgeReplication,
  lagProblemMs,
  type ReplicationSettings,
} from '../../src/pitr/standing.js';

/**
 * The judgement `litekeep status` and the status page share (the browser test, test/web/replication.test.ts,
 * plays nobody replicating and a gap against real shipping): here the limits, which real shipping reaches only
 * by waiting for them.
 */

const NOW = Date.parse('2026-12-01T12:00:00Z');
const follow: ReplicationSettings = { enabled: true, mode: 'follow', intervalMs: 1000 };
const holder = { pid: 7, host: 'web1', startedAt: '2026-12-01T11:00:00Z', purpose: 'x', thisProcess: true };
const shipping = (extra: Partial<ReplicationStatus> = {}): ReplicationStatus => ({
  destination: 'vault',
  segmentsShipped: 3,
  bytesShipped: 4096,
  gaps: 0,
  recentGaps: [],
  windowFrom: new Date(NOW - 7 * 86_400_000).toISOString(),
  ...extra,
});

describe('judgeReplication', () => {
  it('finds nothing wrong with a replicated database that keeps up', () => {
    expect(
      judgeReplication('app', follow, { replication: [shipping({ lagMs: 0 })], replicator: holder }, NOW),
    ).toEqual({ problems: [], destinations: [{ destination: 'vault', problems: [] }] });
  });

  it('marks lag past a minute (or ten intervals), and not below it', () => {
    expect(lagProblemMs(1000)).toBe(60_000);
    expect(lagProblemMs(30_000)).toBe(300_000);
    const judge = (lagMs: number, intervalMs = 1000) =>
      judgeReplication(
        'app',
        { ...follow, intervalMs },
        { replication: [shipping({ lagMs })], replicator: holder },
        NOW,
      ).destinations[0].problems;
    expect(judge(60_000)).toEqual([]);
    expect(judge(61_000)).toEqual(['commits have waited 1 min 1 s to be shipped, more than 1 min 0 s']);
    expect(judge(200_000, 30_000)).toEqual([]);
  });

  it('marks a gap inside the retention.pitr window, not one before it', () => {
    const gapAt = (ms: number) =>
      judgeReplication(
        'app',
        follow,
        {
          replication: [shipping({ gaps: 1, recentGaps: [new Date(NOW - ms).toISOString()] })],
          replicator: holder,
        },
        NOW,
      ).destinations[0].problems;
    expect(gapAt(3 * 60_000)).toEqual([
      'a gap 3 min 0 s ago (the WAL was reset before litekeep read it): moments in it cannot be restored to the second',
    ]);
    expect(gapAt(8 * 86_400_000)).toEqual([]);
  });

  it('marks nobody replicating only where replicate is configured, and a large cooperative WAL', () => {
    const nobody = { replication: [shipping()], replicator: null };
    expect(judgeReplication('app', follow, nobody, NOW).problems).toEqual([
      expect.stringMatching(/^replicate is configured but no process replicates app now/),
    ]);
    expect(judgeReplication('app', { ...follow, enabled: false }, nobody, NOW).problems).toEqual([]);
    const cooperative = { ...follow, mode: 'cooperative' as const };
    const wal = (walBytes: number) =>
      judgeReplication('app', cooperative, { replicator: holder, walBytes }, NOW).problems;
    expect(wal(COOPERATIVE_WAL_WARN_BYTES)).toEqual([]);
    expect(wal(COOPERATIVE_WAL_WARN_BYTES + 1)).toEqual([
      expect.stringMatching(/^the WAL is 64\.0 MiB: in cooperative mode only litekeep's checkpoints/),
    ]);
  });
});
