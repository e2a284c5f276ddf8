import type { DatabaseTarget } from '../config/index.js';
import type { GoogleDriveDestination } from '../destinations/google-drive.js';
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
  type IncompleteUpload,
  type RemoteObject,
} from '../destinations/types.js';
import { parseBackupName, timeFromBackupName } from '../naming.js';
import {
  applySafetyRails,
  assertUsablePolicy,
  describePolicy,
  destinationRetention,
  holdAfterTimeGap,
  planRetention,
  type RetentionPolicy,
} from '../retention/index.js';
import { sha256File } from '../pipeline/hash.js';
import { destinationProblem } from '../scheduler/http.js';
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
  /** The run's page image, kept for incremental destinations (BackupResult.image). */
  image?: RunImage;
  /** Only this destination (by name), e.g. `litekeep sync --to offsite`. */
  only?: string;
  /** Bytes sent of each upload, with its size: `stage` is `upload to <destination>`. */
  onProgress?: (stage: string, bytes: number, total?: number) => void;
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
  options: { skipDrive?: boolean; only?: string } = {},
): DestinationSpec[] {
  return destinationSpecs(target, target.driveConfigured).filter(
    (spec) =>
      !(options.skipDrive && spec.type === 'google-drive') &&
      (options.only === undefined || spec.name === options.only),
  );
}

