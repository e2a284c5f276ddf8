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
  // 4: what the status page, /healthz and /metrics read on every view, without walking the whole history: the
  // backups still there (a handful among every one ever made), the runs counted by status, each copy's newest
  // verdict, and the copies each destination holds, kept up to date by triggers as uploads and deletions are
  // recorded. A copy is held when its newest successful upload there is later than every successful removal
  // from there (a removal at the same instant wins): the rule the query this table replaces applied.
  `
  CREATE INDEX backups_live ON backups(created_at) WHERE deleted_at IS NULL;
  CREATE INDEX runs_status ON runs(status);
  CREATE INDEX verifications_verdict ON verifications(backup_file, destination, id)
    WHERE status IN ('ok', 'failed');

  CREATE TABLE held_copies (
    destination TEXT NOT NULL,
    backup_file TEXT NOT NULL,
    uploaded_at TEXT NOT NULL,
    PRIMARY KEY (destination, backup_file)
  ) WITHOUT ROWID;

  INSERT INTO held_copies (destination, backup_file, uploaded_at)
    SELECT u.destination, u.backup_file, u.at FROM
      (SELECT destination, backup_file, MAX(at) AS at FROM uploads WHERE status = 'ok'
       GROUP BY destination, backup_file) u
    WHERE NOT EXISTS (SELECT 1 FROM deletions d WHERE d.status = 'ok' AND d.destination = u.destination
      AND d.backup_file = u.backup_file AND d.at >= u.at);

  -- An upload makes a copy held unless a removal at or after it is recorded already (records out of order).
  CREATE TRIGGER held_copies_upload AFTER INSERT ON uploads WHEN NEW.status = 'ok'
  BEGIN
    INSERT INTO held_copies (destination, backup_file, uploaded_at)
      SELECT NEW.destination, NEW.backup_file, NEW.at
      WHERE NOT EXISTS (SELECT 1 FROM deletions d WHERE d.status = 'ok' AND d.destination = NEW.destination
        AND d.backup_file = NEW.backup_file AND d.at >= NEW.at)
      ON CONFLICT (destination, backup_file) DO UPDATE SET uploaded_at = MAX(uploaded_at, excluded.uploaded_at);
  END;

  -- A removal ends the copy uploaded at or before it; one uploaded later stays.
  CREATE TRIGGER held_copies_deletion AFTER INSERT ON deletions WHEN NEW.status = 'ok'
  BEGIN
    DELETE FROM held_copies WHERE destination = NEW.destination AND backup_file = NEW.backup_file
      AND uploaded_at <= NEW.at;
  END;
  `,
];
