import os from 'node:os';
import type { DatabaseTarget } from '../config/index.js';
import { GoogleDriveDestination } from '../destinations/google-drive.js';
import { createDestination, destinationSpecs, type DestinationSpec } from '../destinations/factory.js';
import type { ArtifactMetadata, Destination, IncompleteUpload, RemoteObject } from '../destinations/types.js';
import { parseBackupName, timeFromBackupName } from '../naming.js';
import {
  applySafetyRails,
  assertUsablePolicy,
  planRetention,
  type RetentionPolicy,
} from '../retention/index.js';
import { sha256File } from '../pipeline/index.js';
import { destinationProblem } from '../scheduler/index.js';
import { oneLine } from '../util/errors.js';
import { VERSION } from '../version.js';
import type { BackupEntry, BackupManager, BackupResult } from './manager.js';

export interface DestinationOutcome {
  destination: string;
  type: string;
  status: 'ok' | 'failed' | 'skipped';
  id?: string;
  link?: string;
  bytes?: number;
  attempts?: number;
  durationMs?: number;
  error?: string;
  /** Something the user should know although it worked (a service account without quota). */
  warning?: string;
  /** Older backups uploaded because they were missing there (catch-up after an outage). */
  caughtUp?: string[];
  rotated?: number;
  pruneErrors?: string[];
  /** Incomplete uploads of earlier, interrupted runs that were aborted at the start of this one. */
  abortedUploads?: string[];
}

export interface OffsiteOptions {
  skipDrive?: boolean;
  runId?: number;
  signal?: AbortSignal;
  onStep?: (message: string) => void;
  /** Only catch up missing backups (`litekeep sync`), no new backup to upload. */
  syncOnly?: boolean;
  /** Apply each destination's retention after a successful upload (default true). */
  prune?: boolean;
}

async function metadataFor(
  manager: BackupManager,
  entry: { name: string; bytes: number; time: Date; path: string },
): Promise<ArtifactMetadata> {
  const record = manager.catalog.getBackup(entry.name);
  const parsed = parseBackupName(entry.name)!;
  return {
    sha256: record?.sha256 ?? (await sha256File(entry.path)).sha256,
    bytes: entry.bytes,
    plainSha256: record?.plainSha256,
    plainBytes: record?.plainBytes,
    sourceName: manager.target.name,
    backupTime: entry.time.toISOString(),
    compression: parsed.compression,
    encryption: parsed.encryption,
    litekeepVersion: VERSION,
    host: os.hostname(),
  };
}

export function destinationsOf(
  target: DatabaseTarget,
  options: { skipDrive?: boolean } = {},
): DestinationSpec[] {
  return destinationSpecs(target, target.driveConfigured).filter(
    (spec) => !(options.skipDrive && spec.type === 'google-drive'),
  );
}

/**
 * Uploads to every configured destination, each on its own: one failing does not stop the others. For each
 * destination that took the new backup, uploads what is missing there (newest first), then applies that
 * destination's retention. Never throws.
 */
export async function runDestinations(
  target: DatabaseTarget,
  manager: BackupManager,
  backup: BackupResult | undefined,
  options: OffsiteOptions,
): Promise<DestinationOutcome[]> {
  const outcomes: DestinationOutcome[] = [];
  let specs: DestinationSpec[];
  try {
    specs = destinationsOf(target, options);
  } catch (error) {
    return [{ destination: 'configuration', type: '?', status: 'failed', error: oneLine(error) }];
  }
  for (const spec of specs) {
    outcomes.push(await syncOne(spec, target, manager, backup, options));
  }
  return outcomes;
}

