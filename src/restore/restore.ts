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
import { hostOf, openDestination } from '../destinations/factory.js';
import type { RemoteObject } from '../destinations/types.js';
import { parseBackupName, timeFromBackupName } from '../naming.js';
import {
  CorruptArtifactError,
  createSha256Counter,
  DecryptionError,
  isWrongKey,
  openArtifact,
} from '../pipeline/index.js';
import { compareFingerprints, fingerprintOf, inspectDatabase } from '../snapshot/index.js';
import { EXIT, errorCode, LitekeepError, oneLine } from '../util/errors.js';
import { removeTempsOfDeadProcesses } from '../util/process.js';
import { snapshotCandidates } from '../repository/candidates.js';
import { incrementalSpec } from '../repository/destination.js';
import { RepositoryDamagedError } from '../repository/errors.js';
import { fsyncDir, fsyncDirSync, fsyncFile, fsyncFileSync, publishNoClobber } from '../util/fs.js';
import { compactStamp, systemTimeZone } from '../util/time.js';
import { describeUsers, processesUsing } from './in-use.js';
import {
  changePageSize,
  copyIntoLiveDatabase,
  foldWal,
  LiveDatabaseBusyError,
  probeLiveDatabase,
  setJournalMode,
} from './replace.js';

const SIDE_FILES = ['-wal', '-shm', '-journal'];

/** The backup itself is bad (checksum, decoding, integrity, fingerprint), as opposed to unreadable just now. */
export class DamagedBackupError extends LitekeepError {
  override name = 'DamagedBackupError';
}

/**
 * What a failed verification says about the backup: `failed` when its bytes are proven bad, `error` when it
 * could not be judged (a network failure, a file gone, an identity that opens none of the stanzas).
 */
export function verdictOf(error: unknown, source: string): 'failed' | 'error' {
  if (
    error instanceof DamagedBackupError ||
    error instanceof CorruptArtifactError ||
    error instanceof RepositoryDamagedError
  )
    return 'failed';
  if (error instanceof DecryptionError) return isWrongKey(error) ? 'error' : 'failed';
  // A local file that cannot be read (EIO) is as good as lost; a remote one may answer next time.
  const code = errorCode((error as { cause?: unknown }).cause ?? error);
  return source === 'local' && code !== 'ENOENT' && code !== 'EACCES' ? 'failed' : 'error';
}

export interface Candidate {
  name: string;
  time: Date;
  bytes: number;
  /** sha256 of the artifact as stored, from the catalog or the remote's metadata. */
  sha256?: string;
  plainSha256?: string;
  fingerprint?: Fingerprint;
  /** Journal mode of the database that was backed up (`wal`, `delete`...), when it was recorded. */
  journalMode?: string;
  /** Where it is read from: `local` or a destination name. */
  source: string;
  /** The machine whose copy it is, for a destination several machines share. */
  host?: string;
  open: () => Promise<Readable>;
  /** A snapshot of an incremental destination: its name (id) may be given as a unique prefix. */
  idPrefix?: boolean;
  /**
   * A snapshot of an incremental destination writes its page image into `plainPath` itself, checking every
   * chunk against its id, instead of streaming an artifact through `open`. Facts sealed in its manifest become
   * known once it is opened with the identity.
   */
  fetchImage?: (
    plainPath: string,
    decrypt: DecryptOptions,
    signal?: AbortSignal,
  ) => Promise<{
    sha256: string;
    plainSha256: string;
    expectedPlainSha256?: string;
    fingerprint?: Fingerprint;
    journalMode?: string;
  }>;
}

export interface SelectOptions {
  /** A backup file name, `latest` (default), or undefined with `at`. */
  name?: string;
  /** The newest backup taken at or before this time. */
  at?: Date;
  /** `local` (default) or a destination name (`drive`, an s3 destination...). */
  from?: string;
  /** Whose copies, on a destination several machines share (default: this host's, else the only one's). */
  host?: string;
}

export interface DecryptOptions {
  identities?: string[];
  passphrase?: string;
}

