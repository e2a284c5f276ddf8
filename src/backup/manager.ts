import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Catalog, type BackupRecord, type Fingerprint } from '../catalog/index.js';
import type { DatabaseTarget } from '../config/index.js';
import {
  backupFileName,
  isTempName,
  looksLikeBackupName,
  parseBackupName,
  tempNameFor,
  TEMP_OF_PROCESS,
  timeFromBackupName,
  type Compression,
  type Encryption,
} from '../naming.js';
import { ArtifactDecodeError, sha256File, writeArtifact, type ArtifactResult } from '../pipeline/index.js';
import {
  applySafetyRails,
  assertUsablePolicy,
  compareNewestFirst,
  describePolicy,
  DURATION_RULES,
  parseRetentionPolicy,
  planRetention,
  RetentionPolicyError,
  RotationPolicy,
  WITHIN_FORM,
  holdAfterTimeGap,
  type Decision,
  type RetentionPolicy,
} from '../retention/index.js';
import { takeSnapshot, type SnapshotMode } from '../snapshot/index.js';
import { EXIT, LitekeepError, oneLine } from '../util/errors.js';
import { ensurePrivateDir, publishNoClobber } from '../util/fs.js';
import { removeTempsOfDeadProcesses } from '../util/process.js';
import { systemTimeZone } from '../util/time.js';
import { encryptionSettings } from './encryption.js';
import { standingOf } from './standing.js';

export interface BackupResult {
  database: string;
  file: string;
  path: string;
  bytes: number;
  sha256: string;
  plainBytes: number;
  plainSha256: string;
  durationMs: number;
  mode: SnapshotMode;
  integrity: string;
  createdAt: string;
  sourcePath: string;
  sourceBytes: number;
  pageSize: number;
  pageCount: number;
  sqliteVersion: string;
  compression: Compression;
  encryption: Encryption;
  fingerprint: Fingerprint;
  /** Journal mode of the live database when it was copied. */
  journalMode: string;
  /** `manual` or `scheduled`: retention keeps each as its own series. */
  trigger: BackupTrigger;
  /**
   * The artifact was proven to decode to `plainSha256` before it was published: decoded as it was written, and
   * the file on disk hashed to what was written.
   */
  artifactChecked: boolean;
  /** With keepImage: the plain page image of this backup (a temp file, or the backup itself when unpacked). */
  image?: { path: string; temporary: boolean };
}

/** Removes the page image a run kept for its incremental destinations (see CreateBackupOptions.keepImage). */
export async function discardImage(backup: BackupResult | undefined): Promise<void> {
  if (backup?.image?.temporary) await fsp.rm(backup.image.path, { force: true });
}

/**
 * The two series retention keeps apart (restic's `--group-by`): backups a person asked for, and those a
 * schedule (the daemon, a timer, an app's own scheduler) took.
 */
export type BackupTrigger = 'manual' | 'scheduled';

export interface CreateBackupOptions {
  /** VACUUM INTO (default, from config `vacuum`) or the online backup API. */
  vacuum?: boolean;
  runId?: number;
  signal?: AbortSignal;
  /** Progress of the current stage: bytes done and, when known, the total. */
  onProgress?: (stage: 'snapshot' | 'compress', bytes: number, total?: number) => void;
  /** For tests and callers that need a fixed clock. */
  now?: Date;
  /** Default `scheduled`: a backup taken by code is assumed to run on a schedule. */
  trigger?: BackupTrigger;
  /**
   * Called with the packed temp file once it is written and fsynced, before it is read back and compared with
   * what was written: where tests play a disk that damages what it stores.
   */
  onPacked?: (artifactPath: string) => void | Promise<void>;
  /**
   * Keep the checked snapshot (the plain page image) for incremental destinations: `BackupResult.image` names
   * it, and the caller removes it when `temporary` (discardImage). A killed run's is swept by the next one.
   */
  keepImage?: boolean;
}

export interface BackupEntry {
  name: string;
  path: string;
  bytes: number;
  time: Date;
  /** What the catalog knows, when it knows this file. */
  record?: BackupRecord;
}