async function syncOne(
  spec: DestinationSpec,
  target: DatabaseTarget,
  manager: BackupManager,
  backup: BackupResult | undefined,
  options: OffsiteOptions,
): Promise<DestinationOutcome> {
  const outcome: DestinationOutcome = { destination: spec.name, type: spec.type, status: 'failed' };
  const record = (name: string, status: 'ok' | 'failed', extra: Partial<DestinationOutcome> = {}) => {
    try {
      manager.catalog.recordUpload({
        runId: options.runId,
        backupFile: name,
        destination: spec.name,
        status,
        remoteId: extra.id,
        link: extra.link,
        bytes: extra.bytes,
        durationMs: extra.durationMs,
        attempts: extra.attempts,
        error: extra.error,
      });
    } catch {
      // the activity log is best effort
    }
  };
  let destination: Destination;
  try {
    destination = createDestination(spec, target, undefined, options.signal);
  } catch (error) {
    outcome.error = oneLine(error);
    return outcome;
  }
  await abortAbandonedUploads(destination, manager, outcome, options);
  try {
    if (destination instanceof GoogleDriveDestination) {
      // A service account has no storage quota of its own: say so on every run, not only at `auth google`.
      addWarning(outcome, (await destination.credentials()).warning);
    }
    if (backup) {
      const put = await destination.put(
        backup.path,
        backup.file,
        await metadataFor(manager, {
          name: backup.file,
          bytes: backup.bytes,
          time: new Date(backup.createdAt),
          path: backup.path,
        }),
        { signal: options.signal },
      );
      Object.assign(outcome, {
        status: 'ok',
        id: put.id,
        link: put.link,
        bytes: put.bytes,
        attempts: put.attempts,
        durationMs: put.durationMs,
      });
      record(backup.file, 'ok', outcome);
      options.onStep?.(`uploaded ${backup.file} to ${spec.name}${put.link ? ` (${put.link})` : ''}`);
    } else outcome.status = 'ok';
  } catch (error) {
    outcome.status = 'failed';
    outcome.error = oneLine(error);
    if (backup) record(backup.file, 'failed', { error: outcome.error });
    return outcome;
  }

  // Catch up: backups the local folder still holds that this destination lacks (it was down last time).
  const policy: RetentionPolicy = spec.retention ?? manager.retentionPolicy();
  try {
    const remote: Pick<RemoteObject, 'name' | 'metadata'>[] = await destination.list();
    // A listing taken right after an upload may not show it yet (Drive): never upload it twice.
    if (backup && outcome.status === 'ok' && !remote.some((o) => o.name === backup.file)) {
      remote.push({ name: backup.file, metadata: { backupTime: backup.createdAt } });
    }
    const { backups } = await manager.listBackups();
    const wanted = missingOn(spec, manager, backups, remote);
    outcome.caughtUp = [];
    for (const entry of wanted) {
      try {
        const put = await destination.put(entry.path, entry.name, await metadataFor(manager, entry), {
          signal: options.signal,
        });
        record(entry.name, 'ok', { id: put.id, link: put.link, bytes: put.bytes, attempts: put.attempts });
        outcome.caughtUp.push(entry.name);
        options.onStep?.(`caught up ${entry.name} on ${spec.name}`);
      } catch (error) {
        record(entry.name, 'failed', { error: oneLine(error) });
        throw error;
      }
    }
  } catch (error) {
    outcome.status = 'failed';
    outcome.error = `catch-up: ${oneLine(error)}`;
    return outcome;
  }

  if (options.prune !== false) {
    try {
      const removed = await pruneDestination(destination, policy, manager, options.runId);
      outcome.rotated = removed.removed.length;
      if (removed.failed.length) {
        outcome.pruneErrors = removed.failed;
        outcome.status = 'failed';
        outcome.error = `retention: ${removed.failed[0]}`;
      }
    } catch (error) {
      outcome.status = 'failed';
      outcome.error = `retention: ${oneLine(error)}`;
    }
  }
  return outcome;
}

function addWarning(outcome: DestinationOutcome, warning: string | undefined): void {
  if (warning) outcome.warning = outcome.warning ? `${outcome.warning}; ${warning}` : warning;
}

/**
 * Whether nobody can still be sending an incomplete upload. Every run of this database on this host holds its
 * lock (as the caller does now), so an upload of one of this host's own backups is left over from a run that
 * was killed or lost its server; and no run anywhere outlives `runTimeoutMs`.
 */
export function isAbandonedUpload(
  upload: IncompleteUpload,
  ownBackups: ReadonlySet<string>,
  now: Date,
  runTimeoutMs: number,
): boolean {
  if (ownBackups.has(upload.name)) return true;
  return upload.startedAt !== undefined && now.getTime() - upload.startedAt.getTime() > runTimeoutMs;
}

