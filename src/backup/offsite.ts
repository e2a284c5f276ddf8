import type { DatabaseTarget } from '../config/index.js';
import { GoogleDriveDestination } from '../destinations/google-drive.js';
import {
  createDestination,
  destinationSpecs,
  hostOf,
  type DestinationSpec,
} from '../destinations/factory.js';
import {
  isOwnedBy,
  type ArtifactMetadata,
  type Destination,
  type RemoteObject,
} from '../destinations/types.js';
import { parseBackupName, timeFromBackupName } from '../naming.js';
import {
  applySafetyRails,
  assertUsablePolicy,
  describePolicy,
  planRetention,
  type RetentionPolicy,
} from '../retention/index.js';
import { sha256File } from '../pipeline/index.js';
import { oneLine } from '../util/errors.js';
import { standingOf } from './standing.js';
import { VERSION } from '../version.js';
import type { BackupEntry, BackupManager, BackupResult } from './manager.js';
import type { CollectResult } from '../repository/collect.js';
import { isIncremental } from '../repository/destination.js';
import { repositoryStatus } from '../repository/status.js';
import { snapshotToDestination, type RunImage, type SnapshotOutcome } from '../repository/run.js';

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
  /** The copies this run's retention removed there. */
  removed?: string[];
  pruneErrors?: string[];
  /** Incremental destinations: the run's snapshot (bytes added, dedup ratio) and what collection freed. */
  snapshot?: SnapshotOutcome;
  collected?: CollectResult;
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
  /** The run's page image, kept for incremental destinations (BackupResult.image). */
  image?: RunImage;
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
    host: hostOf(manager.target),
    trigger: record?.trigger ?? 'scheduled',
    journalMode: record?.journalMode,
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
    outcomes.push(
      isIncremental(spec)
        ? await snapshotToDestination(spec, target, manager, backup, options.image, options)
        : await syncOne(spec, target, manager, backup, options),
    );
  }
  return outcomes;
}

