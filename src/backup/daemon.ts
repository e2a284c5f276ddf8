import fs from 'node:fs';
import path from 'node:path';
import {
  loadConfig,
  type DatabaseTarget,
  type LoadConfigOptions,
  type ResolvedConfig,
} from '../config/index.js';
import {
  createLogger,
  installSignalHandlers,
  LockHeldError,
  startDaemon,
  startHttpServer,
  type DaemonHandle,
  type DaemonStatus,
  type DatabaseStatus,
  type DestinationHealthInput,
  type HttpServerHandle,
  type LogSink,
} from '../scheduler/index.js';
import { CATALOG_DIR } from '../catalog/index.js';
import { oneLine } from '../util/errors.js';
import { BackupManager } from './manager.js';
import { destinationStatesFromCatalog } from './offsite.js';
import { partialProblems, runBackupForTarget, type RunBackupResult, type RunTrigger } from './task.js';
import { verifyDue } from './verify-schedule.js';

/** A run that did not start because another process holds this database's lock (not an I/O error on it). */
function isLockCollision(result: RunBackupResult): boolean {
  return (
    result.status === 'failed' &&
    result.stage === 'lock' &&
    !result.backup &&
    /another run holds/.test(result.error ?? '')
  );
}

/** Whether a catalog exists; status reads must not create folders or catalogs as a side effect. */
function hasCatalog(target: DatabaseTarget): boolean {
  return fs.existsSync(path.join(target.backupDir, CATALOG_DIR));
}

const later = (a: Date | undefined, b: Date | undefined): Date | undefined =>
  !a ? b : !b ? a : a.getTime() >= b.getTime() ? a : b;

/** What the daemon reads from each database's catalog for catch-up, /healthz and /metrics. */
export async function statusFromCatalog(
  targets: DatabaseTarget[],
  maxAgeMs: number,
  options: { skipDrive?: boolean } = {},
): Promise<DaemonStatus> {
  const databases: DatabaseStatus[] = [];
  for (const target of targets) {
    if (!hasCatalog(target)) {
      databases.push({
        name: target.name,
        backupsOnDisk: 0,
        bytesOnDisk: 0,
        runsByStatus: {},
        newestBackupOk: false,
      });
      continue;
    }
    const manager = new BackupManager(target);
    try {
      const { backups } = await manager.listBackups();
      const success = manager.catalog.lastRunWithStatus(['ok', 'partial']);
      const failure = manager.catalog.lastRunWithStatus(['failed']);
      // A run in progress (or left 'running' by a killed process) says nothing yet: judge the newest finished one.
      const newestRun = manager.catalog.lastRunWithStatus(['ok', 'partial', 'failed']);
      const lastBackup = success?.backupFile ? manager.catalog.getBackup(success.backupFile) : undefined;
      const successTime = success ? new Date(success.startedAt) : undefined;
      let destinations: DestinationHealthInput[];
      try {
        destinations = (await destinationStatesFromCatalog(target, manager, options)).map((d) => ({
          name: d.destination,
          type: d.type,
          newestCopyTime: d.newestCopy?.time,
          lastSuccess: d.lastSuccess?.at,
          lastFailure: d.lastFailure?.at,
          lastFailureError: d.lastFailure?.error,
          lastAttemptFailed: d.lastAttemptFailed,
          missing: d.missing.length,
          uploadsByStatus: d.uploadsByStatus,
        }));
      } catch {
        // A destination setting that no longer parses was refused at start; nothing to judge by here.
        destinations = [];
      }
      databases.push({
        name: target.name,
        lastSuccess: success ? new Date(success.endedAt ?? success.startedAt) : undefined,
        lastFailure: failure ? new Date(failure.endedAt ?? failure.startedAt) : undefined,
        lastFailureError: failure?.error,
        lastDurationMs: newestRun?.durationMs,
        lastBytes: lastBackup?.bytes,
        backupsOnDisk: backups.length,
        bytesOnDisk: backups.reduce((sum, b) => sum + b.bytes, 0),
        runsByStatus: manager.catalog.runsByStatus(),
        newestBackupTime: later(backups[0]?.time, successTime),
        newestBackupOk: newestRun ? newestRun.status !== 'failed' : backups.length > 0,
        destinations,
      });
    } finally {
      manager.close();
    }
  }
  return { maxAgeMs, databases };
}

