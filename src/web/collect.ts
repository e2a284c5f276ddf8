import type { HistoryEvent, VerificationRecord } from '../catalog/index.js';
import type { DatabaseTarget } from '../config/index.js';
import { hostOf } from '../destinations/factory.js';
import { databaseStatusOf, emptyStatusOf, hasCatalog } from '../backup/health.js';
import { BackupManager } from '../backup/manager.js';
import type { DestinationState } from '../backup/offsite.js';
import { parseBackupName, timeFromBackupName } from '../naming.js';
import {
  judgeReplication,
  replicationSettingsOf,
  walIsLarge,
  type ReplicationReading,
} from '../pitr/standing.js';
import { describePolicy } from '../retention/index.js';
import { evaluateHealth, type DatabaseStatus, type HealthReport } from '../scheduler/index.js';
import { humanDuration } from '../util/fs.js';
import { oneLine } from '../util/errors.js';
import { redactUrlsInText } from '../util/redact.js';
import { VERSION } from '../version.js';
import {
  ACTIVITY_LIMIT,
  CHART_DAYS,
  CHART_LIMIT,
  LIST_LIMIT,
  type ActivityView,
  type ChartView,
  type DatabaseView,
  type ReplicationDestinationView,
  type ReplicationView,
  type DestinationView,
  type RetentionView,
  type RunView,
  type StatusDocument,
} from './document.js';

/** What the page is read from: the daemon's databases and schedule. */
export interface StatusSource {
  targets: DatabaseTarget[];
  timeZone: string;
  maxAgeMs: number;
  /** `--no-drive`: Drive is no destination of this daemon. */
  skipDrive?: boolean;
  schedule: { expression: string; nextRun(): Date | null; running(): boolean };
  /** Whether `POST /api/backup` exists. */
  actions: boolean;
}

const DAY_MS = 86_400_000;

/** Error texts come from the activity log, where they were redacted; again here, as nothing may leak. */
const clean = (text: string | undefined) =>
  text === undefined ? undefined : redactUrlsInText(oneLine(text));

const iso = (d: Date | undefined) => d?.toISOString();

/**
 * Reads everything the page shows from each database's folder and activity log: bounded queries only (the
 * newest events, the last 90 days, one aggregate per destination), never a request to a destination, never a
 * write. The same reading as `/healthz` decides each verdict.
 */
export async function collectStatus(source: StatusSource, now = new Date()): Promise<StatusDocument> {
  const healthInputs: DatabaseStatus[] = [];
  const partial: Omit<DatabaseView, 'health' | 'destinations'>[] = [];
  const states: DestinationState[][] = [];
  const verified: VerificationRecord[][] = [];
  const nextRun = iso(source.schedule.nextRun() ?? undefined) ?? null;
  for (const target of source.targets) {
    const host = hostOf(target);
    if (!hasCatalog(target)) {
      // No backup yet, but replication may be configured (and nobody doing it): that is shown too.
      const reading = await emptyStatusOf(target, now);
      healthInputs.push(reading);
      states.push([]);
      verified.push([]);
      partial.push({
        ...emptyView(target, host, nextRun, now),
        ...(reading.replicator !== undefined ? { replication: replicationView(target, reading, now) } : {}),
      });
      continue;
    }
    // Read-only: the page never creates, migrates or writes a catalog, and takes no lock.
    const manager = new BackupManager(target, { readOnly: true });
    try {
      const read = await databaseStatusOf(target, manager, { skipDrive: source.skipDrive, now });
      healthInputs.push(read.status);
      states.push(read.destinations);
      const catalog = manager.catalog;
      const verifications = catalog.lastVerifications();
      verified.push(verifications);
      const newest = read.backups[0];
      const lastRun = catalog.lastRunWithStatus(['ok', 'partial', 'failed']);
      partial.push({
        name: target.name,
        host,
        lastRun: lastRun ? runView(lastRun) : undefined,
        nextRun,
        newestBackup: newest
          ? {
              file: newest.name,
              time: newest.time.toISOString(),
              bytes: newest.bytes,
              trigger: newest.record?.trigger === 'manual' ? 'manual' : 'scheduled',
            }
          : undefined,
        newestVerified: newestVerified(
          catalog.verifiedCopies(),
          new Set(read.backups.map((b) => b.name)),
          (file) => backupTime(manager, file),
        ),
        backups: { count: read.backups.length, bytes: read.backups.reduce((sum, b) => sum + b.bytes, 0) },
        chart: chartOf(manager, now),
        activity: catalog.history(ACTIVITY_LIMIT).map(activityView),
        retention: await retentionOf(manager),
        ...(read.status.replicator !== undefined
          ? { replication: replicationView(target, read.status, now) }
          : {}),
        warnings: manager.catalogWarning ? [manager.catalogWarning] : [],
      });
    } finally {
      manager.close();
    }
  }
  const health: HealthReport = evaluateHealth({ maxAgeMs: source.maxAgeMs, databases: healthInputs }, now);
  const databases = partial.map((view, i): DatabaseView => {
    const verdict = health.databases[i];
    return {
      ...view,
      health: { healthy: verdict.healthy, reason: clean(verdict.reason)! },
      destinations: states[i].map((state) =>
        destinationView(
          state,
          verdict.destinations.find((d) => d.name === state.destination),
          verified[i],
        ),
      ),
    };
  });
  return {
    service: 'litekeep',
    version: VERSION,
    generatedAt: now.toISOString(),
    timeZone: source.timeZone,
    status: health.status,
    reason: clean(health.reason)!,
    maxAgeSeconds: health.maxAgeSeconds,
    schedule: {
      expression: source.schedule.expression,
      timeZone: source.timeZone,
      nextRun,
      running: source.schedule.running(),
    },
    actions: { backupNow: source.actions },
    databases,
  };
}