export interface BackupListing {
  backups: BackupEntry[];
  /** Files that look like ours but whose names do not parse: reported, never deleted. */
  unrecognized: string[];
}

export interface PruneDecision {
  name: string;
  path: string;
  time: Date;
  action: 'keep' | 'remove';
  reasons: string[];
  /** Why it is set aside: its newest verification failed. */
  failedVerification?: string;
  /** Set after a deletion was attempted. */
  deleted?: boolean;
  error?: string;
}

export interface PruneResult {
  policy: RetentionPolicy;
  decisions: PruneDecision[];
  removed: string[];
  /** Deletions that were attempted and failed. */
  failed: { name: string; error: string }[];
  unrecognized: string[];
  /** Backups dated after now (a clock was wrong): kept, counted by no rule. */
  future: string[];
  /** Backups whose newest verification failed: kept aside, counted by no rule (`--remove-failed` removes them). */
  setAside: { name: string; reason: string }[];
  /** Why a run held every removal back (holdAfterTimeGap). */
  held?: string;
  dryRun: boolean;
}

/** The size of a database with its -wal file: about what a snapshot of it copies. */
function sizeWithWal(file: string): number | undefined {
  try {
    const wal = fs.statSync(`${file}-wal`, { throwIfNoEntry: false })?.size ?? 0;
    return fs.statSync(file).size + wal;
  } catch {
    return undefined;
  }
}

/** Reads the retention settings of a target as a validated policy. */
export function retentionPolicyOf(
  settings: DatabaseTarget['settings']['retention'],
  source: string,
): RetentionPolicy {
  const raw = Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined));
  return parseRetentionPolicy(raw, source);
}

/**
 * The configured policy as a usable one, or a usage error (exit 2) naming the config key, where it can be set
 * and the accepted form. `within` is only a string to the config schema, so this is where a typo is caught.
 */
export function checkedRetentionPolicy(settings: DatabaseTarget['settings']['retention']): RetentionPolicy {
  let policy: RetentionPolicy;
  try {
    policy = retentionPolicyOf(settings, 'configuration (retention)');
  } catch (error) {
    if (!(error instanceof RetentionPolicyError)) throw error;
    const key = error.key ?? 'retention';
    const env = `LITEKEEP_RETENTION_${key.toUpperCase()}`;
    const flag = `--keep-${key}`;
    const value = (settings as Record<string, unknown>)[key];
    const form = (DURATION_RULES as readonly string[]).includes(key)
      ? WITHIN_FORM
      : 'a whole number of 0 or more (e.g. 7)';
    throw new LitekeepError(
      `invalid retention.${key} ${JSON.stringify(value)} (config retention.${key}, ${env} or ${flag}): expected ${form}`,
      { exitCode: EXIT.usage, stage: 'prune', cause: error },
    );
  }
  try {
    assertUsablePolicy(policy);
  } catch (error) {
    throw new LitekeepError(
      `retention policy keeps nothing by rule (every count is 0 and no within): set at least one of ` +
        `retention.last/hourly/daily/weekly/monthly/yearly above 0 or retention.within (e.g. --keep-daily 7)`,
      { exitCode: EXIT.usage, stage: 'prune', cause: error },
    );
  }
  return policy;
}

/**
 * Backups of one database in one folder: create, list and rotate. The seed's `BackupManager`, with a catalog.
 */
export class BackupManager {
  readonly target: DatabaseTarget;
  private catalogInstance?: Catalog;
  /** Why the catalog is not the one on disk, when it could not be used. */
  catalogWarning?: string;

  /** When set, looking never creates: a folder without an activity log reads with an empty one (list, status, history). */
  private readonly readOnly: boolean;

  constructor(target: DatabaseTarget, options: { readOnly?: boolean } = {}) {
    this.target = target;
    this.readOnly = options.readOnly === true;
  }

  get backupDir(): string {
    return this.target.backupDir;
  }

  get timeZone(): string {
    return this.target.settings.timeZone ?? systemTimeZone();
  }

