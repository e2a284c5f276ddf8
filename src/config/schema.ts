import {
  boolean,
  custom,
  duration,
  integer,
  InvalidValue,
  oneOf,
  optionalOneOf,
  pathSetting,
  requiredString,
  section,
  string,
  stringList,
  stringMap,
  type Infer,
} from './settings.js';

type ObjectList = Record<string, unknown>[];

const notifyWhen = ['always', 'failure', 'never'] as const;

function listOfObjects(requiredKeys: string[], form: string) {
  return (raw: unknown): Record<string, unknown>[] => {
    let value = raw;
    if (typeof raw === 'string') {
      try {
        value = JSON.parse(raw);
      } catch {
        throw new InvalidValue(form);
      }
    }
    if (!Array.isArray(value)) throw new InvalidValue(form);
    return value.map((item, index) => {
      if (typeof item !== 'object' || item === null || Array.isArray(item)) {
        throw new InvalidValue(`${form} (item ${index + 1} is not a map)`);
      }
      for (const key of requiredKeys) {
        const v = (item as Record<string, unknown>)[key];
        if (typeof v !== 'string' || v.trim() === '') {
          throw new InvalidValue(`${form} (item ${index + 1} has no '${key}')`);
        }
      }
      return { ...(item as Record<string, unknown>) };
    });
  };
}

const retentionCount = (rule: string, def?: number) =>
  integer({ default: def, doc: `keep the newest backup of each of the last N ${rule} periods` });

/**
 * The one schema of litekeep's configuration. Every key can come from the config file, from the environment as
 * `LITEKEEP_<PATH_IN_UPPER_SNAKE_CASE>` (plus the seed's names listed as aliases), and from flags.
 */
