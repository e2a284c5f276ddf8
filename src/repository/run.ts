import path from 'node:path';
import type { DatabaseTarget } from '../config/index.js';
import type { BackupManager, BackupResult } from '../backup/manager.js';
import { encryptionSettings } from '../backup/encryption.js';
import type { DestinationOutcome } from '../backup/offsite.js';
import { destinationPolicy, pruneDestination } from '../backup/offsite.js';
import { standingOf } from '../backup/standing.js';
import { createDestination, hostOf, type DestinationSpec } from '../destinations/factory.js';
import {
  applySafetyRails,
  assertUsablePolicy,
  describePolicy,
  planRetention,
  type RetentionPolicy,
} from '../retention/index.js';
import { EXIT, LitekeepError, oneLine } from '../util/errors.js';
import { walFieldFor, type WalCapture } from '../pitr/capture.js';
import { baseOf, pitrWindowStart, planPitrRetention, type PitrRetentionPlan } from '../pitr/retention.js';
import { RepositorySegments } from '../pitr/stored.js';
import { forgetAndCollect, type CollectResult } from './collect.js';
import { configuredDecrypt, openRepositoryStore, stateDirOf } from './destination.js';
import { shortId } from './ids.js';
import { LocalIndex, syncLocalIndex } from './local-index.js';
import { Repository } from './repository.js';
import { packSizeOf } from './settings.js';
import { listSnapshots, type SnapshotInfo } from './snapshots.js';
import { writeSnapshot, type SnapshotWritten } from './writer.js';

/** What a run reports per incremental destination: the snapshot, its bytes added and dedup ratio. */
export interface SnapshotOutcome {
  id: string;
  imageBytes: number;
  addedBytes: number;
  uploadedBytes: number;
  dedupRatio: number;
  addedChunks: number;
  /** The earlier snapshot whose page image this one is byte for byte (its tree reused, no page read). */
  sameImageAs?: string;
}

/** The page image a run kept for its incremental destinations (see BackupManager.createBackup keepImage). */
export interface RunImage {
  path: string;
  /** Where the copy stood in the WAL: makes each snapshot a base for point-in-time recovery. */
  wal?: WalCapture;
}

/** The repository of this machine on an incremental destination, opened (and made on first use) for writing. */
export async function openForWrite(
  spec: DestinationSpec,
  target: DatabaseTarget,
  mustExist = false,
): Promise<Repository> {
  const store = await openRepositoryStore(spec, target);
  try {
    return await Repository.openForWrite(store, {
      mustExist,
      database: target.name,
      host: hostOf(target),
      encryption: await encryptionSettings(target.settings.encryption),
      stateDir: stateDirOf(target),
      decrypt: await configuredDecrypt(target),
    });
  } catch (error) {
    store.close();
    throw error;
  }
}

/** The local index of a repository, in step with the store (index files read, missing packs dropped). */
async function syncedIndex(
  repo: Repository,
  signal?: AbortSignal,
): Promise<{ index: LocalIndex; warnings: string[] }> {
  const index = LocalIndex.open(path.join(repo.localDir, 'index.db'));
  try {
    const sync = await syncLocalIndex(index, repo.store, { checkPacks: true, signal });
    const warnings = sync.missingPacks.length
      ? [
          `${sync.missingPacks.length} pack(s) listed by the repository's index are missing from ${repo.location} (e.g. ${shortId(sync.missingPacks[0])}); ` +
            `this snapshot does not rely on them — run litekeep check`,
        ]
      : [];
    return { index, warnings };
  } catch (error) {
    index.close();
    throw error;
  }
}

/**
 * One backup run on one incremental destination: this run's snapshot into the repository, then (after
 * success only) that destination's retention over snapshots and garbage collection. Never throws.
 */