/** Every backup available from a source, newest first, with what is known to verify it. */
export async function listCandidates(
  target: DatabaseTarget,
  from = 'local',
  options: { host?: string } = {},
): Promise<Candidate[]> {
  if (!incrementalSpec(target, from)) return listFileCandidates(target, from, options);
  // An incremental destination holds snapshots, and still the full files it kept before it switched format.
  const snapshots = await snapshotCandidates(target, from, options);
  const files = await listFileCandidates(target, from, options).catch(() => []);
  return [...snapshots, ...files].sort(
    (a, b) => b.time.getTime() - a.time.getTime() || (a.name < b.name ? 1 : -1),
  );
}

async function listFileCandidates(
  target: DatabaseTarget,
  from: string,
  options: { host?: string },
): Promise<Candidate[]> {
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
        journalMode: b.record?.journalMode,
        source: 'local',
        open: async () => fs.createReadStream(b.path),
      }));
    }
    const destination = await openDestination(target, from);
    const own = hostOf(target);
    const objects = await destination.list();
    const host = chooseHost(objects, own, from, target.name, options.host);
    const known = new Map(manager.catalog.listBackups({ includeDeleted: true }).map((r) => [r.file, r]));
    return uniqueByName(objects.filter((o) => (o.host ?? own) === host))
      .map((o: RemoteObject) => {
        const parsed = parseBackupName(o.name)!;
        // Another machine's backup of the same name is not the one this catalog describes.
        const record = host === own ? known.get(o.name) : undefined;
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
          journalMode: o.metadata?.journalMode ?? record?.journalMode,
          source: destination.name,
          host,
          open: () => destination.get(o),
        };
      })
      .sort((a, b) => b.time.getTime() - a.time.getTime() || (a.name < b.name ? 1 : -1));
  } finally {
    manager.close();
  }
}

/**
 * Whose copies a restore reads on a shared destination: the one asked for, else this host's, else the only
 * host's (a new machine restoring another's backups). Several hosts and none of them this one: ask.
 */
