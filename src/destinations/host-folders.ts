import type { Readable } from 'node:stream';
import {
  hostFromSegment,
  hostSegment,
  isTempName,
  parseBackupName,
  TEMP_OF_PROCESS,
  tempNameFor,
} from '../naming.js';
import { LitekeepError, oneLine } from '../util/errors.js';
import { isProcessAlive } from '../util/process.js';
import { encodeSidecar, parseSidecar, SIDECAR_DIR, sidecarFileName } from './sidecar.js';
import {
  isOwnedBy,
  type ArtifactMetadata,
  type Destination,
  type PutOptions,
  type PutResult,
  type RemoteObject,
} from './types.js';

/** A file below a database folder on a folder-like storage. */
export interface FolderEntry {
  /** `/`-separated, relative to the database folder: `<host>/<file>` or `<host>/.litekeep-meta/<file>.json`. */
  path: string;
  bytes: number;
  modifiedTime?: string;
  /** litekeep metadata that the storage keeps on the object itself (rclone backends with user metadata). */
  metadata?: Partial<ArtifactMetadata>;
}

/** Digests of the local file as it was read for an upload. */
export interface LocalDigests {
  bytes: number;
  sha256: string;
  /** Other digests (hex), by rclone's hash names (`sha1`, `md5`, ...). */
  digests: Record<string, string>;
}

/** What an upload sent, for checking the copy afterwards. */
export interface Uploaded {
  bytes: number;
  /**
   * The local file's digests (sha256 and the storage's own hash, in one read of the file), begun before the
   * upload and perhaps still being finished: a check starts the storage's own hashing at once and waits for
   * these only to compare.
   */
  local: Promise<LocalDigests>;
}

/** What `upload` reports. */
export interface Sent {
  bytes: number;
  /**
   * Settles once the copy is on the storage's disk (an SFTP fsync): awaited, alongside the check, before the
   * copy is renamed into place. Absent where the upload itself ends durable (or the storage offers no way).
   */
  durable?: Promise<void>;
}

/** The operations of one connection to a folder-like storage, all on paths relative to the database folder. */
export interface FolderOps {
  /** Every host folder's files and sidecars; [] when the database folder does not exist yet. */
  listDatabase(): Promise<FolderEntry[]>;
  /** One host folder's files and sidecars; [] when it does not exist yet. */
  listHost(segment: string): Promise<FolderEntry[]>;
  /** Small files (sidecars) by path; paths that are gone are left out. */
  readTexts(paths: string[]): Promise<Map<string, string>>;
  /** Writes a small file of this host's, replacing it when it exists. */
  writeText(path: string, text: string): Promise<void>;
  /**
   * Uploads to `path` (a temp name that nobody else uses), creating folders as needed. `metadata` rides on the
   * object where the storage keeps it; a repository's objects carry none.
   */
  upload(
    localPath: string,
    path: string,
    metadata: ArtifactMetadata | undefined,
    options: PutOptions,
  ): Promise<Sent>;
  /** Why the copy at `path` is not what was sent (size, a hash the storage offers, or a read-back); or undefined. */
  verify(path: string, uploaded: Uploaded, localPath: string): Promise<string | undefined>;
  /**
   * Renames `from` to `to` unless `to` exists (then `published: false`, nothing changed). `metadataKept` says
   * whether the storage kept the metadata given to `upload` on the object itself, so no sidecar is needed.
   */
  publish(
    from: string,
    to: string,
    metadata: ArtifactMetadata | undefined,
  ): Promise<{ published: boolean; metadataKept: boolean }>;
  /** Removes one file; one that is already gone is not an error. */
  removeFile(path: string): Promise<void>;
  /** The files and folder names directly in the folder `path`; both empty when it does not exist. */
  listFolder(path: string): Promise<{ files: FolderEntry[]; folders: string[] }>;
  /** Every file below the folder `path`, at any depth (paths relative to the database folder); [] when absent. */
  listTree(path: string): Promise<FolderEntry[]>;
  /** One file's size and time; undefined when there is none. */
  statFile(path: string): Promise<FolderEntry | undefined>;
  /**
   * A file's bytes, on this connection; undefined when there is no such file. The stream fails (never ends
   * short) when the transfer or the connection breaks.
   */
  read(path: string): Promise<Readable | undefined>;
}

/** A connection kept open for many operations (a repository's objects), until `close`. */
export interface FolderConnection extends FolderOps {
  /** The connection broke: open another. */
  readonly broken: boolean;
  close(): void;
}

