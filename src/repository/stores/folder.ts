import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import {
  differsFrom,
  uploadChecked,
  type FolderConnection,
  type FolderEntry,
  type FolderRepositoryAccess,
  type HostFolderDestination,
} from '../../destinations/host-folders.js';
import { hostFromSegment, hostSegment, OBJECT_TEMP, objectTempName } from '../../naming.js';
import { LitekeepError, oneLine } from '../../util/errors.js';
import { isProcessAlive } from '../../util/process.js';
import { BlobNotFoundError, type BlobInfo, type BlobStore, type PutBlobOptions } from '../store.js';

/** Temp files this process is uploading now (by storage and path), which a sweep must leave alone. */
const uploading = new Set<string>();

/**
 * A repository on a folder-like storage — an SFTP server, an rclone remote — at `<database>/<host>/repo/`
 * below the destination's folder, through the destination's own connection, sign-in, host-key check and
 * messages (src/destinations/host-folders.ts). One connection serves every operation until `close`, and is
 * opened again when it breaks.
 *
 * An object is uploaded under a temp name in its folder, checked (its size, and a hash the server computes or
 * a read-back, as the destination checks full copies), then renamed to its key with a rename that never
 * replaces: a key names whole, checked bytes or nothing, whatever happens to the upload.
 */
export class FolderBlobStore implements BlobStore {
  private readonly access: FolderRepositoryAccess;
  /** `<host>/repo`, relative to the database folder. */
  private readonly base: string;
  private connection?: Promise<FolderConnection>;
  private readonly swept = new Map<string, Promise<void>>();

  constructor(destination: HostFolderDestination, host: string) {
    this.access = destination.repositoryAccess();
    this.base = `${hostSegment(host)}/repo`;
  }

  /** The hosts with a repository of this database in the destination's folder. */
  static async hosts(destination: HostFolderDestination): Promise<string[]> {
    const access = destination.repositoryAccess();
    const connection = await access.connect();
    try {
      const { folders } = await connection.listFolder('');
      const hosts: string[] = [];
      for (const segment of folders) {
        if (segment.startsWith('.')) continue;
        if (await connection.statFile(`${segment}/repo/config`)) hosts.push(hostFromSegment(segment));
      }
      return hosts.sort();
    } catch (error) {
      throw new LitekeepError(`listing the repositories on ${access.name} failed: ${oneLine(error)}`, {
        stage: 'list',
        cause: error,
      });
    } finally {
      connection.close();
      access.release();
    }
  }

  get location(): string {
    return `${this.access.root}/${this.base}/`;
  }

  private path(key: string): string {
    if (key.split('/').some((part) => part === '' || part === '.' || part === '..' || part.startsWith('.')))
      throw new Error(`invalid repository key ${key}`);
    return `${this.base}/${key}`;
  }

  private connect(): Promise<FolderConnection> {
    const current = this.connection;
    if (current) {
      return current.then((c) => {
        if (!c.broken) return c;
        if (this.connection === current) {
          this.connection = undefined;
          // Uploads cut off with the connection left their temp files: look again before the next ones.
          this.swept.clear();
        }
        return this.connect();
      });
    }
    const opened = this.access.connect();
    this.connection = opened;
    opened.catch(() => {
      if (this.connection === opened) this.connection = undefined;
    });
    return opened;
  }

  /**
   * Temp files in `dir` from uploads that did not finish: the repository is this host's, so a temp's pid is
   * one of this machine's processes, and one that is gone (or this one, when it uploads no such file now) left
   * it behind. Once per folder and connection.
   */
  private sweep(connection: FolderConnection, dir: string): Promise<void> {
    let done = this.swept.get(dir);
    if (!done) {
      done = (async () => {
        const { files } = await connection.listFolder(dir);
        for (const file of files) {
          const pid = Number(OBJECT_TEMP.exec(posix.basename(file.path))?.[1]);
          if (!pid) continue;
          const ours = pid === process.pid;
          if (ours ? uploading.has(this.tempKey(file.path)) : isProcessAlive(pid)) continue;
          await connection.removeFile(file.path).catch(() => undefined);
        }
      })();
      this.swept.set(dir, done);
      done.catch(() => this.swept.delete(dir));
    }
    return done;
  }

  /** The key of a temp file in `uploading`: the storage and the path. */
  private tempKey(path: string): string {
    return `${this.access.root}/${path}`;
  }

  /** One line naming the object, the destination and the cause (with its fix, as the destination words it). */
  private fail(action: string, error: unknown, stage: string): LitekeepError {
    if (error instanceof LitekeepError) return error;
    return new LitekeepError(`${action} in the repository on ${this.access.name} failed: ${oneLine(error)}`, {
      stage,
      cause: error,
    });
  }

