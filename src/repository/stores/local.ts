import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { sha256File } from '../../pipeline/index.js';
import { LitekeepError } from '../../util/errors.js';
import { ensurePrivateDir, fsyncDir, fsyncFile, publishNoClobber } from '../../util/fs.js';
import { removeTempsOfDeadProcesses } from '../../util/process.js';
import { BlobNotFoundError, type BlobInfo, type BlobStore, type PutBlobOptions } from '../store.js';
import { OBJECT_TEMP, objectTempName } from '../../naming.js';

/** A repository in a folder (a second disk, a mounted share): `<path>/<database>/<host>/repo/`. */
export class LocalBlobStore implements BlobStore {
  private readonly swept = new Set<string>();

  constructor(readonly root: string) {}

  get location(): string {
    return this.root;
  }

  localFile(key: string): string {
    return this.file(key);
  }

  private file(key: string): string {
    if (key.split('/').some((part) => part === '' || part === '.' || part === '..'))
      throw new Error(`invalid repository key ${key}`);
    return path.join(this.root, ...key.split('/'));
  }

  async put(
    key: string,
    source: string,
    size: number,
    sha256: string,
    options: PutBlobOptions = {},
  ): Promise<'stored' | 'exists'> {
    return this.publish(
      key,
      (temp) => fsp.copyFile(source, temp, fs.constants.COPYFILE_EXCL),
      size,
      sha256,
      options,
    );
  }

  /** `put` of bytes in memory: written straight into the temp file beside the target (no second copy). */
  async putBytes(
    key: string,
    data: Buffer,
    sha256: string,
    options: PutBlobOptions = {},
  ): Promise<'stored' | 'exists'> {
    return this.publish(
      key,
      (temp) => fsp.writeFile(temp, data, { flag: 'wx', mode: 0o600 }),
      data.length,
      sha256,
      options,
    );
  }

  /** Temp file beside the target (made by `write`), private, fsynced, read back and checked, then published. */
  private async publish(
    key: string,
    write: (temp: string) => Promise<void>,
    size: number,
    sha256: string,
    options: PutBlobOptions,
  ): Promise<'stored' | 'exists'> {
    const target = this.file(key);
    const dir = path.dirname(target);
    const temp = path.join(dir, objectTempName(path.basename(target)));
    try {
      ensurePrivateDir(dir);
      if (!this.swept.has(dir)) {
        // A copy killed half-way left its temp file; only this host writes here.
        await removeTempsOfDeadProcesses(dir, OBJECT_TEMP);
        this.swept.add(dir);
      }
      options.signal?.throwIfAborted();
      await write(temp);
      await fsp.chmod(temp, 0o600);
      await fsyncFile(temp);
      const copied = await sha256File(temp);
      if (copied.bytes !== size || copied.sha256 !== sha256)
        throw new Error(`the copy of ${key} does not match what was written (${copied.bytes} bytes)`);
      if (await publishNoClobber(temp, target)) return 'stored';
      const existing = await sha256File(target);
      if (existing.sha256 === sha256) return 'exists';
      throw new Error(`${target} already holds other bytes; nothing was replaced — run litekeep check`);
    } catch (error) {
      throw new LitekeepError(
        `writing ${key} to ${this.root} failed: ${(error as Error).message}; check that the folder is mounted and writable`,
        { stage: 'upload', cause: error },
      );
    } finally {
      await fsp.rm(temp, { force: true });
    }
  }

  async get(key: string): Promise<Readable> {
    const file = this.file(key);
    try {
      await fsp.access(file, fs.constants.R_OK);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new BlobNotFoundError(key, this.root);
      throw new LitekeepError(`cannot read ${file}: ${(error as Error).message}`, {
        stage: 'restore',
        cause: error,
      });
    }
    return fs.createReadStream(file, { highWaterMark: 256 * 1024 });
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    // The prefix is a folder (`packs/`) or a key: walk from the deepest folder it names.
    const parts = prefix.split('/');
    const base = parts.slice(0, -1);
    const start = path.join(this.root, ...base);
    yield* this.walk(start, base.join('/'), prefix);
  }

  private async *walk(dir: string, keyDir: string, prefix: string): AsyncIterable<BlobInfo> {
    let entries: fs.Dirent[];
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new LitekeepError(
        `cannot list ${dir}: ${(error as Error).message}; check that the folder is mounted`,
        {
          stage: 'list',
          cause: error,
        },
      );
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const key = keyDir ? `${keyDir}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (prefix.startsWith(`${key}/`) || `${key}/`.startsWith(prefix))
          yield* this.walk(path.join(dir, entry.name), key, prefix);
      } else if (entry.isFile() && key.startsWith(prefix)) {
        const stat = await fsp.stat(path.join(dir, entry.name)).catch(() => undefined);
        if (stat) yield { key, size: stat.size, modified: stat.mtime };
      }
    }
  }

  async stat(key: string): Promise<BlobInfo | undefined> {
    try {
      const stat = await fsp.stat(this.file(key));
      return stat.isFile() ? { key, size: stat.size, modified: stat.mtime } : undefined;
    } catch {
      return undefined;
    }
  }

  async remove(key: string): Promise<void> {
    const file = this.file(key);
    try {
      await fsp.unlink(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new LitekeepError(`cannot remove ${file}: ${(error as Error).message}`, {
        stage: 'prune',
        cause: error,
      });
    }
    await fsyncDir(path.dirname(file));
  }

  close(): void {}
}