  /** The catalog of this folder; a broken one is replaced, an unwritable one replaced by a memory-only one. */
  get catalog(): Catalog {
    if (!this.catalogInstance && this.readOnly) this.catalogInstance = Catalog.openReadOnly(this.backupDir);
    if (!this.catalogInstance) {
      try {
        this.catalogInstance = Catalog.open(this.backupDir);
        if (this.catalogInstance.recreatedFrom) {
          this.catalogWarning = `catalog was unreadable and was rebuilt from the files on disk (old one kept as ${this.catalogInstance.recreatedFrom})`;
        }
      } catch (error) {
        this.catalogWarning = `activity log ${path.join(this.backupDir, '.litekeep', 'catalog.db')} unavailable (${oneLine(error)}); this run is not recorded there`;
        this.catalogInstance = Catalog.inMemory();
      }
    }
    return this.catalogInstance;
  }

  close(): void {
    this.catalogInstance?.close();
    this.catalogInstance = undefined;
  }

  private isOwnBackup(entry: BackupEntry): boolean {
    const source = entry.record?.sourcePath;
    return source === undefined || path.resolve(source) === path.resolve(this.target.path);
  }

  /**
   * Refuses a folder whose catalog holds backups (still on disk) of another database: their names carry no
   * database name, so sharing a folder would let one database's retention delete the other's backups.
   */
  assertFolderHoldsOnlyThisDatabase(): void {
    const others = new Set<string>();
    for (const record of this.catalog.listBackups()) {
      if (!record.sourcePath || path.resolve(record.sourcePath) === path.resolve(this.target.path)) continue;
      if (fs.existsSync(path.join(this.backupDir, record.file))) others.add(record.sourcePath);
    }
    if (others.size > 0) {
      throw new LitekeepError(
        `backup folder ${this.backupDir} already holds backups of ${[...others].join(', ')}; give each database ` +
          `its own folder (--dir, BACKUP_DIR, or databases: with names), or if the database moved, move its old ` +
          `backups away first`,
        { exitCode: EXIT.usage, stage: 'prepare' },
      );
    }
  }

  /** Removes temp files that a killed backup left in this folder (their pid is gone). */
  private removeDeadTemps(): Promise<void> {
    // SQLite's side files of a killed snapshot (`….tmp-journal`) go with it.
    return removeTempsOfDeadProcesses(this.backupDir, TEMP_OF_PROCESS);
  }

