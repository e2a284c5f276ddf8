import type { Readable } from 'node:stream';

/** Facts litekeep stores beside every remote copy so that a restore on a new machine can verify it. */
export interface ArtifactMetadata {
  /** sha256 (hex) of the artifact exactly as stored (after compression and encryption). */
  sha256: string;
  /** Size in bytes of the artifact as stored. */
  bytes: number;
  /** sha256 (hex) of the plain SQLite database inside the artifact. */
  plainSha256?: string;
  /** Size in bytes of the plain SQLite database. */
  plainBytes?: number;
  /** Name of the database the backup was taken of (config `name`, or the file's base name). */
  sourceName: string;
  /** When the snapshot was taken (ISO-8601, UTC). */
  backupTime: string;
  compression: 'none' | 'gzip' | 'zstd';
  encryption: 'none' | 'age';
  litekeepVersion: string;
  /** Host that made the backup: remote retention only ever removes this host's copies. */
  host?: string;
  /** `manual` or `scheduled`: retention keeps the two as separate series. */
  trigger?: string;
  /** Journal mode of the source database, restored with it into a new file. */
  journalMode?: string;
}

export interface RemoteObject {
  /** The backup's file name, e.g. `backup-2026-03-01-030000.db.zst.age`. */
  name: string;
  /** Destination-specific id (Drive file id, S3 key, local path): what get and remove act on. */
  id: string;
  /**
   * The machine that made it: from the copy's place (`<database>/<host>/`) or, for copies written before host
   * folders, from its metadata; undefined when nothing says (those count as this host's own).
   */
  host?: string;
  /** Written before host folders existed (`<database>/<file>`): still listed, restored and pruned. */
  legacy?: boolean;
  bytes: number;
  /** Parsed litekeep metadata when the remote holds it. */
  metadata?: Partial<ArtifactMetadata>;
  /** Human link (Drive `webViewLink`), when the destination has one. */
  link?: string;
  modifiedTime?: string;
}

export interface PutResult {
  id: string;
  link?: string;
  bytes: number;
  attempts: number;
  durationMs: number;
}

export interface PutOptions {
  signal?: AbortSignal;
  /** Called with bytes confirmed by the remote so far. */
  onProgress?: (bytesDone: number) => void;
}

/** An upload that was started and never completed (an S3 multipart upload). */
export interface IncompleteUpload {
  /** The backup's file name. */
  name: string;
  /** Destination-specific id (the S3 UploadId). */
  id: string;
  /** When the server says it began, when it says. */
  startedAt?: Date;
}

export interface IncompleteUploadSweep {
  aborted: string[];
  /** `name: why`, for each that could not be aborted. */
  failed: string[];
}

/**
 * One place a backup can live, shared by any number of machines. Every implementation keeps each host's copies
 * apart (`<database>/<host>/<file>` or the host in the copy's metadata), writes only this host's, never
 * overwrites an existing copy with other bytes, and only ever removes this host's copies, by id.
 */
export interface Destination {
  readonly name: string;
  readonly type: string;
  /**
   * Upload a local artifact as this host's copy. `localPath` is given so that implementations may re-read it
   * on retry. A copy of that name already there with the same sha256 is success; with other bytes, an error.
   */
  put(localPath: string, name: string, metadata: ArtifactMetadata, options?: PutOptions): Promise<PutResult>;
  /** Every host's copies of this database, each with its `host`. */
  list(): Promise<RemoteObject[]>;
  /** This host's copy of `name` (or a pre-host-folder copy of it that is this host's). */
  stat(name: string): Promise<RemoteObject | undefined>;
  /** A stream of the stored bytes of one copy; `signal` stops the download (the stream then errors). */
  get(object: RemoteObject, options?: { signal?: AbortSignal }): Promise<Readable>;
  /** Removes one copy by its id; refuses another host's. */
  remove(object: RemoteObject): Promise<void>;
  /**
   * Destinations whose interrupted uploads keep costing (S3 multipart parts): aborts those `isAbandoned`
   * accepts. Called at the start of each run, under the database's lock.
   */
  abortIncompleteUploads?(isAbandoned: (upload: IncompleteUpload) => boolean): Promise<IncompleteUploadSweep>;
}

/**
 * Whether a copy is `host`'s to remove: it says so, or nothing says whose it is (a copy from before litekeep
 * recorded hosts can only be this installation's own).
 */
export function isOwnedBy(object: Pick<RemoteObject, 'host'>, host: string): boolean {
  return object.host === undefined || object.host === host;
}