/** The start of each run: abort what interrupted runs left incomplete there (S3 parts cost until then). */
async function abortAbandonedUploads(
  destination: Destination,
  manager: BackupManager,
  outcome: DestinationOutcome,
  options: OffsiteOptions,
): Promise<void> {
  if (!destination.abortIncompleteUploads) return;
  const own = new Set<string>();
  try {
    for (const record of manager.catalog.listBackups({ includeDeleted: true })) own.add(record.file);
    for (const entry of (await manager.listBackups()).backups) own.add(entry.name);
  } catch {
    // Without the names, only age decides.
  }
  const now = new Date();
  const runTimeoutMs = manager.target.settings.runTimeout ?? 3 * 3_600_000;
  try {
    const sweep = await destination.abortIncompleteUploads((u) =>
      isAbandonedUpload(u, own, now, runTimeoutMs),
    );
    if (sweep.aborted.length) {
      outcome.abortedUploads = sweep.aborted;
      options.onStep?.(`aborted incomplete uploads on ${destination.name}: ${sweep.aborted.join(', ')}`);
    }
    if (sweep.failed.length)
      addWarning(
        outcome,
        `incomplete uploads not aborted (the next run tries again): ${sweep.failed.join('; ')}`,
      );
  } catch (error) {
    addWarning(
      outcome,
      `could not look for incomplete uploads (${oneLine(error)}); an AbortIncompleteMultipartUpload lifecycle rule on the bucket cleans them up instead`,
    );
  }
}

/** Of the backups missing on a destination, those its retention would keep, newest first. */
function missingWorthUploading(
  missing: BackupEntry[],
  remote: { name: string; metadata?: Partial<ArtifactMetadata> }[],
  policy: RetentionPolicy,
  manager: BackupManager,
): BackupEntry[] {
  if (missing.length === 0) return [];
  const items = [
    ...missing.map((b) => ({ id: b.name, time: b.time, entry: b as BackupEntry | undefined })),
    ...remote.map((o) => ({
      id: o.name,
      time: remoteTime(o, manager.timeZone),
      entry: undefined as BackupEntry | undefined,
    })),
  ];
  const plan = planRetention(items, policy, { timeZone: manager.timeZone });
  return plan.keep
    .map((d) => d.backup.entry)
    .filter((e): e is BackupEntry => e !== undefined)
    .sort((a, b) => b.time.getTime() - a.time.getTime());
}

/**
 * One entry per file name. Drive allows several files with one name (a retried upload, two runs at once); the
 * planner must see each name once, or it would keep one copy and remove the other — and removing a name
 * removes every copy of it.
 */
export function uniqueByName<T extends { name: string; modifiedTime?: string }>(objects: T[]): T[] {
  const byName = new Map<string, T>();
  for (const o of objects) {
    const seen = byName.get(o.name);
    if (!seen || (o.modifiedTime ?? '') > (seen.modifiedTime ?? '')) byName.set(o.name, o);
  }
  return [...byName.values()];
}

export async function pruneDestination(
  destination: Destination,
  policy: RetentionPolicy,
  manager: BackupManager,
  runId?: number,
): Promise<{ removed: string[]; failed: string[] }> {
  assertUsablePolicy(policy);
  // Copies another host made (a shared bucket or Drive folder) are never this host's to prune.
  const remote = uniqueByName(await destination.list()).filter(
    (o) => o.metadata?.host === undefined || o.metadata.host === os.hostname(),
  );
  const items = remote.map((o) => ({ id: o.name, time: remoteTime(o, manager.timeZone) }));
  const plan = applySafetyRails(planRetention(items, policy, { timeZone: manager.timeZone }));
  const removed: string[] = [];
  const failed: string[] = [];
  for (const decision of plan.remove) {
    const name = decision.backup.id;
    try {
      await destination.remove(name);
      removed.push(name);
      manager.catalog.recordDeletion({
        runId,
        backupFile: name,
        destination: destination.name,
        status: 'ok',
        reasons: 'not kept by the retention policy',
      });
    } catch (error) {
      failed.push(`${name}: ${oneLine(error)}`);
      try {
        manager.catalog.recordDeletion({
          runId,
          backupFile: name,
          destination: destination.name,
          status: 'failed',
          error: oneLine(error),
        });
      } catch {
        // best effort
      }
    }
  }
  return { removed, failed };
}

