import fs from 'node:fs';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { BackupManager } from '../backup/manager.js';
import { CATALOG_DIR } from '../catalog/index.js';
import type { DatabaseTarget } from '../config/index.js';
import { parseBackupName, timeFromBackupName } from '../naming.js';
import { EXIT, LitekeepError } from '../util/errors.js';
import type { Candidate } from './restore.js';

/**
 * A backup file given by its path (`litekeep restore /mnt/usb/backup-2026-03-01-030000.db.zst`): copied off a
 * disk, downloaded by hand, or left by the old Python module. Its name says how it is packed; its sha256 is
 * checked when the activity log of its own folder, or of the database's backup folder, recorded it.
 */
export function candidateFromFile(target: DatabaseTarget, file: string): Candidate {
  const full = path.resolve(file);
  const name = path.basename(full);
  const stat = fs.statSync(full, { throwIfNoEntry: false });
  if (!stat?.isFile()) {
    throw new LitekeepError(
      `${full} is not a file; give the path of a backup file, or a name from 'litekeep list'`,
      {
        exitCode: EXIT.usage,
        stage: 'restore',
      },
    );
  }
  const parsed = parseBackupName(name);
  if (!parsed) {
    throw new LitekeepError(
      `${name} is not named like a litekeep backup (backup-YYYY-MM-DD-HHMMSS.db, then .zst or .gz, then .age): ` +
        `the name says how the file is packed; rename it to match`,
      { exitCode: EXIT.usage, stage: 'restore' },
    );
  }
  const folder = path.dirname(full);
  const record = recordOf({ ...target, backupDir: folder }, name) ?? recordOf(target, name);
  const timeZone = target.settings.timeZone ?? 'UTC';
  return {
    name,
    time: record ? new Date(record.createdAt) : timeFromBackupName(parsed, timeZone),
    bytes: stat.size,
    sha256: record?.sha256,
    plainSha256: record?.plainSha256,
    fingerprint: record?.fingerprint,
    journalMode: record?.journalMode,
    source: folder,
    open: async () => fs.createReadStream(full),
  };
}

/** What the activity log of a backup folder knows of a file, without creating a log where there is none. */
function recordOf(target: DatabaseTarget, name: string) {
  if (!fs.existsSync(path.join(target.backupDir, CATALOG_DIR))) return undefined;
  const manager = new BackupManager(target, { readOnly: true });
  try {
    return manager.catalog.getBackup(name);
  } finally {
    manager.close();
  }
}

/** The same candidate, reporting the bytes read from it to `onProgress` under `label`. */
export function withProgress(
  candidate: Candidate,
  label: string,
  onProgress?: (stage: string, bytes: number, total?: number) => void,
): Candidate {
  if (!onProgress) return candidate;
  return {
    ...candidate,
    open: async (signal?: AbortSignal) => {
      const source: Readable = await candidate.open(signal);
      let bytes = 0;
      // Counted on the way through (a 'data' listener would start the stream before its reader is attached).
      const counted = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          bytes += chunk.length;
          onProgress(label, bytes, candidate.bytes);
          done(null, chunk);
        },
      });
      source.on('error', (error) => counted.destroy(error));
      // A reader that gives up destroys what it reads: the file or the HTTP body below must close too.
      counted.on('close', () => source.destroy());
      return source.pipe(counted);
    },
  };
}
