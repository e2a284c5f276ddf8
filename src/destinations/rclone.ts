import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ConfigError } from '../config/index.js';
import {
  HostFolderDestination,
  type FolderEntry,
  type FolderOps,
  type FolderStore,
  type Uploaded,
} from './host-folders.js';
import {
  classifyRcloneFailure,
  rcloneErrorLine,
  redactRcloneOutput,
  remoteName,
  secretsInConfig,
  secretsInEnvironment,
} from './rclone-output.js';
import { buildS3Metadata, parseS3Metadata } from './s3.js';

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
  /** Extra flags for every rclone call, e.g. `--bwlimit 8M` or backend options. */
  flags?: string[];
  /** Environment of rclone; default this process's. */
  env?: NodeJS.ProcessEnv;
}

interface RcloneResult {
  code: number;
  stdout: string;
  stderr: string;
}

interface RcloneFeatures {
  /** Hash types the backend offers, in rclone's names. */
  hashes: string[];
  /** The backend keeps user metadata on objects (local xattrs, S3, Azure, ...). */
  userMetadata: boolean;
  readMetadata: boolean;
}

interface LsjsonItem {
  Path: string;
  Name: string;
  Size: number;
  ModTime?: string;
  IsDir: boolean;
  Hashes?: Record<string, string>;
  Metadata?: Record<string, string>;
}

/** rclone exit code 3: "directory not found"; 4: "file not found". */
const NOT_FOUND_CODES = new Set([3, 4]);

/**
 * Hashes in the order litekeep prefers them for checking a copy: those Node computes itself, cheapest first on
 * storages that hash on demand (sha1 is the fastest of the three in rclone and in coreutils), then any other
 * the backend has (rclone computes those of the local file).
 */
const NODE_HASHES = ['sha1', 'md5', 'sha256'];

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

/**
 * Runs rclone and turns its failures into one line that names the cause and the fix, with every secret
 * (tokens, passwords, credentials in URLs) masked.
 */
export class RcloneRunner {
  readonly binary: string;
  private readonly env: NodeJS.ProcessEnv;

  constructor(
    private readonly options: Pick<
      RcloneDestinationOptions,
      'binary' | 'configPath' | 'flags' | 'env' | 'remote'
    >,
  ) {
    this.binary = options.binary ?? 'rclone';
    this.env = rcloneEnv(options.env ?? process.env);
  }

  private args(command: string, args: string[], retries = true): string[] {
    // One attempt for small requests (a missing file is not worth three tries); rclone's low-level retries
    // still cover each request's transient failures.
    return [
      command,
      ...globalArgs(this.options.configPath, this.options.flags),
      ...(retries ? [] : ['--retries', '1']),
      ...args,
    ];
  }