export async function snapshotToDestination(
  spec: DestinationSpec,
  target: DatabaseTarget,
  manager: BackupManager,
  backup: BackupResult | undefined,
  image: RunImage | undefined,
  options: { runId?: number; signal?: AbortSignal; prune?: boolean; onStep?: (message: string) => void },
): Promise<DestinationOutcome> {
  const outcome: DestinationOutcome = { destination: spec.name, type: spec.type, status: 'failed' };
  if (!backup || !image) {
    // `sync` copies missing full files; a repository gets each run's snapshot on its own (no catch-up yet).
    outcome.status = 'skipped';
    outcome.warning = backup
      ? 'no page image for the repository: take the backup with createBackup({ keepImage: true, vacuum: false }) and pass its image'
      : "an incremental destination gets each run's snapshot; backups it missed are not copied later";
    return outcome;
  }
  let repo: Repository | undefined;
  let index: LocalIndex | undefined;
  try {
    repo = await openForWrite(spec, target);
    const synced = await syncedIndex(repo, options.signal);
    index = synced.index;
    if (synced.warnings.length) outcome.warning = synced.warnings.join('; ');
    const written = await writeSnapshot(
      repo,
      index,
      {
        path: image.path,
        sha256: backup.plainSha256,
        pageSize: backup.pageSize,
        pageCount: backup.pageCount,
        time: new Date(backup.createdAt),
        trigger: backup.trigger,
        integrity: backup.integrity,
        fingerprint: backup.fingerprint,
        sqliteVersion: backup.sqliteVersion,
        journalMode: backup.journalMode,
        backupFile: backup.file,
        wal: walFieldFor(image.wal, spec.name, repo.id),
      },
      { packSize: packSizeOf(spec.settings), signal: options.signal },
    );
    Object.assign(outcome, {
      status: 'ok',
      id: written.id,
      bytes: written.uploadedBytes,
      attempts: 1,
      durationMs: written.durationMs,
      snapshot: snapshotOutcome(written),
    });
    record(manager, options.runId, backup.file, spec.name, 'ok', {
      remoteId: written.id,
      bytes: written.uploadedBytes,
      durationMs: written.durationMs,
    });
    options.onStep?.(
      written.sameImageAs
        ? `snapshot ${shortId(written.id)} written to ${spec.name}: the database is unchanged since snapshot ${shortId(written.sameImageAs)}, ${written.uploadedBytes} bytes uploaded (a manifest)`
        : `snapshot ${shortId(written.id)} written to ${spec.name}: ${written.addedChunks} new chunks, ${written.uploadedBytes} bytes uploaded`,
    );
  } catch (error) {
    outcome.status = 'failed';
    outcome.error = oneLine(error);
    record(manager, options.runId, backup.file, spec.name, 'failed', { error: outcome.error });
    index?.close();
    repo?.store.close();
    return outcome;
  }

  if (options.prune !== false) {
    try {
      const pruned = await pruneOpenRepository(repo, index, spec, manager, {
        runId: options.runId,
        signal: options.signal,
      });
      outcome.removed = pruned.forgotten.map((s) => s.id);
      outcome.rotated = pruned.forgotten.length;
      outcome.collected = pruned.collect;
      if (pruned.pitr?.segmentsRemoved)
        options.onStep?.(
          `${pruned.pitr.segmentsRemoved} WAL segment(s) before the point-in-time window (pitr ${pruned.pitr.window}) removed from ${spec.name}`,
        );
      // Full files kept from before the switch to incremental go by the file retention (the newest stays).
      const files = await pruneDestination(
        await createDestination(spec, target),
        destinationPolicy(spec, manager),
        manager,
        options.runId,
      );
      outcome.removed.push(...files.removed);
      outcome.rotated += files.removed.length;
      if (files.failed.length) throw new Error(files.failed[0]);
    } catch (error) {
      outcome.status = 'failed';
      outcome.error = `retention: ${oneLine(error)}`;
    }
  }
  index.close();
  repo.store.close();
  return outcome;
}

function snapshotOutcome(written: SnapshotWritten): SnapshotOutcome {
  return {
    id: written.id,
    imageBytes: written.imageBytes,
    addedBytes: written.addedBytes,
    uploadedBytes: written.uploadedBytes,
    dedupRatio: written.dedupRatio,
    addedChunks: written.addedChunks,
    ...(written.sameImageAs ? { sameImageAs: written.sameImageAs } : {}),
  };
}

