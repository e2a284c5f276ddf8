import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import { BackupManager } from '../backup/manager.js';
import type { Catalog, Fingerprint } from '../catalog/index.js';
import type { DatabaseTarget } from '../config/index.js';
import { openDestination } from '../destinations/factory.js';
import type { RemoteObject } from '../destinations/types.js';
import { parseBackupName, timeFromBackupName } from '../naming.js';
import { createSha256Counter, openArtifact } from '../pipeline/index.js';
import { compareFingerprints, inspectDatabase } from '../snapshot/index.js';
import { EXIT, LitekeepError, oneLine } from '../util/errors.js';
import { fsyncDir } from '../util/fs.js';
import { compactStamp } from '../util/time.js';
import { isLockedBySqlite, processesUsing } from './in-use.js';

export interface Candidate {
  name: string;
  time: Date;
  bytes: number;
  /** sha256 of the artifact as stored, from the catalog or the remote's metadata. */
  sha256?: string;
  plainSha256?: string;
  fingerprint?: Fingerprint;
  /** Where it is read from: `local` or a destination name. */
  source: string;
  open: () => Promise<Readable>;
}

export interface SelectOptions {
  /** A backup file name, `latest` (default), or undefined with `at`. */
  name?: string;
  /** The newest backup taken at or before this time. */
  at?: Date;
  /** `local` (default) or a destination name (`drive`, an s3 destination...). */
  from?: string;
}

export interface DecryptOptions {
  identities?: string[];
  passphrase?: string;
}

/** Every backup available from a source, newest first, with what is known to verify it. */
export async function listCandidates(target: DatabaseTarget, from = 'local'): Promise<Candidate[]> {
  const manager = new BackupManager(target);
  try {
    if (from === 'local') {
      const { backups } = await manager.listBackups();
      return backups.map((b) => ({
        name: b.name,
        time: b.time,
        bytes: b.bytes,
        sha256: b.record?.sha256,
        plainSha256: b.record?.plainSha256,
        fingerprint: b.record?.fingerprint,
        source: 'local',
        open: async () => fs.createReadStream(b.path),
      }));
    }
    const destination = await openDestination(target, from);
    const objects = await destination.list();
    const known = new Map(manager.catalog.listBackups({ includeDeleted: true }).map((r) => [r.file, r]));
    return objects
      .map((o: RemoteObject) => {
        const parsed = parseBackupName(o.name)!;
        const record = known.get(o.name);
        const time = o.metadata?.backupTime
          ? new Date(o.metadata.backupTime)
          : record
            ? new Date(record.createdAt)
            : timeFromBackupName(parsed, manager.timeZone);
        return {
          name: o.name,
          time,
          bytes: o.bytes,
          sha256: o.metadata?.sha256 ?? record?.sha256,
          plainSha256: o.metadata?.plainSha256 ?? record?.plainSha256,
          fingerprint: record?.fingerprint,
          source: from,
          open: () => destination.get(o.name),
        };
      })
      .sort((a, b) => b.time.getTime() - a.time.getTime() || (a.name < b.name ? 1 : -1));
  } finally {
    manager.close();
  }
}

export function pickCandidate(candidates: Candidate[], options: SelectOptions): Candidate {
  const from = options.from ?? 'local';
  if (candidates.length === 0) {
    throw new LitekeepError(`no backups found in ${from}; check --from and the backup folder`, {
      exitCode: EXIT.failed,
      stage: 'restore',
    });
  }
  if (options.name && options.name !== 'latest') {
    const found = candidates.find((c) => c.name === options.name || c.name.startsWith(`${options.name}.`));
    if (!found) {
      throw new LitekeepError(
        `backup ${options.name} not found in ${from}; run 'litekeep list' to see the names`,
        {
          exitCode: EXIT.usage,
          stage: 'restore',
        },
      );
    }
    return found;
  }
  if (options.at) {
    const found = candidates.find((c) => c.time.getTime() <= options.at!.getTime());
    if (!found) {
      throw new LitekeepError(
        `no backup in ${from} was taken at or before ${options.at.toISOString()}; the oldest is from ${candidates[candidates.length - 1].time.toISOString()}`,
        { exitCode: EXIT.failed, stage: 'restore' },
      );
    }
    return found;
  }
  return candidates[0];
}

