import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { DatabaseTarget } from '../config/index.js';
import { destinationSpecs, type DestinationSpec } from '../destinations/factory.js';
import { isIncremental, stateDirOf } from '../repository/destination.js';
import { readLockHolder, type LockHolder } from '../scheduler/lock.js';
import type { CommitRef, WalMark } from './plan.js';
import { readShipperState } from './shipper.js';
import { destinationRetention } from '../retention/policy.js';
import { systemTimeZone } from '../util/time.js';
import { pitrWindowStart } from './retention.js';
import { walEnd } from './wal.js';
import type { ReplicationReading } from './standing.js';

/**
 * What a backup run records so that its snapshot can be a base for WAL segments (docs/wal-segments.md): the
 * last commit each destination's shipper had shipped before the copy began, and the WAL's last commit right
 * after it. Light on purpose: every backup run with an incremental destination loads it.
 */

/** Where a destination's shipping position is kept: `<backupDir>/.litekeep/replication/<destination>.json`. */
export function replicationStateFile(target: DatabaseTarget, destination: string): string {
  return path.join(stateDirOf(target), 'replication', `${encodeURIComponent(destination)}.json`);
}

/**
 * The lock a replicator holds for as long as it follows a database (one per database, across processes):
 * `<backupDir>/.litekeep/replication/lock`. Not the backup lock, so backups (the replicator's own base
 * snapshots too) run while replication goes on.
 */
export function replicationLockPath(target: DatabaseTarget): string {
  return path.join(stateDirOf(target), 'replication', 'lock');
}

/** The process replicating a database now, as it described itself; `thisProcess` for the asker itself. */
export interface ReplicatorInfo extends LockHolder {
  thisProcess: boolean;
}

/** Who holds the database's replication lock now (the kernel is asked), or undefined when nobody does. */
export async function replicatorOf(target: DatabaseTarget): Promise<ReplicatorInfo | undefined> {
  const holder = await readLockHolder(replicationLockPath(target)).catch(() => undefined);
  if (!holder) return undefined;
  return { ...holder, thisProcess: holder.pid === process.pid && holder.host === os.hostname() };
}

/** The size of the database's `-wal` file in cooperative mode (what status watches); undefined otherwise. */
export function cooperativeWalBytes(target: DatabaseTarget): number | undefined {
  if (target.settings.replicate.mode !== 'cooperative') return undefined;
  try {
    return fs.statSync(`${target.path}-wal`).size;
  } catch {
    return 0;
  }
}

/** The incremental destinations replication ships to. */
export function replicationDestinations(target: DatabaseTarget): DestinationSpec[] {
  return destinationSpecs(target, target.driveConfigured).filter(isIncremental);
}

/** What a base capture records per destination before its copy begins: the last commit shipped there. */
export type ShippedBefore = Record<string, { repository?: string; lastShipped?: CommitRef }>;

export async function shippedBeforeOf(target: DatabaseTarget): Promise<ShippedBefore> {
  const marks: ShippedBefore = {};
  for (const spec of replicationDestinations(target)) {
    const state = await readShipperState(replicationStateFile(target, spec.name)).catch(() => undefined);
    if (state?.lastShipped)
      marks[spec.name] = { repository: state.repository, lastShipped: state.lastShipped };
  }
  return marks;
}

/** The WAL's last commit now, or undefined when there is no WAL or it holds no commit. */
export async function walMarkOf(databasePath: string): Promise<WalMark | undefined> {
  try {
    const end = await walEnd(`${databasePath}-wal`);
    if (!end || end.frame === 0) return undefined;
    const g = end.generation;
    return {
      generation: { salt1: g.salt1, salt2: g.salt2, checkpointSequence: g.checkpointSequence },
      frame: end.frame,
    };
  } catch {
    return undefined;
  }
}

/** Where one backup run's copy stood in the WAL. */
export interface WalCapture {
  before: ShippedBefore;
  walEndAfter?: WalMark;
  finishedAt: Date;
}

/** A capture's WAL marks as one destination's manifest records them (SnapshotBody.wal). */
export function walFieldFor(
  capture: WalCapture | undefined,
  destination: string,
  repositoryId: string,
): { shippedBefore?: CommitRef; walEndAfter?: WalMark; finishedAt: string } | undefined {
  if (!capture) return undefined;
  const before = capture.before[destination];
  return {
    ...(before?.lastShipped && before.repository === repositoryId
      ? { shippedBefore: before.lastShipped }
      : {}),
    ...(capture.walEndAfter ? { walEndAfter: capture.walEndAfter } : {}),
    finishedAt: capture.finishedAt.toISOString(),
  };
}