function record(
  manager: BackupManager,
  runId: number | undefined,
  file: string,
  destination: string,
  status: 'ok' | 'failed',
  extra: { remoteId?: string; bytes?: number; durationMs?: number; error?: string },
): void {
  try {
    manager.catalog.recordUpload({ runId, backupFile: file, destination, status, attempts: 1, ...extra });
  } catch {
    // the activity log is best effort
  }
}

export interface SnapshotDecision {
  id: string;
  time: Date;
  trigger: 'manual' | 'scheduled';
  action: 'keep' | 'remove';
  reasons: string[];
  /** Why it is set aside: its newest verification on this destination failed. */
  failedVerification?: string;
}

export interface RepositoryPruneResult {
  destination: string;
  location: string;
  policy: RetentionPolicy;
  decisions: SnapshotDecision[];
  forgotten: SnapshotDecision[];
  collect: CollectResult;
  /** Present when the repository holds WAL segments: what `retention.pitr` kept and collected. */
  pitr?: PitrCollectResult;
  dryRun: boolean;
}

export interface PitrCollectResult {
  /** The window kept, e.g. `7d`. */
  window: string;
  /** Second-level recovery is whole from here (the anchor's end); moments before it come from snapshots alone. */
  recoverableFrom?: Date;
  /** The base snapshot that serves the window's start, kept whatever the snapshot rules say. */
  anchor?: string;
  /** Segments removed (dry run: that would be) and their stored bytes. */
  segmentsRemoved: number;
  segmentBytes: number;
  segmentsKept: number;
}

/**
 * Retention over a repository's snapshots, with the same planner, groups, verdicts and safety rails as files,
 * then garbage collection. Snapshots whose newest verification here failed count toward no rule and stay.
 */
async function pruneOpenRepository(
  repo: Repository,
  index: LocalIndex,
  spec: DestinationSpec,
  manager: BackupManager,
  options: { runId?: number; signal?: AbortSignal; dryRun?: boolean; policy?: RetentionPolicy; now?: Date },
): Promise<RepositoryPruneResult> {
  const policy = options.policy ?? destinationPolicy(spec, manager);
  assertUsablePolicy(policy);
  const listing = await listSnapshots(repo);
  if (listing.problems.length)
    throw new LitekeepError(
      `retention skipped on ${spec.name}: snapshot ${shortId(listing.problems[0].id)} cannot be read (${listing.problems[0].error}); run litekeep check`,
      { stage: 'prune' },
    );
  const verdicts = manager.catalog.verdicts(spec.name);
  const items = listing.snapshots.map((s: SnapshotInfo) => ({
    id: s.id,
    time: s.time,
    snapshot: s,
    // litekeep writes a snapshot only of an image that passed its integrity check.
    ...standingOf({ trigger: s.trigger, integrity: 'ok' }, verdicts.get(s.id)),
  }));
  const now = options.now ?? new Date();
  const plan = applySafetyRails(planRetention(items, policy, { timeZone: manager.timeZone, now }));
  const segments = new RepositorySegments(repo);
  const segmentSizes = await segments.sizes();
  const pitrWindow = policy.pitr ?? manager.retentionPolicy().pitr;
  let pitrPlan: PitrRetentionPlan | undefined;
  if (segmentSizes.size > 0 && pitrWindow) {
    const windowStart = pitrWindowStart(now, pitrWindow, manager.timeZone);
    const bases = items.flatMap((i) => {
      const base = baseOf(i.snapshot);
      return base ? [{ ...base, usable: !i.failed }] : [];
    });
    pitrPlan = planPitrRetention(bases, [...segmentSizes.keys()], windowStart);
  }
  const anchorReason = `serves the start of the point-in-time window (pitr ${pitrWindow})`;
  const decisions: SnapshotDecision[] = [
    ...plan.keep.map((d) => ({ d, action: 'keep' as const, reasons: d.reasons })),
    ...plan.remove.map((d) => ({ d, action: 'remove' as const, reasons: d.notKept ?? [] })),
  ]
    .map(({ d, action, reasons }) => ({
      id: d.backup.id,
      time: d.backup.time,
      trigger: d.backup.snapshot.trigger,
      // The base the window's replay starts from stays, or the window's first moments could not be restored.
      ...(d.backup.id === pitrPlan?.anchor?.id
        ? { action: 'keep' as const, reasons: [...(action === 'keep' ? reasons : []), anchorReason] }
        : { action, reasons }),
      ...(d.backup.failed ? { failedVerification: d.backup.failed } : {}),
    }))
    .sort((a, b) => b.time.getTime() - a.time.getTime());
  const forgotten = decisions.filter((d) => d.action === 'remove');
  const collect = await forgetAndCollect(
    repo,
    index,
    forgotten.map((d) => d.id),
    { dryRun: options.dryRun, packSize: packSizeOf(spec.settings), signal: options.signal, now: options.now },
  );
  if (!options.dryRun) {
    const policyText = describePolicy(policy);
    for (const d of forgotten) {
      try {
        manager.catalog.recordDeletion({
          runId: options.runId,
          backupFile: d.id,
          destination: spec.name,
          status: 'ok',
          reasons: `policy ${policyText}: ${d.reasons.join('; ') || 'not kept'}`,
        });
      } catch {
        // best effort
      }
    }
  }
  const pitr = pitrPlan
    ? await collectSegments(segments, segmentSizes, pitrPlan, pitrWindow!, manager, spec.name, options)
    : undefined;
  return {
    destination: spec.name,
    location: repo.location,
    policy,
    decisions,
    forgotten,
    collect,
    ...(pitr ? { pitr } : {}),
    dryRun: options.dryRun === true,
  };
}