/** What the activity log says about one destination: enough for /healthz and /metrics, without a request. */
export interface DestinationState {
  destination: string;
  type: string;
  /** The newest backup held there, as far as the log knows (uploaded, and not pruned there since). */
  newestCopy?: { file: string; time: Date };
  /** The newest successful upload there. */
  lastSuccess?: { file: string; at: Date };
  /** The newest failed upload there. */
  lastFailure?: { file: string; at: Date; error: string };
  /** Whether the newest upload attempt there failed (it has not worked since). */
  lastAttemptFailed: boolean;
  /** Local backups it lacks that its retention would keep, newest first: what the next run or `sync` uploads. */
  missing: string[];
  /** Upload attempts recorded there, by status. */
  uploadsByStatus: Record<string, number>;
}

/** When a backup was taken: from the catalog, else from its name read in the configured zone. */
function backupTime(manager: BackupManager, file: string): Date | undefined {
  const record = manager.catalog.getBackup(file);
  if (record) return new Date(record.createdAt);
  const parsed = parseBackupName(file);
  return parsed ? timeFromBackupName(parsed, manager.timeZone) : undefined;
}

/**
 * The local backups a destination lacks and its retention would keep, newest first. The one rule `status`,
 * `sync`, each run's catch-up and the health checks share: they always agree on what is missing.
 */
export function missingOn(
  spec: DestinationSpec,
  manager: BackupManager,
  local: BackupEntry[],
  remote: Pick<RemoteObject, 'name' | 'metadata'>[],
): BackupEntry[] {
  const present = new Set(remote.map((o) => o.name));
  const policy = spec.retention ?? manager.retentionPolicy();
  return missingWorthUploading(
    local.filter((b) => !present.has(b.name)),
    remote,
    policy,
    manager,
  );
}

/** One destination's state from the activity log alone. */
export function destinationState(
  spec: DestinationSpec,
  manager: BackupManager,
  local: BackupEntry[],
): DestinationState {
  const uploads = manager.catalog.listUploads(spec.name);
  const deletions = manager.catalog.listDeletions(spec.name);
  // Held there: uploaded, and not deleted there since (replayed in the order it happened).
  const events = [
    ...uploads
      .filter((u) => u.status === 'ok')
      .map((u) => ({ at: u.at ?? '', file: u.backupFile, held: true })),
    ...deletions
      .filter((d) => d.status === 'ok')
      .map((d) => ({ at: d.at ?? '', file: d.backupFile, held: false })),
  ].sort((x, y) => x.at.localeCompare(y.at));
  const held = new Set<string>();
  for (const e of events) {
    if (e.held) held.add(e.file);
    else held.delete(e.file);
  }
  let newestCopy: DestinationState['newestCopy'];
  for (const file of held) {
    const time = backupTime(manager, file);
    if (time && (!newestCopy || time > newestCopy.time)) newestCopy = { file, time };
  }
  const lastOk = uploads.find((u) => u.status === 'ok');
  const lastFailed = uploads.find((u) => u.status === 'failed');
  const uploadsByStatus: Record<string, number> = {};
  for (const u of uploads) uploadsByStatus[u.status] = (uploadsByStatus[u.status] ?? 0) + 1;
  const remote = [...held].map((name) => ({ name }));
  return {
    destination: spec.name,
    type: spec.type,
    newestCopy,
    lastSuccess: lastOk ? { file: lastOk.backupFile, at: new Date(lastOk.at!) } : undefined,
    lastFailure: lastFailed
      ? { file: lastFailed.backupFile, at: new Date(lastFailed.at!), error: lastFailed.error ?? 'failed' }
      : undefined,
    lastAttemptFailed: uploads[0]?.status === 'failed',
    missing: missingOn(spec, manager, local, remote).map((b) => b.name),
    uploadsByStatus,
  };
}

