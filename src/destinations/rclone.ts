import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ConfigError } from '../config/index.js';
import {
  HostFolderDestination,
  type FolderConnection,
  type FolderEntry,
  type FolderOps,
  type FolderStore,
  type LocalDigests,
} from './host-folders.js';
import { hashFileInWorker } from './hash-worker.js';
import { RcloneDaemon, RcloneFailure } from './rclone-daemon.js';
import {
  rcloneErrorLine,
  redactRcloneOutput,
  remoteName,
  secretsInConfig,
  secretsInEnvironment,
} from './rclone-output.js';
import { buildS3Metadata, parseS3Metadata } from './s3-metadata.js';

export interface RcloneDestinationOptions {
  /** Destination name shown in messages and used by `--from`; default `rclone`. */
  name?: string;
  /** Any rclone remote and path: `dropbox:backups`, `b2:bucket/litekeep`, `/mnt/nas/backups`. */
  remote: string;
  /** Copies live under `<remote>/<databaseName>/<host>/`. */
  databaseName: string;
  /** This machine's name; default the system host name. */
  host?: string;
  /** The rclone program; default `rclone` on PATH. */
  binary?: string;
  /** rclone's config file; default rclone's own choice (RCLONE_CONFIG, else ~/.config/rclone/rclone.conf). */
  configPath?: string;
  /** Extra flags for rclone, e.g. `--bwlimit 8M` or backend options. */
  flags?: string[];
  /** Environment of rclone; default this process's. */
  env?: NodeJS.ProcessEnv;
}

interface RcloneFeatures {
  /** Hash types the backend offers, in rclone's names. */
  hashes: string[];
  /** The backend keeps user metadata on objects (local xattrs, S3, Azure, ...). */
  userMetadata: boolean;
  readMetadata: boolean;
  /** A disk of this machine: rclone itself hashes it. */
  isLocal: boolean;
}

/** An object as rclone's `operations/list` and `operations/stat` describe it. */
interface RcloneItem {
  Path: string;
  Name: string;
  Size: number;
  ModTime?: string;
  IsDir: boolean;
  Hashes?: Record<string, string>;
  Metadata?: Record<string, string>;
}

/**
 * Hashes in the order litekeep prefers them for checking a copy: those Node computes itself (beside sha256, in
 * the same read), then any other the backend has (rclone computes those of the local file). md5 first where
 * the storage is not a local disk: an SFTP server such as rclone's answers md5sum from the hash it made while
 * receiving (instant; its sha1sum reads 512 MiB again, 0.7 s), and OpenSSH's md5sum and sha1sum take the same
 * time. sha1 first on a local disk, which rclone itself reads again (Go's sha1 is a little faster than its
 * md5, and Node's sha1 takes 0.45 s for 512 MiB against 0.75 s for its md5). docs/benchmarks.md has the figures.
 */
const NODE_HASHES = ['md5', 'sha1', 'sha256'];
const NODE_HASHES_LOCAL = ['sha1', 'md5', 'sha256'];

export function joinRemote(base: string, relative: string): string {
  if (base.endsWith(':') || base.endsWith('/')) return `${base}${relative}`;
  return `${base}/${relative}`;
}

/**
 * rclone's environment. rclone 1.60's S3 client refuses to start while AWS_CA_BUNDLE is set ("unsupported
 * transport"); rclone verifies TLS against the system's CAs on its own and has `--ca-cert` for others.
 */
function rcloneEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out = { ...env };
  delete out.AWS_CA_BUNDLE;
  return out;
}

function globalArgs(configPath: string | undefined, flags: readonly string[] = []): string[] {
  // Never wait for a password on a terminal: an encrypted config needs RCLONE_CONFIG_PASS.
  return ['--ask-password=false', ...(configPath ? ['--config', configPath] : []), ...flags];
}

function missingBinary(binary: string): string {
  return (
    `rclone is not installed (no '${binary}' found); install it (apt-get install rclone, or see rclone.org/install) ` +
    `or set 'rclone' to the program's path`
  );
}

/** Everything secret that rclone might echo: values in the environment and in the config file. */
async function secretsFor(env: NodeJS.ProcessEnv, configPath: string | undefined): Promise<string[]> {
  const secrets = secretsInEnvironment(env);
  const file = configPath ?? env.RCLONE_CONFIG ?? path.join(os.homedir(), '.config', 'rclone', 'rclone.conf');
  try {
    secrets.push(...secretsInConfig(await fsp.readFile(file, 'utf8')));
  } catch {
    // no readable config: nothing more to mask
  }
  return secrets;
}