export const configSchema = section({
  database: pathSetting({
    aliases: ['DATABASE_URL'],
    doc: 'the database to back up: a path, sqlite:///relative.db, sqlite:////absolute.db or file: URI',
  }),
  backupDir: pathSetting({
    aliases: ['BACKUP_DIR'],
    doc: 'where backups go (default <AI_WORKSPACE>/backups/database, else ./backups)',
  }),
  databases: custom<ObjectList | undefined>(
    listOfObjects(['name', 'path'], 'a list of {name, path, ...overrides}'),
    {
      doc: 'several databases, each backed up into <backupDir>/<name>/',
    },
  ),
  vacuum: boolean({ default: true, doc: 'VACUUM INTO a compacted copy (false: the online backup API)' }),
  integrityCheck: oneOf(['full', 'quick'], {
    default: 'full',
    doc: 'PRAGMA integrity_check (full) or quick_check (quick) on every copy',
  }),
  busyTimeout: duration({ default: '10s', doc: 'how long to wait for a database locked by another process' }),
  timeZone: string({ doc: 'IANA zone for backup names and retention calendars (default: the system zone)' }),
  host: string({
    doc: 'this machine in remote copies (default: the host name); machines sharing a destination need different ones',
  }),
  prune: boolean({ default: true, doc: 'apply retention after each successful backup' }),
  retention: section({
    last: retentionCount('backups'),
    hourly: retentionCount('hours'),
    daily: retentionCount('days', 7),
    weekly: retentionCount('ISO weeks', 4),
    monthly: retentionCount('months', 12),
    yearly: retentionCount('years'),
    within: string({ doc: 'keep every backup this close to the newest one (30d, 12h, 2w, 1y2m)' }),
    manual: string({
      default: '7d',
      doc: 'keep every manual backup this young; manual and scheduled backups are rotated as separate series',
    }),
    pitr: string({
      default: '7d',
      doc: 'with replication: keep WAL segments so that every moment this close to now can be restored to the second',
    }),
  }),
  compression: section({
    algorithm: oneOf(['zstd', 'gzip', 'none'], { default: 'zstd', doc: 'compression of backup files' }),
    level: integer({ min: 1, max: 19, doc: 'compression level (zstd 1-19, default 3; gzip 1-9, default 6)' }),
  }),
  encryption: section({
    recipients: stringList({
      doc: 'age recipients (age1... or ssh public keys): backups are encrypted to them',
    }),
    passphrase: string({
      secret: true,
      aliases: ['LITEKEEP_PASSPHRASE'],
      doc: 'encrypt with this passphrase (environment only, never a flag)',
    }),
    passphraseFile: pathSetting({ doc: 'a file whose first line is the passphrase' }),
    identity: pathSetting({
      aliases: ['LITEKEEP_AGE_IDENTITY'],
      doc: 'age identity file used to decrypt at restore and verify',
    }),
  }),
  replicate: section(
    {
      enabled: boolean({
        default: false,
        doc: 'the daemon ships every commit of this WAL database to its format: incremental destinations (`replicate: true` sets it)',
      }),
      interval: duration({ default: '1s', doc: 'how often the WAL is read and new commits shipped' }),
      fingerprintEvery: duration({
        default: '1h',
        doc: 'how often a shipped commit carries the database fingerprint (tables, row counts, schema) read in one read transaction as long as counting the rows takes, for verify drills of points in time; 0s: never',
      }),
      mode: oneOf(['follow', 'cooperative'], {
        default: 'follow',
        doc: 'follow: no lock, no checkpoint, no read transaction (the app checkpoints; a reset before litekeep read is a gap); cooperative: the app sets wal_autocheckpoint=0 and litekeep checkpoints PASSIVE after shipping (no gaps; the WAL grows while litekeep is down)',
      }),
    },
    { shorthand: 'enabled' },
  ),
  schedule: requiredString({ default: '0 3 * * *', doc: 'cron expression of the daemon (5 or 6 fields)' }),
  catchUp: boolean({ default: true, doc: 'run at daemon start when the newest backup missed its slot' }),
  maxAge: duration({ default: '26h', doc: 'status/healthz fail when the newest backup is older than this' }),
  stopTimeout: duration({ default: '10m', doc: 'how long a stopping daemon lets a running backup finish' }),
  lockWait: duration({ default: '0s', doc: 'how long a backup waits for another run on the same database' }),
  idleTimeout: duration({
    default: '30s',
    doc: 'a network request (S3, Google Drive) with no byte sent or received for this long fails',
  }),
  runTimeout: duration({
    default: '3h',
    doc: 'a run still going after this long is aborted, cleaned up, recorded and notified as failed',
  }),
  http: section(
    {
      listen: string({
        aliases: ['LITEKEEP_HTTP'],
        doc: 'daemon status page, health and metrics address, e.g. 127.0.0.1:9300 (off when unset; `http: ADDRESS` sets it too)',
      }),
      allowActions: boolean({
        default: false,
        doc: 'serve POST /api/backup ("back up now" on the status page); needs a token',
      }),
      token: string({
        secret: true,
        doc: 'bearer token for actions, and for every request with --allow-remote (16+ characters; environment or tokenFile)',
      }),
      tokenFile: pathSetting({ doc: 'a file whose first line is the http token' }),
    },
    { shorthand: 'listen' },
  ),
  verify: oneOf(['after-backup', 'daily', 'weekly', 'never'], {
    default: 'weekly',
    doc: 'how often the daemon proves that backups restore',
  }),
  drive: section({
    enabled: boolean({ default: true, doc: 'upload to Google Drive when credentials are configured' }),
    credentials: pathSetting({
      aliases: ['GOOGLE_APPLICATION_CREDENTIALS'],
      doc: 'authorized_user or service-account JSON (written by `litekeep auth google`)',
    }),
    clientSecrets: pathSetting({
      doc: 'Google "Desktop app" OAuth client JSON used by `litekeep auth google`',
    }),
    folder: requiredString({ default: 'litekeep-backups', doc: 'Drive folder name (created when missing)' }),
    folderId: string({ doc: 'Drive folder id (wins over folder)' }),
    trash: boolean({ default: true, doc: 'move pruned files to the Drive trash instead of deleting them' }),
    chunkSize: integer({ min: 262144, doc: 'resumable upload chunk size in bytes (multiple of 256 KiB)' }),
    retention: section({
      last: integer({ doc: 'Drive retention (default: the local policy)' }),
      hourly: integer({ doc: 'Drive retention' }),
      daily: integer({ doc: 'Drive retention' }),
      weekly: integer({ doc: 'Drive retention' }),
      monthly: integer({ doc: 'Drive retention' }),
      yearly: integer({ doc: 'Drive retention' }),
      within: string({ doc: 'Drive retention' }),
    }),
    apiUrl: string({ doc: 'override of the Drive API root (tests only)' }),
    tokenUrl: string({ doc: 'override of the OAuth token endpoint (tests only)' }),
    authUrl: string({ doc: 'override of the OAuth authorize endpoint (tests only)' }),
  }),
  destinations: custom<ObjectList | undefined>(
    listOfObjects(['name', 'type'], 'a list of {name, type, ...settings}'),
    {
      doc: 'off-site destinations (local, google-drive, s3, rclone, sftp), each with its own settings and retention',
    },
  ),
  notify: section({
    timeout: duration({ default: '10s', doc: 'timeout of one notification request' }),
    attempts: integer({ min: 1, max: 10, default: 3, doc: 'tries per notification' }),
    ntfy: section({
      server: requiredString({ default: 'https://ntfy.sh', doc: 'ntfy server URL' }),
      // On a public server the topic is the only thing that keeps others from reading or posting: a secret.
      topic: string({ secret: true, doc: 'ntfy topic (notifications are off without one)' }),
      token: string({ secret: true, doc: 'ntfy access token' }),
      user: string({ doc: 'ntfy user (with password)' }),
      password: string({ secret: true, doc: 'ntfy password' }),
      priority: requiredString({ default: 'default', doc: 'priority of success messages' }),
      failurePriority: requiredString({ default: 'high', doc: 'priority of failure messages' }),
      tags: stringList({ doc: 'ntfy tags' }),
      on: optionalOneOf(notifyWhen, { doc: 'always | failure | never (default always)' }),
    }),
    webhook: section({
      url: string({ secret: true, doc: 'URL receiving one JSON document per event' }),
      headers: stringMap({ secret: true, doc: 'extra headers for the webhook' }),
      on: optionalOneOf(notifyWhen, { doc: 'always | failure | never (default always)' }),
    }),
    ping: section({
      url: string({ secret: true, doc: 'dead-man ping URL (healthchecks.io style)' }),
      method: oneOf(['GET', 'POST'], { default: 'GET', doc: 'ping method' }),
      on: optionalOneOf(notifyWhen, { doc: 'always | failure | never (default always)' }),
    }),
  }),
  log: section({
    level: oneOf(['debug', 'info', 'warn', 'error'], { default: 'info', doc: 'daemon log level' }),
  }),
});

export type LitekeepConfig = Infer<typeof configSchema>;

/** Keys a `databases:` entry may override. */
export const DATABASE_OVERRIDE_KEYS = [
  'backupDir',
  'vacuum',
  'integrityCheck',
  'busyTimeout',
  'prune',
  'retention',
  'compression',
  'encryption',
  'replicate',
] as const;
