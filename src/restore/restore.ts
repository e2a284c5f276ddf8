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
import { EXIT, LitekeepError, oneLine } from '../util/errors.js';
import { removeTempsOfDeadProcesses } from '../util/process.js';
import { snapshotCandidates } from '../repository/candidates.js';
import { incrementalSpec } from '../repository/destination.js';
import { RepositoryDamagedError } from '../repository/errors.js';
import { fsyncDir, fsyncDirSync, fsyncFile, makeDirsSync, publishNoClobber } from '../util/fs.js';
import { compactStamp, formatTime, systemTimeZone } from '../util/time.js';
import { didYouMean } from '../util/suggest.js';
import { candidateFromFile, withProgress } from './file.js';
import type { CommitId } from '../pitr/plan.js';
import { describeUsers, processesUsing } from './in-use.js';
import { copyOutside, fsyncOutside } from './outside.js';
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
 * What a failed verification says about the backup: `failed` only when its bytes are proven bad (checksum,
 * decoding, integrity, fingerprint); anything else — a network failure, a full temp folder, a file gone, an
 * identity that opens none of its keys — is an `error`, which says nothing about the backup.
 */
export function verdictOf(error: unknown): 'failed' | 'error' {
  if (
    error instanceof DamagedBackupError ||
    error instanceof CorruptArtifactError ||
    error instanceof RepositoryDamagedError
  )
    return 'failed';
  if (error instanceof DecryptionError) return isWrongKey(error) ? 'error' : 'failed';
  return 'error';
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
  /** It is another machine's copy: nothing in this machine's catalog describes it. */
  foreignHost?: boolean;
  /** Why `latest` passes it over: its last verification failed. */
  setAside?: string;
  /** The stored bytes; `signal` stops the transfer. */
  open: (signal?: AbortSignal) => Promise<Readable>;
  /** A snapshot of an incremental destination: its name (id) may be given as a unique prefix. */
  idPrefix?: boolean;
  /** What fetching it found out that the user should read: steps (`notes`) and `warnings` (a point in time). */
  notes?: string[];
  warnings?: string[];
  /**
   * A drill's commit: it was shipped with a fingerprint, so a restore with none to compare with is a failed
   * verification, not `not recorded`.
   */
  fingerprintExpected?: boolean;
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
  /**
   * Exactly after this commit (a commit id or segment name, src/pitr/plan.ts), on a destination with WAL
   * segments; instead of `at`.
   */
  atCommit?: CommitId;
  /** `local` (default) or a destination name (`drive`, an s3 destination...). */
  from?: string;
  /** Whose copies, on a destination several machines share (default: this host's, else the only one's). */
  host?: string;
  /** The present (tests): backups after it are passed over by `latest` and `--at`. */
  now?: Date;
  /** `latest` may be a backup whose last verification failed (verify looks again). */
  includeSetAside?: boolean;
}

export interface DecryptOptions {
  identities?: string[];
  passphrase?: string;
}