/** The database folder on an rclone remote, through one `rclone rcd` per destination. */
class RcloneStore implements FolderStore {
  /** The database folder as shown and as ids begin: with any credentials in the remote string masked. */
  readonly root: string;
  /** The database folder as rclone is given it. */
  private readonly location: string;
  private features?: Promise<RcloneFeatures>;
  readonly daemon: RcloneDaemon;
  private readonly env: NodeJS.ProcessEnv;

  constructor(private readonly options: RcloneDestinationOptions) {
    this.location = joinRemote(options.remote.replace(/(?<=[^:/])\/+$/, ''), options.databaseName);
    this.root = redactRcloneOutput(this.location);
    this.env = rcloneEnv(options.env ?? process.env);
    this.daemon = new RcloneDaemon({
      binary: options.binary ?? 'rclone',
      args: globalArgs(options.configPath, options.flags),
      env: this.env,
      secrets: () => secretsFor(this.env, options.configPath),
    });
  }

  /** One line naming the cause and the fix, for anything rclone reported (already masked). */
  private explain(error: unknown): Error {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      return new Error(missingBinary(this.options.binary ?? 'rclone'));
    if (!(error instanceof RcloneFailure)) {
      const code = (error as NodeJS.ErrnoException).code;
      return code === 'ECONNREFUSED' || code === 'ECONNRESET'
        ? new Error(
            `the rclone process stopped (${code}); run again, and check that rclone works ('rclone version')`,
          )
        : (error as Error);
    }
    const line = rcloneErrorLine(error.message);
    const name = remoteName(this.options.remote);
    const remote = redactRcloneOutput(this.options.remote);
    switch (error.kind) {
      case 'not-configured':
        return new Error(
          `rclone has no remote '${name ? `${name}:` : remote}'${this.options.configPath ? ` in ${this.options.configPath}` : ''}; ` +
            `run 'rclone config' to add it, or set 'rcloneConfig' to the config file that has it`,
        );
      case 'auth':
        return new Error(
          `rclone could not sign in to '${name ? `${name}:` : remote}' (${line}); check its credentials with ` +
            `'rclone config'${name ? ` (for OAuth services: rclone config reconnect ${name}:)` : ''}`,
        );
      case 'unreachable':
        return new Error(`cannot reach '${remote}' (${line}); check the network and that the service is up`);
      default:
        return new Error(`rclone failed: ${line}`);
    }
  }

  /** An rc call whose failure is explained; `missing` turns "not found" into undefined. */
  private async rc<T>(
    method: string,
    params: Record<string, unknown>,
    options: { async?: boolean; signal?: AbortSignal; missing?: boolean } = {},
  ): Promise<T | undefined> {
    try {
      return await this.daemon.call<T>(method, params, options);
    } catch (error) {
      if (options.missing && error instanceof RcloneFailure && error.notFound) return undefined;
      if ((error as Error).name === 'AbortError') throw error;
      throw this.explain(error);
    }
  }

  private backendFeatures(): Promise<RcloneFeatures> {
    this.features ??= this.rc<{ Hashes?: string[]; Features?: Record<string, boolean> }>(
      'operations/fsinfo',
      {
        fs: this.location,
      },
    ).then((info) => ({
      hashes: info?.Hashes ?? [],
      userMetadata: Boolean(info?.Features?.UserMetadata && info?.Features?.WriteMetadata),
      readMetadata: Boolean(info?.Features?.ReadMetadata),
      isLocal: Boolean(info?.Features?.IsLocal),
    }));
    this.features.catch(() => (this.features = undefined));
    return this.features;
  }

  /** The hash to check copies with: one Node computes when the backend has one, else any it has. */
  private async hashType(): Promise<string | undefined> {
    const { hashes, isLocal } = await this.backendFeatures();
    return (isLocal ? NODE_HASHES_LOCAL : NODE_HASHES).find((h) => hashes.includes(h)) ?? hashes[0];
  }

  private entry(item: RcloneItem, prefix: string): FolderEntry {
    const metadata = item.Metadata ? parseS3Metadata(item.Metadata) : undefined;
    return {
      path: `${prefix}${item.Path}`,
      bytes: item.Size,
      ...(item.ModTime ? { modifiedTime: new Date(item.ModTime).toISOString() } : {}),
      ...(metadata?.sha256 ? { metadata } : {}),
    };
  }

