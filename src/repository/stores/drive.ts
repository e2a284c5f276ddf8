import type { Readable } from 'node:stream';
import {
  DriveFileNotFoundError,
  type DriveFileInfo,
  type DriveRepositoryAccess,
  type GoogleDriveDestination,
} from '../../destinations/google-drive.js';
import { LitekeepError } from '../../util/errors.js';
import { BlobNotFoundError, type BlobInfo, type BlobStore, type PutBlobOptions } from '../store.js';

const FOLDER_MIME = 'application/vnd.google-apps.folder';
/** Marks litekeep's repository folders and files, apart from the `litekeep=1` of full-file copies. */
const MARK = 'litekeepRepository';

const escapeQuery = (value: string) => value.replace(/\\/g, '\\\\').replace(/'/g, "\\'");

/**
 * A repository on Google Drive: a folder `repo` inside a folder `<database>@<host>` inside the destination's
 * folder (made on first use and marked in appProperties with source and host). Drive has no paths: objects are
 * files in `repo` named by their key (`packs/ab/ab12…`), found by name.
 */
export class DriveBlobStore implements BlobStore {
  private readonly access: DriveRepositoryAccess;
  private repoFolder?: Promise<string | undefined>;
  /** name → file, from listings and uploads of this process: one lookup request per object at most. */
  private readonly known = new Map<string, DriveFileInfo>();

  constructor(
    destination: GoogleDriveDestination,
    private readonly database: string,
    private readonly host: string,
  ) {
    this.access = destination.repositoryAccess();
  }

  get location(): string {
    return `drive:${this.access.folderLabel}/${this.database}@${this.host}/repo`;
  }

  /** The hosts with a repository of this database in the destination's folder. */
  static async hosts(destination: GoogleDriveDestination, database: string): Promise<string[]> {
    const access = destination.repositoryAccess();
    const root = await access.folderId();
    const folders = await access.list(
      `'${escapeQuery(root)}' in parents and mimeType = '${FOLDER_MIME}' and trashed = false and appProperties has { key='${MARK}' and value='1' }`,
    );
    return folders
      .filter((f) => f.appProperties?.source === database && f.appProperties?.host)
      .map((f) => f.appProperties!.host)
      .sort();
  }

  /** The `repo` folder's id, found or (with `create`) made. */
  private async folder(create: boolean): Promise<string | undefined> {
    if (!this.repoFolder) {
      const pending = this.findFolder(create);
      this.repoFolder = pending;
      pending.then(
        (found) => {
          if (!found && this.repoFolder === pending) this.repoFolder = undefined;
        },
        () => {
          if (this.repoFolder === pending) this.repoFolder = undefined;
        },
      );
    }
    const found = await this.repoFolder;
    if (found || !create) return found;
    this.repoFolder = undefined;
    return this.folder(true);
  }

  private async findFolder(create: boolean): Promise<string | undefined> {
    const access = this.access;
    const root = await access.folderId();
    const props = { [MARK]: '1', source: this.database, host: this.host };
    const child = async (parent: string, name: string) => {
      const found = await access.list(
        `name = '${escapeQuery(name)}' and '${escapeQuery(parent)}' in parents and mimeType = '${FOLDER_MIME}' and trashed = false`,
      );
      const own = found.find((f) => f.appProperties?.[MARK] === '1');
      if (own) return own.id;
      if (!create) return undefined;
      return access.createFolder(name, parent, props);
    };
    const hostFolder = await child(root, `${this.database}@${this.host}`);
    return hostFolder ? child(hostFolder, 'repo') : undefined;
  }

  private async find(key: string): Promise<DriveFileInfo | undefined> {
    const cached = this.known.get(key);
    if (cached) return cached;
    const folder = await this.folder(false);
    if (!folder) return undefined;
    const files = await this.access.list(
      `name = '${escapeQuery(key)}' and '${escapeQuery(folder)}' in parents and trashed = false`,
    );
    // Drive allows twins: the oldest upload of a content-addressed object is as good as any.
    const file = files.sort((a, b) => (a.modifiedTime ?? '').localeCompare(b.modifiedTime ?? ''))[0];
    if (file) this.known.set(key, file);
    return file;
  }

  async put(
    key: string,
    file: string,
    size: number,
    sha256: string,
    options: PutBlobOptions = {},
  ): Promise<'stored' | 'exists'> {
    const existing = await this.find(key);
    if (existing) {
      if (existing.sha256Checksum === sha256 || (!existing.sha256Checksum && Number(existing.size) === size))
        return 'exists';
      throw new LitekeepError(
        `upload of ${key} to ${this.location} refused: a file of that name holds other bytes; nothing was replaced — run litekeep check`,
        { stage: 'upload' },
      );
    }
    const folder = (await this.folder(true))!;
    const uploaded = await this.access.upload(file, key, folder, { [MARK]: '1' }, options.signal);
    if (uploaded.sha256 !== sha256)
      throw new LitekeepError(
        `upload of ${key} to ${this.location} failed: the local file changed while it was sent`,
        {
          stage: 'upload',
        },
      );
    this.known.set(key, { id: uploaded.id, name: key, size: String(size), sha256Checksum: sha256 });
    return 'stored';
  }

  async get(key: string): Promise<Readable> {
    const file = await this.find(key);
    if (!file) throw new BlobNotFoundError(key, this.location);
    try {
      return await this.access.download(file.id, key);
    } catch (error) {
      if (error instanceof DriveFileNotFoundError) {
        this.known.delete(key);
        throw new BlobNotFoundError(key, this.location);
      }
      throw error;
    }
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    const folder = await this.folder(false);
    if (!folder) return;
    const files = await this.access.list(`'${escapeQuery(folder)}' in parents and trashed = false`);
    for (const f of files.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (f.mimeType === FOLDER_MIME || !f.name.startsWith(prefix)) continue;
      if (!this.known.has(f.name)) this.known.set(f.name, f);
      yield {
        key: f.name,
        size: Number(f.size ?? 0),
        ...(f.modifiedTime ? { modified: new Date(f.modifiedTime) } : {}),
      };
    }
  }

  async stat(key: string): Promise<BlobInfo | undefined> {
    const f = await this.find(key);
    return f
      ? { key, size: Number(f.size ?? 0), ...(f.modifiedTime ? { modified: new Date(f.modifiedTime) } : {}) }
      : undefined;
  }

  async remove(key: string): Promise<void> {
    const folder = await this.folder(false);
    if (!folder) return;
    const files = await this.access.list(
      `name = '${escapeQuery(key)}' and '${escapeQuery(folder)}' in parents and trashed = false`,
    );
    for (const f of files) await this.access.remove(f.id, key);
    this.known.delete(key);
  }

  close(): void {}
}