/** Whether this run feeds an incremental destination (which needs the online backup API's page image). */
export function hasIncrementalDestination(target: DatabaseTarget, skipDrive: boolean): boolean {
  try {
    return destinationsOf(target, { skipDrive }).some(isIncremental);
  } catch {
    // A broken destination list fails in runDestinations, with its message.
    return false;
  }
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
    destination = createDestination(spec, target);
  } catch (error) {
    outcome.error = oneLine(error);
    return outcome;
  }
  try {
    if (destination instanceof GoogleDriveDestination) {
      // A service account has no storage quota of its own: say so on every run, not only at `auth google`.
      outcome.warning = (await destination.credentials()).warning;
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
  const policy = destinationPolicy(spec, manager);
  try {
    const remote = ownCopies(await destination.list(), hostOf(target));
    const present = new Set(remote.map((o) => o.name));
    // A listing taken right after an upload may not show it yet (Drive): never upload it twice.
    if (backup && outcome.status === 'ok') present.add(backup.file);
    const { backups } = await manager.listBackups();
    const missing = backups.filter((b) => !present.has(b.name));
    const wanted = missingWorthUploading(missing, remote, policy, manager);
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
      outcome.removed = removed.removed;
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

/** A destination's own policy, or the local one; manual backups are kept as locally unless it says otherwise. */
export function destinationPolicy(spec: DestinationSpec, manager: BackupManager): RetentionPolicy {
  const local = manager.retentionPolicy();
  if (!spec.retention) return local;
  return { ...(local.manual ? { manual: local.manual } : {}), ...spec.retention };
}

/** This host's copies among every host's, one per name (the newest, where Drive holds several). */
export function ownCopies<T extends RemoteObject>(objects: T[], host: string): T[] {
  return newestPer(
    objects.filter((o) => isOwnedBy(o, host)),
    (o) => o.name,
  );
}

/** Of the backups missing on a destination, those its retention would keep, newest first. */
function missingWorthUploading(
  missing: BackupEntry[],
  remote: Pick<RemoteObject, 'name' | 'metadata'>[],
  policy: RetentionPolicy,
  manager: BackupManager,
): BackupEntry[] {
  if (missing.length === 0) return [];
  const items = [
    ...missing.map((b) => ({
      id: b.name,
      time: b.time,
      entry: b as BackupEntry | undefined,
      ...standingOf(b.record ?? {}),
    })),
    ...remote.map((o) => ({
      id: o.name,
      time: remoteTime(o, manager.timeZone),
      entry: undefined as BackupEntry | undefined,
      ...standingOf({ trigger: o.metadata?.trigger }),
    })),
  ];
  const plan = planRetention(items, policy, { timeZone: manager.timeZone, now: new Date() });
  return plan.keep
    .map((d) => d.backup.entry)
    .filter((e): e is BackupEntry => e !== undefined)
    .sort((a, b) => b.time.getTime() - a.time.getTime());
}

/**
 * One entry per host and file name. Drive allows several files with one name (a retried upload, two runs at
 * once); the planner must see each name once, and removing one of them must not leave a twin behind unseen.
 */
export function uniqueByName<T extends { name: string; host?: string; modifiedTime?: string }>(
  objects: T[],
): T[] {
  return newestPer(objects, (o) => `${o.host ?? ''}/${o.name}`);
}

function newestPer<T extends { modifiedTime?: string }>(objects: T[], key: (o: T) => string): T[] {
  const chosen = new Map<string, T>();
  for (const o of objects) {
    const seen = chosen.get(key(o));
    if (!seen || (o.modifiedTime ?? '') > (seen.modifiedTime ?? '')) chosen.set(key(o), o);
  }
  return [...chosen.values()];
}

/**
 * Applies `policy` to this host's copies on a destination: copies whose newest verification there failed are
 * set aside (not counted, not removed), the newest known-good copy is never removed, and every removal is
 * by id and recorded.
 */
export async function pruneDestination(
  destination: Destination,
  policy: RetentionPolicy,
  manager: BackupManager,
  runId?: number,
): Promise<{ removed: string[]; failed: string[] }> {
  assertUsablePolicy(policy);
  const host = hostOf(manager.target);
  const all = await destination.list();
  const remote = ownCopies(all, host);
  const records = new Map(
    manager.catalog.listBackups({ includeDeleted: true }).map((r) => [r.file, r] as const),
  );
  const verdicts = manager.catalog.verdicts(destination.name);
  const items = remote.map((o) => {
    const record = records.get(o.name);
    return {
      id: o.name,
      time: remoteTime(o, manager.timeZone),
      object: o,
      ...standingOf(
        {
          trigger: o.metadata?.trigger ?? record?.trigger,
          integrity: record?.integrity,
          recovered: record?.recovered,
        },
        verdicts.get(o.name),
      ),
    };
  });
  const plan = applySafetyRails(
    planRetention(items, policy, { timeZone: manager.timeZone, now: new Date() }),
  );
  const removed: string[] = [];
  const failed: string[] = [];
  const policyText = describePolicy(policy);
  for (const decision of plan.remove) {
    const name = decision.backup.id;
    // Drive may hold twins of one name from this host: retention means all of them.
    const twins = all.filter((o) => o.name === name && isOwnedBy(o, host));
    try {
      for (const object of twins) await destination.remove(object);
      removed.push(name);
      manager.catalog.recordDeletion({
        runId,
        backupFile: name,
        destination: destination.name,
        status: 'ok',
        reasons: `policy ${policyText}: ${(decision.notKept ?? []).join('; ') || 'not kept'}`,
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

/** What `litekeep status` shows for one destination. */
export interface DestinationStatus {
  destination: string;
  type: string;
  /** Backups held there (undefined when it could not be listed). */
  copies?: number;
  newest?: string;
  newestTime?: string;
  bytes?: number;
  /** Local backups this destination lacks and its retention would keep, newest first: the next sync uploads them. */
  missing: string[];
  lastUpload?: { file: string; at: string };
  /** The newest upload attempt there, when it failed. */
  lastError?: { file: string; at: string; error: string };
  lastVerified?: { file: string; at: string };
  /** Why the destination could not be listed just now. */
  error?: string;
  /** `incremental`: a repository of snapshots (copies counts snapshots, bytes everything stored). */
  format?: 'incremental';
  /** Incremental: the newest snapshot's bytes added and dedup ratio. */
  newestSnapshot?: { id: string; addedBytes: number; dedupRatio: number };
  /** Incremental: local backups taken after its newest snapshot, which it did not get (not copied later). */
  missed?: string[];
}

/** Time of a remote copy: the metadata stored with it, else its name (which has second precision only). */
/** When a remote copy was taken: from its metadata, else from its name read in `timeZone`. */
export function remoteTime(o: Pick<RemoteObject, 'name' | 'metadata'>, timeZone: string): Date {
  return o.metadata?.backupTime
    ? new Date(o.metadata.backupTime)
    : timeFromBackupName(parseBackupName(o.name)!, timeZone);
}

export async function destinationStatuses(
  target: DatabaseTarget,
  manager: BackupManager,
): Promise<DestinationStatus[]> {
  const specs = destinationsOf(target);
  const { backups } = await manager.listBackups();
  const verifications = manager.catalog.lastVerifications();
  const out: DestinationStatus[] = [];
  for (const spec of specs) {
    const policy = destinationPolicy(spec, manager);
    const uploads = manager.catalog.listUploads(spec.name);
    const lastOk = uploads.find((u) => u.status === 'ok');
    const latest = uploads[0];
    const verified = verifications.find((v) => v.destination === spec.name);
    const status: DestinationStatus = {
      destination: spec.name,
      type: spec.type,
      missing: [],
      lastUpload: lastOk ? { file: lastOk.backupFile, at: lastOk.at! } : undefined,
      lastError:
        latest && latest.status === 'failed'
          ? { file: latest.backupFile, at: latest.at!, error: latest.error ?? 'failed' }
          : undefined,
      lastVerified: verified ? { file: verified.backupFile, at: verified.at! } : undefined,
    };
    if (isIncremental(spec)) {
      out.push(await repositoryStatus(status, spec, target, backups));
      continue;
    }
    let remote: Pick<RemoteObject, 'name' | 'metadata'>[];
    try {
      const objects = ownCopies(await createDestination(spec, target).list(), hostOf(target));
      const sorted = objects
        .map((o) => ({ o, time: remoteTime(o, manager.timeZone) }))
        .sort((a, b) => b.time.getTime() - a.time.getTime());
      status.copies = objects.length;
      status.bytes = objects.reduce((sum, o) => sum + o.bytes, 0);
      status.newest = sorted[0]?.o.name;
      status.newestTime = sorted[0]?.time.toISOString();
      remote = objects;
    } catch (error) {
      status.error = oneLine(error);
      // Unreachable now: the activity log says what reached it.
      remote = backups.filter((b) => manager.catalog.lastUpload(b.name, spec.name));
    }
    const present = new Set(remote.map((o) => o.name));
    status.missing = missingWorthUploading(
      backups.filter((b) => !present.has(b.name)),
      remote,
      policy,
      manager,
    ).map((b) => b.name);
    out.push(status);
  }
  return out;
}
