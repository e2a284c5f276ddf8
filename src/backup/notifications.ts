import type { Catalog } from '../catalog/index.js';
import { hostOf } from '../destinations/factory.js';
import type { DatabaseTarget, LitekeepConfig } from '../config/index.js';
import {
  notify,
  notifyTest,
  type NotificationAttempt,
  type NotificationResult,
  type NotifyOptions,
  type RunEvent,
} from '../notify/index.js';
import { oneLine } from '../util/errors.js';
import { redactSecrets } from '../util/redact.js';
import { VERSION } from '../version.js';
import { BackupManager } from './manager.js';
import type { RunBackupResult } from './task.js';

export interface NotificationOutcome {
  channel: string;
  event: string;
  status: 'ok' | 'failed' | 'skipped';
  attempts: number;
  httpStatus?: number;
  error?: string;
}

/** The notify section of the configuration as options for the notifiers; channels without a target are off. */
/** What a run removed, named: locally, and `name@destination` elsewhere. */
function removedNames(result: RunBackupResult): string[] | undefined {
  const names = [
    ...(result.prune?.removed ?? []),
    ...result.destinations.flatMap((d) => (d.removed ?? []).map((n) => `${n}@${d.destination}`)),
  ];
  return names.length ? names : undefined;
}

export function notifyOptionsFrom(settings: LitekeepConfig): NotifyOptions {
  const n = settings.notify;
  const options: NotifyOptions = {
    timeoutMs: n.timeout,
    attempts: n.attempts,
    version: VERSION,
    timeZone: settings.timeZone,
  };
  if (n.ntfy.topic) {
    options.ntfy = {
      server: n.ntfy.server,
      topic: n.ntfy.topic,
      token: n.ntfy.token,
      user: n.ntfy.user,
      password: n.ntfy.password,
      priority: n.ntfy.priority,
      failurePriority: n.ntfy.failurePriority,
      tags: n.ntfy.tags,
      on: n.ntfy.on,
    };
  }
  if (n.webhook.url) options.webhook = { url: n.webhook.url, headers: n.webhook.headers, on: n.webhook.on };
  if (n.ping.url) options.ping = { url: n.ping.url, method: n.ping.method, on: n.ping.on };
  const backoff = process.env.LITEKEEP_NOTIFY_BACKOFF_MS;
  // Tests shorten the retry delays; users keep the defaults (about 2 s, then 8 s).
  if (backoff) options.backoffMs = backoff.split(',').map(Number);
  return options;
}

function secretsOf(options: NotifyOptions): string[] {
  const { ntfy, webhook, ping } = options;
  return [
    ntfy?.token,
    ntfy?.password,
    webhook?.url,
    ...Object.values(webhook?.headers ?? {}),
    ping?.url,
  ].filter((s): s is string => !!s);
}

export function hasChannels(options: NotifyOptions): boolean {
  return Boolean(options.ntfy || options.webhook || options.ping);
}

function eventFor(target: DatabaseTarget, kind: RunEvent['kind'], result: RunBackupResult): RunEvent {
  const drive = result.destinations.find((d) => d.type === 'google-drive' && d.status === 'ok');
  const succeeded: string[] = [];
  const failed: string[] = [];
  if (result.backup) succeeded.push('local backup kept');
  for (const d of result.destinations) {
    const label = d.type === 'google-drive' ? 'Drive upload' : `upload to ${d.destination}`;
    if (d.status === 'ok') succeeded.push(d.snapshot ? `snapshot to ${d.destination} done` : `${label} done`);
    else if (d.status === 'failed') failed.push(`${label} failed${d.error ? `: ${d.error}` : ''}`);
  }
  for (const w of result.prune?.failed ?? []) failed.push(`could not delete ${w.name}`);
  failed.push(...(result.problems ?? []));
  return {
    kind,
    database: target.name,
    host: hostOf(target),
    time: new Date(),
    file: result.backup?.file,
    bytes: result.backup?.bytes,
    path: result.backup?.path,
    link: drive?.link ?? result.destinations.find((d) => d.link)?.link,
    rotated: result.rotated,
    removed: removedNames(result),
    durationMs: result.durationMs,
    sha256: result.backup?.sha256,
    error: result.error ?? (failed.length ? failed[0] : undefined),
    stage: result.stage,
    succeeded,
    failed,
    partial: kind === 'success' && failed.length > 0,
    ...snapshotsOf(result),
  };
}