  private async listBelow(relative: string | undefined): Promise<FolderEntry[]> {
    const { readMetadata } = await this.backendFeatures();
    const out = await this.rc<{ list: RcloneItem[] }>(
      'operations/list',
      {
        fs: this.location,
        remote: relative ?? '',
        opt: {
          recurse: true,
          filesOnly: true,
          noMimeType: true,
          ...(readMetadata ? { metadata: true } : {}),
        },
      },
      { missing: true },
    );
    // rc lists paths from the fs root, not from `remote`.
    return (out?.list ?? []).filter((i) => !i.IsDir).map((i) => this.entry(i, ''));
  }

  private async stat(relative: string, opt: Record<string, unknown> = {}): Promise<RcloneItem | undefined> {
    const out = await this.rc<{ item: RcloneItem | null }>(
      'operations/stat',
      { fs: this.location, remote: relative, opt },
      { missing: true },
    );
    return out?.item ?? undefined;
  }

  /**
   * sha256 of the local file and the hash copies are checked with, where Node computes it, in one read on
   * another thread: begun as soon as the backend's hashes are known, before the listing and the upload.
   */
  async digestLocal(localPath: string, signal: AbortSignal): Promise<LocalDigests> {
    const type = await this.hashType();
    return digestFile(
      path.resolve(localPath),
      type && NODE_HASHES.includes(type) && type !== 'sha256' ? [type] : [],
      signal,
    );
  }

  /**
   * Digest of the local file where the first read did not make it: by Node together with sha256, which must
   * match the first read's (so both describe the same bytes), else by rclone (Dropbox, QuickXor, ...).
   */
  private async localDigest(type: string, localPath: string, first: LocalDigests): Promise<string> {
    if (NODE_HASHES.includes(type)) {
      const again = await digestFile(localPath, [type]);
      if (again.sha256 !== first.sha256)
        throw new Error(`${localPath} changed while it was uploaded (its sha256 differs between two reads)`);
      return again.digests[type];
    }
    const out = await this.rc<{ item: RcloneItem | null }>('operations/stat', {
      fs: path.dirname(localPath),
      remote: path.basename(localPath),
      opt: { showHash: true, hashTypes: [type] },
    });
    const digest = out?.item?.Hashes?.[type];
    if (!digest) throw new Error(`rclone computed no ${type} hash of ${localPath}`);
    return digest;
  }