function chooseHost(
  objects: RemoteObject[],
  own: string,
  from: string,
  database: string,
  wanted: string | undefined,
): string {
  const hosts = [...new Set(objects.map((o) => o.host ?? own))].sort();
  if (wanted !== undefined) {
    if (objects.length && !hosts.includes(wanted)) {
      throw new LitekeepError(
        `${from} holds no copies of ${database} from host '${wanted}'; hosts there: ${hosts.join(', ')}`,
        { exitCode: EXIT.usage, stage: 'restore' },
      );
    }
    return wanted;
  }
  if (hosts.length <= 1) return hosts[0] ?? own;
  if (hosts.includes(own)) return own;
  throw new LitekeepError(
    `${from} holds copies of ${database} from several hosts (${hosts.join(', ')}); choose one with --host NAME`,
    { exitCode: EXIT.usage, stage: 'restore' },
  );
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
      candidates.find((c) => c.name.startsWith(`${options.name}.`)) ??
      uniqueIdPrefix(candidates, options.name);
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

/** A snapshot named by a unique prefix of its id (at least 4 hex digits), as restic and git accept. */
function uniqueIdPrefix(candidates: Candidate[], prefix: string): Candidate | undefined {
  if (!/^[0-9a-f]{4,}$/.test(prefix)) return undefined;
  const matches = candidates.filter((c) => c.idPrefix && c.name.startsWith(prefix));
  if (matches.length > 1)
    throw new LitekeepError(`snapshot id ${prefix} is ambiguous (${matches.length} match); give more of it`, {
      exitCode: EXIT.usage,
      stage: 'restore',
    });
  return matches[0];
}

export interface FetchedBackup {
  plainPath: string;
  sha256: string;
  plainSha256: string;
  integrity: string;
  pageSize: number;
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
  const artifactHash = createSha256Counter();
  const plainHash = createSha256Counter();
  let input: Readable | undefined;
  let sink: fsp.FileHandle | undefined;
  try {
    async function streamArtifact(): Promise<{
      artifact: { sha256: string; bytes?: number };
      plain: { sha256: string; bytes?: number };
    }> {
      const parsed = parseBackupName(candidate.name)!;
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
      const source = await candidate.open();
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
      return {
        artifact: { sha256: artifactHash.sha256, bytes: artifactHash.bytes },
        plain: { sha256: plainHash.sha256, bytes: plainHash.bytes },
      };
    }
    let artifact: { sha256: string };
    let plain: { sha256: string };
    if (candidate.fetchImage) {
      // A snapshot of an incremental destination: its chunks are fetched, checked and placed by the repository.
      const image = await candidate.fetchImage(plainPath, decrypt, signal);
      artifact = { sha256: image.sha256 };
      plain = { sha256: image.plainSha256 };
      candidate.plainSha256 ??= image.expectedPlainSha256;
      candidate.fingerprint ??= image.fingerprint;
      candidate.journalMode ??= image.journalMode;
    } else {
      ({ artifact, plain } = await streamArtifact());
    }
    if (candidate.sha256 && artifact.sha256 !== candidate.sha256) {
      throw new DamagedBackupError(
        `${candidate.name} from ${candidate.source} is damaged: its sha256 is ${artifact.sha256.slice(0, 12)}…, ` +
          `${candidate.sha256.slice(0, 12)}… was recorded; restore another backup`,
        { stage: 'verify' },
      );
    }
    if (candidate.plainSha256 && plain.sha256 !== candidate.plainSha256) {
      throw new DamagedBackupError(
        `${candidate.name} from ${candidate.source} does not decode to the database that was backed up (sha256 differs); restore another backup`,
        { stage: 'verify' },
      );
    }
    let facts;
    try {
      facts = inspectDatabase(plainPath, integrityMode);
    } catch (error) {
      throw new DamagedBackupError(
        `${candidate.name} does not open as a SQLite database (${oneLine(error)})`,
        {
          stage: 'verify',
        },
      );
    }
    if (facts.integrity !== 'ok') {
      throw new DamagedBackupError(
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
      pageSize: facts.pageSize,
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
    if (signal?.aborted) {
      throw new LitekeepError(`stopped while reading ${candidate.name}; its temp files were removed`, {
        stage: 'verify',
        cause: error,
      });
    }
    throw new LitekeepError(`cannot read ${candidate.name} from ${candidate.source}: ${oneLine(error)}`, {
      stage: 'verify',
      cause: error,
    });
  }
}

export interface RestoreOptions extends SelectOptions, DecryptOptions {
  /** Restore into this path instead of the configured database. */
  to?: string;
  /** Restore even when another connection has the target open (its app must be restarted afterwards). */
  force?: boolean;
  /** Fetch and check, change nothing. */
  dryRun?: boolean;
  /** Stops the restore before the target is touched; temp files are removed. */
  signal?: AbortSignal;
  onStep?: (message: string) => void;
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
  /** How the content got there: through SQLite's backup API into the live file, or a new file put in place. */
  method?: 'sqlite-backup-api' | 'new-file';
  /** Journal mode of the restored database. */
  journalMode?: string;
  /** Other connections had the database open (`--force`): the application must be restarted. */
  appMustRestart?: boolean;
  /** Things the user should know although the restore worked. */
  warnings: string[];
}

/**
 * Brings a backup back, safely. Fetch into a temp file beside the target → check sha256, decode, integrity →
 * then, when the target exists, replace its content through SQLite: probe for other connections with an
 * exclusive lock (refuse unless `--force`), take the live database's write lock, keep the current database
 * as `<db>.before-restore-<timestamp>` while nobody can commit, and copy the verified image in with the
 * online backup API in one transaction. The live file keeps its inode, owner, mode and journal mode; every
 * other connection sees the old content or the new, never a mix, and none writes into a file that is no longer
 * the database. A target that does not exist gets the restored file, in the journal mode the source had.
 * A failure before the copy leaves the target byte for byte as it was.
 */
export async function restoreBackup(
  target: DatabaseTarget,
  options: RestoreOptions = {},
): Promise<RestoreResult> {
  const step = options.onStep ?? (() => {});
  const from = options.from ?? 'local';
  const destinationPath = path.resolve(options.to ?? target.path);
  const candidate = pickCandidate(await listCandidates(target, from, options), options);
  const whose = candidate.host && candidate.host !== hostOf(target) ? ` (host ${candidate.host})` : '';
  step(`selected ${candidate.name} from ${candidate.source}${whose}, taken ${candidate.time.toISOString()}`);

  const dir = path.dirname(destinationPath);
  if (!fs.existsSync(dir)) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  await removeDeadTemps(dir, path.basename(destinationPath));
  const temp = path.join(
    dir,
    `.${path.basename(destinationPath)}.restore-${process.pid}-${Date.now().toString(36)}.tmp`,
  );
  const removeTemp = () => removeWithSideFiles(temp);
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
      warnings: [],
    };
    if (options.dryRun) {
      await removeTemp();
      // Asking SQLite would open the database (and checkpoint it on close): a dry run only looks at /proc.
      const users = fs.existsSync(destinationPath) ? processesUsing(destinationPath) : [];
      if (users.length) {
        result.warnings.push(
          `${destinationPath} is in use by ${describeUsers(users)}: a restore would need --force`,
        );
      }
      step('dry run: the target was not changed');
      return result;
    }
    options.signal?.throwIfAborted();
    const live = fs.existsSync(destinationPath) ? probeLiveDatabase(destinationPath) : undefined;
    const who = live?.kind === 'busy' ? describeHolders(destinationPath) : undefined;

    if (live?.kind === 'free' || live?.kind === 'busy') {
      if (who && !options.force) {
        throw new LitekeepError(
          `${destinationPath} is in use by ${who}; stop it first, or pass --force to restore anyway`,
          { exitCode: EXIT.failed, stage: 'restore' },
        );
      }
      if (who) {
        step(`--force: restoring through SQLite although ${who} uses it`);
        result.appMustRestart = true;
      }
      if (live.journalMode === 'wal' && live.pageSize && live.pageSize !== fetched.pageSize) {
        // A WAL database cannot change its page size through the backup API: the copy takes the live one's.
        changePageSize(temp, live.pageSize);
        step(`rewrote the restored copy with the live database's page size (${live.pageSize} bytes)`);
      }
      const timeZone = target.settings.timeZone ?? systemTimeZone();
      try {
        await copyIntoLiveDatabase(temp, destinationPath, {
          waitMs: target.settings.busyTimeout ?? 10_000,
          onLocked: () => {
            safetyCopy = keepSafetyCopy(destinationPath, timeZone);
            result.safetyCopy = safetyCopy;
            step(`kept the current database as ${safetyCopy}`);
          },
        });
      } catch (error) {
        if (error instanceof LiveDatabaseBusyError) {
          throw new LitekeepError(
            `${error.message}; nothing was changed — stop the application that writes to it and restore again`,
            { exitCode: EXIT.failed, stage: 'restore' },
          );
        }
        throw error;
      }
      // The backup API's commit is durable in rollback mode; a WAL commit is only fsynced at checkpoint.
      for (const file of [destinationPath, `${destinationPath}-wal`])
        if (fs.existsSync(file)) await fsyncFile(file);
      step(`copied it into ${destinationPath} through SQLite's backup API`);
      result.method = 'sqlite-backup-api';
      result.journalMode = live.journalMode ?? String(journalModeOf(destinationPath));
      const folded = foldWal(safetyCopy!);
      if (folded) result.warnings.push(`the safety copy keeps its -wal beside it (${folded})`);
      result.warnings.push(
        ...checkLive(destinationPath, fetched.fingerprint, result.appMustRestart === true),
      );
      await removeTemp();
    } else {
      if (live?.kind === 'not-sqlite') {
        // Nothing can be using it through SQLite: keep it aside whole, then put the backup in its place.
        safetyCopy = await moveAside(destinationPath, target.settings.timeZone ?? systemTimeZone());
        result.safetyCopy = safetyCopy;
        step(
          `${destinationPath} is not a usable SQLite database (${live.reason}); moved it aside as ${safetyCopy}`,
        );
      } else {
        // A stale journal next to a missing database would be applied to the restored one.
        await moveSideFilesAside(destinationPath, `${destinationPath}.stale-${Date.now()}`);
      }
      const mode = candidate.journalMode === 'wal' ? 'wal' : 'delete';
      if (mode === 'wal') setJournalMode(temp, 'wal');
      result.journalMode = mode;
      await fsyncFile(temp);
      if (!(await publishNoClobber(temp, destinationPath))) {
        throw new LitekeepError(
          `${destinationPath} appeared while restoring; nothing was changed — run the restore again`,
          { stage: 'restore' },
        );
      }
      result.method = 'new-file';
      step(`moved it into place as ${destinationPath}`);
    }
    record('ok', undefined, safetyCopy);
    return result;
  } catch (error) {
    await removeTemp();
    const aborted = options.signal?.aborted && !safetyCopy;
    const failure =
      error instanceof LitekeepError
        ? error
        : new LitekeepError(
            aborted
              ? 'restore stopped; nothing was changed and its temp files were removed'
              : `restore failed: ${oneLine(error)}`,
            { stage: 'restore', cause: error },
          );
    record('failed', failure.message, safetyCopy);
    throw failure;
  } finally {
    catalog.close();
  }
}

/** Who has the database open, as far as /proc shows it (another PID namespace or user may be invisible). */
function describeHolders(dbPath: string): string {
  const users = processesUsing(dbPath);
  return users.length
    ? describeUsers(users)
    : 'another connection (SQLite reports it open or locked; the process is not visible from here)';
}

function journalModeOf(file: string): string | undefined {
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    return String(db.pragma('journal_mode', { simple: true }));
  } catch {
    return undefined;
  } finally {
    db?.close();
  }
}