/** What status reads of a database's replication, judged as `litekeep status` judges it. */
function replicationView(target: DatabaseTarget, status: ReplicationReading, now: Date): ReplicationView {
  const settings = replicationSettingsOf(target);
  const judged = judgeReplication(target.name, settings, status, now.getTime());
  const holder = status.replicator;
  const destinations = (status.replication ?? []).map((r, i): ReplicationDestinationView => {
    const problems = judged.destinations[i].problems.map((p) => clean(p)!);
    return { ...r, healthy: problems.length === 0, problems };
  });
  const problems = judged.problems.map((p) => clean(p)!);
  return {
    configured: settings.enabled,
    mode: settings.mode,
    by: !holder ? 'nobody' : holder.thisProcess ? 'this-process' : 'other-process',
    ...(holder
      ? {
          replicator: {
            pid: holder.pid,
            host: holder.host,
            purpose: holder.purpose,
            startedAt: holder.startedAt,
          },
        }
      : {}),
    ...(status.walBytes !== undefined
      ? { walBytes: status.walBytes, walLarge: walIsLarge(status.walBytes) }
      : {}),
    healthy: problems.length === 0 && destinations.every((d) => d.healthy),
    problems,
    destinations,
  };
}

function emptyView(
  target: DatabaseTarget,
  host: string,
  nextRun: string | null,
  now: Date,
): Omit<DatabaseView, 'health' | 'destinations'> {
  return {
    name: target.name,
    host,
    nextRun,
    backups: { count: 0, bytes: 0 },
    chart: {
      since: new Date(now.getTime() - CHART_DAYS * DAY_MS).toISOString(),
      backups: [],
      runs: [],
      truncated: false,
    },
    activity: [],
    retention: {
      enabled: target.settings.prune,
      backups: [],
      total: 0,
      keep: 0,
      remove: 0,
      setAside: [],
      future: [],
    },
    warnings: [],
  };
}

function runView(run: {
  id: number;
  trigger: string;
  startedAt: string;
  endedAt?: string;
  durationMs?: number;
  status: string;
  stage?: string;
  error?: string;
  backupFile?: string;
}): RunView {
  return {
    id: run.id,
    trigger: run.trigger,
    startedAt: run.startedAt,
    endedAt: run.endedAt,
    durationMs: run.durationMs,
    status: run.status,
    stage: run.stage,
    error: clean(run.error),
    backupFile: run.backupFile,
  };
}

/** When a backup was taken: the catalog's record, else its name read in the configured zone. */
function backupTime(manager: BackupManager, file: string): Date | undefined {
  const record = manager.catalog.getBackup(file);
  if (record) return new Date(record.createdAt);
  const parsed = parseBackupName(file);
  return parsed ? timeFromBackupName(parsed, manager.timeZone) : undefined;
}

/**
 * The newest backup with a copy whose newest verdict passed and that is still there (a local copy: on disk),
 * whichever place proved it; a newer backup that was never verified, or whose verification failed, is not it.
 */
function newestVerified(
  copies: VerificationRecord[],
  onDisk: Set<string>,
  timeOf: (file: string) => Date | undefined,
): DatabaseView['newestVerified'] {
  let best: { v: VerificationRecord; time?: Date } | undefined;
  for (const v of copies) {
    if (v.destination === 'local' && !onDisk.has(v.backupFile)) continue;
    const time = timeOf(v.backupFile);
    const key = time?.getTime() ?? -Infinity;
    const bestKey = best?.time?.getTime() ?? -Infinity;
    if (!best || key > bestKey || (key === bestKey && (v.at ?? '') > (best.v.at ?? ''))) best = { v, time };
  }
  return best
    ? { file: best.v.backupFile, time: iso(best.time), source: best.v.destination, at: best.v.at! }
    : undefined;
}