/** Reports an upload's bytes to `onProgress` as `upload to <destination>`, when a caller asked for progress. */
function uploadProgress(options: OffsiteOptions, destination: string, total: number) {
  const report = options.onProgress;
  return report ? (bytes: number) => report(`upload to ${destination}`, bytes, total) : undefined;
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
    destination = await createDestination(spec, target, undefined, options.signal);
  } catch (error) {
    outcome.error = oneLine(error);
    return outcome;
  }
  await abortAbandonedUploads(destination, manager, outcome, options);
  try {
    if (spec.type === 'google-drive') {
      // A service account has no storage quota of its own: say so on every run, not only at `auth google`.
      addWarning(outcome, (await (destination as GoogleDriveDestination).credentials()).warning);
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
        { signal: options.signal, onProgress: uploadProgress(options, spec.name, backup.bytes) },
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
    const remote: Pick<RemoteObject, 'name' | 'metadata'>[] = ownCopies(
      await destination.list(),
      hostOf(target),
    );
    // A listing taken right after an upload may not show it yet (Drive): never upload it twice.
    if (backup && outcome.status === 'ok' && !remote.some((o) => o.name === backup.file)) {
      remote.push({ name: backup.file, metadata: { backupTime: backup.createdAt, trigger: backup.trigger } });
    }
    const { backups } = await manager.listBackups();
    const wanted = missingOn(spec, manager, backups, remote);
    outcome.caughtUp = [];
    for (const entry of wanted) {
      try {
        const put = await destination.put(entry.path, entry.name, await metadataFor(manager, entry), {
          signal: options.signal,
          onProgress: uploadProgress(options, spec.name, entry.bytes),
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
      const removed = await pruneDestination(destination, policy, manager, options.runId, backup?.file);
      outcome.removed = removed.removed;
      for (const note of removed.notes) addWarning(outcome, note);
      if (removed.held) {
        outcome.status = 'failed';
        outcome.error = `retention held back: ${removed.held}`;
      }
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
  return destinationRetention(manager.retentionPolicy(), spec.retention);
}

/** This host's copies among every host's, one per name (the newest, where Drive holds several). */
export function ownCopies<T extends RemoteObject>(objects: T[], host: string): T[] {
  return newestPer(
    objects.filter((o) => isOwnedBy(o, host)),
    (o) => o.name,
  );
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

/** What retention would do to this host's copies on a destination; `pretend` adds a copy not there yet. */
export async function planDestination(
  destination: Destination,
  policy: RetentionPolicy,
  manager: BackupManager,
  options: { madeByRun?: string; pretend?: { name: string; time: Date; trigger: string } } = {},
) {
  assertUsablePolicy(policy);
  const host = hostOf(manager.target);
  const all = await destination.list();
  const remote = ownCopies(all, host);
  const records = new Map(
    manager.catalog.listBackups({ includeDeleted: true }).map((r) => [r.file, r] as const),
  );
  const verdicts = manager.catalog.verdicts(destination.name);
  const items: {
    id: string;
    time: Date;
    object?: RemoteObject;
    group: string;
    good: boolean;
    failed?: string;
  }[] = remote.map((o) => {
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
  if (options.pretend) {
    const { name, time, trigger } = options.pretend;
    items.push({ id: name, time, group: trigger, good: true });
  }
  const plan = applySafetyRails(
    planRetention(items, policy, { timeZone: manager.timeZone, now: new Date() }),
  );
  const protect = options.pretend?.name;
  if (protect) plan.remove = plan.remove.filter((d) => d.backup.id !== protect);
  const notes: string[] = [];
  if (plan.future.length)
    notes.push(`dated in the future, kept and not counted: ${plan.future.map((b) => b.id).join(', ')}`);
  if (plan.failed.length)
    notes.push(`set aside, their last verification failed: ${plan.failed.map((b) => b.id).join(', ')}`);
  let held: string | undefined;
  const made = items.find((i) => i.id === (options.madeByRun ?? protect));
  if (made) {
    const others = items.filter((i) => i !== made && !plan.future.includes(i));
    held = holdAfterTimeGap({
      made: made.time,
      previousNewest: others.sort((a, b) => b.time.getTime() - a.time.getTime())[0]?.time,
      before: items.length - 1,
      removing: plan.remove.length,
    });
  }
  return { plan, all, host, notes, held };
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
  /** The backup the calling run just uploaded: see holdAfterTimeGap. */
  madeByRun?: string,
): Promise<{ removed: string[]; failed: string[]; notes: string[]; held?: string }> {
  const { plan, all, host, notes, held } = await planDestination(destination, policy, manager, { madeByRun });
  if (held) return { removed: [], failed: [], notes, held };
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
  return { removed, failed, notes };
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
  const policy = destinationPolicy(spec, manager);
  return missingWorthUploading(
    local.filter((b) => !present.has(b.name)),
    remote,
    policy,
    manager,
  );
}

/**
 * One destination's state from the activity log alone. Bounded queries: what it costs here grows with the
 * copies held there, not with the length of the history (the daemon answers it on every scrape and page view).
 */
export function destinationState(
  spec: DestinationSpec,
  manager: BackupManager,
  local: BackupEntry[],
): DestinationState {
  const catalog = manager.catalog;
  const held = catalog.heldOn(spec.name);
  let newestCopy: DestinationState['newestCopy'];
  for (const file of held) {
    const time = backupTime(manager, file);
    if (time && (!newestCopy || time > newestCopy.time)) newestCopy = { file, time };
  }
  const lastOk = catalog.newestUpload(spec.name, 'ok');
  const lastFailed = catalog.newestUpload(spec.name, 'failed');
  const remote = held.map((name) => ({ name }));
  return {
    destination: spec.name,
    type: spec.type,
    newestCopy,
    lastSuccess: lastOk ? { file: lastOk.backupFile, at: new Date(lastOk.at!) } : undefined,
    lastFailure: lastFailed
      ? { file: lastFailed.backupFile, at: new Date(lastFailed.at!), error: lastFailed.error ?? 'failed' }
      : undefined,
    lastAttemptFailed: catalog.newestUpload(spec.name)?.status === 'failed',
    missing: missingOn(spec, manager, local, remote).map((b) => b.name),
    uploadsByStatus: catalog.uploadsByStatus(spec.name),
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
  /** `incremental`: a repository of snapshots (copies counts snapshots, bytes everything stored). */
  format?: 'incremental';
  /** Incremental: the newest snapshot's bytes added and dedup ratio. */
  newestSnapshot?: { id: string; addedBytes: number; dedupRatio: number };
  /** Incremental: local backups taken after its newest snapshot, which it did not get (not copied later). */
  missed?: string[];
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
  const verifications = manager.catalog.lastVerifications({ kept: true });
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
    if (isIncremental(spec)) {
      const repoStatus = await repositoryStatus(status, spec, target, backups);
      newestCopy = repoStatus.newestTime
        ? { file: repoStatus.newest!, time: new Date(repoStatus.newestTime) }
        : undefined;
      Object.assign(status, repoStatus);
    } else {
      try {
        const objects = ownCopies(await (await createDestination(spec, target)).list(), hostOf(target));
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