/**
 * The newest successful backup across databases, for catch-up: the oldest of each database's newest, so that
 * one database without a recent backup is enough to catch up. A file on disk counts as much as a recorded run
 * (the catalog may have been rebuilt, or a backup made by hand copied in).
 */
export async function newestSuccessOf(targets: DatabaseTarget[]): Promise<Date | undefined> {
  let oldest: Date | undefined;
  for (const target of targets) {
    if (!hasCatalog(target)) return undefined;
    const manager = new BackupManager(target);
    try {
      const success = manager.catalog.lastRunWithStatus(['ok', 'partial']);
      const { backups } = await manager.listBackups();
      const newest = later(success ? new Date(success.startedAt) : undefined, backups[0]?.time);
      if (!newest) return undefined;
      if (!oldest || newest < oldest) oldest = newest;
    } finally {
      manager.close();
    }
  }
  return oldest;
}

const SILENT: LogSink = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

export interface ScheduleBackupTaskOptions extends LoadConfigOptions {
  /** Already resolved configuration (otherwise loaded from `LoadConfigOptions`). */
  resolved?: ResolvedConfig;
  /** Override of the cron expression. */
  schedule?: string;
  /** Where the schedule logs (a pino logger, `console`, ...); silent when not given. */
  logger?: LogSink;
  /** Called after each run of each database. */
  onRun?: (result: RunBackupResult) => void;
  /** Upload to Drive (default true). */
  drive?: boolean;
  /** Upload to the off-site destinations (default true). */
  upload?: boolean;
  /** Send notifications (default true). */
  notify?: boolean;
}

export interface BackupSchedule {
  stop(): Promise<void>;
  nextRun(): Date | null;
  running(): boolean;
  /** Runs the task now (unless a run is in progress). */
  runNow(): Promise<void>;
  readonly daemon: DaemonHandle;
}

/**
 * The seed's `schedule_backup_task(scheduler)`: runs the backup task on the configured cron schedule inside
 * an existing Node program (default 03:00 daily), with catch-up after downtime and one run at a time.
 */
