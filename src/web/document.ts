import type { ReplicationStatus } from '../pitr/capture.js';

/**
 * The status page's data: what `GET /api/status` answers and what `GET /` draws. Times are ISO 8601 (UTC);
 * sizes are bytes and durations milliseconds; the page formats them in the configured zone. Documented in
 * docs/status-api.md: a field is only ever added, never renamed or given another meaning.
 */
export interface StatusDocument {
  service: 'litekeep';
  version: string;
  /** When this answer was read from the activity log. */
  generatedAt: string;
  /** The configured zone: the page shows every time in it. */
  timeZone: string;
  /** The overall verdict, as `/healthz` gives it. */
  status: 'ok' | 'degraded' | 'unhealthy';
  /** Empty when `ok`; otherwise every database's and destination's problem. */
  reason: string;
  maxAgeSeconds: number;
  schedule: {
    expression: string;
    timeZone: string;
    /** null once the daemon is stopping. */
    nextRun: string | null;
    /** A run of the daemon's is going on now. */
    running: boolean;
  };
  /** Whether `POST /api/backup` exists (http.allowActions with a token). */
  actions: { backupNow: boolean };
  databases: DatabaseView[];
}

export interface RunView {
  id: number;
  trigger: string;
  startedAt: string;
  endedAt?: string;
  durationMs?: number;
  /** `ok`, `partial` (the local backup is safe, something after it failed) or `failed`. */
  status: string;
  stage?: string;
  error?: string;
  backupFile?: string;
}

export interface DestinationView {
  name: string;
  type: string;
  healthy: boolean;
  /** `ok`, or why it needs attention (the `/healthz` reason). */
  reason: string;
  /** The newest backup held there, as far as the activity log knows. */
  newestCopy?: { file: string; time: string };
  lastSuccess?: { file: string; at: string };
  lastFailure?: { file: string; at: string; error: string };
  /** The newest upload attempt there failed (it has not worked since). */
  lastAttemptFailed: boolean;
  /** Local backups it lacks that its retention would keep, newest first (at most `LIST_LIMIT`). */
  missing: string[];
  missingCount: number;
  /** The newest successful verification of a copy there. */
  lastVerified?: { file: string; at: string };
}

export interface ChartView {
  /** The window: the last 90 days up to `generatedAt`. */
  since: string;
  /** One point per backup made in the window (removed ones too), oldest first. */
  backups: { file: string; time: string; bytes: number; removed: boolean }[];
  /** One point per finished run in the window, oldest first. */
  runs: { id: number; startedAt: string; durationMs: number; status: string }[];
  /** More than `CHART_LIMIT` backups or runs in the window: the newest `CHART_LIMIT` are shown. */
  truncated: boolean;
}

export interface ActivityView {
  kind: 'run' | 'upload' | 'deletion' | 'notification' | 'verification' | 'restore';
  at: string;
  status: string;
  /** Marked on the page: the event failed (`failed`, or `error` for a verification that could not read). */
  failed: boolean;
  /** One line: what happened. */
  summary: string;
  error?: string;
  file?: string;
  /** The destination, channel or source it concerned. */
  where?: string;
}

export interface RetentionItemView {
  file: string;
  time: string;
  action: 'keep' | 'remove';
  /** Why it is kept (`weekly 2026-W09`, `newest`, ...) or, removed, why no rule kept it. */
  reasons: string[];
  trigger: 'manual' | 'scheduled';
}

export interface RetentionView {
  /** Whether runs apply it (config `prune`). */
  enabled: boolean;
  /** The policy, e.g. `daily 7, weekly 4, monthly 12, manual 7d`. */
  policy?: string;
  /** The local backups, newest first (at most `LIST_LIMIT`), with what the policy does to each. */
  backups: RetentionItemView[];
  total: number;
  keep: number;
  remove: number;
  /** Kept aside because their newest verification failed. */
  setAside: { file: string; reason: string }[];
  /** Dated after now (a wrong clock): kept, counted by no rule. */
  future: string[];
  /** The plan could not be made (an invalid policy, an unreadable folder). */
  error?: string;
}

/**
 * One destination's WAL shipping: the `replication` entry of `litekeep status --json` (ReplicationStatus:
 * lastShippedAt, segmentsShipped, bytesShipped, framesBehind, lagMs, baseOwedSince, recoverableFrom, windowFrom,
 * gaps, recentGaps), judged.
 */
export interface ReplicationDestinationView extends ReplicationStatus {
  /** No problem: shipping keeps up and no gap lies inside the `retention.pitr` window. */
  healthy: boolean;
  /** Why it needs attention (lag past its limit, a gap inside the window); empty when healthy. */
  problems: string[];
}

/** A database's point-in-time replication: who ships it, how, and where each destination stands. */
export interface ReplicationView {
  /** `replicate.enabled`: the daemon is meant to follow it. */
  configured: boolean;
  mode: 'follow' | 'cooperative';
  /**
   * Who holds the replication lock now: the process serving the page (the daemon), another process
   * (`litekeep replicate`, another daemon), or nobody.
   */
  by: 'this-process' | 'other-process' | 'nobody';
  /** That process as it described itself (pid, host, what it is, since when); absent for nobody. */
  replicator?: { pid: number; host: string; purpose: string; startedAt: string };
  /** Cooperative mode: the size of the `-wal` file, and whether it is past 64 MiB (not reset lately). */
  walBytes?: number;
  walLarge?: boolean;
  /** No problem here nor at any destination. */
  healthy: boolean;
  /** Problems of the database's replication as a whole (nobody replicating it, a large cooperative WAL). */
  problems: string[];
  destinations: ReplicationDestinationView[];
}

export interface DatabaseView {
  name: string;
  /** The name this machine's copies go by on shared destinations: the page shows this host's state. */
  host: string;
  health: { healthy: boolean; reason: string };
  /** The newest finished run. */
  lastRun?: RunView;
  nextRun: string | null;
  newestBackup?: { file: string; time: string; bytes: number; trigger: 'manual' | 'scheduled' };
  /** The newest backup with a copy still there whose newest verification passed: which, where and when. */
  newestVerified?: { file: string; time?: string; source: string; at: string };
  backups: { count: number; bytes: number };
  destinations: DestinationView[];
  chart: ChartView;
  /** The newest events of the activity log, newest first (at most `ACTIVITY_LIMIT`). */
  activity: ActivityView[];
  retention: RetentionView;
  /** Point-in-time replication, where it is configured or ever ran. */
  replication?: ReplicationView;
  /** Something the page must say although it could be drawn (an activity log that could not be read). */
  warnings: string[];
}

/** How much of a list the page and the JSON carry: they stay small whatever the history holds. */
export const LIST_LIMIT = 100;
export const ACTIVITY_LIMIT = 50;
export const CHART_LIMIT = 2000;
export const CHART_DAYS = 90;