  /** Makes sure the backup folder exists (0700 when created) and is writable. */
  prepareFolder(): void {
    try {
      ensurePrivateDir(this.backupDir);
      fs.accessSync(this.backupDir, fs.constants.W_OK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new LitekeepError(
        `backup folder ${this.backupDir} is not writable (${code ?? oneLine(error)}); fix its permissions or choose another --dir / BACKUP_DIR`,
        { stage: 'prepare' },
      );
    }
  }

  /**
   * Takes a consistent snapshot, checks it, compresses/encrypts it as configured, and publishes it under a new
   * name that never replaces an existing file. Nothing is left behind under a backup name when it fails.
   */
  async createBackup(options: CreateBackupOptions = {}): Promise<BackupResult> {
    const settings = this.target.settings;
    const started = Date.now();
    const createdAt = options.now ?? new Date();
    const mode: SnapshotMode = (options.vacuum ?? settings.vacuum) ? 'vacuum' : 'backup-api';
    const compression = settings.compression.algorithm as Compression;
    const encryption = await encryptionSettings(settings.encryption);
    this.prepareFolder();
    await this.removeDeadTemps();
    const firstName = backupFileName(createdAt, this.timeZone, { compression, encryption: encryption.kind });
    const snapshotTemp = path.join(this.backupDir, tempNameFor(firstName.replace(/\.db.*$/, '.db')));
    const temps = [snapshotTemp];
    const cleanup = () => Promise.all(temps.map((t) => fsp.rm(t, { force: true })));
    try {
      const packed = compression !== 'none' || encryption.kind !== 'none';
      const artifact = packed ? path.join(this.backupDir, tempNameFor(firstName)) : snapshotTemp;
      if (packed) temps.push(artifact);
      // Hashing (and compressing/encrypting) reads the finished copy while SQLite checks it: two cores at once.
      let packing: Promise<ArtifactResult> | undefined;
      // Sizes for progress: the source as it is now (a VACUUM INTO copy may come out smaller), then the copy.
      const sourceBytes = options.onProgress ? sizeWithWal(this.target.path) : undefined;
      let plainBytes: number | undefined;
      const startPacking = () => {
        if (options.onProgress) plainBytes = fs.statSync(snapshotTemp).size;
        packing = packed
          ? writeArtifact(
              snapshotTemp,
              artifact,
              {
                compression,
                level: settings.compression.level,
                recipients: encryption.recipients,
                passphrase: encryption.passphrase,
                // Invariant 2, first half: the bytes handed to the file decode back to the snapshot.
                checkDecodes: true,
              },
              (done: number) => options.onProgress?.('compress', done, plainBytes),
              options.signal,
            )
          : sha256File(snapshotTemp).then((h) => ({
              ...h,
              plainSha256: h.sha256,
              plainBytes: h.bytes,
              decodeChecked: false,
            }));
        // Failures are reported through the await below; until then keep Node from calling them unhandled.
        packing.catch(() => undefined);
      };
      const facts = await takeSnapshot(
        {
          source: this.target.path,
          target: snapshotTemp,
          mode,
          busyTimeoutMs: settings.busyTimeout ?? 10_000,
          integrity: settings.integrityCheck,
          durable: !packed,
        },
        {
          signal: options.signal,
          onProgress: (bytes) => options.onProgress?.('snapshot', bytes, sourceBytes),
          onCopied: startPacking,
        },
      ).catch(async (error: unknown) => {
        await packing?.catch(() => undefined);
        throw error;
      });
      if (!packing) startPacking();
      if (facts.integrity !== 'ok') {
        await packing!.catch(() => undefined);
        throw new LitekeepError(
          `the copy of ${this.target.path} failed ${settings.integrityCheck === 'quick' ? 'quick_check' : 'integrity_check'} ` +
            `(${facts.integrity}); it was deleted — check the source database with PRAGMA integrity_check`,
          { stage: 'integrity' },
        );
      }
      const packedResult = await packing!.catch((error: unknown) => {
        if (!(error instanceof ArtifactDecodeError) || options.signal?.aborted) throw error;
        throw new LitekeepError(
          `the new backup does not decode back to the snapshot (${oneLine(error)}); it was not kept — ` +
            `nothing on disk is wrong: run the backup again, and report it if it happens again`,
          { stage: 'verify', cause: error },
        );
      });
      const { sha256, bytes } = packedResult;
      const plain = { sha256: packedResult.plainSha256, bytes: packedResult.plainBytes };
      if (options.signal?.aborted)
        throw new LitekeepError('backup aborted; temp files removed', { stage: 'store' });
      await options.onPacked?.(artifact);
      if (packed) {
        // Invariant 2, second half: the file holds exactly the bytes that were decoded while it was written (a
        // hash of the packed file, not a second decode), so it decodes to the snapshot before it counts as a
        // backup, and so before retention may remove anything older.
        const onDisk = await sha256File(artifact).catch((error: unknown) => {
          throw new LitekeepError(
            `the new backup cannot be read back (${oneLine(error)}); it was not kept — check the disk under ${this.backupDir}`,
            { stage: 'verify', cause: error },
          );
        });
        // Stopped while reading it back (Ctrl-C, a stopping daemon): nothing is wrong with the disk.
        if (options.signal?.aborted)
          throw new LitekeepError('backup aborted; temp files removed', { stage: 'store' });
        if (onDisk.sha256 !== sha256 || onDisk.bytes !== bytes || !packedResult.decodeChecked) {
          throw new LitekeepError(
            `the new backup on disk is not the bytes that were written (sha256 ${onDisk.sha256.slice(0, 12)}…, ` +
              `${onDisk.bytes} bytes; expected ${sha256.slice(0, 12)}…, ${bytes} bytes); it was not kept — ` +
              `check the disk under ${this.backupDir}`,
            { stage: 'verify' },
          );
        }
      }
      const file = await this.publish(artifact, createdAt, compression, encryption.kind);
      const image = options.keepImage
        ? { path: packed ? snapshotTemp : path.join(this.backupDir, file), temporary: packed }
        : undefined;
      if (image?.temporary) temps.splice(temps.indexOf(snapshotTemp), 1);
      await cleanup();
      const result: BackupResult = {
        database: this.target.name,
        file,
        path: path.join(this.backupDir, file),
        bytes,
        sha256,
        plainBytes: plain.bytes,
        plainSha256: plain.sha256,
        durationMs: Date.now() - started,
        mode,
        integrity: facts.integrity,
        createdAt: createdAt.toISOString(),
        sourcePath: this.target.path,
        sourceBytes: facts.sourceBytes,
        pageSize: facts.pageSize,
        pageCount: facts.pageCount,
        sqliteVersion: facts.sqliteVersion,
        compression,
        encryption: encryption.kind,
        fingerprint: facts.fingerprint,
        journalMode: facts.sourceJournalMode,
        trigger: options.trigger ?? 'scheduled',
        // Unpacked, the artifact is the copy that was hashed while SQLite checked it.
        artifactChecked: true,
        ...(image ? { image } : {}),
      };
      try {
        this.catalog.recordBackup({ ...result, runId: options.runId, integrity: facts.integrity });
      } catch (error) {
        // The backup is safe on disk; a catalog that cannot be written is rebuilt from the files later.
        this.catalogWarning = `backup not recorded in the activity log: ${oneLine(error)}`;
      }
      return result;
    } catch (error) {
      await cleanup();
      if (error instanceof LitekeepError) throw error;
      // An AbortError from packing or hashing: say what happened rather than "The operation was aborted".
      if (options.signal?.aborted)
        throw new LitekeepError('backup aborted; temp files removed', { stage: 'store', cause: error });
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC') {
        throw new LitekeepError(
          `disk full while writing the backup into ${this.backupDir}; free space there or choose another --dir`,
          { stage: 'store', cause: error },
        );
      }
      throw new LitekeepError(`backup failed: ${oneLine(error)}`, { stage: 'store', cause: error });
    }
  }