export interface FetchedBackup {
  plainPath: string;
  sha256: string;
  plainSha256: string;
  integrity: string;
  fingerprint: Fingerprint;
}

/**
 * Streams a backup into `plainPath` (a temp name), checking the artifact's sha256 against what was recorded,
 * undoing compression and encryption, and running integrity_check. Removes the file on any failure.
 */
export async function fetchAndCheck(
  candidate: Candidate,
  plainPath: string,
  decrypt: DecryptOptions,
  integrityMode: 'full' | 'quick' = 'full',
): Promise<FetchedBackup> {
  const parsed = parseBackupName(candidate.name)!;
  const artifactHash = createSha256Counter();
  const plainHash = createSha256Counter();
  try {
    const packed = parsed.compression !== 'none' || parsed.encryption !== 'none';
    if (parsed.encryption === 'age' && !decrypt.identities?.length && !decrypt.passphrase) {
      throw new LitekeepError(
        `${candidate.name} is encrypted; pass --identity FILE (or LITEKEEP_AGE_IDENTITY) or set LITEKEEP_PASSPHRASE`,
        { exitCode: EXIT.usage, stage: 'restore' },
      );
    }
    const input = await candidate.open();
    // The artifact's bytes are hashed as they pass, before any decoding.
    input.on('error', (error) => artifactHash.destroy(error));
    const hashed = input.pipe(artifactHash);
    const decoded = packed
      ? openArtifact(hashed, {
          compression: parsed.compression,
          encrypted: parsed.encryption === 'age',
          identities: decrypt.identities,
          passphrase: decrypt.passphrase,
        })
      : hashed;
    await pipeline(decoded, plainHash, fs.createWriteStream(plainPath, { mode: 0o600, flags: 'wx' }));
    const artifact = { sha256: artifactHash.sha256, bytes: artifactHash.bytes };
    const plain = { sha256: plainHash.sha256, bytes: plainHash.bytes };
    if (candidate.sha256 && artifact.sha256 !== candidate.sha256) {
      throw new LitekeepError(
        `${candidate.name} from ${candidate.source} is damaged: its sha256 is ${artifact.sha256.slice(0, 12)}…, ` +
          `${candidate.sha256.slice(0, 12)}… was recorded; restore another backup`,
        { stage: 'verify' },
      );
    }
    if (candidate.plainSha256 && plain.sha256 !== candidate.plainSha256) {
      throw new LitekeepError(
        `${candidate.name} from ${candidate.source} does not decode to the database that was backed up (sha256 differs); restore another backup`,
        { stage: 'verify' },
      );
    }
    const handle = await fsp.open(plainPath, 'r');
    await handle.sync();
    await handle.close();
    let facts;
    try {
      facts = inspectDatabase(plainPath, integrityMode);
    } catch (error) {
      throw new LitekeepError(`${candidate.name} does not open as a SQLite database (${oneLine(error)})`, {
        stage: 'verify',
      });
    }
    if (facts.integrity !== 'ok') {
      throw new LitekeepError(
        `${candidate.name} fails integrity_check (${facts.integrity}); restore another backup`,
        {
          stage: 'verify',
        },
      );
    }
    return {
      plainPath,
      sha256: artifact.sha256,
      plainSha256: plain.sha256,
      integrity: facts.integrity,
      fingerprint: facts.fingerprint,
    };
  } catch (error) {
    await fsp.rm(plainPath, { force: true });
    if (error instanceof LitekeepError) throw error;
    throw new LitekeepError(`cannot read ${candidate.name} from ${candidate.source}: ${oneLine(error)}`, {
      stage: 'verify',
      cause: error,
    });
  }
}

export interface RestoreOptions extends SelectOptions, DecryptOptions {
  /** Restore into this path instead of the configured database. */
  to?: string;
  /** Restore even when another process has the target open. */
  force?: boolean;
  /** Fetch and check, change nothing. */
  dryRun?: boolean;
  onStep?: (message: string) => void;
  /** For tests: stop right before the final rename, as a crash would. */
  crashBeforeRename?: boolean;
}

export interface RestoreResult {
  backup: string;
  source: string;
  takenAt: string;
  target: string;
  safetyCopy?: string;
  sha256: string;
  plainSha256: string;
  integrity: string;
  dryRun: boolean;
  tables: Record<string, number>;
}