export function scheduleBackupTask(options: ScheduleBackupTaskOptions = {}): BackupSchedule {
  const resolved = options.resolved ?? loadConfig(options);
  const targets = resolved.databases;
  // Inside a host app the app owns stdout: nothing is logged unless it passes a logger (the daemon passes one).
  const log = options.logger ?? SILENT;
  // The daemon handle reports no next run once it is stopping; a stopping daemon finishes the backup in hand
  // and starts nothing more (no further database, no verification).
  const stopping = () => daemon.nextRun() === null;
  const runTask = async (trigger: RunTrigger, signal: AbortSignal) => {
    let failures = 0;
    let attempted = 0;
    for (const target of targets) {
      if (signal.aborted || (attempted > 0 && stopping())) break;
      attempted++;
      const result = await runBackupForTarget(target, {
        trigger,
        signal,
        drive: options.drive,
        upload: options.upload,
        notify: options.notify,
      });
      options.onRun?.(result);
      const fields = {
        database: result.database,
        trigger,
        status: result.status,
        exitCode: result.exitCode,
        file: result.backup?.file,
        bytes: result.backup?.bytes,
        durationMs: result.durationMs,
        rotated: result.rotated,
        stage: result.stage,
        error: result.error,
      };
      if (isLockCollision(result)) {
        // Another run (a manual `litekeep backup`, another daemon) is backing this database up right now:
        // that run makes the backup, so this is not a failure of the schedule.
        log.warn({ ...fields, status: 'skipped' }, `backup of ${result.database} skipped: ${result.error}`);
        continue;
      }
      if (result.status === 'failed') {
        failures++;
        log.error(fields, `backup of ${result.database} failed: ${result.error}`);
      } else if (result.status === 'partial') {
        log.warn(fields, `backup of ${result.database} partly done: ${partialProblems(result).join('; ')}`);
      } else log.info(fields, `backup of ${result.database} done: ${result.backup?.file}`);
      for (const w of result.warnings) log.warn({ database: result.database }, w);
      const mode = resolved.config.verify;
      if (signal.aborted || stopping()) continue;
      // "after-backup" proves the new backup; when there is none, the next successful run does it.
      if (mode === 'after-backup' && result.status === 'failed') continue;
      try {
        const verification = await verifyDue(target, mode, trigger, new Date(), signal);
        for (const v of verification) {
          if (v.status === 'ok')
            log.info({ database: target.name, ...v }, `verified ${v.backup} on ${v.source}`);
          else
            log.error({ database: target.name, ...v }, `verification of ${v.backup} on ${v.source} failed`);
        }
      } catch (error) {
        // A run holding the lock only postpones verification to a later run, and a stopping daemon cuts it
        // short on purpose: neither is an alarm.
        const level = error instanceof LockHeldError || signal.aborted ? 'warn' : 'error';
        log[level]({ database: target.name }, `verification could not run: ${oneLine(error)}`);
      }
    }
    if (failures) throw new Error(`${failures} of ${attempted} backups failed`);
  };
  const daemon = startDaemon({
    expression: options.schedule ?? resolved.config.schedule,
    timeZone: resolved.timeZone,
    catchUp: resolved.config.catchUp,
    logger: log,
    runTask: (trigger, signal) => runTask(trigger, signal),
    getNewestSuccess: () => newestSuccessOf(targets),
  });
  return {
    stop: () => daemon.stop(),
    nextRun: () => daemon.nextRun(),
    running: () => daemon.running(),
    runNow: async () => {
      await daemon.trigger('schedule');
    },
    daemon,
  };
}

export interface DaemonProcess {
  schedule: BackupSchedule;
  http?: HttpServerHandle;
}

/** `litekeep daemon`: the schedule, signal handling and the optional health/metrics server. */
export async function runDaemon(
  resolved: ResolvedConfig,
  options: {
    schedule?: string;
    http?: string;
    allowRemote?: boolean;
    drive?: boolean;
    upload?: boolean;
    notify?: boolean;
  },
): Promise<DaemonProcess> {
  const logger = createLogger({ level: resolved.config.log.level });
  const listen = options.http ?? resolved.config.http;
  // The server first: an address in use is a configuration error (exit 2), and nothing may be scheduled yet,
  // or the schedule would keep the failed process alive.
  let http: HttpServerHandle | undefined;
  if (listen) {
    http = await startHttpServer({
      listen,
      allowRemote: options.allowRemote,
      logger,
      getStatus: () =>
        statusFromCatalog(resolved.databases, resolved.config.maxAge ?? 26 * 3_600_000, {
          skipDrive: options.drive === false,
        }),
    });
    logger.info({ url: http.url }, `health and metrics on ${http.url}/healthz and ${http.url}/metrics`);
  }
  let schedule: BackupSchedule;
  try {
    schedule = scheduleBackupTask({
      resolved,
      schedule: options.schedule,
      logger,
      drive: options.drive,
      upload: options.upload,
      notify: options.notify,
    });
  } catch (error) {
    await http?.close();
    throw error;
  }
  installSignalHandlers(schedule.daemon, { stopTimeoutMs: resolved.config.stopTimeout ?? 600_000, logger });
  // The schedule itself logged "daemon started" with its next run: one start-up line, not two.
  return { schedule, http };
}