  async put(
    key: string,
    file: string,
    size: number,
    sha256: string,
    options: PutBlobOptions = {},
  ): Promise<'stored' | 'exists'> {
    const final = this.path(key);
    const dir = posix.dirname(final);
    // Begun at once: sha256 (the proof that the file is the object) and the storage's own hash, in one read.
    const hashing = new AbortController();
    const local = this.access.digestLocal(file, hashing.signal);
    local.catch(() => undefined);
    let temp: string | undefined;
    let connection: FolderConnection | undefined;
    try {
      connection = await this.connect();
      await this.sweep(connection, dir);
      const existing = await connection.statFile(final);
      if (existing) return await this.alreadyThere(connection, key, existing, file, size, sha256);
      options.signal?.throwIfAborted();
      temp = `${dir}/${objectTempName(posix.basename(final))}`;
      uploading.add(this.tempKey(temp));
      const problem = await uploadChecked(
        connection,
        file,
        temp,
        { bytes: size, sha256 },
        local,
        undefined,
        { signal: options.signal },
        'object',
      );
      if (problem) throw new Error(`the uploaded copy failed verification: ${problem}`);
      const { published } = await connection.publish(temp, final, undefined);
      if (published) {
        uploading.delete(this.tempKey(temp));
        temp = undefined;
        return 'stored';
      }
      // Taken between the look and the rename: the same object from another upload of this run, or clashing bytes.
      const now = await connection.statFile(final);
      if (!now) throw new Error(`${key} could not be created and is not there`);
      return await this.alreadyThere(connection, key, now, file, size, sha256);
    } catch (error) {
      // Its temp file may be left (a connection that broke cannot remove it): look again before the next upload.
      this.swept.delete(dir);
      throw this.fail(`upload of ${key}`, error, 'upload');
    } finally {
      hashing.abort();
      if (temp !== undefined) {
        if (connection && !connection.broken) await connection.removeFile(temp).catch(() => undefined);
        uploading.delete(this.tempKey(temp));
      }
    }
  }

  /** An object is already under `key`: the same bytes (content-addressed keys) are a success; others, never. */
  private async alreadyThere(
    connection: FolderConnection,
    key: string,
    existing: FolderEntry,
    file: string,
    size: number,
    sha256: string,
  ): Promise<'exists'> {
    const refuse = (why: string) =>
      new LitekeepError(
        `upload of ${key} to ${this.access.name} refused: ${this.location}${key} already holds other bytes ` +
          `(${why}); nothing was replaced — run litekeep check`,
        { stage: 'upload' },
      );
    if (existing.bytes !== size) throw refuse(`${existing.bytes} bytes, not ${size}`);
    const problem = await differsFrom(connection, this.path(key), { bytes: size, sha256 }, file);
    if (problem) throw refuse(problem);
    return 'exists';
  }

  async get(key: string): Promise<Readable> {
    try {
      const connection = await this.connect();
      const stream = await connection.read(this.path(key));
      if (!stream) throw new BlobNotFoundError(key, this.location);
      return stream;
    } catch (error) {
      throw this.fail(`download of ${key}`, error, 'restore');
    }
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    // The prefix is a folder (`packs/`) or a key: list from the deepest folder it names.
    const folder = prefix.split('/').slice(0, -1).join('/');
    let entries: FolderEntry[];
    try {
      const connection = await this.connect();
      entries = await connection.listTree(folder ? `${this.base}/${folder}` : this.base);
    } catch (error) {
      throw this.fail(`listing ${this.location}${prefix}`, error, 'list');
    }
    for (const entry of entries) {
      const key = entry.path.slice(this.base.length + 1);
      // Temp files of uploads in progress (or of ones that died) are no objects.
      if (!key.startsWith(prefix) || key.split('/').some((part) => part.startsWith('.'))) continue;
      yield {
        key,
        size: entry.bytes,
        ...(entry.modifiedTime ? { modified: new Date(entry.modifiedTime) } : {}),
      };
    }
  }

  async stat(key: string): Promise<BlobInfo | undefined> {
    try {
      const connection = await this.connect();
      const entry = await connection.statFile(this.path(key));
      return entry
        ? {
            key,
            size: entry.bytes,
            ...(entry.modifiedTime ? { modified: new Date(entry.modifiedTime) } : {}),
          }
        : undefined;
    } catch (error) {
      throw this.fail(`reading ${key}`, error, 'repository');
    }
  }

  async remove(key: string): Promise<void> {
    try {
      const connection = await this.connect();
      await connection.removeFile(this.path(key));
    } catch (error) {
      throw this.fail(`removal of ${key}`, error, 'prune');
    }
  }

  close(): void {
    const connection = this.connection;
    this.connection = undefined;
    void connection?.then((c) => c.close()).catch(() => undefined);
    this.access.release();
  }
}

/** The local file is the object the repository recorded: a copy of a file that changed is no copy of it. */