/** Every backup available from a source, newest first, with what is known to verify it. */
export async function listCandidates(
  target: DatabaseTarget,
  from = 'local',
  options: { host?: string; ownOnly?: boolean } = {},
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
  options: { host?: string; ownOnly?: boolean },
): Promise<Candidate[]> {
  // Only looks: a machine restoring from a destination gets no catalog until it restores.
  const manager = new BackupManager(target, { readOnly: true });
  try {
    if (from === 'local') {
      const { backups } = await manager.listBackups();
      const verdicts = manager.catalog.verdicts('local');
      return backups.map((b) => ({
        ...setAsideOf(verdicts.get(b.name)),
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
    const host = options.ownOnly ? own : chooseHost(objects, own, from, target.name, options.host);
    const known = new Map(manager.catalog.listBackups({ includeDeleted: true }).map((r) => [r.file, r]));
    const verdicts = manager.catalog.verdicts(
      host === own ? destination.name : `${destination.name}@${host}`,
    );
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
          ...(host === own ? {} : { foreignHost: true }),
          ...setAsideOf(verdicts.get(o.name)),
          open: (signal?: AbortSignal) => destination.get(o, { signal }),
        };
      })
      .sort((a, b) => b.time.getTime() - a.time.getTime() || (a.name < b.name ? 1 : -1));
  } finally {
    manager.close();
  }
}

function setAsideOf(verdict: { status: string; at?: string; error?: string } | undefined): {
  setAside?: string;
} {
  return verdict?.status === 'failed'
    ? { setAside: `failed verification ${verdict.at}: ${verdict.error}` }
    : {};
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
        `backup ${options.name} not found in ${from}` +
          `${didYouMean(options.name, ['latest', ...candidates.map((c) => c.name)])}` +
          `; run 'litekeep list${from === 'local' ? '' : ` --from ${from}`}' to see the names`,
        {
          exitCode: EXIT.usage,
          stage: 'restore',
        },
      );
    }
    return found;
  }
  // `latest` and `--at` mean the newest usable backup: not one named in the future (a wrong clock), nor one
  // whose last verification failed. A backup named outright is taken as asked.
  const now = options.now ?? new Date();
  const limit = Math.min(options.at?.getTime() ?? Infinity, now.getTime());
  const usable = candidates.find(
    (c) => c.time.getTime() <= limit && (options.includeSetAside || !c.setAside),
  );
  if (!usable) {
    if (options.at && !candidates.some((c) => c.time.getTime() <= options.at!.getTime())) {
      throw new LitekeepError(
        `no backup in ${from} was taken at or before ${options.at.toISOString()}; the oldest is from ${candidates[candidates.length - 1].time.toISOString()}`,
        { exitCode: EXIT.failed, stage: 'restore' },
      );
    }
    throw new LitekeepError(
      `no usable backup in ${from}${options.at ? ` at or before ${options.at.toISOString()}` : ''}: ` +
        `${describeSkipped(candidates).join('; ')}; name one to restore it anyway ('litekeep list' shows them)`,
      { exitCode: EXIT.failed, stage: 'restore' },
    );
  }
  return usable;
}

