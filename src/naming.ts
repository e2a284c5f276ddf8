import crypto from 'node:crypto';
import { compactStamp, zonedToDate } from './util/time.js';

/**
 * The one place that knows how litekeep names its files:
 * `backup-YYYY-MM-DD-HHMMSS[-N].db[.gz|.zst][.age]`, wall-clock time in the configured zone.
 * `-N` appears only when another backup already took that second.
 */
export type Compression = 'none' | 'gzip' | 'zstd';
export type Encryption = 'none' | 'age';

export interface ParsedBackupName {
  name: string;
  stamp: string;
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  sequence: number;
  compression: Compression;
  encryption: Encryption;
}

const NAME_PATTERN =
  /^backup-(\d{4})-(\d{2})-(\d{2})-(\d{2})(\d{2})(\d{2})(?:-(\d{1,4}))?\.db(\.gz|\.zst)?(\.age)?$/;

export const BACKUP_PREFIX = 'backup-';

export function compressionExtension(compression: Compression): string {
  return compression === 'gzip' ? '.gz' : compression === 'zstd' ? '.zst' : '';
}

export function encryptionExtension(encryption: Encryption): string {
  return encryption === 'age' ? '.age' : '';
}

export function backupFileName(
  time: Date,
  timeZone: string,
  options: { sequence?: number; compression?: Compression; encryption?: Encryption } = {},
): string {
  const sequence = options.sequence ? `-${options.sequence}` : '';
  return (
    `${BACKUP_PREFIX}${compactStamp(time, timeZone)}${sequence}.db` +
    compressionExtension(options.compression ?? 'none') +
    encryptionExtension(options.encryption ?? 'none')
  );
}

export function parseBackupName(name: string): ParsedBackupName | undefined {
  const m = NAME_PATTERN.exec(name);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59)
    return undefined;
  return {
    name,
    stamp: `${m[1]}-${m[2]}-${m[3]}-${m[4]}${m[5]}${m[6]}`,
    year,
    month,
    day,
    hour,
    minute,
    second,
    sequence: m[7] ? Number(m[7]) : 0,
    compression: m[8] === '.gz' ? 'gzip' : m[8] === '.zst' ? 'zstd' : 'none',
    encryption: m[9] ? 'age' : 'none',
  };
}

/** Whether a file name looks like one of ours but could not be parsed (reported, never deleted). */
export function looksLikeBackupName(name: string): boolean {
  return name.startsWith(BACKUP_PREFIX) && /\.db(\.|$)/.test(name) && !name.includes('.tmp');
}

/** The instant a backup name stands for, read in the zone it was written in. */
export function timeFromBackupName(parsed: ParsedBackupName, timeZone: string): Date {
  return zonedToDate(parsed, timeZone);
}

/** Orders names by the time they encode, then by sequence: newest first. */
export function compareBackupNamesNewestFirst(a: ParsedBackupName, b: ParsedBackupName): number {
  if (a.stamp !== b.stamp) return a.stamp < b.stamp ? 1 : -1;
  return b.sequence - a.sequence;
}

/** Temp files live beside the target so the final rename is atomic; their names never parse as backups. */
export function tempNameFor(finalName: string): string {
  return `.${finalName}.${process.pid}.${Date.now().toString(36)}.tmp`;
}

/**
 * A repository object's temp file, beside it in its folder (local, SFTP, rclone) or in the state folder:
 * `.<name>.<pid>.<random hex>.tmp`, distinct for parallel uploads of one name in one process.
 */
export function objectTempName(name: string): string {
  return `.${name}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
}

/** An `objectTempName`: group 1 is the pid of the process that writes it (swept once that process is gone). */
export const OBJECT_TEMP = /^\..+\.(\d+)\.[0-9a-f]+\.tmp$/;

export function isTempName(name: string): boolean {
  return name.startsWith('.') && /\.tmp(?:-journal|-wal|-shm)?$/.test(name);
}

/**
 * A temp file litekeep writes beside backups (tempNameFor), with SQLite's side files of one: group 1 is the pid
 * of the process that writes it, so that the next run can sweep those of processes that are gone.
 */
export const TEMP_OF_PROCESS = /^\.backup-.*\.(\d+)\.[0-9a-z]+\.tmp(?:-journal|-wal|-shm)?$/;

/**
 * The folder (or key segment) of one host's copies on a shared destination: `<database>/<host>/<file>`, so
 * that two machines that name a backup alike can never overwrite or remove each other's.
 */
export function hostSegment(host: string): string {
  return encodeURIComponent(host);
}

export function hostFromSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