const SIDE_FILES = ['-wal', '-shm', '-journal'];

/**
 * Brings a backup back over the target database, safely: fetch → verify → check nobody has the target open →
 * keep the current database (and its -wal/-shm/-journal) as `<db>.before-restore-<timestamp>` → atomic rename →
 * fsync. Fails without touching the target.
 */
export async function restoreBackup(
  target: DatabaseTarget,
  options: RestoreOptions = {},
): Promise<RestoreResult> {
  const step = options.onStep ?? (() => {});
  const from = options.from ?? 'local';
  const destinationPath = path.resolve(options.to ?? target.path);
  const candidate = pickCandidate(await listCandidates(target, from), options);
  step(`selected ${candidate.name} from ${from}, taken ${candidate.time.toISOString()}`);

  const dir = path.dirname(destinationPath);
  if (!fs.existsSync(dir)) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const temp = path.join(
    dir,
    `.${path.basename(destinationPath)}.restore-${process.pid}-${Date.now().toString(36)}.tmp`,
  );
  const catalog = new BackupManager(target).catalog;
  const record = (status: 'ok' | 'failed', error?: string, safetyCopy?: string) => {
    try {
      catalog.recordRestore({
        backupFile: candidate.name,
        source: from,
        target: destinationPath,
        safetyCopy,
        status,
        error,
      });
    } catch {
      // the restore itself matters more than its record
    }
  };
  try {
    const fetched = await fetchAndCheck(candidate, temp, options, 'full');
    step(
      `fetched and verified: sha256 ${candidate.sha256 ? 'matches the record' : 'not recorded, computed'} ${fetched.sha256.slice(0, 12)}…, integrity ${fetched.integrity}`,
    );
    const result: RestoreResult = {
      backup: candidate.name,
      source: from,
      takenAt: candidate.time.toISOString(),
      target: destinationPath,
      sha256: fetched.sha256,
      plainSha256: fetched.plainSha256,
      integrity: fetched.integrity,
      dryRun: options.dryRun === true,
      tables: fetched.fingerprint.tables,
    };
    if (options.dryRun) {
      await fsp.rm(temp, { force: true });
      step('dry run: the target was not changed');
      return result;
    }

    if (fs.existsSync(destinationPath)) {
      const users = processesUsing(destinationPath);
      const locked =
        users.length === 0 && !fs.existsSync('/proc/self/fd') && isLockedBySqlite(destinationPath);
      if ((users.length || locked) && !options.force) {
        const who = users.length
          ? users.map((u) => `pid ${u.pid} (${u.command})`).join(', ')
          : 'another process (it holds a lock)';
        throw new LitekeepError(
          `${destinationPath} is open by ${who}; stop it first, or pass --force to restore anyway`,
          { exitCode: EXIT.failed, stage: 'restore' },
        );
      }
      result.safetyCopy = await keepSafetyCopy(destinationPath, target.settings.timeZone!);
      step(`kept the current database as ${result.safetyCopy}`);
    } else {
      // A stale journal next to a missing database would be applied to the restored one.
      await moveSideFilesAside(destinationPath, `${destinationPath}.stale-${Date.now()}`);
    }
    if (options.crashBeforeRename) throw new LitekeepError('simulated crash before rename');
    await fsp.rename(temp, destinationPath);
    await fsyncDir(dir);
    step(`restored ${candidate.name} to ${destinationPath}`);
    record('ok', undefined, result.safetyCopy);
    return result;
  } catch (error) {
    if (!options.crashBeforeRename) await fsp.rm(temp, { force: true });
    record('failed', oneLine(error));
    throw error instanceof LitekeepError
      ? error
      : new LitekeepError(`restore failed: ${oneLine(error)}`, { stage: 'restore', cause: error });
  } finally {
    catalog.close();
  }
}

