/**
 * Versioned schema of the activity log. `PRAGMA user_version` holds how many migrations ran; a migration is
 * never edited once released, only followed by a new one.
 */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    trigger TEXT NOT NULL,
    database TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    status TEXT NOT NULL,
    stage TEXT,
    error TEXT,
    exit_code INTEGER,
    backup_file TEXT,
    rotated INTEGER,
    duration_ms INTEGER,
    pid INTEGER
  );
  CREATE INDEX runs_started ON runs(started_at);

  CREATE TABLE backups (
    id INTEGER PRIMARY KEY,
    run_id INTEGER REFERENCES runs(id),
    file TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT,
    plain_bytes INTEGER,
    plain_sha256 TEXT,
    source_path TEXT,
    source_bytes INTEGER,
    page_size INTEGER,
    page_count INTEGER,
    sqlite_version TEXT,
    mode TEXT,
    integrity TEXT,
    duration_ms INTEGER,
    compression TEXT NOT NULL DEFAULT 'none',
    encryption TEXT NOT NULL DEFAULT 'none',
    fingerprint TEXT,
    recovered INTEGER NOT NULL DEFAULT 0,
    deleted_at TEXT
  );

  CREATE TABLE uploads (
    id INTEGER PRIMARY KEY,
    run_id INTEGER,
    backup_file TEXT NOT NULL,
    destination TEXT NOT NULL,
    status TEXT NOT NULL,
    remote_id TEXT,
    link TEXT,
    bytes INTEGER,
    duration_ms INTEGER,
    attempts INTEGER,
    error TEXT,
    at TEXT NOT NULL
  );
  CREATE INDEX uploads_file ON uploads(backup_file, destination);

  CREATE TABLE deletions (
    id INTEGER PRIMARY KEY,
    run_id INTEGER,
    backup_file TEXT NOT NULL,
    destination TEXT NOT NULL,
    reasons TEXT,
    status TEXT NOT NULL,
    error TEXT,
    at TEXT NOT NULL
  );

  CREATE TABLE notifications (
    id INTEGER PRIMARY KEY,
    run_id INTEGER,
    channel TEXT NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    http_status INTEGER,
    error TEXT,
    attempts INTEGER NOT NULL,
    at TEXT NOT NULL
  );

  CREATE TABLE verifications (
    id INTEGER PRIMARY KEY,
    backup_file TEXT NOT NULL,
    destination TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    details TEXT,
    at TEXT NOT NULL
  );

  CREATE TABLE restores (
    id INTEGER PRIMARY KEY,
    backup_file TEXT NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    safety_copy TEXT,
    status TEXT NOT NULL,
    error TEXT,
    at TEXT NOT NULL
  );
  `,
  // 2: what retention and restore need to know about each backup.
  `
  ALTER TABLE backups ADD COLUMN trigger TEXT;
  ALTER TABLE backups ADD COLUMN journal_mode TEXT;
  ALTER TABLE backups ADD COLUMN artifact_checked INTEGER NOT NULL DEFAULT 0;
  CREATE INDEX verifications_file ON verifications(backup_file, destination, id);
  `,
  // 3: the status page reads the log on every view: the newest upload per destination and the last 90 days
  // become index lookups, and what a destination holds (uploads not deleted since) one probe per upload
  // instead of a scan of every deletion.
  `
  CREATE INDEX deletions_file ON deletions(backup_file, destination);
  CREATE INDEX uploads_destination ON uploads(destination, id);
  CREATE INDEX uploads_destination_status ON uploads(destination, status, id);
  CREATE INDEX backups_created ON backups(created_at);
  `,
];