  /** Runs one command to completion. `stdin` is text or a file to feed it. */
  async run(
    command: string,
    args: string[],
    options: { stdin?: string; signal?: AbortSignal; retries?: boolean } = {},
  ): Promise<RcloneResult> {
    return new Promise<RcloneResult>((resolve, reject) => {
      const child = spawn(this.binary, this.args(command, args, options.retries ?? false), {
        env: this.env,
        stdio: [options.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
        signal: options.signal,
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout!.on('data', (d: Buffer) => out.push(d));
      child.stderr!.on('data', (d: Buffer) => err.push(d));
      child.on('error', (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') reject(new Error(missingBinary(this.binary)));
        else if (error.name === 'AbortError')
          reject(Object.assign(new Error('cancelled'), { name: 'AbortError' }));
        else reject(error);
      });
      child.on('close', (code) =>
        resolve({
          code: code ?? 1,
          stdout: Buffer.concat(out).toString('utf8'),
          stderr: Buffer.concat(err).toString('utf8'),
        }),
      );
      if (options.stdin !== undefined) {
        child.stdin!.on('error', () => undefined);
        child.stdin!.end(options.stdin);
      }
    });
  }

  /** Runs a command that must succeed; throws the described failure otherwise. */
  async ok(
    command: string,
    args: string[],
    options: Parameters<RcloneRunner['run']>[2] = {},
  ): Promise<string> {
    const result = await this.run(command, args, options);
    if (result.code !== 0) throw await this.failure(command, result);
    return result.stdout;
  }

  /** A stream of a command's stdout that errors, rather than ends, when the command fails. */
  stream(command: string, args: string[]): Readable {
    const child = spawn(this.binary, this.args(command, args), {
      env: this.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out = new PassThrough();
    const err: Buffer[] = [];
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.stdout.pipe(out, { end: false });
    child.on('error', (error: NodeJS.ErrnoException) =>
      out.destroy(error.code === 'ENOENT' ? new Error(missingBinary(this.binary)) : error),
    );
    child.on('close', (code) => {
      if (code === 0) {
        out.end();
        return;
      }
      const result = { code: code ?? 1, stdout: '', stderr: Buffer.concat(err).toString('utf8') };
      void this.failure(command, result).then((e) => out.destroy(e));
    });
    // A reader that stops early (an aborted restore) must not leave rclone running.
    out.on('close', () => {
      if (child.exitCode === null) child.kill();
    });
    return out;
  }

  /** Everything secret that rclone might echo: values in the environment and in the config file. */
  private async secrets(): Promise<string[]> {
    const secrets = secretsInEnvironment(this.env);
    const configFile =
      this.options.configPath ??
      this.env.RCLONE_CONFIG ??
      path.join(os.homedir(), '.config', 'rclone', 'rclone.conf');
    try {
      secrets.push(...secretsInConfig(await fsp.readFile(configFile, 'utf8')));
    } catch {
      // no readable config: nothing more to mask
    }
    return secrets;
  }

  async failure(command: string, result: RcloneResult): Promise<RcloneFailure> {
    const line = redactRcloneOutput(rcloneErrorLine(result.stderr), await this.secrets());
    const kind = classifyRcloneFailure(line);
    const name = remoteName(this.options.remote);
    let message: string;
    if (kind === 'not-configured') {
      message =
        `rclone has no remote '${name ? `${name}:` : this.options.remote}'${this.options.configPath ? ` in ${this.options.configPath}` : ''}; ` +
        `run 'rclone config' to add it, or set 'rcloneConfig' to the config file that has it`;
    } else if (kind === 'auth') {
      message =
        `rclone could not sign in to '${name ? `${name}:` : this.options.remote}' (${line}); check its credentials with ` +
        `'rclone config'${name ? ` (for OAuth services: rclone config reconnect ${name}:)` : ''}`;
    } else if (kind === 'unreachable') {
      message = `cannot reach '${this.options.remote}' (${line}); check the network and that the service is up`;
    } else {
      message = `rclone ${command} failed (exit ${result.code}): ${line}`;
    }
    // The remote itself may carry credentials (`:webdav,url='https://user:pass@…'`, `pass=…`).
    return new RcloneFailure(redactRcloneOutput(message, await this.secrets()), kind, result.code);
  }
}

export class RcloneFailure extends Error {
  override name = 'RcloneFailure';
  constructor(
    message: string,
    readonly kind: ReturnType<typeof classifyRcloneFailure>,
    readonly code: number,
  ) {
    super(message);
  }

  get notFound(): boolean {
    return this.kind === 'not-found' || NOT_FOUND_CODES.has(this.code);
  }
}

/** The database folder on an rclone remote, through the `rclone` program. */
class RcloneStore implements FolderStore {
  /** The database folder as shown and as ids begin: with any credentials in the remote string masked. */
  readonly root: string;
  /** The database folder as rclone is given it. */
  private readonly location: string;
  private features?: Promise<RcloneFeatures>;

  constructor(
    private readonly rclone: RcloneRunner,
    remote: string,
    databaseName: string,
  ) {
    this.location = joinRemote(remote.replace(/(?<=[^:/])\/+$/, ''), databaseName);
    this.root = redactRcloneOutput(this.location);
  }

  private at(relative: string): string {
    return joinRemote(this.location, relative);
  }

  private backendFeatures(): Promise<RcloneFeatures> {
    this.features ??= this.rclone.ok('backend', ['features', this.location]).then((out) => {
      const parsed = JSON.parse(out) as { Hashes?: string[]; Features?: Record<string, boolean> };
      return {
        hashes: parsed.Hashes ?? [],
        userMetadata: Boolean(parsed.Features?.UserMetadata && parsed.Features?.WriteMetadata),
        readMetadata: Boolean(parsed.Features?.ReadMetadata),
      };
    });
    this.features.catch(() => (this.features = undefined));
    return this.features;
  }

  /** The hash to check copies with: one Node computes when the backend has one, else any it has. */
  private async hashType(): Promise<string | undefined> {
    const { hashes } = await this.backendFeatures();
    return NODE_HASHES.find((h) => hashes.includes(h)) ?? hashes[0];
  }

  private async lsjson(target: string, args: string[]): Promise<LsjsonItem[] | undefined> {
    const result = await this.rclone.run('lsjson', [...args, target]);
    if (result.code !== 0) {
      const failure = await this.rclone.failure('lsjson', result);
      if (failure.notFound) return undefined;
      throw failure;
    }
    const parsed = JSON.parse(result.stdout) as LsjsonItem[] | LsjsonItem;
    return Array.isArray(parsed) ? parsed : [parsed];
  }

  private entry(item: LsjsonItem, prefix: string): FolderEntry {
    const metadata = item.Metadata ? parseS3Metadata(item.Metadata) : undefined;
    return {
      path: `${prefix}${item.Path}`,
      bytes: item.Size,
      ...(item.ModTime ? { modifiedTime: new Date(item.ModTime).toISOString() } : {}),
      ...(metadata?.sha256 ? { metadata } : {}),
    };
  }

  private async listBelow(relative: string | undefined, depth: number): Promise<FolderEntry[]> {
    const { readMetadata } = await this.backendFeatures();
    const items = await this.lsjson(relative === undefined ? this.location : this.at(relative), [
      '-R',
      '--files-only',
      '--max-depth',
      String(depth),
      ...(readMetadata ? ['--metadata'] : []),
    ]);
    const prefix = relative === undefined ? '' : `${relative}/`;
    return (items ?? []).filter((i) => !i.IsDir).map((i) => this.entry(i, prefix));
  }

  private async stat(relative: string, args: string[] = []): Promise<LsjsonItem | undefined> {
    const items = await this.lsjson(this.at(relative), ['--stat', ...args]);
    return items?.[0];
  }

  /** Digest of the local file, computed by Node where it can, else by rclone (Dropbox, QuickXor, ...). */
  private async localDigest(type: string, localPath: string): Promise<string> {
    if (NODE_HASHES.includes(type)) {
      const hash = crypto.createHash(type);
      await pipeline(fs.createReadStream(localPath), hash);
      return hash.digest('hex');
    }
    const out = await this.rclone.ok('hashsum', [type, localPath]);
    return out.trim().split(/\s+/)[0];
  }

  private readonly ops: FolderOps = {
    listDatabase: () => this.listBelow(undefined, 3),
    listHost: (segment) => this.listBelow(segment, 2),
    readTexts: async (paths) => {
      // One rclone call for all of them, into a private temp folder: a call per sidecar costs a process and, on
      // a cloud remote, a sign-in each.
      const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'litekeep-rclone-'));
      try {
        await this.rclone.ok('copy', ['--files-from-raw', '-', '--no-traverse', this.location, dir], {
          stdin: `${paths.join('\n')}\n`,
        });
        const texts = new Map<string, string>();
        for (const p of paths) {
          const text = await fsp.readFile(path.join(dir, ...p.split('/')), 'utf8').catch(() => undefined);
          if (text !== undefined) texts.set(p, text);
        }
        return texts;
      } finally {
        await fsp.rm(dir, { recursive: true, force: true });
      }
    },
    writeText: async (relative, text) => {
      await this.rclone.ok('rcat', [this.at(relative)], { stdin: text });
    },
    upload: async (localPath, relative, metadata, options) => {
      const [features, type] = await Promise.all([this.backendFeatures(), this.hashType()]);
      const metadataFlags = features.userMetadata
        ? [
            '-M',
            ...Object.entries(buildS3Metadata(metadata)).flatMap(([k, v]) => ['--metadata-set', `${k}=${v}`]),
          ]
        : [];
      // rclone reads the file itself (copyto, not rcat: it knows the size, can retry, and applies metadata,
      // which rcat 1.60 ignores); Node hashes the same file at the same time, on the other core.
      const digesting = digestFile(
        localPath,
        type && NODE_HASHES.includes(type) && type !== 'sha256' ? [type] : [],
      );
      const copying = this.rclone.ok(
        'copyto',
        [
          // litekeep checks the copy itself below (with the same hash rclone would use, or a read-back).
          '--ignore-checksum',
          '--no-check-dest',
          ...metadataFlags,
          localPath,
          this.at(relative),
        ],
        { signal: options.signal, retries: true },
      );
      const [digests] = await Promise.all([digesting, copying]);
      options.onProgress?.(digests.bytes);
      return digests;
    },
    verify: async (relative, uploaded, localPath) => {
      const type = await this.hashType();
      const item = await this.stat(relative, type ? ['--hash', '--hash-type', type] : []);
      if (!item) return 'the copy is missing right after upload';
      if (item.Size !== uploaded.bytes)
        return `the remote holds ${item.Size} bytes, ${uploaded.bytes} were sent`;
      const remote = type ? item.Hashes?.[type] : undefined;
      if (type && remote) {
        const local =
          type === 'sha256'
            ? uploaded.sha256
            : (uploaded.digests?.[type] ?? (await this.localDigest(type, localPath)));
        return remote.toLowerCase() === local.toLowerCase()
          ? undefined
          : `the remote's ${type} ${remote} is not the local file's ${local}`;
      }
      // No hash on this backend (or none for this object): read the copy back.
      const hash = crypto.createHash('sha256');
      await pipeline(this.rclone.stream('cat', [this.at(relative)]), hash);
      const readBack = hash.digest('hex');
      return readBack === uploaded.sha256
        ? undefined
        : `reading the copy back gave sha256 ${readBack}, not ${uploaded.sha256}`;
    },
    publish: async (from, to, metadata) => {
      if (await this.stat(to)) return { published: false, metadataKept: false };
      const { userMetadata, readMetadata } = await this.backendFeatures();
      // A server-side rename where the backend has one; --immutable makes rclone refuse, rather than replace, a
      // file that appeared under the final name meanwhile.
      await this.rclone.ok('moveto', [
        '--immutable',
        ...(userMetadata ? ['-M'] : []),
        this.at(from),
        this.at(to),
      ]);
      const item = await this.stat(to, readMetadata ? ['--metadata'] : []);
      if (!item) throw new Error(`${this.at(to)} is missing right after renaming the upload to it`);
      return {
        published: true,
        metadataKept: Boolean(item.Metadata && parseS3Metadata(item.Metadata).sha256 === metadata.sha256),
      };
    },
    removeFile: async (relative) => {
      const result = await this.rclone.run('deletefile', [this.at(relative)]);
      if (result.code === 0) return;
      const failure = await this.rclone.failure('deletefile', result);
      if (!failure.notFound) throw failure;
    },
  };

  session<T>(work: (ops: FolderOps) => Promise<T>): Promise<T> {
    return work(this.ops);
  }

  async open(relative: string): Promise<Readable> {
    return this.rclone.stream('cat', [this.at(relative)]);
  }
}

/** Streams a file through sha256 (and the other hashes asked for): what Node saw, to compare with the remote's. */
async function digestFile(localPath: string, extra: string[]): Promise<Uploaded> {
  const sha256 = crypto.createHash('sha256');
  const others = extra.map((type) => [type, crypto.createHash(type)] as const);
  let bytes = 0;
  for await (const chunk of fs.createReadStream(localPath, { highWaterMark: 1024 * 1024 })) {
    const buffer = chunk as Buffer;
    bytes += buffer.length;
    sha256.update(buffer);
    for (const [, hash] of others) hash.update(buffer);
  }
  return {
    bytes,
    sha256: sha256.digest('hex'),
    digests: Object.fromEntries(others.map(([type, hash]) => [type, hash.digest('hex')])),
  };
}

/**
 * Any storage rclone speaks to (Dropbox, OneDrive, Google Drive, B2, WebDAV, SFTP, ... — 70+), with the
 * credentials in rclone's own config. Copies are `<remote>/<database>/<host>/<file>`; litekeep's metadata rides
 * on the object where the backend keeps user metadata, and in `.litekeep-meta/<file>.json` beside it where not.
 */
export class RcloneDestination extends HostFolderDestination {
  readonly runner: RcloneRunner;

  constructor(options: RcloneDestinationOptions) {
    const runner = new RcloneRunner(options);
    super(
      options.name ?? 'rclone',
      'rclone',
      new RcloneStore(runner, options.remote, options.databaseName),
      options.host ?? os.hostname(),
    );
    this.runner = runner;
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