/**
 * The live database as the application will see it: quick_check must pass; a fingerprint that differs from
 * the restored image is only worth a warning when other connections may have written since.
 */
function checkLive(file: string, expected: Fingerprint, othersConnected: boolean): string[] {
  let db: Database.Database | undefined;
  try {
    // Read-write, though it only reads: a read-only connection to a WAL database leaves a -wal and -shm behind.
    db = new Database(file, { fileMustExist: true, timeout: 5000 });
    const check = String(db.pragma('quick_check', { simple: true }));
    if (check !== 'ok') {
      throw new LitekeepError(
        `${file} fails quick_check after the restore (${check}); the previous database is in the safety copy`,
        { stage: 'restore' },
      );
    }
    const difference = compareFingerprints(expected, fingerprintOf(db));
    if (!difference) return [];
    return [
      othersConnected
        ? `the database changed right after the restore (${difference}): the application wrote to it`
        : `the restored database differs from the backup: ${difference}`,
    ];
  } catch (error) {
    if (error instanceof LitekeepError) throw error;
    return [`could not re-read ${file} after the restore: ${oneLine(error)}`];
  } finally {
    db?.close();
  }
}

async function removeWithSideFiles(file: string): Promise<void> {
  for (const suffix of ['', ...SIDE_FILES]) await fsp.rm(file + suffix, { force: true });
}