  private readonly ops: FolderOps = {
    listDatabase: () => this.listBelow(undefined),
    listHost: (segment) => this.listBelow(segment),
    readTexts: async (paths) => {
      const texts = new Map<string, string>();
      await Promise.all(
        paths.map(async (p) => {
          try {
            const chunks: Buffer[] = [];
            for await (const chunk of await this.daemon.read(this.location, p)) chunks.push(chunk as Buffer);
            texts.set(p, Buffer.concat(chunks).toString('utf8'));
          } catch (error) {
            if (!(error instanceof RcloneFailure && error.notFound)) throw this.explain(error);
          }
        }),
      );
      return texts;
    },
    writeText: async (relative, text) => {
      try {
        // Checked by reading it back, which is one small download, rather than by rclone's hash check, which on
        // an SFTP server runs md5sum over a new SSH channel (0.15–0.4 s per sidecar; docs/benchmarks.md).
        await this.daemon.write(
          this.location,
          path.posix.dirname(relative),
          path.posix.basename(relative),
          text,
          { IgnoreChecksum: true },
        );
        const chunks: Buffer[] = [];
        for await (const chunk of await this.daemon.read(this.location, relative))
          chunks.push(chunk as Buffer);
        if (!Buffer.concat(chunks).equals(Buffer.from(text)))
          throw new Error(`${joinRemote(this.root, relative)} does not hold what was just written to it`);
      } catch (error) {
        throw this.explain(error);
      }
    },
    upload: async (localPath, relative, metadata, options) => {
      const features = await this.backendFeatures();
      const absolute = path.resolve(localPath);
      // rclone reads the file itself (a copy, not a stream through rcat: it knows the size, can retry, and
      // applies metadata, which rcat 1.60 ignores); Node hashes the same file meanwhile (digestLocal).
      await this.rc(
        'operations/copyfile',
        {
          srcFs: path.dirname(absolute),
          srcRemote: path.basename(absolute),
          dstFs: this.location,
          dstRemote: relative,
          _config: {
            // litekeep checks the copy itself afterwards, with the same hash rclone would use (or a read-back).
            IgnoreChecksum: true,
            NoCheckDest: true,
            ...(features.userMetadata && metadata
              ? { Metadata: true, MetadataSet: buildS3Metadata(metadata) }
              : {}),
          },
        },
        { async: true, signal: options.signal },
      );
      const { size } = await fsp.stat(absolute);
      options.onProgress?.(size);
      return { bytes: size };
    },
    verify: async (relative, uploaded, localPath) => {
      const type = await this.hashType();
      const item = await this.stat(relative, type ? { showHash: true, hashTypes: [type] } : {});
      if (!item) return 'the copy is missing right after upload';
      if (item.Size !== uploaded.bytes)
        return `the remote holds ${item.Size} bytes, ${uploaded.bytes} were sent`;
      const remote = type ? item.Hashes?.[type] : undefined;
      const sent = await uploaded.local;
      if (type && remote) {
        const local =
          type === 'sha256'
            ? sent.sha256
            : (sent.digests[type] ?? (await this.localDigest(type, localPath, sent)));
        return remote.toLowerCase() === local.toLowerCase()
          ? undefined
          : `the remote's ${type} ${remote} is not the local file's ${local}`;
      }
      // No hash on this backend (or none for this object): read the copy back.
      const hash = crypto.createHash('sha256');
      try {
        await pipeline(await this.daemon.read(this.location, relative), hash);
      } catch (error) {
        throw this.explain(error);
      }
      const readBack = hash.digest('hex');
      return readBack === sent.sha256
        ? undefined
        : `reading the copy back gave sha256 ${readBack}, not ${sent.sha256}`;
    },
    publish: async (from, to, metadata) => {
      const { userMetadata, readMetadata } = await this.backendFeatures();
      if (await this.stat(to)) return { published: false, metadataKept: false };
      // A server-side rename where the backend has one; Immutable makes rclone refuse, rather than replace, a
      // file that appeared under the final name meanwhile.
      await this.rc(
        'operations/movefile',
        {
          srcFs: this.location,
          srcRemote: from,
          dstFs: this.location,
          dstRemote: to,
          _config: { Immutable: true, ...(userMetadata ? { Metadata: true } : {}) },
        },
        { async: true },
      );
      if (!userMetadata) return { published: true, metadataKept: false };
      const item = await this.stat(to, readMetadata ? { metadata: true } : {});
      if (!item)
        throw new Error(`${joinRemote(this.root, to)} is missing right after renaming the upload to it`);
      return {
        published: true,
        metadataKept: Boolean(
          metadata && item.Metadata && parseS3Metadata(item.Metadata).sha256 === metadata.sha256,
        ),
      };
    },
    removeFile: async (relative) => {
      await this.rc('operations/deletefile', { fs: this.location, remote: relative }, { missing: true });
    },
    listFolder: async (relative) => {
      const out = await this.rc<{ list: RcloneItem[] }>(
        'operations/list',
        { fs: this.location, remote: relative, opt: { noMimeType: true } },
        { missing: true },
      );
      const items = out?.list ?? [];
      return {
        files: items.filter((i) => !i.IsDir).map((i) => this.entry(i, '')),
        folders: items.filter((i) => i.IsDir).map((i) => i.Name),
      };
    },
    listTree: async (relative) => {
      // One call: rclone walks the folders itself (one request per folder where the backend needs it).
      const out = await this.rc<{ list: RcloneItem[] }>(
        'operations/list',
        { fs: this.location, remote: relative, opt: { recurse: true, filesOnly: true, noMimeType: true } },
        { missing: true },
      );
      return (out?.list ?? [])
        .filter((i) => !i.IsDir)
        .map((i) => this.entry(i, ''))
        .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    },
    statFile: async (relative) => {
      const item = await this.stat(relative);
      return item && !item.IsDir ? this.entry(item, '') : undefined;
    },
    read: async (relative) => {
      try {
        return await this.daemon.read(this.location, relative);
      } catch (error) {
        if (error instanceof RcloneFailure && error.notFound) return undefined;
        throw this.explain(error);
      }
    },
  };

  /** rclone keeps no connection of litekeep's: every call goes to the one daemon, which stays up until release. */
  private readonly connection: FolderConnection = { ...this.ops, broken: false, close: () => undefined };

  connect(): Promise<FolderConnection> {
    return Promise.resolve(this.connection);
  }

  release(): void {
    this.daemon.stop();
  }

  session<T>(work: (ops: FolderOps) => Promise<T>): Promise<T> {
    return work(this.ops);
  }