/** A storage that holds folders: an rclone remote, an SFTP server. */
export interface FolderStore {
  /** The database folder as the user would name it, e.g. `dropbox:backups/app` or `sftp://u@host:22/backups/app`. */
  readonly root: string;
  /**
   * Starts hashing the local file for an upload: sha256 and the hash this storage checks copies with, in one
   * read on another thread. Called before connecting, so that the hashing overlaps the handshake and the upload;
   * `signal` stops it when the upload ends without it.
   */
  digestLocal(localPath: string, signal: AbortSignal): Promise<LocalDigests>;
  /** Runs `work` on one connection (opened and closed around it). */
  session<T>(work: (ops: FolderOps) => Promise<T>): Promise<T>;
  /** One connection for the caller to use and close. */
  connect(): Promise<FolderConnection>;
  /** A stream of one file's bytes that fails (never ends short) when the transfer breaks. */
  open(path: string): Promise<Readable>;
  /** Stops what the storage keeps running between operations (the rclone process). */
  release?(): void;
}

/**
 * What a repository on a folder-like storage (src/repository/stores/folder.ts) uses: the destination's own
 * connection, sign-in, host-key check, hashing and messages.
 */
export interface FolderRepositoryAccess {
  /** The destination's name, for messages. */
  name: string;
  /** The database folder as the user would name it (credentials masked). */
  root: string;
  digestLocal(localPath: string, signal: AbortSignal): Promise<LocalDigests>;
  connect(): Promise<FolderConnection>;
  release(): void;
}

/**
 * Uploads `localPath` under `temp` and checks the copy there: its size, the storage's hash, and first of all the
 * local file itself (a copy that matches a file that changed is no copy of what was recorded). What is wrong,
 * or undefined; `what` names the thing in messages (`backup`, `object`). Full copies and repository objects
 * (src/repository/stores/folder.ts) both go through here.
 */
export async function uploadChecked(
  ops: FolderOps,
  localPath: string,
  temp: string,
  expected: { bytes: number; sha256: string },
  local: Promise<LocalDigests>,
  metadata: ArtifactMetadata | undefined,
  options: { signal?: AbortSignal; onProgress?: (bytes: number) => void },
  what: string,
): Promise<string | undefined> {
  const sent = await ops.upload(localPath, temp, metadata, options);
  if (sent.bytes !== expected.bytes) return `sent ${sent.bytes} bytes but the ${what} has ${expected.bytes}`;
  // The storage's hash, the local one and the flush to the server's disk all at once.
  const [verdict, digests] = await Promise.all([
    ops.verify(temp, { bytes: sent.bytes, local }, localPath),
    local,
    sent.durable,
  ]);
  if (digests.sha256 !== expected.sha256 || digests.bytes !== expected.bytes)
    return `the local file's sha256 ${digests.sha256} (${digests.bytes} bytes) is not the ${what}'s ${expected.sha256} (it changed during upload?)`;
  return verdict;
}

/** What differs between the copy at `path` and these bytes (the storage's hash, or a read-back), if anything. */
export function differsFrom(
  ops: FolderOps,
  path: string,
  expected: { bytes: number; sha256: string },
  localPath: string,
): Promise<string | undefined> {
  const local = Promise.resolve({ bytes: expected.bytes, sha256: expected.sha256, digests: {} });
  return ops.verify(path, { bytes: expected.bytes, local }, localPath);
}

/**
 * The layout shared by every folder-like destination (docs/layout.md): `<root>/<host>/<file>` with metadata in
 * the object itself or in `<root>/<host>/.litekeep-meta/<file>.json`. A copy is uploaded under a temp name,
 * checked, and only then renamed to its final name, never over an existing one: a copy under a backup's name is
 * always whole and verified, whatever happened to the upload (a killed server, a killed process).
 */
export class HostFolderDestination implements Destination {
  constructor(
    readonly name: string,
    readonly type: string,
    private readonly store: FolderStore,
    private readonly host: string,
  ) {}

  /** See FolderRepositoryAccess. */
  repositoryAccess(): FolderRepositoryAccess {
    const store = this.store;
    return {
      name: this.name,
      root: store.root,
      digestLocal: (localPath, signal) => store.digestLocal(localPath, signal),
      connect: () => store.connect(),
      release: () => store.release?.(),
    };
  }

  private get ownSegment(): string {
    return hostSegment(this.host);
  }

  /** The id of a copy: its full place on the storage, which is what the user sees in `list --json`. */
  private idOf(path: string): string {
    return `${this.store.root}/${path}`;
  }