/** Where shipping to one destination stands, from its state file and the WAL as it is now. */
export interface ReplicationStatus {
  destination: string;
  /** When a segment was last shipped there. */
  lastShippedAt?: string;
  segmentsShipped: number;
  bytesShipped: number;
  /**
   * Committed frames in the WAL not shipped yet; undefined when the WAL was reset since the last shipment (the
   * shipper has not read the new generation yet) or nothing was ever shipped.
   */
  framesBehind?: number;
  /**
   * Replication lag in ms: 0 when every commit in the WAL has been shipped, else the time since the last
   * shipment (commits have waited at most that long).
   */
  lagMs?: number;
  /** A base snapshot is owed since then (a gap or a fresh start no base covers yet). */
  baseOwedSince?: string;
  /**
   * Recovery to the second is whole from here to the last shipment: the later of when the base after the last
   * gap (or fresh start) was written and the start of the `retention.pitr` window. Known from this machine's
   * shipping state alone; `check --read-data` reads the destination for every window.
   */
  recoverableFrom?: string;
  /**
   * The start of the `retention.pitr` window now: the policy keeps every moment since then restorable to the
   * second (a gap after it breaks that promise). Absent when no window is configured or it cannot be read.
   */
  windowFrom?: string;
  /** Gaps found since the shipping state began, and when the newest were (up to 20). */
  gaps: number;
  recentGaps: string[];
}

/** Replication status of each incremental destination that has a shipping state; none when never replicated. */
export async function replicationStatusOf(
  target: DatabaseTarget,
  now = Date.now(),
): Promise<ReplicationStatus[]> {
  const out: ReplicationStatus[] = [];
  let specs: DestinationSpec[];
  try {
    specs = replicationDestinations(target);
  } catch {
    return out;
  }
  const end = specs.length ? await walMarkOf(target.path) : undefined;
  for (const spec of specs) {
    const state = await readShipperState(replicationStateFile(target, spec.name)).catch(() => undefined);
    if (!state) continue;
    const last = state.lastShipped;
    let framesBehind: number | undefined;
    if (last && !end) framesBehind = 0;
    else if (
      last &&
      end &&
      end.generation.salt1 === last.generation.salt1 &&
      end.generation.salt2 === last.generation.salt2
    )
      framesBehind = Math.max(0, end.frame - last.frame);
    const lagMs =
      framesBehind === 0
        ? 0
        : state.lastShippedAt !== undefined
          ? Math.max(0, now - state.lastShippedAt)
          : undefined;
    const windowStart = windowStartOf(target, spec, now);
    out.push({
      destination: spec.name,
      ...(state.lastShippedAt !== undefined
        ? { lastShippedAt: new Date(state.lastShippedAt).toISOString() }
        : {}),
      segmentsShipped: state.segmentsShipped ?? 0,
      bytesShipped: state.bytesShipped ?? 0,
      ...(framesBehind !== undefined ? { framesBehind } : {}),
      ...(lagMs !== undefined ? { lagMs } : {}),
      ...(state.baseNeededSince !== undefined
        ? { baseOwedSince: new Date(state.baseNeededSince).toISOString() }
        : {}),
      ...(state.wholeSince !== undefined && state.baseNeededSince === undefined
        ? {
            recoverableFrom: new Date(Math.max(state.wholeSince, windowStart ?? -Infinity)).toISOString(),
          }
        : {}),
      ...(windowStart !== undefined ? { windowFrom: new Date(windowStart).toISOString() } : {}),
      gaps: state.gapsTotal ?? 0,
      recentGaps: (state.recentGaps ?? []).map((t) => new Date(t).toISOString()),
    });
  }
  return out;
}

/**
 * Everything status reads about a database's replication (`litekeep status`, /healthz and /metrics, the status
 * page): each destination's shipping, who replicates it now (asked where replication is configured or ever
 * ran), and the WAL's size in cooperative mode. `judgeReplication` (standing.ts) says what is wrong with it.
 */
export async function replicationReadingOf(
  target: DatabaseTarget,
  now = Date.now(),
): Promise<ReplicationReading> {
  const reading: ReplicationReading = {};
  const replication = await replicationStatusOf(target, now);
  if (replication.length) reading.replication = replication;
  if (replication.length || target.settings.replicate.enabled)
    reading.replicator = (await replicatorOf(target)) ?? null;
  const walBytes = cooperativeWalBytes(target);
  if (walBytes !== undefined) reading.walBytes = walBytes;
  return reading;
}

/** Now minus the destination's `retention.pitr` (its own, else the database's); undefined when not readable. */
function windowStartOf(target: DatabaseTarget, spec: DestinationSpec, now: number): number | undefined {
  const { pitr } = destinationRetention({ pitr: target.settings.retention.pitr }, spec.retention);
  if (!pitr) return undefined;
  try {
    return pitrWindowStart(new Date(now), pitr, target.settings.timeZone ?? systemTimeZone());
  } catch {
    return undefined;
  }
}