/** Incremental destinations: each snapshot's bytes added and dedup ratio (issue 14). */
function snapshotsOf(result: RunBackupResult): Pick<RunEvent, 'snapshots'> {
  const snapshots = result.destinations.flatMap((d) =>
    d.status === 'ok' && d.snapshot
      ? [
          {
            destination: d.destination,
            id: d.snapshot.id,
            addedBytes: d.snapshot.uploadedBytes,
            dedupRatio: d.snapshot.dedupRatio,
          },
        ]
      : [],
  );
  return snapshots.length ? { snapshots } : {};
}

function toOutcomes(results: NotificationResult[]): NotificationOutcome[] {
  return results
    .filter((r) => r.status !== 'skipped')
    .map((r) => ({
      channel: r.channel,
      event: r.event,
      status: r.status,
      attempts: r.attempts,
      httpStatus: r.httpStatus,
      error: r.error,
    }));
}

/** Writes every delivery attempt to the activity log; recording is best effort, the message matters more. */
export function recordAttempt(
  catalog: Catalog | undefined,
  runId?: number,
): (attempt: NotificationAttempt) => void {
  return (attempt) => {
    try {
      catalog?.recordNotification({
        runId,
        channel: attempt.channel,
        event: attempt.event,
        status: attempt.status,
        httpStatus: attempt.httpStatus,
        error: attempt.error,
        attempts: attempt.attempt,
        at: attempt.time.toISOString(),
      });
    } catch {
      // a full disk or locked catalog must not stop the notification
    }
  };
}

/** Sends the run's notifications on every configured channel and records every attempt; never throws. */
export async function notifyRun(
  target: DatabaseTarget,
  kind: 'start' | 'success' | 'failure',
  result: RunBackupResult,
  catalog: Catalog | undefined,
  runId: number | undefined,
): Promise<NotificationOutcome[]> {
  const options = notifyOptionsFrom(target.settings);
  if (!hasChannels(options)) return [];
  try {
    const results = await notify(eventFor(target, kind, result), options, {
      onAttempt: recordAttempt(catalog, runId),
    });
    return toOutcomes(results);
  } catch (error) {
    // The notifiers never reject; this guards the run against a bug here, without leaking a credential.
    const message = redactSecrets(oneLine(error), secretsOf(options));
    return [{ channel: 'notify', event: kind, status: 'failed', attempts: 0, error: message }];
  }
}

/**
 * A failure that is not a backup run's (a verification, replication), as a failure notification on every
 * configured channel, each attempt recorded in the database's activity log like a run's.
 */
export async function notifyProblem(
  target: DatabaseTarget,
  problem: { stage: string; error: string; file?: string; time?: Date },
): Promise<void> {
  const options = notifyOptionsFrom(target.settings);
  if (!hasChannels(options)) return;
  const log = new BackupManager(target);
  try {
    await notify(
      {
        kind: 'failure',
        database: target.name,
        host: hostOf(target),
        time: problem.time ?? new Date(),
        ...problem,
      },
      options,
      // Recorded like every other notification, so a missed alert leaves a trace in `litekeep history`.
      { onAttempt: recordAttempt(log.catalog) },
    );
  } finally {
    log.close();
  }
}

/** `litekeep notify test`: one test message on every configured channel. */
export async function sendTestNotifications(
  target: DatabaseTarget,
  catalog?: Catalog,
): Promise<NotificationOutcome[]> {
  const options = notifyOptionsFrom(target.settings);
  if (!hasChannels(options)) return [];
  const results = await notifyTest(options, { onAttempt: recordAttempt(catalog) });
  return toOutcomes(results);
}
