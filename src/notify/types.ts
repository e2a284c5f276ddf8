export type EventKind = 'start' | 'success' | 'failure' | 'test';
export type NotifyWhen = 'always' | 'failure' | 'never';
export type ChannelName = 'ntfy' | 'webhook' | 'ping';

/** What happened in a run, as the notifiers see it. */
export interface RunEvent {
  kind: EventKind;
  /** Database name. */
  database: string;
  host: string;
  time: Date;
  file?: string;
  bytes?: number;
  path?: string;
  /** Human link to the off-site copy (Drive `webViewLink`), when an upload made one. */
  link?: string;
  /** Number of old backups removed by rotation. */
  rotated?: number;
  /** Names of the backups this run's retention removed (locally and on each destination). */
  removed?: string[];
  durationMs?: number;
  sha256?: string;
  /** Failure: one line, no stack. */
  error?: string;
  /** Failure: the stage that failed (snapshot, integrity, store, upload, prune, ...). */
  stage?: string;
  /** What still worked, e.g. `['local backup kept']`. */
  succeeded?: string[];
  /** What failed, e.g. `['Drive upload failed']`. A success with failures is partial. */
  failed?: string[];
  /** Success overall but something failed (exit 3): counts as a failure for `on: failure`. */
  partial?: boolean;
  /** Snapshots written to incremental destinations: bytes each added and its dedup ratio (database / added). */
  snapshots?: { destination: string; id: string; addedBytes: number; dedupRatio: number }[];
}

export interface NtfyOptions {
  /** Default `https://ntfy.sh`. */
  server?: string;
  topic: string;
  /** Access token (`tk_...`), sent as `Authorization: Bearer`. Wins over user/password. */
  token?: string;
  user?: string;
  password?: string;
  /** Priority of success and test messages (min|low|default|high|max|urgent or 1-5). Default `default`. */
  priority?: string;
  /** Priority of failure and partial messages. Default `high`. */
  failurePriority?: string;
  tags?: string[];
  on?: NotifyWhen;
}

export interface WebhookOptions {
  url: string;
  headers?: Record<string, string>;
  on?: NotifyWhen;
}

export interface PingOptions {
  url: string;
  method?: 'GET' | 'POST';
  on?: NotifyWhen;
}

export interface NotifyOptions {
  ntfy?: NtfyOptions;
  webhook?: WebhookOptions;
  ping?: PingOptions;
  /** Per request. Default 10 000. */
  timeoutMs?: number;
  /** Tries per notification. Default 3. */
  attempts?: number;
  /** Delay before retry n (the last value repeats). Default [2000, 8000]. */
  backoffMs?: number[];
  /** litekeep version for the webhook document and User-Agent. Default: the package version. */
  version?: string;
  /** Zone in which times are shown in messages. Default: the system zone. */
  timeZone?: string;
}

/** A request as built, before it is sent: pure data, easy to assert. */
export interface HttpRequestSpec {
  url: string;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string;
}

/** One try at delivering one notification. `error` is one line and already redacted. */
export interface NotificationAttempt {
  channel: ChannelName;
  event: EventKind;
  status: 'ok' | 'failed';
  httpStatus?: number;
  error?: string;
  /** 1-based. */
  attempt: number;
  time: Date;
  /** Where it went, redacted to its origin. */
  target: string;
}

export interface NotificationResult {
  channel: ChannelName;
  event: EventKind;
  /** `skipped`: configured, but its `on` setting excludes this event. */
  status: 'ok' | 'failed' | 'skipped';
  /** Number of tries made. */
  attempts: number;
  httpStatus?: number;
  /** Last error, one line, redacted. */
  error?: string;
  target: string;
  /** Every try, in order (the same objects `onAttempt` received). */
  attemptLog: NotificationAttempt[];
}

export interface NotifyHooks {
  /** Called after every try; exceptions thrown here are ignored. */
  onAttempt?(attempt: NotificationAttempt): void;
}