/** Removes temp files of earlier restores into this folder whose process is gone (killed mid-restore). */
function removeDeadTemps(dir: string, base: string): Promise<void> {
  const prefix = `.${base}.restore-`.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return removeTempsOfDeadProcesses(
    dir,
    new RegExp(`^${prefix}(\\d+)-[0-9a-z]+\\.tmp(?:-journal|-wal|-shm)?$`),
  );
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

function safetyName(dbPath: string, timeZone: string): string {
  const stamp = compactStamp(new Date(), timeZone);
  let safety = `${dbPath}.before-restore-${stamp}`;
  const taken = (name: string) => ['', ...SIDE_FILES].some((s) => fs.existsSync(name + s));
  for (let n = 1; taken(safety); n++) safety = `${dbPath}.before-restore-${stamp}-${n}`;
  return safety;
}

/**
 * Keeps the current database as `<db>.before-restore-<stamp>` (and its -wal, which holds committed pages the
 * main file lacks). Runs while the restore holds the live database's write lock, so no commit can slip in
 * between this copy and the replacement; a checkpoint by the app may still write WAL pages into the main file
 * meanwhile, but never changes a page the WAL does not also hold, so the pair stays consistent. Synchronous:
 * nothing else runs between the lock and the copy.
 */
function keepSafetyCopy(dbPath: string, timeZone: string): string {
  const safety = safetyName(dbPath, timeZone);
  const made: string[] = [];
  try {
    for (const suffix of ['', '-wal']) {
      const from = dbPath + suffix;
      if (suffix && (!fs.existsSync(from) || fs.statSync(from).size === 0)) continue;
      fs.copyFileSync(from, safety + suffix, fs.constants.COPYFILE_EXCL);
      made.push(safety + suffix);
      fs.chmodSync(safety + suffix, 0o600);
      fsyncFileSync(safety + suffix);
    }
    fsyncDirSync(path.dirname(dbPath));
  } catch (error) {
    for (const file of made) fs.rmSync(file, { force: true });
    throw new LitekeepError(
      `cannot keep the current database as ${safety} (${oneLine(error)}); nothing was changed — free space in ${path.dirname(dbPath)} or restore with --to PATH`,
      { stage: 'restore', cause: error },
    );
  }
  return safety;
}

/** Renames a file that is not a database (and its side files) out of the way, keeping it whole. */
async function moveAside(dbPath: string, timeZone: string): Promise<string> {
  const safety = safetyName(dbPath, timeZone);
  await fsp.rename(dbPath, safety);
  await moveSideFilesAside(dbPath, safety);
  await fsyncDir(path.dirname(dbPath));
  return safety;
}

export interface VerifyResult {
  backup: string;
  source: string;
  /** `error`: it could not be read just now, which says nothing about the backup (see verdictOf). */
  status: 'ok' | 'failed' | 'error';
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
  const candidates = await listCandidates(target, from, options);
  const chosen = options.all ? candidates : [pickCandidate(candidates, options)];
  if (chosen.length === 0) {
    throw new LitekeepError(`no backups found in ${from}`, { stage: 'verify' });
  }
  const manager = new BackupManager(target);
  // A verify killed before its cleanup left its folder behind: the pid in the name says whose it was.
  await removeTempsOfDeadProcesses(os.tmpdir(), /^litekeep-verify-(\d+)-[A-Za-z0-9]+$/);
  const workDir = await fsp.mkdtemp(path.join(os.tmpdir(), `litekeep-verify-${process.pid}-`));
  await fsp.chmod(workDir, 0o700);
  const results: VerifyResult[] = [];
  try {
    for (const candidate of chosen) {
      options.signal?.throwIfAborted();
      results.push(await verifyOne(candidate, workDir, options, manager.catalog, options.signal));
      // A stop that came while the last check ran still stops: the caller asked for it.
      if (options.signal?.aborted) {
        throw new LitekeepError('verify stopped; its temp files were removed', { stage: 'verify' });
      }
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
      if (difference) throw new DamagedBackupError(`${candidate.name}: ${difference}`, { stage: 'verify' });
      result.fingerprint = 'match';
    } else result.fingerprint = 'not recorded';
    result.status = 'ok';
  } catch (error) {
    // A missing or unusable identity says nothing about the backup: it is not recorded as a failed verification.
    if (error instanceof LitekeepError && error.exitCode === EXIT.usage) throw error;
    if (signal?.aborted) throw error;
    result.status = verdictOf(error, candidate.source);
    result.error = oneLine(error);
  } finally {
    await removeWithSideFiles(plain);
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
