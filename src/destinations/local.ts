import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import {
  hostFromSegment,
  hostSegment,
  isTempName,
  parseBackupName,
  TEMP_OF_PROCESS,
  tempNameFor,
} from '../naming.js';
import { createSha256Counter, sha256File } from '../pipeline/index.js';
import { LitekeepError } from '../util/errors.js';
import { ensurePrivateDir, fsyncDir, publishNoClobber, writeFileAtomic } from '../util/fs.js';
import { removeTempsOfDeadProcesses } from '../util/process.js';
import { SIDECAR_DIR } from './sidecar.js';
import {
  isOwnedBy,
  type ArtifactMetadata,
  type Destination,
  type PutOptions,
  type PutResult,
  type RemoteObject,
} from './types.js';

export interface LocalDestinationOptions {
  /**
   * This machine's name. When set, copies go to `<folder>/<host>/` (a folder several machines may share) and
   * only those are ever removed; copies in `<folder>` itself (litekeep before host folders) stay readable and
   * count as this host's when their metadata names it or nobody. Unset for the backup folder itself.
   */
  host?: string;
}

/**
 * A folder as a destination: the backup folder itself (`local`), or a second disk or mounted share. Metadata
 * lives in `<dir>/.litekeep-meta/<name>.json` beside each copy, so that a copy can be verified without the
 * catalog.
 */
export class LocalDestination implements Destination {
  readonly type = 'local';

  constructor(
    readonly name: string,
    readonly folder: string,
    private readonly options: LocalDestinationOptions = {},
  ) {}

  /** Where this machine writes. */
  private get ownDir(): string {
    return this.options.host === undefined
      ? this.folder
      : path.join(this.folder, hostSegment(this.options.host));
  }

  private metaPath(dir: string, name: string): string {
    return path.join(dir, SIDECAR_DIR, `${name}.json`);
  }

  async put(
    localPath: string,
    name: string,
    metadata: ArtifactMetadata,
    options: PutOptions = {},
  ): Promise<PutResult> {
    const started = Date.now();
    const dir = this.ownDir;
    const target = path.join(dir, name);
    if (path.resolve(localPath) === path.resolve(target)) {
      await this.writeMeta(dir, name, metadata);
      return { id: target, bytes: metadata.bytes, attempts: 1, durationMs: 0 };
    }
    try {
      ensurePrivateDir(dir);
      // A copy killed half-way left its temp file; only this host writes here, and never two runs at once.
      await removeTempsOfDeadProcesses(dir, TEMP_OF_PROCESS);
      await removeTempsOfDeadProcesses(path.join(dir, SIDECAR_DIR), TEMP_OF_PROCESS);
      const temp = path.join(dir, tempNameFor(name));
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
          // Already there: fine when it is this very backup (a retried run), never when the bytes differ.
          const existing = await sha256File(target);
          if (existing.sha256 !== hash.sha256) {
            throw new Error(
              `a different file named ${name} is already in ${dir} (sha256 ${existing.sha256.slice(0, 12)}…); ` +
                `another machine may use the host name '${this.options.host ?? '?'}': give each its own 'host'`,
            );
          }
        }
        // Only now that the file is in place: the metadata must never describe bytes that are not there.
        await this.writeMeta(dir, name, metadata);
      } finally {
        await fsp.rm(temp, { force: true });
      }
    } catch (error) {
      throw new LitekeepError(
        `copy to ${this.name} (${dir}) failed: ${(error as Error).message}; check that the folder is mounted and writable`,
        { stage: 'upload', cause: error },
      );
    }
    options.onProgress?.(metadata.bytes);
    return { id: target, bytes: metadata.bytes, attempts: 1, durationMs: Date.now() - started };
  }

  private async writeMeta(dir: string, name: string, metadata: ArtifactMetadata): Promise<void> {
    ensurePrivateDir(path.join(dir, SIDECAR_DIR));
    await writeFileAtomic(this.metaPath(dir, name), JSON.stringify(metadata, null, 2));
  }

  private async readMeta(dir: string, name: string): Promise<Partial<ArtifactMetadata> | undefined> {
    try {
      return JSON.parse(await fsp.readFile(this.metaPath(dir, name), 'utf8')) as Partial<ArtifactMetadata>;
    } catch {
      return undefined;
    }
  }

  /** Every copy here: this host's, other hosts' (in their folders) and the ones from before host folders. */
  async list(): Promise<RemoteObject[]> {
    const out: RemoteObject[] = [];
    let entries: fs.Dirent[];
    try {
      entries = await fsp.readdir(this.folder, { withFileTypes: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    for (const entry of entries) {
      if (entry.isDirectory() && this.options.host !== undefined && !entry.name.startsWith('.')) {
        const dir = path.join(this.folder, entry.name);
        for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
          const object = await this.statIn(dir, name, hostFromSegment(entry.name), false);
          if (object) out.push(object);
        }
      } else if (!entry.isDirectory()) {
        const object = await this.statIn(this.folder, entry.name, undefined, this.options.host !== undefined);
        if (object) out.push(object);
      }
    }
    return out;
  }

  private async statIn(
    dir: string,
    name: string,
    host: string | undefined,
    legacy: boolean,
  ): Promise<RemoteObject | undefined> {
    if (isTempName(name) || !parseBackupName(name)) return undefined;
    const file = path.join(dir, name);
    try {
      const stat = await fsp.stat(file);
      if (!stat.isFile()) return undefined;
      const metadata = await this.readMeta(dir, name);
      return {
        name,
        id: file,
        bytes: stat.size,
        metadata,
        host: host ?? metadata?.host,
        ...(legacy ? { legacy: true } : {}),
        modifiedTime: stat.mtime.toISOString(),
      };
    } catch {
      return undefined;
    }
  }

  /** This host's copy of `name`, or one from before host folders that is this host's. */
  async stat(name: string): Promise<RemoteObject | undefined> {
    const own = await this.statIn(this.ownDir, name, this.options.host, false);
    if (own || this.options.host === undefined) return own;
    const legacy = await this.statIn(this.folder, name, undefined, true);
    return legacy && isOwnedBy(legacy, this.options.host) ? legacy : undefined;
  }

  async get(object: RemoteObject): Promise<Readable> {
    await fsp.access(object.id, fs.constants.R_OK);
    return fs.createReadStream(object.id);
  }

  async remove(object: RemoteObject): Promise<void> {
    if (!parseBackupName(object.name) || path.basename(object.id) !== object.name)
      throw new Error(`refusing to remove ${object.id}: not a litekeep backup name`);
    if (this.options.host !== undefined && !isOwnedBy(object, this.options.host))
      throw new Error(`refusing to remove ${object.id}: it belongs to host '${object.host}'`);
    const dir = path.dirname(object.id);
    if (!isInside(this.folder, dir))
      throw new Error(`refusing to remove ${object.id}: outside ${this.folder}`);
    await fsp.unlink(object.id);
    await fsp.rm(this.metaPath(dir, object.name), { force: true });
    await fsyncDir(dir);
  }
}

function isInside(root: string, dir: string): boolean {
  const relative = path.relative(path.resolve(root), path.resolve(dir));
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}