/** Why `latest`/`--at` passed over each of these backups. */
export function describeSkipped(candidates: Candidate[], now = new Date()): string[] {
  return candidates
    .map((c) =>
      c.time.getTime() > now.getTime()
        ? `${c.name} is dated in the future`
        : c.setAside
          ? `${c.name} failed its last verification`
          : undefined,
    )
    .filter((r): r is string => r !== undefined);
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
      signal?.throwIfAborted();
      const source = await candidate.open(signal);
      input = source;
      // The artifact's bytes are hashed as they pass, before any decoding.
      source.on('error', (error) => artifactHash.destroy(error));
      const hashed = source.pipe(artifactHash);
      const decoded = packed
        ? await openArtifact(hashed, {
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
  /** Restore this backup file (a path) instead of choosing one from `from`. */
  file?: string;
  /** Bytes of the backup read so far, with its size (`restore <name>`, or `download <name> from <source>`). */
  onProgress?: (stage: string, bytes: number, total?: number) => void;
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
  /** A point in time restored only up to the last whole point before it (its warning says why). */
  reachedShort?: boolean;
}

/**
 * What a restore of `options` would restore: a backup file given by path, a point in time (`at` on a destination
 * with WAL segments: the state of the last commit by then), or one of the source's backups (by name, `latest`,
 * or the newest taken by `at`), with the candidates it was chosen from.
 */
export async function chooseCandidate(
  target: DatabaseTarget,
  options: SelectOptions & { file?: string },
): Promise<{ picked: Candidate; candidates: Candidate[]; pointInTime: boolean }> {
  if (options.file)
    return { picked: candidateFromFile(target, options.file), candidates: [], pointInTime: false };
  const from = options.from ?? 'local';
  const moment = options.atCommit ?? options.at;
  if (options.atCommit && ((options.name && options.name !== 'latest') || from === 'local'))
    throw new LitekeepError(
      'a commit id names a commit in the WAL segments of a destination: give --from DESTINATION, and no backup name',
      { exitCode: EXIT.usage, stage: 'restore' },
    );
  const pointInTime =
    moment && (!options.name || options.name === 'latest') && from !== 'local'
      ? await (await import('../pitr/recover.js')).pointInTimeCandidate(target, from, moment, options)
      : undefined;
  if (pointInTime) return { picked: pointInTime, candidates: [], pointInTime: true };
  const candidates = await listCandidates(target, from, options);
  return { picked: pickCandidate(candidates, options), candidates, pointInTime: false };
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
  const { picked, candidates } = await chooseCandidate(target, options);
  const remote = !options.file && from !== 'local';
  const label = remote ? `download ${picked.name} from ${picked.source}` : `restore ${picked.name}`;
  const candidate = withProgress(picked, label, options.onProgress);
  const whose = candidate.host && candidate.host !== hostOf(target) ? ` (host ${candidate.host})` : '';
  if (!options.file && (!options.name || options.name === 'latest')) {
    const newer = candidates.filter((c) => c.time.getTime() > candidate.time.getTime());
    for (const reason of describeSkipped(newer, options.now)) step(`passed over: ${reason}`);
  }
  step(
    `selected ${candidate.name} from ${candidate.source}${whose}, taken ${formatTime(candidate.time, target.settings.timeZone ?? systemTimeZone())}`,
  );

  const dir = path.dirname(destinationPath);
  // A dry run creates nothing where the target would go: it fetches into the temp folder when that is missing.
  const dryRunElsewhere = options.dryRun === true && !fs.existsSync(dir);
  const tempDir = dryRunElsewhere ? await fsp.mkdtemp(path.join(os.tmpdir(), 'litekeep-restore-')) : dir;
  if (!fs.existsSync(dir) && !options.dryRun) makeDirsSync(dir, 0o700);
  if (!dryRunElsewhere) await removeDeadTemps(dir, path.basename(destinationPath));
  const temp = path.join(
    tempDir,
    `.${path.basename(destinationPath)}.restore-${process.pid}-${Date.now().toString(36)}.tmp`,
  );
  const removeTemp = async () => {
    await removeWithSideFiles(temp);
    if (dryRunElsewhere) await fsp.rm(tempDir, { recursive: true, force: true });
  };
  const catalog = new BackupManager(target, { readOnly: options.dryRun === true }).catalog;
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
    for (const note of picked.notes ?? []) step(note);
    step(
      `fetched into ${path.basename(temp)} and verified: sha256 ${candidate.sha256 ? 'matches the record' : 'not recorded, computed'} ${fetched.sha256.slice(0, 12)}…, integrity ${fetched.integrity}`,
    );
    const result: RestoreResult = {
      backup: candidate.name,
      source: candidate.source,
      // The original: a point-in-time restore learns the moment it reached while it fetches.
      takenAt: picked.time.toISOString(),
      target: destinationPath,
      sha256: fetched.sha256,
      plainSha256: fetched.plainSha256,
      integrity: fetched.integrity,
      dryRun: options.dryRun === true,
      tables: fetched.fingerprint.tables,
      warnings: [...(picked.warnings ?? [])],
      ...(picked.warnings?.length ? { reachedShort: true } : {}),
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
    // SQLite sees every open connection of a WAL database, wherever it runs, but an idle connection in
    // rollback mode holds no lock: what /proc shows counts too.
    const visible = live && live.kind !== 'not-sqlite' ? processesUsing(destinationPath) : [];
    const who =
      visible.length > 0
        ? describeUsers(visible)
        : live?.kind === 'busy'
          ? 'another connection (SQLite reports it open or locked; the process is not visible from here)'
          : undefined;

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
      fsyncOutside([destinationPath, `${destinationPath}-wal`]);
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
        // Nothing can be using it through SQLite: keep it aside whole, then put the backup in its place, owned
        // and readable as the old file was, so that the application can open it.
        await matchOwnership(temp, destinationPath);
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
        : `the database differs from the backup right after the restore (${difference}): another connection wrote to it, or the copy did not take — check it, the previous database is in the safety copy`,
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
 * nothing else runs between the lock and the copy, and the copy is made by another process (see outside.ts) so
 * that this one's locks stay held.
 */
function keepSafetyCopy(dbPath: string, timeZone: string): string {
  const safety = safetyName(dbPath, timeZone);
  const pairs: [string, string][] = [[dbPath, safety]];
  const wal = `${dbPath}-wal`;
  if (fs.existsSync(wal) && fs.statSync(wal).size > 0) pairs.push([wal, `${safety}-wal`]);
  try {
    copyOutside(pairs);
    fsyncDirSync(path.dirname(dbPath));
  } catch (error) {
    for (const [, to] of pairs) fs.rmSync(to, { force: true });
    throw new LitekeepError(
      `cannot keep the current database as ${safety} (${oneLine(error)}); nothing was changed — free space in ${path.dirname(dbPath)} or restore with --to PATH`,
      { stage: 'restore', cause: error },
    );
  }
  return safety;
}

/** The restored file takes the place of the old one: the application must be able to open it as before. */
async function matchOwnership(file: string, like: string): Promise<void> {
  const stat = await fsp.stat(like);
  await fsp.chmod(file, stat.mode & 0o777);
  if (process.getuid?.() === 0) await fsp.chown(file, stat.uid, stat.gid).catch(() => {});
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
  /** Whose copy, when it is another machine's. */
  host?: string;
  /** `error`: it could not be read just now, which says nothing about the backup (see verdictOf). */
  status: 'ok' | 'failed' | 'error';
  error?: string;
  sha256?: string;
  integrity?: string;
  fingerprint?: 'match' | 'not recorded' | string;
  /** What a point-in-time verification used and reached (base snapshot, segments, the last commit). */
  notes?: string[];
  /** A drill (`verifyPoints`): the commit id restored to and compared. */
  point?: string;
}

/**
 * Proves that a backup restores: fetch into a temp folder, check sha256, unpack, integrity_check, and compare
 * the fingerprint recorded at backup time. The result goes into the catalog.
 */
export async function verifyBackup(
  target: DatabaseTarget,
  options: SelectOptions &
    DecryptOptions & {
      all?: boolean;
      signal?: AbortSignal;
      /** Each result as soon as it is known (`verify all` takes a while). */
      onResult?: (result: VerifyResult) => void;
      /** Bytes of the backup being verified read so far, with its size (`stage` is `verify <name>`). */
      onProgress?: (stage: string, bytes: number, total?: number) => void;
      /**
       * With the newest backup (no name, no `at`): this many random commits shipped with a fingerprint too, on a
       * destination with WAL segments (`verifyPoints`).
       */
      points?: number;
    } = {},
): Promise<VerifyResult[]> {
  const from = options.from ?? 'local';
  // One backup is chosen as restore chooses it: `--at` on a destination with WAL segments is a point in time.
  const chosen = options.all
    ? await listCandidates(target, from, options)
    : [(await chooseCandidate(target, { includeSetAside: true, ...options })).picked];
  if (chosen.length === 0) {
    throw new LitekeepError(`no backups found in ${from}`, { stage: 'verify' });
  }
  const results = await withVerifyWorkspace(target, options, async (verify) => {
    const done: VerifyResult[] = [];
    for (const candidate of chosen) done.push(await verify(candidate));
    return done;
  });
  const newest =
    !options.all && (!options.name || options.name === 'latest') && !options.at && !options.atCommit;
  if (newest && options.points)
    results.push(...(await verifyPoints(target, { ...options, from, count: options.points })));
  return results;
}

/**
 * A drill of point-in-time recovery: `count` random commits that this machine shipped to `from` with a
 * fingerprint (src/pitr/fingerprint.ts), each restored exactly to that commit from its base snapshot and WAL
 * segments, checked as any backup and compared with the fingerprint read from the live database when the commit
 * was shipped. A drill that cannot compare (the segment holds no fingerprint) failed: the index said it did.
 */
export async function verifyPoints(
  target: DatabaseTarget,
  options: DecryptOptions & {
    from: string;
    count: number;
    signal?: AbortSignal;
    onResult?: (result: VerifyResult) => void;
    onProgress?: (stage: string, bytes: number, total?: number) => void;
  },
): Promise<VerifyResult[]> {
  const [{ drillPoints, pointInTimeCandidate }, { formatCommitId }] = await Promise.all([
    import('../pitr/recover.js'),
    import('../pitr/plan.js'),
  ]);
  const points = await drillPoints(target, options.from, options.count);
  if (points.length === 0) return [];
  return withVerifyWorkspace(target, options, async (verify) => {
    const done: VerifyResult[] = [];
    for (const point of points) {
      options.signal?.throwIfAborted();
      const candidate = await pointInTimeCandidate(target, options.from, point, { host: hostOf(target) });
      if (!candidate) break;
      candidate.fingerprintExpected = true;
      done.push(await verify(candidate, { point: formatCommitId(point) }));
    }
    return done;
  });
}

/**
 * Runs `work` with a private temp folder for restores (a killed verification's swept first) and the activity
 * log; `verify` checks one candidate there, reports it (`onResult`) and stops when the signal says so.
 */
async function withVerifyWorkspace<T>(
  target: DatabaseTarget,
  options: DecryptOptions & {
    signal?: AbortSignal;
    onResult?: (result: VerifyResult) => void;
    onProgress?: (stage: string, bytes: number, total?: number) => void;
  },
  work: (
    verify: (candidate: Candidate, extra?: Partial<VerifyResult>) => Promise<VerifyResult>,
  ) => Promise<T>,
): Promise<T> {
  const manager = new BackupManager(target);
  // A verify killed before its cleanup left its folder behind: the pid in the name says whose it was.
  await removeTempsOfDeadProcesses(os.tmpdir(), /^litekeep-verify-(\d+)-[A-Za-z0-9]+$/);
  const workDir = await fsp.mkdtemp(path.join(os.tmpdir(), `litekeep-verify-${process.pid}-`));
  await fsp.chmod(workDir, 0o700);
  try {
    return await work(async (candidate, extra) => {
      options.signal?.throwIfAborted();
      const checked = withProgress(candidate, `verify ${candidate.name}`, options.onProgress);
      const result = {
        ...(await verifyOne(checked, workDir, options, manager.catalog, options.signal)),
        ...extra,
      };
      // A stop that came while the last check ran still stops: the caller asked for it.
      if (options.signal?.aborted) {
        throw new LitekeepError('verify stopped; its temp files were removed', { stage: 'verify' });
      }
      options.onResult?.(result);
      return result;
    });
  } finally {
    await fsp.rm(workDir, { recursive: true, force: true });
    manager.close();
  }
}

async function verifyOne(
  candidate: Candidate,
  workDir: string,
  decrypt: DecryptOptions,
  catalog: Catalog,
  signal?: AbortSignal,
): Promise<VerifyResult> {
  const plain = path.join(workDir, `${candidate.name}.db`);
  const result: VerifyResult = {
    backup: candidate.name,
    source: candidate.source,
    ...(candidate.foreignHost ? { host: candidate.host } : {}),
    status: 'failed',
  };
  try {
    const fetched = await fetchAndCheck(candidate, plain, decrypt, 'full', signal);
    result.sha256 = fetched.sha256;
    result.integrity = fetched.integrity;
    // A point in time that could only be reached part of the way (a damaged or missing segment) failed.
    if (candidate.warnings?.length)
      throw new DamagedBackupError(`${candidate.name}: ${candidate.warnings[0]}`, { stage: 'verify' });
    if (candidate.notes?.length) result.notes = [...candidate.notes];
    // Only what was recorded of this very backup: another host's backup of the same name is another database.
    const expected = candidate.fingerprint;
    if (expected) {
      const difference = compareFingerprints(expected, fetched.fingerprint);
      if (difference) throw new DamagedBackupError(`${candidate.name}: ${difference}`, { stage: 'verify' });
      result.fingerprint = 'match';
    } else if (candidate.fingerprintExpected)
      throw new DamagedBackupError(
        `${candidate.name}: the commit was shipped with a fingerprint, but the restore found none to compare with`,
        { stage: 'verify' },
      );
    else result.fingerprint = 'not recorded';
    result.status = 'ok';
  } catch (error) {
    // A missing or unusable identity says nothing about the backup: it is not recorded as a failed verification.
    if (error instanceof LitekeepError && error.exitCode === EXIT.usage) throw error;
    // Nor does being stopped.
    if (signal?.aborted) throw signal.reason;
    result.status = verdictOf(error);
    result.error = oneLine(error);
  } finally {
    await removeWithSideFiles(plain);
  }
  try {
    catalog.recordVerification({
      backupFile: candidate.name,
      // Verdicts steer this host's retention: another host's copy is recorded under its own key.
      destination: candidate.foreignHost ? `${candidate.source}@${candidate.host}` : candidate.source,
      status: result.status,
      error: result.error,
      details: { sha256: result.sha256, integrity: result.integrity, fingerprint: result.fingerprint },
    });
  } catch {
    // recorded when possible
  }
  return result;
}
