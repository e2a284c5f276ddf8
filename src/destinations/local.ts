import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { isTempName, parseBackupName, tempNameFor } from '../naming.js';
import { createSha256Counter } from '../pipeline/index.js';
import { LitekeepError } from '../util/errors.js';
import { ensurePrivateDir, fsyncDir, publishNoClobber, writeFileAtomic } from '../util/fs.js';
import type { ArtifactMetadata, Destination, PutOptions, PutResult, RemoteObject } from './types.js';

const SIDECAR_DIR = '.litekeep-meta';

/**
 * A folder as a destination: the backup folder itself (`local`), or a second disk or mounted share. Metadata
 * lives in `<folder>/.litekeep-meta/<name>.json` so that a copy can be verified without the catalog.
 */
export class LocalDestination implements Destination {
  readonly type = 'local';

  constructor(
    readonly name: string,
    readonly folder: string,
  ) {}

  private metaPath(name: string): string {
    return path.join(this.folder, SIDECAR_DIR, `${name}.json`);
  }

  async put(
    localPath: string,
    name: string,
    metadata: ArtifactMetadata,
    options: PutOptions = {},
  ): Promise<PutResult> {
    const started = Date.now();
    const target = path.join(this.folder, name);
    if (path.resolve(localPath) === path.resolve(target)) {
      await this.writeMeta(name, metadata);
      return { id: target, bytes: metadata.bytes, attempts: 1, durationMs: 0 };
    }
    try {
      ensurePrivateDir(this.folder);
      const temp = path.join(this.folder, tempNameFor(name));
      try {
        const hash = createSha256Counter();
        await pipeline(
          fs.createReadStream(localPath),
          hash,
          fs.createWriteStream(temp, { mode: 0o600, flags: 'wx' }),
          { signal: options.signal },
        );
        const handle = await fsp.open(temp, 'r');
        await handle.sync();
        await handle.close();
        if (hash.bytes !== metadata.bytes || (metadata.sha256 !== '' && hash.sha256 !== metadata.sha256)) {
          throw new Error(
            `the copy does not match the backup (${hash.bytes} bytes, sha256 ${hash.sha256.slice(0, 12)}…)`,
          );
        }
        if (!(await publishNoClobber(temp, target))) {
          const existing = await fsp.stat(target);
          if (existing.size !== metadata.bytes)
            throw new Error(`a different file named ${name} is already there`);
        }
        // Only now that the file is in place: the metadata must never describe bytes that are not there.
        await this.writeMeta(name, metadata);
      } finally {
        await fsp.rm(temp, { force: true });
      }
    } catch (error) {
      throw new LitekeepError(
        `copy to ${this.name} (${this.folder}) failed: ${(error as Error).message}; check that the folder is mounted and writable`,
        { stage: 'upload', cause: error },
      );
    }
    options.onProgress?.(metadata.bytes);
    return { id: target, bytes: metadata.bytes, attempts: 1, durationMs: Date.now() - started };
  }

  private async writeMeta(name: string, metadata: ArtifactMetadata): Promise<void> {
    ensurePrivateDir(path.join(this.folder, SIDECAR_DIR));
    await writeFileAtomic(this.metaPath(name), JSON.stringify(metadata, null, 2));
  }

  private async readMeta(name: string): Promise<Partial<ArtifactMetadata> | undefined> {
    try {
      return JSON.parse(await fsp.readFile(this.metaPath(name), 'utf8')) as Partial<ArtifactMetadata>;
    } catch {
      return undefined;
    }
  }

  async list(): Promise<RemoteObject[]> {
    let names: string[];
    try {
      names = await fsp.readdir(this.folder);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const out: RemoteObject[] = [];
    for (const name of names) {
      if (isTempName(name) || !parseBackupName(name)) continue;
      const object = await this.stat(name);
      if (object) out.push(object);
    }
    return out;
  }

  async stat(name: string): Promise<RemoteObject | undefined> {
    const file = path.join(this.folder, name);
    try {
      const stat = await fsp.stat(file);
      if (!stat.isFile()) return undefined;
      return {
        name,
        id: file,
        bytes: stat.size,
        metadata: await this.readMeta(name),
        modifiedTime: stat.mtime.toISOString(),
      };
    } catch {
      return undefined;
    }
  }

  async get(name: string): Promise<Readable> {
    const file = path.join(this.folder, name);
    await fsp.access(file, fs.constants.R_OK);
    return fs.createReadStream(file);
  }

  async remove(name: string): Promise<void> {
    if (!parseBackupName(name)) throw new Error(`refusing to remove ${name}: not a litekeep backup name`);
    await fsp.unlink(path.join(this.folder, name));
    await fsp.rm(this.metaPath(name), { force: true });
    await fsyncDir(this.folder);
  }
}