/**
 * Removes the segments no moment of the window needs, crash-safely: the horizon that says recovery before the
 * anchor is by snapshots alone is written first, then segments go oldest first (a kill leaves a tail that still
 * starts after the anchor's start), then the horizons the new one supersedes.
 */
async function collectSegments(
  segments: RepositorySegments,
  sizes: Map<string, number>,
  plan: PitrRetentionPlan,
  window: string,
  manager: BackupManager,
  destination: string,
  options: { runId?: number; signal?: AbortSignal; dryRun?: boolean },
): Promise<PitrCollectResult> {
  const anchor = plan.anchor;
  const result: PitrCollectResult = {
    window,
    ...(anchor ? { recoverableFrom: new Date(anchor.finishedAt), anchor: anchor.id } : {}),
    segmentsRemoved: plan.collectable.length,
    segmentBytes: plan.collectable.reduce((sum, name) => sum + (sizes.get(name) ?? 0), 0),
    segmentsKept: sizes.size - plan.collectable.length,
  };
  if (options.dryRun || !anchor || plan.collectable.length === 0) return result;
  const from = new Date(anchor.finishedAt).toISOString();
  await segments.writeHorizon({ base: anchor.id, from });
  for (const name of plan.collectable) {
    options.signal?.throwIfAborted();
    await segments.remove(name);
  }
  for (const horizon of await segments.horizons())
    if (Date.parse(horizon.from) < anchor.finishedAt) await segments.removeHorizon(horizon.key);
  try {
    manager.catalog.recordDeletion({
      runId: options.runId,
      backupFile: `${plan.collectable.length} WAL segment(s) ${plan.collectable[0]} … ${plan.collectable.at(-1)}`,
      destination,
      status: 'ok',
      reasons: `pitr ${window}: before the window's base snapshot ${shortId(anchor.id)} (point-in-time recovery kept from ${from})`,
    });
  } catch {
    // best effort
  }
  return result;
}

/** `litekeep prune --from NAME`: retention and collection on one incremental destination. */
export async function pruneRepository(
  spec: DestinationSpec,
  target: DatabaseTarget,
  manager: BackupManager,
  options: { dryRun?: boolean; policy?: RetentionPolicy; signal?: AbortSignal; now?: Date } = {},
): Promise<RepositoryPruneResult> {
  const repo = await openForWrite(spec, target, true).catch((error: unknown) => {
    throw error instanceof LitekeepError
      ? error
      : new LitekeepError(`cannot open the repository on ${spec.name}: ${oneLine(error)}`, {
          exitCode: EXIT.failed,
        });
  });
  try {
    const { index } = await syncedIndex(repo, options.signal);
    try {
      return await pruneOpenRepository(repo, index, spec, manager, options);
    } finally {
      index.close();
    }
  } finally {
    repo.store.close();
  }
}