  /** The path of a copy inside the database folder, and whose it is; undefined for anything else. */
  private placeOf(id: string): { path: string; host: string; name: string } | undefined {
    if (!id.startsWith(`${this.store.root}/`)) return undefined;
    const path = id.slice(this.store.root.length + 1);
    const parts = path.split('/');
    if (parts.length !== 2 || parts[0] === '' || parts[0].startsWith('.')) return undefined;
    if (!parseBackupName(parts[1])) return undefined;
    return { path, host: hostFromSegment(parts[0]), name: parts[1] };
  }

  private fail(action: string, error: unknown, stage: string): LitekeepError {
    if (error instanceof LitekeepError) return error;
    return new LitekeepError(`${action} on ${this.name} failed: ${oneLine(error)}`, { stage, cause: error });
  }

  /** Backup files among `entries`, with their metadata from the object itself or from their sidecar. */
  private async objectsIn(ops: FolderOps, entries: FolderEntry[]): Promise<RemoteObject[]> {
    const sidecars = new Set(entries.map((e) => e.path));
    const copies = entries.filter((e) => {
      const parts = e.path.split('/');
      return (
        parts.length === 2 && !parts[0].startsWith('.') && !isTempName(parts[1]) && parseBackupName(parts[1])
      );
    });
    const sidecarOf = (path: string) => {
      const [segment, name] = path.split('/');
      return `${segment}/${SIDECAR_DIR}/${sidecarFileName(name)}`;
    };
    const wanted = copies
      .filter((e) => !e.metadata?.sha256 && sidecars.has(sidecarOf(e.path)))
      .map((e) => sidecarOf(e.path));
    const texts = wanted.length ? await ops.readTexts(wanted) : new Map<string, string>();
    return copies.map((e) => {
      const [segment, name] = e.path.split('/');
      const text = texts.get(sidecarOf(e.path));
      const metadata = e.metadata?.sha256 ? e.metadata : text === undefined ? undefined : parseSidecar(text);
      return {
        name,
        id: this.idOf(e.path),
        host: hostFromSegment(segment),
        bytes: e.bytes,
        ...(metadata ? { metadata } : {}),
        ...(e.modifiedTime ? { modifiedTime: e.modifiedTime } : {}),
      };
    });
  }

  /** One copy among a host folder's entries, reading only its own sidecar. */
  private async find(
    ops: FolderOps,
    entries: FolderEntry[],
    segment: string,
    name: string,
  ): Promise<RemoteObject | undefined> {
    const mine = new Set([`${segment}/${name}`, `${segment}/${SIDECAR_DIR}/${sidecarFileName(name)}`]);
    return (
      await this.objectsIn(
        ops,
        entries.filter((e) => mine.has(e.path)),
      )
    )[0];
  }

  async list(): Promise<RemoteObject[]> {
    try {
      return await this.store.session(async (ops) => this.objectsIn(ops, await ops.listDatabase()));
    } catch (error) {
      throw this.fail(`listing ${this.store.root}`, error, 'list');
    }
  }

  async stat(name: string): Promise<RemoteObject | undefined> {
    try {
      return await this.store.session(async (ops) =>
        this.find(ops, await ops.listHost(this.ownSegment), this.ownSegment, name),
      );
    } catch (error) {
      throw this.fail(`stat of ${name}`, error, 'list');
    }
  }

  async get(object: RemoteObject): Promise<Readable> {
    const place = this.placeOf(object.id);
    if (!place) throw new Error(`refusing to read ${object.id}: not a litekeep copy in ${this.store.root}`);
    try {
      return await this.store.open(place.path);
    } catch (error) {
      throw this.fail(`download of ${object.name}`, error, 'restore');
    }
  }

  async remove(object: RemoteObject): Promise<void> {
    const place = this.placeOf(object.id);
    if (!place || place.name !== object.name)
      throw new Error(`refusing to remove ${object.id}: not a litekeep copy in ${this.store.root}`);
    if (!isOwnedBy({ host: place.host }, this.host))
      throw new Error(`refusing to remove ${object.id}: it belongs to host '${place.host}'`);
    try {
      await this.store.session(async (ops) => {
        await ops.removeFile(place.path);
        await ops.removeFile(`${hostSegment(place.host)}/${SIDECAR_DIR}/${sidecarFileName(place.name)}`);
      });
    } catch (error) {
      throw this.fail(`removal of ${object.name}`, error, 'prune');
    }
  }