  async open(relative: string): Promise<Readable> {
    try {
      return await this.daemon.read(this.location, relative);
    } catch (error) {
      throw this.explain(error);
    }
  }
}

/**
 * sha256 (and the other hashes asked for) of the local file in one pass on another thread: what rclone's copy
 * is compared with. rclone runs in its own process meanwhile; one thread leaves it the other core.
 */
async function digestFile(localPath: string, extra: string[], signal?: AbortSignal): Promise<LocalDigests> {
  const { bytes, digests } = await hashFileInWorker(localPath, ['sha256', ...extra], signal);
  const { sha256, ...others } = digests;
  return { bytes, sha256, digests: others };
}

/**
 * Any storage rclone speaks to (Dropbox, OneDrive, Google Drive, B2, WebDAV, SFTP, ... — 70+), with the
 * credentials in rclone's own config. Copies are `<remote>/<database>/<host>/<file>`; litekeep's metadata rides
 * on the object where the backend keeps user metadata, and in `.litekeep-meta/<file>.json` beside it where not.
 */
export class RcloneDestination extends HostFolderDestination {
  private readonly rcloneStore: RcloneStore;

  constructor(options: RcloneDestinationOptions) {
    const store = new RcloneStore(options);
    super(options.name ?? 'rclone', 'rclone', store, options.host ?? os.hostname());
    this.rcloneStore = store;
  }

  /** Stops the rclone process now rather than when it has been idle a while (or this process exits). */
  destroy(): void {
    this.rcloneStore.daemon.stop();
  }
}

const checked = new Set<string>();

/**
 * Checked when the configuration is read (exit 2): rclone runs, and knows the remote. Synchronous because
 * configuration checks are; each combination is asked once per process.
 */
export function checkRcloneSettings(
  settings: { remote?: unknown; rclone?: unknown; rcloneConfig?: unknown; flags?: unknown },
  where: string,
  env: NodeJS.ProcessEnv = process.env,
): void {
  if (typeof settings.remote !== 'string' || settings.remote.trim() === '') {
    throw new ConfigError(
      `${where} (rclone) needs 'remote': an rclone remote and path, e.g. "dropbox:backups"`,
    );
  }
  if (
    settings.flags !== undefined &&
    !(Array.isArray(settings.flags) && settings.flags.every((f) => typeof f === 'string'))
  ) {
    throw new ConfigError(
      `invalid ${where}.flags: expected a list of rclone flags, e.g. ["--bwlimit", "8M"]`,
    );
  }
  const binary = typeof settings.rclone === 'string' && settings.rclone !== '' ? settings.rclone : 'rclone';
  const configPath =
    typeof settings.rcloneConfig === 'string' && settings.rcloneConfig !== ''
      ? settings.rcloneConfig
      : undefined;
  if (configPath && !fs.existsSync(configPath)) {
    throw new ConfigError(
      `${where}.rcloneConfig ${configPath} does not exist; point it at an rclone config file ('rclone config file' shows yours)`,
    );
  }
  const name = remoteName(settings.remote);
  const key = JSON.stringify([binary, configPath ?? env.RCLONE_CONFIG ?? '', name ?? '']);
  if (checked.has(key)) return;
  const result = spawnSync(binary, ['listremotes', ...globalArgs(configPath)], {
    env: rcloneEnv(env),
    encoding: 'utf8',
    timeout: 30_000,
  });
  if ((result.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    throw new ConfigError(`${where}: ${missingBinary(binary)}`);
  }
  if (result.error || result.status !== 0) {
    const line = redactRcloneOutput(
      rcloneErrorLine(result.stderr ?? String(result.error)),
      secretsInEnvironment(env),
    );
    throw new ConfigError(
      `${where}: rclone cannot read its configuration (${line}); check it with 'rclone config'`,
    );
  }
  if (name !== undefined) {
    const known = result.stdout.split('\n').map((l) => l.trim().replace(/:$/, ''));
    if (!known.includes(name)) {
      const file =
        configPath ??
        /\n(.+)\s*$/
          .exec(
            spawnSync(binary, ['config', 'file', ...globalArgs(configPath)], {
              env: rcloneEnv(env),
              encoding: 'utf8',
            }).stdout ?? '',
          )?.[1]
          ?.trim();
      throw new ConfigError(
        `${where}: rclone has no remote '${name}:'${file ? ` (config file ${file})` : ''}; run 'rclone config' to add it` +
          `${configPath ? '' : `, or set 'rcloneConfig' to the config file that has it`}`,
      );
    }
  }
  checked.add(key);
}