async function moveSideFilesAside(dbPath: string, prefix: string): Promise<void> {
  for (const suffix of SIDE_FILES) {
    try {
      await fsp.rename(dbPath + suffix, prefix + suffix);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
}

/**
 * Keeps the current database as `<db>.before-restore-<stamp>` (plus its side files), after folding its WAL into
 * it so that the main file alone is the whole current database: a crash between this step and the final rename
 * then leaves the old database complete, never old pages mixed with a stale WAL.
 */
async function keepSafetyCopy(dbPath: string, timeZone: string): Promise<string> {
  let safety = `${dbPath}.before-restore-${compactStamp(new Date(), timeZone)}`;
  for (let n = 1; fs.existsSync(safety); n++)
    safety = `${dbPath}.before-restore-${compactStamp(new Date(), timeZone)}-${n}`;
  if (fs.existsSync(`${dbPath}-wal`) && fs.statSync(`${dbPath}-wal`).size > 0) {
    // Keep the WAL exactly as it was before checkpointing changes anything.
    await fsp.copyFile(`${dbPath}-wal`, `${safety}-wal`, fs.constants.COPYFILE_EXCL);
    try {
      const db = new Database(dbPath, { fileMustExist: true, timeout: 2000 });
      try {
        db.pragma('wal_checkpoint(TRUNCATE)');
      } finally {
        db.close();
      }
    } catch {
      // A database too broken to checkpoint is kept as it is.
    }
  }
  try {
    await fsp.link(dbPath, safety);
  } catch {
    await fsp.copyFile(dbPath, safety, fs.constants.COPYFILE_EXCL);
  }
  for (const suffix of SIDE_FILES) {
    if (!fs.existsSync(dbPath + suffix)) continue;
    if (fs.existsSync(safety + suffix)) await fsp.rm(dbPath + suffix);
    else await fsp.rename(dbPath + suffix, safety + suffix);
  }
  await fsyncDir(path.dirname(dbPath));
  return safety;
}

export interface VerifyResult {
  backup: string;
  source: string;
  status: 'ok' | 'failed';
  error?: string;
  sha256?: string;
  integrity?: string;
  fingerprint?: 'match' | 'not recorded' | string;
}

/**
 * Proves that a backup restores: fetch into a temp folder, check sha256, unpack, integrity_check, and compare
 * the fingerprint recorded at backup time. The result goes into the catalog.
 */
export async function verifyBackup(
  target: DatabaseTarget,
  options: SelectOptions & DecryptOptions & { all?: boolean } = {},
): Promise<VerifyResult[]> {
  const from = options.from ?? 'local';
  const candidates = await listCandidates(target, from);
  const chosen = options.all ? candidates : [pickCandidate(candidates, options)];
  if (chosen.length === 0) {
    throw new LitekeepError(`no backups found in ${from}`, { stage: 'verify' });
  }
  const manager = new BackupManager(target);
  const workDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'litekeep-verify-'));
  await fsp.chmod(workDir, 0o700);
  const results: VerifyResult[] = [];
  try {
    for (const candidate of chosen) {
      results.push(await verifyOne(candidate, workDir, options, manager.catalog));
    }
  } finally {
    await fsp.rm(workDir, { recursive: true, force: true });
    manager.close();
  }
  return results;
}

async function verifyOne(
  candidate: Candidate,
  workDir: string,
  decrypt: DecryptOptions,
  catalog: Catalog,
): Promise<VerifyResult> {
  const plain = path.join(workDir, `${candidate.name}.db`);
  const result: VerifyResult = { backup: candidate.name, source: candidate.source, status: 'failed' };
  try {
    const fetched = await fetchAndCheck(candidate, plain, decrypt, 'full');
    result.sha256 = fetched.sha256;
    result.integrity = fetched.integrity;
    const expected = candidate.fingerprint ?? catalog.getBackup(candidate.name)?.fingerprint;
    if (expected) {
      const difference = compareFingerprints(expected, fetched.fingerprint);
      if (difference) throw new LitekeepError(`${candidate.name}: ${difference}`, { stage: 'verify' });
      result.fingerprint = 'match';
    } else result.fingerprint = 'not recorded';
    result.status = 'ok';
  } catch (error) {
    result.error = oneLine(error);
  } finally {
    await fsp.rm(plain, { force: true });
  }
  try {
    catalog.recordVerification({
      backupFile: candidate.name,
      destination: candidate.source,
      status: result.status,
      error: result.error,
      details: { sha256: result.sha256, integrity: result.integrity, fingerprint: result.fingerprint },
    });
  } catch {
    // recorded when possible
  }
  return result;
}
