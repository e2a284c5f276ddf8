import type { DatabaseTarget } from '../config/index.js';
import { hostOf, openDestination } from '../destinations/factory.js';
import { humanDuration } from '../util/fs.js';
import { incrementalSpec } from '../repository/destination.js';
import { listRepositorySnapshots } from '../repository/status.js';
import { replicationReadingOf } from '../pitr/capture.js';
import {
  judgeReplication,
  replicationSettingsOf,
  walIsLarge,
  type ReplicationReading,
} from '../pitr/standing.js';
import { BackupManager } from './manager.js';
import { destinationStatuses, remoteTime, type DestinationStatus } from './offsite.js';

/** Replication (`replication`, `replicator`, `walBytes`: docs/wal-segments.md) comes from ReplicationReading. */
export interface DatabaseStatus extends ReplicationReading {
  database: string;
  backupDir: string;
  count: number;
  totalBytes: number;
  newest?: { name: string; time: string; bytes: number; ageMs: number };
  lastSuccess?: { at: string; file?: string };
  lastFailure?: { at: string; error?: string; stage?: string };
  lastVerified: { destination: string; file: string; at: string }[];
  /** Per off-site destination (only when asked for: listing them costs requests). */
  destinations?: DestinationStatus[];
  /** That size is over COOPERATIVE_WAL_WARN_BYTES (64 MiB): litekeep's checkpoints have not reset it lately. */
  walLarge?: boolean;
  /**
   * What is wrong with replication (judgeReplication, as the status page says it): nobody replicating a database
   * marked `replicate`, a large cooperative WAL, lag past its limit, a gap inside the `retention.pitr` window
   * (`on DESTINATION: ...`). Present wherever replication is configured or ever ran; empty when all is well.
   */
  replicationProblems?: string[];
  maxAgeMs?: number;
  stale: boolean;
  staleReason?: string;
}

/**
 * What `litekeep status` reports for one database: backups on disk, last success and failure, newest verified
 * copy per destination, and whether the newest backup, or any destination's newest copy, is older than
 * `maxAgeMs` (or a destination's last upload failed). Closes the manager.
 */
export async function statusOf(
  manager: BackupManager,
  maxAgeMs?: number,
  options: { destinations?: boolean } = {},
): Promise<DatabaseStatus> {
  const { backups } = await manager.listBackups();
  const success = manager.catalog.lastRunWithStatus(['ok', 'partial']);
  const failure = manager.catalog.lastRunWithStatus(['failed']);
  const verified = manager.catalog.lastVerifications({ kept: true });
  const newest = backups[0];
  const now = Date.now();
  const status: DatabaseStatus = {
    database: manager.target.name,
    backupDir: manager.backupDir,
    count: backups.length,
    totalBytes: backups.reduce((sum, b) => sum + b.bytes, 0),
    newest: newest
      ? {
          name: newest.name,
          time: newest.time.toISOString(),
          bytes: newest.bytes,
          ageMs: now - newest.time.getTime(),
        }
      : undefined,
    lastSuccess: success ? { at: success.endedAt ?? success.startedAt, file: success.backupFile } : undefined,
    lastFailure: failure ? { at: failure.startedAt, error: failure.error, stage: failure.stage } : undefined,
    lastVerified: verified.map((v) => ({ destination: v.destination, file: v.backupFile, at: v.at! })),
    maxAgeMs,
    stale: false,
  };
  if (options.destinations)
    status.destinations = await destinationStatuses(manager.target, manager, maxAgeMs);
  const reading = await replicationReadingOf(manager.target, now);
  Object.assign(status, reading);
  if (reading.walBytes !== undefined) status.walLarge = walIsLarge(reading.walBytes);
  if (reading.replicator !== undefined) {
    const judged = judgeReplication(manager.target.name, replicationSettingsOf(manager.target), reading, now);
    status.replicationProblems = [
      ...judged.problems,
      ...judged.destinations.flatMap((d) => d.problems.map((p) => `on ${d.destination}: ${p}`)),
    ];
  }
  Object.assign(status, staleness(newest?.time, maxAgeMs, now));
  // An off-site copy that stopped arriving is as stale as a local one: the point of it is to be there.
  const offsite = (status.destinations ?? []).filter((d) => d.stale);
  if (maxAgeMs !== undefined && offsite.length) {
    status.stale = true;
    status.staleReason = [status.staleReason, ...offsite.map((d) => `${d.destination}: ${d.staleReason}`)]
      .filter(Boolean)
      .join('; ');
  }
  manager.close();
  return status;
}