/** What `litekeep status` shows for one destination. */
export interface DestinationStatus {
  destination: string;
  type: string;
  /** Backups held there (undefined when it could not be listed). */
  copies?: number;
  /** The newest copy there, and when it was taken (from a listing, else from the activity log). */
  newest?: string;
  newestTime?: string;
  bytes?: number;
  /** Local backups this destination lacks and its retention would keep, newest first: the next sync uploads them. */
  missing: string[];
  missingCount: number;
  lastSuccess?: { file: string; at: string };
  /** The newest failed upload there. */
  lastError?: { file: string; at: string; error: string };
  /** Whether the newest upload attempt there failed. */
  lastAttemptFailed: boolean;
  lastVerified?: { file: string; at: string };
  /** Why the destination could not be listed just now. */
  error?: string;
  /** With a maxAge: its newest copy is older, there is none, or its last upload failed (`staleReason` says). */
  stale: boolean;
  staleReason?: string;
}

/** When a remote copy was taken: from its metadata, else from its name read in `timeZone`. */
export function remoteTime(o: Pick<RemoteObject, 'name' | 'metadata'>, timeZone: string): Date {
  return o.metadata?.backupTime
    ? new Date(o.metadata.backupTime)
    : timeFromBackupName(parseBackupName(o.name)!, timeZone);
}

/** Every destination of a database as the activity log knows it: the daemon's /healthz and /metrics. */
export async function destinationStatesFromCatalog(
  target: DatabaseTarget,
  manager: BackupManager,
  options: { skipDrive?: boolean } = {},
): Promise<DestinationState[]> {
  const { backups } = await manager.listBackups();
  return destinationsOf(target, options).map((spec) => destinationState(spec, manager, backups));
}

/** `litekeep status` per destination: a listing of each (the catalog where it cannot be listed). */
export async function destinationStatuses(
  target: DatabaseTarget,
  manager: BackupManager,
  maxAgeMs?: number,
): Promise<DestinationStatus[]> {
  const specs = destinationsOf(target);
  const { backups } = await manager.listBackups();
  const verifications = manager.catalog.lastVerifications();
  const out: DestinationStatus[] = [];
  for (const spec of specs) {
    const known = destinationState(spec, manager, backups);
    const verified = verifications.find((v) => v.destination === spec.name);
    const status: DestinationStatus = {
      destination: spec.name,
      type: spec.type,
      newest: known.newestCopy?.file,
      newestTime: known.newestCopy?.time.toISOString(),
      missing: known.missing,
      missingCount: known.missing.length,
      lastSuccess: known.lastSuccess
        ? { file: known.lastSuccess.file, at: known.lastSuccess.at.toISOString() }
        : undefined,
      lastError: known.lastFailure
        ? {
            file: known.lastFailure.file,
            at: known.lastFailure.at.toISOString(),
            error: known.lastFailure.error,
          }
        : undefined,
      lastAttemptFailed: known.lastAttemptFailed,
      lastVerified: verified ? { file: verified.backupFile, at: verified.at! } : undefined,
      stale: false,
    };
    let newestCopy = known.newestCopy;
    try {
      const objects = await createDestination(spec, target).list();
      const sorted = objects
        .map((o) => ({ o, time: remoteTime(o, manager.timeZone) }))
        .sort((a, b) => b.time.getTime() - a.time.getTime());
      status.copies = objects.length;
      status.bytes = objects.reduce((sum, o) => sum + o.bytes, 0);
      newestCopy = sorted[0] ? { file: sorted[0].o.name, time: sorted[0].time } : undefined;
      status.newest = newestCopy?.file;
      status.newestTime = newestCopy?.time.toISOString();
      status.missing = missingOn(spec, manager, backups, objects).map((b) => b.name);
      status.missingCount = status.missing.length;
    } catch (error) {
      // Unreachable now: the activity log says what reached it.
      status.error = oneLine(error);
    }
    const problem = destinationProblem(
      {
        newestCopyTime: newestCopy?.time,
        lastAttemptFailed: known.lastAttemptFailed,
        lastFailureError: known.lastFailure?.error,
      },
      maxAgeMs,
      backups.length > 0,
    );
    if (maxAgeMs !== undefined && problem) {
      status.stale = true;
      status.staleReason = problem;
    }
    out.push(status);
  }
  return out;
}
