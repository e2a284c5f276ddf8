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
  type HttpServerHandle,
  type LogSink,
} from '../scheduler/index.js';
import { Catalog } from '../catalog/index.js';
import { oneLine } from '../util/errors.js';
import { BackupManager } from './manager.js';
import { notifyProblem } from './notifications.js';
import { hasCatalog, later, statusFromCatalog } from './health.js';
import { partialProblems, runBackupForTarget, type RunBackupResult, type RunTrigger } from './task.js';
import { verifyDue } from './verify-schedule.js';
import { httpAccessOf, statusPageRoutes, type BackupNowOutcome } from '../web/index.js';

/** A run that did not start because another process holds this database's lock (not an I/O error on it). */
function isLockCollision(result: RunBackupResult): boolean {
  return (
    result.status === 'failed' &&
    result.stage === 'lock' &&
    !result.backup &&
    /another run holds/.test(result.error ?? '')
  );
}

export { statusFromCatalog };

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

/**
 * The daemon's WAL shipping (issue 15) for the databases with `replicate: true`, logged like its runs. A database
 * that cannot be replicated (not WAL, no incremental destination) stops the daemon at start, as a bad setting.
 */
async function prepareReplication(
  targets: DatabaseTarget[],
  logger: LogSink,
): Promise<{ start(): void; stop(options?: { abort?: boolean }): Promise<void> } | undefined> {
  if (targets.length === 0) return undefined;
  const { createReplicators } = await import('../pitr/service.js');
  const runs = new AbortController();
  const shipping = new AbortController();
  const alert = replicationAlerts(targets, logger);
  const replicators = await createReplicators(targets, {
    signal: runs.signal,
    holder: 'the litekeep daemon',
    onEvent: (event) => {
      const { kind, database } = event;
      if (kind === 'waiting')
        logger.warn(
          { database, holder: event.holder },
          `${database} is replicated by another process (pid ${event.holder.pid} on ${event.holder.host}, ${event.holder.purpose}); not shipping it here, trying its lock again every interval`,
        );
      else if (kind === 'claimed')
        logger.info(
          { database, after: event.after },
          `pid ${event.after.pid} no longer replicates ${database}: replicating it here now`,
        );
      else if (kind === 'started')
        logger.info(
          { database, destinations: event.destinations, intervalMs: event.intervalMs, mode: event.mode },
          `replicating ${database} to ${event.destinations.join(', ')}${event.mode === 'cooperative' ? ' (cooperative: litekeep checkpoints the WAL)' : ''}`,
        );
      else if (kind === 'gap')
        logger[event.reason === 'start' ? 'info' : 'warn'](
          { database, destination: event.destination, gap: event.reason },
          event.reason === 'start'
            ? `shipping ${database} to ${event.destination} starts here: taking a base snapshot`
            : `replication gap on ${event.destination}: the WAL was reset before some commits of ${database} were read; taking a new base snapshot`,
        );
      else if (kind === 'error') {
        logger.error(
          { database, destination: event.destination, error: event.error },
          `shipping ${database} to ${event.destination} failed: ${event.error}`,
        );
        alert(database, event.destination, `shipping to ${event.destination} failed: ${event.error}`);
      } else if (kind === 'base')
        logger[event.ok ? 'info' : 'error'](
          { database, ok: event.ok },
          `base snapshot of ${database} ${event.ok ? 'taken' : 'failed'}: ${event.detail}`,
        );
      else if (kind === 'warning') logger.warn({ database }, event.message);
      else if (kind === 'checkpoint')
        logger.debug(
          { database, log: event.log, checkpointed: event.checkpointed },
          `checkpointed ${event.checkpointed} of ${event.log} WAL frames of ${database}`,
        );
      else
        logger.debug(
          {
            database,
            destination: event.destination,
            segments: event.result.segments.length,
            frames: event.result.frames,
          },
          `shipped ${event.result.frames} frames of ${database} to ${event.destination}`,
        );
    },
  });
  for (const r of replicators) await r.prepare();
  let done: Promise<unknown> = Promise.resolve();
  return {
    start() {
      done = Promise.all(
        replicators.map((r) =>
          r.run(shipping.signal, { waitForLock: true }).catch((error: unknown) => {
            logger.error(
              { database: r.target.name },
              `replication of ${r.target.name} stopped: ${oneLine(error)}`,
            );
            alert(r.target.name, '*', `replication stopped: ${oneLine(error)}`);
          }),
        ),
      );
    },
    async stop(options = {}) {
      if (options.abort) runs.abort();
      shipping.abort();
      await done.catch(() => {});
    },
  };
}