  /** The name the next backup would get now (the first free `-N` of that second). */
  async nextBackupName(createdAt: Date): Promise<string> {
    const compression = this.target.settings.compression.algorithm as Compression;
    const encryption = (await encryptionSettings(this.target.settings.encryption)).kind;
    for (let sequence = 0; ; sequence++) {
      const name = backupFileName(createdAt, this.timeZone, { sequence, compression, encryption });
      if (!fs.existsSync(path.join(this.backupDir, name))) return name;
    }
  }

  private async publish(
    artifact: string,
    createdAt: Date,
    compression: Compression,
    encryption: Encryption,
  ): Promise<string> {
    for (let sequence = 0; sequence < 1000; sequence++) {
      const name = backupFileName(createdAt, this.timeZone, { sequence, compression, encryption });
      if (await publishNoClobber(artifact, path.join(this.backupDir, name))) return name;
    }
    throw new LitekeepError(`too many backups named for the same second in ${this.backupDir}`, {
      stage: 'store',
    });
  }

  /** Backups on disk, newest first, joined with what the catalog knows. */
  async listBackups(): Promise<BackupListing> {
    let names: string[];
    try {
      names = await fsp.readdir(this.backupDir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { backups: [], unrecognized: [] };
      throw error;
    }
    const known = new Map(this.catalog.listBackups().map((r) => [r.file, r]));
    const backups: BackupEntry[] = [];
    const unrecognized: string[] = [];
    for (const name of names) {
      if (isTempName(name)) continue;
      const parsed = parseBackupName(name);
      if (!parsed) {
        if (looksLikeBackupName(name)) unrecognized.push(name);
        continue;
      }
      const file = path.join(this.backupDir, name);
      let stat: fs.Stats;
      try {
        stat = await fsp.stat(file);
      } catch {
        continue;
      }
      if (!stat.isFile()) continue;
      const record = known.get(name);
      const time = record ? new Date(record.createdAt) : timeFromBackupName(parsed, this.timeZone);
      backups.push({ name, path: file, bytes: stat.size, time, record });
    }
    backups.sort((a, b) => b.time.getTime() - a.time.getTime() || (a.name < b.name ? 1 : -1));
    return { backups, unrecognized: unrecognized.sort() };
  }

  /**
   * Records files that are on disk but unknown to the catalog (after the catalog was lost), so that later runs
   * can verify them. Returns how many were added.
   */
  async reconcileCatalog(): Promise<number> {
    const { backups } = await this.listBackups();
    let added = 0;
    for (const entry of backups) {
      if (entry.record) continue;
      const parsed = parseBackupName(entry.name)!;
      const { sha256, bytes } = await sha256File(entry.path);
      this.catalog.recordBackup({
        file: entry.name,
        createdAt: entry.time.toISOString(),
        bytes,
        sha256,
        compression: parsed.compression,
        encryption: parsed.encryption,
        recovered: true,
      });
      added++;
    }
    return added;
  }

  /** The configured policy; a usage error (exit 2) naming the key when it is invalid or keeps nothing. */
  retentionPolicy(): RetentionPolicy {
    return checkedRetentionPolicy(this.target.settings.retention);
  }

  /**
   * Applies the GFS policy to this folder: plans, then (unless dry-run) deletes what the plan removes and
   * records each deletion. Only files named by litekeep are candidates; the newest is always kept.
   */
  async prune(
    options: {
      dryRun?: boolean;
      policy?: RetentionPolicy;
      runId?: number;
      /** Files never removed by this call: the backup the same run just made. */
      protect?: string[];
      /** Remove the backups set aside because their newest verification failed. */
      removeFailed?: boolean;
      /** The present, for tests; backups after it are reported as dated in the future. */
      now?: Date;
      /** With dryRun: plan as if this backup existed too (what `backup --dry-run` would make). */
      pretend?: { name: string; time: Date; trigger: BackupTrigger };
      /**
       * The backup the calling run just made: removals are held back when it is dated long after the newest one
       * before it and the plan would remove most of them (holdAfterTimeGap).
       */
      madeByRun?: string;
    } = {},
  ): Promise<PruneResult> {
    let policy: RetentionPolicy;
    if (options.policy) {
      policy = options.policy;
      try {
        assertUsablePolicy(policy);
      } catch (error) {
        throw new LitekeepError(oneLine(error), { exitCode: EXIT.usage, stage: 'prune' });
      }
    } else policy = this.retentionPolicy();
    const listing = await this.listBackups();
    // Backups the catalog says were taken of another database are never this database's to rotate.
    const foreign = listing.backups.filter((b) => !this.isOwnBackup(b));
    const backups = listing.backups.filter((b) => this.isOwnBackup(b));
    const unrecognized = [...listing.unrecognized, ...foreign.map((b) => b.name)].sort();
    const verdicts = this.catalog.verdicts('local');
    const items = backups.map((b) => ({
      id: b.name,
      time: b.time,
      entry: b,
      ...standingOf(b.record ?? {}, verdicts.get(b.name)),
    }));
    if (options.pretend && !options.dryRun) throw new Error('prune: pretend is only for a dry run');
    if (options.pretend) {
      // `backup --dry-run`: plan as if the backup it would make were already there.
      const { name, time, trigger } = options.pretend;
      const entry: BackupEntry = { name, time, bytes: 0, path: path.join(this.backupDir, name) };
      items.push({ id: name, time, entry, group: trigger, good: true });
    }
    const protect = [...(options.protect ?? []), ...(options.pretend ? [options.pretend.name] : [])];
    const now = options.now ?? new Date();
    const plan = applySafetyRails(planRetention(items, policy, { timeZone: this.timeZone, now }));
    const toDecision = (d: Decision<(typeof items)[number]>, action: 'keep' | 'remove'): PruneDecision => ({
      name: d.backup.entry.name,
      path: d.backup.entry.path,
      time: d.backup.entry.time,
      action,
      reasons: action === 'keep' ? d.reasons : (d.notKept ?? []),
      ...(d.backup.failed ? { failedVerification: d.backup.failed } : {}),
    });
    const decisions = [
      ...plan.keep.map((d) => toDecision(d, 'keep')),
      ...plan.remove.map((d) => toDecision(d, 'remove')),
    ].sort((a, b) => compareNewestFirst({ id: a.name, time: a.time }, { id: b.name, time: b.time }));
    for (const d of decisions) {
      if (d.action === 'remove' && protect.includes(d.name)) {
        d.action = 'keep';
        d.reasons = ['made by this run'];
      }
      // Set aside, not counted: only removed when asked for, and never the newest backup there is.
      if (d.failedVerification && options.removeFailed && d !== decisions[0]) {
        d.action = 'remove';
        d.reasons = [`--remove-failed: ${d.failedVerification}`];
      }
    }
    // The newest good backup stays whatever --remove-failed says (it is good, so it is never one of those).
    let held: string | undefined;
    const made = decisions.find((d) => d.name === options.madeByRun);
    if (made) {
      const others = decisions.filter((d) => d !== made);
      held = holdAfterTimeGap({
        made: made.time,
        previousNewest: others.find((d) => !plan.future.some((f) => f.entry.name === d.name))?.time,
        before: others.length,
        removing: decisions.filter((d) => d.action === 'remove').length,
      });
      if (held) {
        for (const d of decisions.filter((x) => x.action === 'remove')) {
          d.action = 'keep';
          d.reasons = [`held back: ${d.reasons.join('; ')}`];
        }
      }
    }
    const removed: string[] = [];
    const failed: { name: string; error: string }[] = [];
    if (!options.dryRun) {
      const policyText = describePolicy(policy);
      for (const decision of decisions.filter((d) => d.action === 'remove')) {
        const reasons = `policy ${policyText}: ${decision.reasons.join('; ')}`;
        try {
          await fsp.unlink(decision.path);
        } catch (error) {
          // One file that cannot go (immutable, permissions) must not keep the others from being rotated.
          decision.deleted = false;
          decision.error = oneLine(error);
          failed.push({ name: decision.name, error: decision.error });
          this.recordDeletionSafely({
            runId: options.runId,
            backupFile: decision.name,
            destination: 'local',
            reasons,
            status: 'failed',
            error: decision.error,
          });
          continue;
        }
        decision.deleted = true;
        removed.push(decision.name);
        this.recordDeletionSafely({
          runId: options.runId,
          backupFile: decision.name,
          destination: 'local',
          reasons,
          status: 'ok',
        });
      }
    }
    return {
      policy,
      decisions,
      removed,
      failed,
      unrecognized,
      future: plan.future.map((b) => b.entry.name),
      setAside: plan.failed.map((b) => ({ name: b.entry.name, reason: b.failed! })),
      held,
      dryRun: options.dryRun === true,
    };
  }

  /** The file is already gone; a catalog that cannot be written must not turn that into a failed deletion. */
  private recordDeletionSafely(record: Parameters<Catalog['recordDeletion']>[0]): void {
    try {
      if (record.status === 'ok') this.catalog.markBackupDeleted(record.backupFile);
      this.catalog.recordDeletion(record);
    } catch (error) {
      this.catalogWarning = `deletion of ${record.backupFile} not recorded in the activity log: ${oneLine(error)}`;
    }
  }

  /** The seed's `rotate_backups()`: applies the policy and returns the names it deleted. */
  async rotateBackups(policy?: RotationPolicy | RetentionPolicy): Promise<string[]> {
    const rules = policy instanceof RotationPolicy ? policy.toPolicy() : policy;
    return (await this.prune({ policy: rules })).removed;
  }
}