function destinationView(
  state: DestinationState,
  verdict: { healthy: boolean; reason: string } | undefined,
  verifications: VerificationRecord[],
): DestinationView {
  const verified = verifications.find((v) => v.destination === state.destination);
  return {
    name: state.destination,
    type: state.type,
    healthy: verdict?.healthy ?? true,
    reason: clean(verdict?.reason) ?? 'ok',
    newestCopy: state.newestCopy
      ? { file: state.newestCopy.file, time: state.newestCopy.time.toISOString() }
      : undefined,
    lastSuccess: state.lastSuccess
      ? { file: state.lastSuccess.file, at: state.lastSuccess.at.toISOString() }
      : undefined,
    lastFailure: state.lastFailure
      ? {
          file: state.lastFailure.file,
          at: state.lastFailure.at.toISOString(),
          error: clean(state.lastFailure.error)!,
        }
      : undefined,
    lastAttemptFailed: state.lastAttemptFailed,
    missing: state.missing.slice(0, LIST_LIMIT),
    missingCount: state.missing.length,
    lastVerified: verified ? { file: verified.backupFile, at: verified.at! } : undefined,
  };
}

/** Sizes and durations of the last 90 days, oldest first; at most CHART_LIMIT of each. */
function chartOf(manager: BackupManager, now: Date): ChartView {
  const since = new Date(now.getTime() - CHART_DAYS * DAY_MS).toISOString();
  const backups = manager.catalog.backupsSince(since, CHART_LIMIT + 1);
  const runs = manager.catalog
    .runsSince(since, CHART_LIMIT + 1)
    .filter((r) => r.status !== 'running' && r.durationMs !== undefined);
  const truncated = backups.length > CHART_LIMIT || runs.length > CHART_LIMIT;
  return {
    since,
    backups: backups
      .slice(0, CHART_LIMIT)
      .reverse()
      .map((b) => ({ file: b.file, time: b.createdAt, bytes: b.bytes, removed: b.deletedAt !== undefined })),
    runs: runs
      .slice(0, CHART_LIMIT)
      .reverse()
      .map((r) => ({ id: r.id, startedAt: r.startedAt, durationMs: r.durationMs!, status: r.status })),
    truncated,
  };
}

const FAILED = new Set(['failed', 'error']);

/** One line per event, as `litekeep history` says it (without the time, which the page shows apart). */
export function activityView(e: HistoryEvent): ActivityView {
  const error = clean(e.error);
  const base = { kind: e.kind, status: e.status, failed: FAILED.has(e.status), error };
  switch (e.kind) {
    case 'run':
      return {
        ...base,
        at: e.startedAt,
        file: e.backupFile,
        summary:
          `run #${e.id} (${e.trigger}): ${e.status}${e.backupFile ? `, ${e.backupFile}` : ''}` +
          `${e.rotated ? `, rotated ${e.rotated}` : ''}` +
          `${e.durationMs !== undefined ? `, ${humanDuration(e.durationMs)}` : ''}`,
      };
    case 'upload':
      return {
        ...base,
        at: e.at ?? '',
        file: e.backupFile,
        where: e.destination,
        summary: `upload of ${e.backupFile} to ${e.destination}: ${e.status}${e.attempts ? ` after ${e.attempts} attempt${e.attempts === 1 ? '' : 's'}` : ''}`,
      };
    case 'deletion':
      return {
        ...base,
        at: e.at ?? '',
        file: e.backupFile,
        where: e.destination,
        summary: `removal of ${e.backupFile} from ${e.destination}: ${e.status}${e.reasons ? ` (${clean(e.reasons)})` : ''}`,
      };
    case 'notification':
      return {
        ...base,
        at: e.at ?? '',
        where: e.channel,
        summary: `notification by ${e.channel} (${e.event}): ${e.status}${e.httpStatus ? `, HTTP ${e.httpStatus}` : ''}`,
      };
    case 'verification':
      return {
        ...base,
        at: e.at ?? '',
        file: e.backupFile,
        where: e.destination,
        summary: `verification of ${e.backupFile} on ${e.destination}: ${e.status}`,
      };
    case 'restore':
      return {
        ...base,
        at: e.at ?? '',
        file: e.backupFile,
        where: e.source,
        summary: `restore of ${e.backupFile} from ${e.source}: ${e.status}`,
      };
  }
}

/** What `prune --dry-run` would say: every local backup with keep/remove and the reasons. */
async function retentionOf(manager: BackupManager): Promise<RetentionView> {
  const enabled = manager.target.settings.prune;
  try {
    const plan = await manager.prune({ dryRun: true });
    const decisions = plan.decisions;
    return {
      enabled,
      policy: describePolicy(plan.policy),
      backups: decisions.slice(0, LIST_LIMIT).map((d) => ({
        file: d.name,
        time: d.time.toISOString(),
        action: d.action,
        reasons: d.reasons,
        trigger: manager.catalog.getBackup(d.name)?.trigger === 'manual' ? 'manual' : 'scheduled',
      })),
      total: decisions.length,
      keep: decisions.filter((d) => d.action === 'keep').length,
      remove: decisions.filter((d) => d.action === 'remove').length,
      setAside: plan.setAside.map((s) => ({ file: s.name, reason: clean(s.reason)! })),
      future: plan.future,
    };
  } catch (error) {
    return {
      enabled,
      backups: [],
      total: 0,
      keep: 0,
      remove: 0,
      setAside: [],
      future: [],
      error: clean(String((error as Error).message ?? error)),
    };
  }
}