  async put(
    localPath: string,
    name: string,
    metadata: ArtifactMetadata,
    options: PutOptions = {},
  ): Promise<PutResult> {
    if (!parseBackupName(name)) throw new Error(`refusing to upload ${name}: not a litekeep backup name`);
    const started = Date.now();
    const segment = this.ownSegment;
    const final = `${segment}/${name}`;
    const sidecar = `${segment}/${SIDECAR_DIR}/${sidecarFileName(name)}`;
    const done = (): PutResult => {
      options.onProgress?.(metadata.bytes);
      return { id: this.idOf(final), bytes: metadata.bytes, attempts: 1, durationMs: Date.now() - started };
    };
    // Begun before the connection: what the copy is compared with, and the proof the file is the backup.
    const hashing = new AbortController();
    const local = this.store.digestLocal(localPath, hashing.signal);
    local.catch(() => undefined);
    try {
      return await this.store.session(async (ops) => {
        const entries = await ops.listHost(segment);
        await this.sweepTemps(ops, entries, segment);
        const existing = await this.find(ops, entries, segment, name);
        if (existing) {
          await this.alreadyThere(ops, existing, final, sidecar, localPath, metadata);
          return done();
        }
        const temp = `${segment}/${tempNameFor(name)}`;
        let published = false;
        try {
          const problem = await uploadChecked(
            ops,
            localPath,
            temp,
            metadata,
            local,
            metadata,
            options,
            'backup',
          );
          if (problem) {
            throw new LitekeepError(
              `upload of ${name} to ${this.name} failed verification: ${problem}; the remote copy was removed, run the backup again`,
              { stage: 'upload' },
            );
          }
          const result = await ops.publish(temp, final, metadata);
          published = result.published;
          if (!published) {
            // Taken between the listing and now: the same backup from a retried run, or another machine's.
            const now = await this.find(ops, await ops.listHost(segment), segment, name);
            if (!now) throw new Error(`${this.idOf(final)} could not be created and is not there`);
            await this.alreadyThere(ops, now, final, sidecar, localPath, metadata);
            return done();
          }
          // Only now that the copy is in place: a sidecar must never describe bytes that are not there.
          if (!result.metadataKept) await ops.writeText(sidecar, encodeSidecar(metadata));
        } finally {
          if (!published) await ops.removeFile(temp).catch(() => undefined);
        }
        return done();
      });
    } catch (error) {
      throw this.fail(`upload of ${name}`, error, 'upload');
    } finally {
      hashing.abort(); // a copy already there, or a failure: the hash is not needed any more
    }
  }

  /**
   * A copy of this name is already in this host's folder: this very backup (a retried run, or one whose sidecar
   * was not written before a crash), or another machine that uses the same host name.
   */
  private async alreadyThere(
    ops: FolderOps,
    existing: RemoteObject,
    final: string,
    sidecar: string,
    localPath: string,
    metadata: ArtifactMetadata,
  ): Promise<void> {
    const clash = (sha256: string | undefined) =>
      new LitekeepError(
        `upload of ${existing.name} to ${this.name} refused: ${existing.id} already holds other bytes ` +
          `(sha256 ${sha256?.slice(0, 12) ?? 'unknown'}…); another machine uses the host name '${this.host}' — ` +
          `give each machine its own 'host' setting`,
        { stage: 'upload' },
      );
    if (existing.bytes !== metadata.bytes) throw clash(existing.metadata?.sha256);
    if (existing.metadata?.sha256) {
      if (existing.metadata.sha256 !== metadata.sha256) throw clash(existing.metadata.sha256);
      return;
    }
    // Bytes without metadata: the process stopped between publishing and writing the sidecar. Check the bytes
    // themselves before saying what they are.
    if (await differsFrom(ops, final, metadata, localPath)) throw clash(undefined);
    await ops.writeText(sidecar, encodeSidecar(metadata));
  }

  /**
   * Temp files in this host's folder (and its sidecars') from uploads that did not finish: the folder is this machine's, so a
   * temp's pid is one of this machine's processes, and one that is gone (or this process, which uploads to one
   * folder at a time) left it behind.
   */
  private async sweepTemps(ops: FolderOps, entries: FolderEntry[], segment: string): Promise<void> {
    for (const entry of entries) {
      const parts = entry.path.split('/');
      const inSidecars = parts.length === 3 && parts[1] === SIDECAR_DIR;
      if (parts[0] !== segment || !(parts.length === 2 || inSidecars)) continue;
      const m = TEMP_OF_PROCESS.exec(parts.at(-1)!);
      if (!m) continue;
      const pid = Number(m[1]);
      if (pid !== process.pid && isProcessAlive(pid)) continue;
      await ops.removeFile(entry.path).catch(() => undefined);
    }
  }
}
