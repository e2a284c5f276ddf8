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
import { uniqueByName } from '../backup/offsite.js';
import { openDestination } from '../destinations/factory.js';
import type { RemoteObject } from '../destinations/types.js';
import { parseBackupName, timeFromBackupName } from '../naming.js';
import { createSha256Counter, openArtifact } from '../pipeline/index.js';
import { compareFingerprints, inspectDatabase } from '../snapshot/index.js';
import { EXIT, LitekeepError, oneLine } from '../util/errors.js';
import { removeTempsOfDeadProcesses } from '../util/process.js';
import { fsyncDir, fsyncFile } from '../util/fs.js';
import { compactStamp, systemTimeZone } from '../util/time.js';
import { describeUsers, isLockedBySqlite, processesUsing } from './in-use.js';

const SIDE_FILES = ['-wal', '-shm', '-journal'];

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
  /** The stored bytes; `signal` stops the transfer. */
  open: (signal?: AbortSignal) => Promise<Readable>;
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
    const objects = uniqueByName(await destination.list());
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
          source: destination.name,
          open: (signal?: AbortSignal) => destination.get(o.name, { signal }),
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
    // An exact name wins over a shorter one given without its .zst/.age suffixes.
    const found =
      candidates.find((c) => c.name === options.name) ??
      candidates.find((c) => c.name.startsWith(`${options.name}.`));
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
  signal?: AbortSignal,
): Promise<FetchedBackup> {
  const parsed = parseBackupName(candidate.name)!;
  const artifactHash = createSha256Counter();
  const plainHash = createSha256Counter();
  let input: Readable | undefined;
  let sink: fsp.FileHandle | undefined;
  try {
    const packed = parsed.compression !== 'none' || parsed.encryption !== 'none';
    if (parsed.encryption === 'age' && !decrypt.identities?.length && decrypt.passphrase === undefined) {
      throw new LitekeepError(
        `${candidate.name} is encrypted; pass --identity FILE (or LITEKEEP_AGE_IDENTITY) or set LITEKEEP_PASSPHRASE`,
        { exitCode: EXIT.usage, stage: 'restore' },
      );
    }
    // Opened before any data flows so that a failure can close it: a stream that is destroyed before its
    // own open() finished would create the file after the cleanup below removed it.
    sink = await fsp.open(plainPath, 'wx', 0o600);
    signal?.throwIfAborted();
    const source = await candidate.open(signal);
    input = source;
    // The artifact's bytes are hashed as they pass, before any decoding.
    source.on('error', (error) => artifactHash.destroy(error));
    const hashed = source.pipe(artifactHash);
    const decoded = packed
      ? openArtifact(hashed, {
          compression: parsed.compression,
          encrypted: parsed.encryption === 'age',
          identities: decrypt.identities,
          passphrase: decrypt.passphrase,
        })
      : hashed;
    const out = sink.createWriteStream();
    // The stream owns the handle from here and closes it, on success and on error alike.
    sink = undefined;
    await pipeline(decoded, plainHash, out, { signal });
    await fsyncFile(plainPath);
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
    // pipe() does not close its source when the reader fails: an HTTP body or a file descriptor would leak.
    input?.destroy();
    await sink?.close().catch(() => {});
    await fsp.rm(plainPath, { force: true });
    // inspectDatabase may leave these beside a file it could not read.
    for (const suffix of SIDE_FILES) await fsp.rm(plainPath + suffix, { force: true });
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
  /** Stops the restore (before the rename: the target stays as it was). */
  signal?: AbortSignal;
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

/**
 * Brings a backup back over the target database, safely: fetch into a temp file beside the target → verify →
 * check that nobody has the target open → keep the current database (and its -wal/-shm/-journal) as
 * `<db>.before-restore-<timestamp>` → fold the target's WAL into it → remove its side files → atomic rename →
 * fsync. Until the rename the target holds the old database, complete; after it, the new one alone. A failure
 * before the safety copy leaves the target byte for byte as it was.
 */
export async function restoreBackup(
  target: DatabaseTarget,
  options: RestoreOptions = {},
): Promise<RestoreResult> {
  const step = options.onStep ?? (() => {});
  const from = options.from ?? 'local';
  const destinationPath = path.resolve(options.to ?? target.path);
  const candidate = pickCandidate(await listCandidates(target, from), options);
  step(`selected ${candidate.name} from ${candidate.source}, taken ${candidate.time.toISOString()}`);

  const dir = path.dirname(destinationPath);
  if (!fs.existsSync(dir)) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  await removeDeadTemps(dir, path.basename(destinationPath));
  const temp = path.join(
    dir,
    `.${path.basename(destinationPath)}.restore-${process.pid}-${Date.now().toString(36)}.tmp`,
  );
  const catalog = new BackupManager(target).catalog;
  const record = (status: 'ok' | 'failed', error?: string, safetyCopy?: string) => {
    try {
      catalog.recordRestore({
        backupFile: candidate.name,
        source: candidate.source,
        target: destinationPath,
        safetyCopy,
        status,
        error,
      });
    } catch {
      // the restore itself matters more than its record
    }
  };
  let safetyCopy: string | undefined;
  try {
    const fetched = await fetchAndCheck(candidate, temp, options, 'full', options.signal);
    options.signal?.throwIfAborted();
    step(
      `fetched into ${path.basename(temp)} and verified: sha256 ${candidate.sha256 ? 'matches the record' : 'not recorded, computed'} ${fetched.sha256.slice(0, 12)}…, integrity ${fetched.integrity}`,
    );
    const result: RestoreResult = {
      backup: candidate.name,
      source: candidate.source,
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
      if (users.length || locked) {
        const who = users.length ? describeUsers(users) : 'another process (it holds a lock)';
        if (!options.force) {
          throw new LitekeepError(
            `${destinationPath} is in use by ${who}; stop it first, or pass --force to restore anyway`,
            { exitCode: EXIT.failed, stage: 'restore' },
          );
        }
        step(`--force: restoring although ${who} uses it`);
      }
      await matchOwnership(temp, destinationPath);
      safetyCopy = await keepSafetyCopy(destinationPath, target.settings.timeZone ?? systemTimeZone());
      result.safetyCopy = safetyCopy;
      step(`kept the current database as ${safetyCopy}`);
      const settled = settle(destinationPath);
      const walLeft =
        fs.existsSync(`${destinationPath}-wal`) && fs.statSync(`${destinationPath}-wal`).size > 0;
      if (settled && walLeft && !options.force) {
        // Removing the WAL now would leave neither the old nor the new database if we crashed before the
        // rename: give up, leaving the target as it was.
        for (const suffix of ['', ...SIDE_FILES]) await fsp.rm(safetyCopy + suffix, { force: true });
        safetyCopy = undefined;
        result.safetyCopy = undefined;
        throw new LitekeepError(
          `${settled}; stop whatever uses ${destinationPath}, or pass --force (a copy of it is kept) to restore anyway`,
          { exitCode: EXIT.failed, stage: 'restore' },
        );
      }
      if (settled) step(`note: ${settled}; the complete previous database is in ${safetyCopy}`);
      // The old database is now whole in its main file, so its side files can go before the rename: a crash
      // in between leaves the old database, never the new one read through the old one's WAL.
      for (const suffix of SIDE_FILES) await fsp.rm(destinationPath + suffix, { force: true });
    } else {
      // A stale journal next to a missing database would be applied to the restored one.
      await moveSideFilesAside(destinationPath, `${destinationPath}.stale-${Date.now()}`);
    }
    await fsyncDir(dir);
    options.signal?.throwIfAborted();
    if (options.crashBeforeRename) throw new LitekeepError('simulated crash before rename');
    await fsp.rename(temp, destinationPath);
    await fsyncDir(dir);
    step(`moved it into place as ${destinationPath}`);
    record('ok', undefined, safetyCopy);
    return result;
  } catch (error) {
    if (!options.crashBeforeRename) await fsp.rm(temp, { force: true });
    record('failed', oneLine(error), safetyCopy);
    throw error instanceof LitekeepError
      ? error
      : new LitekeepError(`restore failed: ${oneLine(error)}`, { stage: 'restore', cause: error });
  } finally {
    catalog.close();
  }
}

/** Removes temp files of earlier restores into this folder whose process is gone (killed mid-restore). */
function removeDeadTemps(dir: string, base: string): Promise<void> {
  const prefix = `.${base}.restore-`.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return removeTempsOfDeadProcesses(dir, new RegExp(`^${prefix}(\\d+)-[0-9a-z]+\\.tmp$`));
}

/** The restored file takes the place of the old one: the application must be able to open it as before. */
async function matchOwnership(file: string, like: string): Promise<void> {
  const stat = await fsp.stat(like);
  await fsp.chmod(file, stat.mode & 0o777);
  if (process.getuid?.() === 0) await fsp.chown(file, stat.uid, stat.gid).catch(() => {});
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
 * Keeps the current database as `<db>.before-restore-<stamp>` with its side files, before anything touches
 * them: the side files are copied byte for byte, the main file hard-linked (copied where links are not
 * supported). The link shares the main file with the target until the rename, so the checkpoint that follows
 * changes both alike; the copied WAL then only repeats pages the main file already holds.
 */
async function keepSafetyCopy(dbPath: string, timeZone: string): Promise<string> {
  const stamp = compactStamp(new Date(), timeZone);
  let safety = `${dbPath}.before-restore-${stamp}`;
  const taken = (name: string) => ['', ...SIDE_FILES].some((s) => fs.existsSync(name + s));
  for (let n = 1; taken(safety); n++) safety = `${dbPath}.before-restore-${stamp}-${n}`;
  const made: string[] = [];
  try {
    for (const suffix of SIDE_FILES) {
      try {
        await fsp.copyFile(dbPath + suffix, safety + suffix, fs.constants.COPYFILE_EXCL);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw error;
      }
      made.push(safety + suffix);
      await fsyncFile(safety + suffix);
    }
    try {
      await fsp.link(dbPath, safety);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw error;
      await fsp.copyFile(dbPath, safety, fs.constants.COPYFILE_EXCL);
      await fsyncFile(safety);
    }
    made.push(safety);
    await fsyncDir(path.dirname(dbPath));
  } catch (error) {
    for (const file of made) await fsp.rm(file, { force: true });
    throw new LitekeepError(
      `cannot keep the current database as ${safety} (${oneLine(error)}); nothing was changed — free space in ${path.dirname(dbPath)} or restore with --to PATH`,
      { stage: 'restore', cause: error },
    );
  }
  return safety;
}

/**
 * Makes the main file alone the whole current database: a hot rollback journal is rolled back (any read does
 * that) and a WAL is checkpointed into it. Returns why that was not possible, or undefined when it was.
 */
function settle(dbPath: string): string | undefined {
  let db: Database.Database | undefined;
  try {
    db = new Database(dbPath, { fileMustExist: true, timeout: 2000 });
    db.prepare('SELECT COUNT(*) FROM sqlite_schema').get();
    if (db.pragma('journal_mode', { simple: true }) !== 'wal') return undefined;
    const [row] = db.pragma('wal_checkpoint(TRUNCATE)') as {
      busy: number;
      log: number;
      checkpointed: number;
    }[];
    if (row.busy) return 'another connection kept its WAL from being folded into the old database';
    return undefined;
  } catch (error) {
    return `the old database could not be opened to fold in its WAL (${oneLine(error)})`;
  } finally {
    db?.close();
  }
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
  options: SelectOptions & DecryptOptions & { all?: boolean; signal?: AbortSignal } = {},
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
      options.signal?.throwIfAborted();
      results.push(await verifyOne(candidate, workDir, options, manager.catalog, options.signal));
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
  signal?: AbortSignal,
): Promise<VerifyResult> {
  const plain = path.join(workDir, `${candidate.name}.db`);
  const result: VerifyResult = { backup: candidate.name, source: candidate.source, status: 'failed' };
  try {
    const fetched = await fetchAndCheck(candidate, plain, decrypt, 'full', signal);
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
    // A missing or unusable identity says nothing about the backup: it is not recorded as a failed verification.
    if (error instanceof LitekeepError && error.exitCode === EXIT.usage) throw error;
    // Nor does being stopped.
    if (signal?.aborted) throw signal.reason;
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