/** One replication failure notification per database and destination an hour at most. */
const REPLICATION_ALERT_EVERY_MS = 60 * 60_000;

/**
 * Replication problems the daemon hears of (a destination failing, a stalled pass, replication stopped) are
 * failure notifications, not log lines alone: shipping that stopped is a recovery point silently lost. The
 * replicator reports each distinct failure once; this also keeps a flapping one to one message an hour.
 */
function replicationAlerts(
  targets: DatabaseTarget[],
  logger: LogSink,
): (database: string, destination: string, error: string) => void {
  const lastSent = new Map<string, number>();
  return (database, destination, error) => {
    const target = targets.find((t) => t.name === database);
    const key = `${database}\0${destination}`;
    if (!target || Date.now() - (lastSent.get(key) ?? -Infinity) < REPLICATION_ALERT_EVERY_MS) return;
    lastSent.set(key, Date.now());
    notifyProblem(target, { stage: 'replicate', error }).catch((failure: unknown) =>
      logger.error({ database }, `the replication failure notification failed: ${oneLine(failure)}`),
    );
  };
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
  // Token, actions and --allow-remote are checked before anything starts: a bad combination is exit 2.
  const access = httpAccessOf(resolved.config.http, {
    listen: options.http,
    allowRemote: options.allowRemote,
  });
  const expression = options.schedule ?? resolved.config.schedule;
  const maxAgeMs = resolved.config.maxAge ?? 26 * 3_600_000;
  // Filled in once the schedule exists: the server starts first (below), and answers only after this returns.
  let schedule: BackupSchedule | undefined;
  const backupNow = (): BackupNowOutcome => {
    const daemon = schedule?.daemon;
    if (!daemon || daemon.nextRun() === null) return 'stopping';
    if (daemon.running()) return 'running';
    // A person asked for it: the backup joins the manual series, as `litekeep backup` on a terminal does.
    void daemon.trigger('manual');
    return 'started';
  };
  // Bring each existing activity log to this version's schema (its indexes) once, here: the status page reads
  // it read-only, and an older schema would be migrated in a memory copy on every view.
  for (const target of resolved.databases) if (hasCatalog(target)) Catalog.open(target.backupDir).close();
  // The server first: an address in use is a configuration error (exit 2), and nothing may be scheduled yet,
  // or the schedule would keep the failed process alive.
  let http: HttpServerHandle | undefined;
  if (access.listen) {
    http = await startHttpServer({
      listen: access.listen,
      allowRemote: access.allowRemote,
      token: access.token,
      logger,
      getStatus: () =>
        statusFromCatalog(resolved.databases, maxAgeMs, {
          skipDrive: options.drive === false,
        }),
      routes: statusPageRoutes({
        source: {
          targets: resolved.databases,
          timeZone: resolved.timeZone,
          maxAgeMs,
          skipDrive: options.drive === false,
          schedule: {
            expression,
            nextRun: () => schedule?.nextRun() ?? null,
            running: () => schedule?.running() ?? false,
          },
          actions: access.allowActions,
        },
        backupNow: access.allowActions ? backupNow : undefined,
        logger,
      }),
    });
  }
  // Replication is checked before anything is scheduled: a database it cannot follow is exit 2, like a bad setting.
  let replication: Awaited<ReturnType<typeof prepareReplication>>;
  try {
    replication = await prepareReplication(
      resolved.databases.filter((t) => t.settings.replicate.enabled),
      logger,
    );
  } catch (error) {
    await http?.close();
    throw error;
  }
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
  replication?.start();
  // A stopping daemon also stops shipping, after any base snapshot being taken (shipping is safe to cut).
  const handle = replication
    ? {
        ...schedule.daemon,
        stop: async (o?: { timeoutMs?: number }) => {
          await Promise.all([schedule!.daemon.stop(o), replication.stop()]);
        },
        abort: async () => {
          await Promise.all([schedule!.daemon.abort(), replication.stop({ abort: true })]);
        },
        nextRun: () => schedule!.daemon.nextRun(),
        running: () => schedule!.daemon.running(),
        trigger: (t?: Parameters<DaemonHandle['trigger']>[0]) => schedule!.daemon.trigger(t),
      }
    : schedule.daemon;
  installSignalHandlers(handle, { stopTimeoutMs: resolved.config.stopTimeout ?? 600_000, logger });
  // The server logged where it listens and the schedule "daemon started" with its next run: one line each.
  return { schedule, http };
}