/** Whether the newest backup is older than `maxAgeMs` (none at all is stale too), and why. */
function staleness(
  newest: Date | undefined,
  maxAgeMs: number | undefined,
  now: number,
): { stale: boolean; staleReason?: string } {
  if (maxAgeMs === undefined) return { stale: false };
  if (!newest) return { stale: true, staleReason: 'no backup found' };
  const age = now - newest.getTime();
  if (age <= maxAgeMs) return { stale: false };
  return {
    stale: true,
    staleReason: `newest backup is ${humanDuration(age)} old, more than ${humanDuration(maxAgeMs)}`,
  };
}

/** `litekeep status --from <destination>`: what one destination holds of a database, and whether it is stale. */
export interface RemoteStatus {
  database: string;
  from: string;
  type: string;
  count: number;
  totalBytes: number;
  newest?: { name: string; time: string; bytes: number; ageMs: number };
  maxAgeMs?: number;
  stale: boolean;
  staleReason?: string;
}

export async function remoteStatusOf(
  target: DatabaseTarget,
  from: string,
  maxAgeMs?: number,
): Promise<RemoteStatus> {
  const listing = await listRemote(target, from);
  const now = Date.now();
  const newest = listing.backups[0];
  const newestTime = newest ? new Date(newest.time) : undefined;
  return {
    database: listing.database,
    from: listing.from,
    type: listing.type,
    count: listing.backups.length,
    totalBytes: listing.backups.reduce((sum, b) => sum + b.bytes, 0),
    newest: newest
      ? { name: newest.name, time: newest.time, bytes: newest.bytes, ageMs: now - newestTime!.getTime() }
      : undefined,
    maxAgeMs,
    ...staleness(newestTime, maxAgeMs, now),
  };
}

// A type alias (not an interface) so it fits the Record<string, unknown> of the JSON output.
export type RemoteListing = {
  database: string;
  from: string;
  type: string;
  /** `incremental`: the entries are snapshots of a repository (name = snapshot id). */
  format?: 'incremental';
  backups: {
    name: string;
    id: string;
    bytes: number;
    time: string;
    link?: string;
    sha256?: string;
    /** The machine that made it (several may share a destination). */
    host?: string;
    inCatalog: boolean;
    /** Incremental snapshots: retention series, bytes the snapshot added, image bytes per byte added. */
    trigger?: string;
    addedBytes?: number;
    dedupRatio?: number;
    /** A snapshot whose manifest cannot be read. */
    error?: string;
  }[];
};

/** A destination's backups of one database, newest first, with what the catalog knows. */
export async function listRemote(target: DatabaseTarget, from: string): Promise<RemoteListing> {
  if (incrementalSpec(target, from)) return listRepositorySnapshots(target, from);
  const destination = await openDestination(target, from);
  const manager = new BackupManager(target, { readOnly: true });
  try {
    const objects = await destination.list();
    const own = hostOf(target);
    const backups = objects
      .map((o) => ({
        name: o.name,
        id: o.id,
        bytes: o.bytes,
        time: remoteTime(o, manager.timeZone).toISOString(),
        link: o.link,
        sha256: o.metadata?.sha256,
        host: o.host ?? own,
        inCatalog: (o.host ?? own) === own && manager.catalog.getBackup(o.name) !== undefined,
      }))
      .sort((a, b) => b.time.localeCompare(a.time) || b.name.localeCompare(a.name));
    return { database: target.name, from: destination.name, type: destination.type, backups };
  } finally {
    manager.close();
  }
}
