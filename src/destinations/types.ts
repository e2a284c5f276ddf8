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
}

export interface RemoteObject {
  /** The backup's file name, e.g. `backup-2026-03-01-030000.db.zst.age`. */
  name: string;
  /** Destination-specific id (Drive file id, S3 key, local path). */
  id: string;
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
 * One place a backup can live. Every implementation stores files under the names litekeep gives them,
 * and only ever lists or removes files it can recognise as its own.
 */
export interface Destination {
  readonly name: string;
  readonly type: string;
  /** Upload a local artifact. `localPath` is given so that implementations may re-read it on retry. */
  put(localPath: string, name: string, metadata: ArtifactMetadata, options?: PutOptions): Promise<PutResult>;
  list(): Promise<RemoteObject[]>;
  stat(name: string): Promise<RemoteObject | undefined>;
  /** A stream of the stored bytes; `signal` stops the download (the stream then errors). */
  get(name: string, options?: { signal?: AbortSignal }): Promise<Readable>;
  remove(name: string): Promise<void>;
  /**
   * Destinations whose interrupted uploads keep costing (S3 multipart parts): aborts those `isAbandoned`
   * accepts. Called at the start of each run, under the database's lock.
   */
  abortIncompleteUploads?(isAbandoned: (upload: IncompleteUpload) => boolean): Promise<IncompleteUploadSweep>;
}
