import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { posix } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import ssh2 from 'ssh2';
import type {
  AnyAuthMethod,
  Client as SshClient,
  ConnectConfig,
  FileEntryWithStats,
  ServerHostKeyAlgorithm,
  SFTPWrapper,
  Stats,
} from 'ssh2';
import { tempNameFor } from '../naming.js';
import {
  HostFolderDestination,
  type FolderConnection,
  type FolderEntry,
  type FolderOps,
  type FolderStore,
  type LocalDigests,
  type Sent,
  type Uploaded,
} from './host-folders.js';
import {
  checkHostKey,
  fingerprint,
  keyTypeOf,
  knownHostName,
  knownKeyTypes,
  parseKnownHosts,
} from './known-hosts.js';
import { hashFileInWorker } from './hash-worker.js';
import { SIDECAR_DIR } from './sidecar.js';
import type { ArtifactMetadata } from './types.js';
import { defaultKnownHosts } from './sftp-settings.js';

const { Client, utils } = ssh2;

export interface SftpDestinationOptions {
  /** Destination name shown in messages and used by `--from`; default `sftp`. */
  name?: string;
  /** The SSH server. */
  host: string;
  port?: number;
  /** Login name; default this process's user. */
  user?: string;
  /** Folder on the server; relative paths are relative to the login folder. */
  path: string;
  /** Copies live under `<path>/<databaseName>/<machine>/`. */
  databaseName: string;
  /** This machine's name (litekeep's `host` setting); default the system host name. */
  machine?: string;
  /** Private key file (OpenSSH, PEM or PuTTY format). */
  keyFile?: string;
  /** Passphrase of an encrypted `keyFile`. */
  passphrase?: string;
  password?: string;
  /** An ssh-agent: `true` for SSH_AUTH_SOCK, or its socket. Default: SSH_AUTH_SOCK when set. */
  agent?: boolean | string;
  /** OpenSSH known_hosts file the server's key must be in; default ~/.ssh/known_hosts. */
  knownHosts?: string;
  /** Milliseconds to wait for the SSH handshake; default 20 s. */
  readyTimeout?: number;
  /** Environment (SSH_AUTH_SOCK); default this process's. */
  env?: NodeJS.ProcessEnv;
}

/** SFTP status codes (draft-ietf-secsh-filexfer-02). */
const NO_SUCH_FILE = 2;
const PERMISSION_DENIED = 3;
/** Writes in flight at once: enough to keep a long link busy without holding much memory (64 × ≤ 256 KiB). */
const WRITES_IN_FLIGHT = 64;
/** ssh2's own preference order, which known key types move to the front of. */
const HOST_KEY_ALGORITHMS: ServerHostKeyAlgorithm[] = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
];
const DEFAULT_IDENTITIES = ['id_ed25519', 'id_ecdsa', 'id_rsa'];

type SftpError = Error & { code?: number | string; level?: string };

/** This process's user name, as ssh would log in; a container user without a passwd entry has only $USER. */
function loginName(): string {
  try {
    return os.userInfo().username;
  } catch {
    return process.env.USER ?? process.env.LOGNAME ?? 'root';
  }
}

/**
 * An argument for the remote shell, escaped with backslashes: the one form both a POSIX shell and rclone's sftp
 * server (which takes no quotes and no `./`) read back as the path.
 */
function shellArgument(path: string): string {
  const safe = path.startsWith('-') ? `./${path}` : path;
  return safe.replace(/[^A-Za-z0-9_./-]/g, '\\$&');
}

/** Reads in flight at once when downloading: one read at a time would wait a round trip per 32–256 KiB. */
const READS_IN_FLIGHT = 16;

/**
 * A remote file's bytes in order, fetched with several reads in flight. Fails, rather than ends short, when
 * the file ends early or the connection breaks.
 */
class ParallelReader extends Readable {
  private next = 0;
  private pushed = 0;
  private inFlight = 0;
  private readonly done = new Map<number, Buffer>();
  private finished = false;

  constructor(
    private readonly sftp: SFTPWrapper,
    private readonly handle: Buffer,
    private readonly size: number,
    private readonly chunk: number,
    private readonly what: string,
  ) {
    super({ highWaterMark: READS_IN_FLIGHT * chunk });
  }

  override _read(): void {
    while (this.inFlight < READS_IN_FLIGHT && this.next < this.size)
      this.fetch(this.next, Math.min(this.chunk, this.size - this.next));
    if (this.size === 0) this.finish();
  }

  private fetch(offset: number, length: number): void {
    this.next = offset + length;
    this.inFlight += 1;
    const parts: Buffer[] = [];
    let got = 0;
    const more = () => {
      const buffer = Buffer.allocUnsafe(length - got);
      this.sftp.read(this.handle, buffer, 0, buffer.length, offset + got, (error, bytesRead) => {
        if (this.destroyed) return;
        if (error) return this.destroy(error);
        if (bytesRead === 0)
          return this.destroy(new Error(`${this.what} ended after ${offset + got} of ${this.size} bytes`));
        parts.push(buffer.subarray(0, bytesRead));
        got += bytesRead;
        // A server may answer with less than asked: ask for the rest.
        if (got < length) return more();
        this.inFlight -= 1;
        this.done.set(offset, parts.length === 1 ? parts[0] : Buffer.concat(parts));
        this.drain();
      });
    };
    more();
  }

  private drain(): void {
    let ready = this.done.get(this.pushed);
    while (ready) {
      this.done.delete(this.pushed);
      this.pushed += ready.length;
      if (!this.push(ready)) break;
      ready = this.done.get(this.pushed);
    }
    if (this.pushed >= this.size) this.finish();
    else this._read();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.sftp.close(this.handle, () => this.push(null));
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Stopped early (the reader had enough, or failed): the handle is not left open on a connection that lives on.
    if (!this.finished) {
      this.finished = true;
      try {
        this.sftp.close(this.handle, () => undefined);
      } catch {
        // the channel is gone, and the handle with it
      }
    }
    callback(error);
  }
}

/** The hash that SFTP servers are asked for first (verify), computed beside sha256 before the upload. */
const LOCAL_HASH = 'md5';

/**
 * The local file's `type` digest: from the read that made its sha256, or where that read did not make it, from
 * a new read that makes both, whose sha256 must match the first (so both describe the same bytes).
 */
async function localDigestOf(uploaded: Uploaded, type: string, localPath: string): Promise<string> {
  const first = await uploaded.local;
  const known = first.digests[type];
  if (known) return known;
  const again = await hashFileInWorker(localPath, ['sha256', type]);
  if (again.digests.sha256 !== first.sha256)
    throw new Error(`${localPath} changed while it was uploaded (its sha256 differs between two reads)`);
  return again.digests[type];
}

function promised<T>(
  call: (cb: (error: SftpError | null | undefined, value: T) => void) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) =>
    call((error, value) => (error ? reject(error) : resolve(value))),
  );
}

/** Folders read at once when listing a tree: each is a round trip, and a repository has hundreds. */
const LISTINGS_IN_FLIGHT = 16;

/** One SSH connection with its SFTP channel, and the operations litekeep needs on paths below `root`. */
class SftpSession implements FolderConnection {
  private readonly madeDirs = new Set<string>();
  /** Rejects once the connection is gone: ssh2 may never answer requests that were in flight then. */
  private readonly lost: Promise<never>;
  private brokenBy?: Error;
  /** Told when the connection breaks: writers waiting for acknowledgements, streams being read. */
  private readonly onBreak = new Set<() => void>();

  constructor(
    private readonly client: SshClient,
    private readonly sftp: SFTPWrapper,
    private readonly root: string,
    private readonly describe: (error: unknown, path: string) => Error,
  ) {
    let reject: (error: Error) => void = () => undefined;
    this.lost = new Promise<never>((_, r) => (reject = r));
    this.lost.catch(() => undefined);
    const breakWith = (error: Error) => {
      if (this.brokenBy) return;
      this.brokenBy = error;
      reject(error);
      for (const tell of [...this.onBreak]) tell();
    };
    client.once('close', () => breakWith(new Error('the connection closed')));
    client.on('error', (error: Error) => breakWith(error));
    sftp.once('close', () => breakWith(new Error('the SFTP channel closed')));
  }

  /** One SFTP request, failing (not hanging) when the connection goes away before the answer. */
  private request<T>(op: (cb: (error: SftpError | null | undefined, value: T) => void) => void): Promise<T> {
    if (this.brokenBy) return Promise.reject(this.brokenBy);
    return Promise.race([promised(op), this.lost]);
  }

  private at(relative: string): string {
    return posix.join(this.root, relative);
  }

  get broken(): boolean {
    return this.brokenBy !== undefined;
  }

  private async call<T>(
    path: string,
    op: (cb: (error: SftpError | null | undefined, value: T) => void) => void,
  ): Promise<T> {
    try {
      return await this.request(op);
    } catch (error) {
      throw this.describe(error, path);
    }
  }

  private async statOrUndefined(path: string): Promise<Stats | undefined> {
    try {
      return await this.request<Stats>((cb) => this.sftp.lstat(path, cb));
    } catch (error) {
      if ((error as SftpError).code === NO_SUCH_FILE) return undefined;
      throw this.describe(error, path);
    }
  }

  private async readdir(path: string): Promise<FileEntryWithStats[] | undefined> {
    try {
      return await this.request<FileEntryWithStats[]>((cb) => this.sftp.readdir(path, cb));
    } catch (error) {
      if ((error as SftpError).code === NO_SUCH_FILE) return undefined;
      throw this.describe(error, path);
    }
  }

  /** `mkdir -p` with private folders (0700) for whatever litekeep creates. */
  private async ensureDir(dir: string): Promise<void> {
    if (this.madeDirs.has(dir) || dir === '.' || dir === '/' || dir === '') return;
    const stat = await this.statOrUndefined(dir);
    if (!stat) {
      await this.ensureDir(posix.dirname(dir));
      try {
        await this.request<void>((cb) => this.sftp.mkdir(dir, { mode: 0o700 }, (e) => cb(e, undefined)));
      } catch (error) {
        // Made meanwhile by another machine sharing the folder: fine.
        if (!(await this.statOrUndefined(dir))?.isDirectory()) throw this.describe(error, dir);
      }
    } else if (!stat.isDirectory()) {
      throw new Error(`${dir} on the server is not a folder; move it away or choose another 'path'`);
    }
    this.madeDirs.add(dir);
  }

  private entriesOf(prefix: string, list: FileEntryWithStats[]): FolderEntry[] {
    return list
      .filter((f) => f.attrs.isFile())
      .map((f) => ({
        path: `${prefix}${f.filename}`,
        bytes: f.attrs.size,
        modifiedTime: new Date(f.attrs.mtime * 1000).toISOString(),
      }));
  }

  async listHost(segment: string): Promise<FolderEntry[]> {
    const list = await this.readdir(this.at(segment));
    if (!list) return [];
    const out = this.entriesOf(`${segment}/`, list);
    if (list.some((f) => f.filename === SIDECAR_DIR && f.attrs.isDirectory())) {
      out.push(
        ...this.entriesOf(
          `${segment}/${SIDECAR_DIR}/`,
          (await this.readdir(this.at(`${segment}/${SIDECAR_DIR}`))) ?? [],
        ),
      );
    }
    return out;
  }

  async listDatabase(): Promise<FolderEntry[]> {
    const list = await this.readdir(this.root);
    if (!list) return [];
    const out: FolderEntry[] = [];
    for (const dir of list) {
      if (dir.attrs.isDirectory() && !dir.filename.startsWith('.'))
        out.push(...(await this.listHost(dir.filename)));
    }
    return out;
  }

  async readTexts(paths: string[]): Promise<Map<string, string>> {
    const texts = new Map<string, string>();
    await Promise.all(
      paths.map(async (p) => {
        try {
          const data = await this.request<Buffer>((cb) => this.sftp.readFile(this.at(p), cb));
          texts.set(p, data.toString('utf8'));
        } catch (error) {
          if ((error as SftpError).code !== NO_SUCH_FILE) throw this.describe(error, this.at(p));
        }
      }),
    );
    return texts;
  }

  async writeText(relative: string, text: string): Promise<void> {
    const target = this.at(relative);
    const dir = posix.dirname(target);
    await this.ensureDir(dir);
    const temp = posix.join(dir, tempNameFor(posix.basename(target)));
    const handle = await this.call<Buffer>(temp, (cb) => this.sftp.open(temp, 'wx', { mode: 0o600 }, cb));
    try {
      await this.call(temp, (cb) =>
        this.sftp.write(handle, Buffer.from(text), 0, Buffer.byteLength(text), 0, (e) => cb(e, undefined)),
      );
      await this.fsync(handle, temp);
    } finally {
      await this.request<void>((cb) => this.sftp.close(handle, (e) => cb(e, undefined))).catch(
        () => undefined,
      );
    }
    // A sidecar is this host's own: replace it in one step where the server can (OpenSSH's posix-rename).
    if (this.hasExtension('posix-rename@openssh.com')) {
      await this.call(target, (cb) => this.sftp.ext_openssh_rename(temp, target, (e) => cb(e, undefined)));
    } else {
      await this.removeFile(relative);
      await this.call(target, (cb) => this.sftp.rename(temp, target, (e) => cb(e, undefined)));
    }
  }

  private hasExtension(name: string): boolean {
    // ssh2 keeps the extensions the server announced here; it has no public accessor.
    const extensions = (this.sftp as unknown as { _extensions?: Record<string, string> })._extensions;
    return Boolean(extensions && name in extensions);
  }

  private async fsync(handle: Buffer, path: string): Promise<void> {
    // Durable on the server's disk before it counts, where the server offers it (OpenSSH does).
    if (this.hasExtension('fsync@openssh.com'))
      await this.call(path, (cb) => this.sftp.ext_openssh_fsync(handle, (e) => cb(e, undefined)));
  }

  async upload(
    localPath: string,
    relative: string,
    _metadata: ArtifactMetadata | undefined,
    options: { signal?: AbortSignal; onProgress?: (bytes: number) => void },
  ): Promise<Sent> {
    const target = this.at(relative);
    await this.ensureDir(posix.dirname(target));
    const handle = await this.call<Buffer>(target, (cb) => this.sftp.open(target, 'wx', { mode: 0o600 }, cb));
    const close = () =>
      this.request<void>((cb) => this.sftp.close(handle, (e) => cb(e, undefined))).catch(() => undefined);
    let position = 0;
    // ssh2 splits a longer write into several sent one after another, and servers that need writes in order
    // (rclone's) refuse the interleaving: cut pieces it sends whole.
    const maxLength = (this.sftp as unknown as { _maxWriteLen?: number })._maxWriteLen ?? 32_000;
    let inFlight = 0;
    let acked = 0;
    let failure: unknown;
    let wake: (() => void) | undefined;
    const settle = () => {
      if (this.brokenBy) failure ??= this.brokenBy;
      const w = wake;
      wake = undefined;
      w?.();
    };
    // Several uploads may share the connection (a repository's packs): each waits for its own writes.
    this.onBreak.add(settle);
    try {
      for await (const chunk of fs.createReadStream(localPath, { highWaterMark: 1024 * 1024 })) {
        if (options.signal?.aborted) throw Object.assign(new Error('cancelled'), { name: 'AbortError' });
        const buffer = chunk as Buffer;
        for (let offset = 0; offset < buffer.length; offset += maxLength) {
          while (inFlight >= WRITES_IN_FLIGHT && failure === undefined)
            await new Promise<void>((r) => (wake = r));
          if (failure !== undefined) throw this.describe(failure, target);
          const length = Math.min(maxLength, buffer.length - offset);
          inFlight += 1;
          this.sftp.write(handle, buffer, offset, length, position, (error) => {
            inFlight -= 1;
            if (error) failure ??= error;
            else {
              acked += length;
              options.onProgress?.(acked);
            }
            settle();
          });
          position += length;
        }
      }
      while (inFlight > 0 && failure === undefined) await new Promise<void>((r) => (wake = r));
      if (failure !== undefined) throw this.describe(failure, target);
    } catch (error) {
      await close();
      throw error;
    } finally {
      this.onBreak.delete(settle);
    }
    // Every byte is written: the server flushes them to its disk while it hashes them (verify), both before
    // the copy is renamed into place.
    const durable = this.fsync(handle, target).finally(close);
    durable.catch(() => undefined); // awaited by put, unless the copy is refused before
    return { bytes: position, durable };
  }

  /** Runs a command over SSH and returns what it printed, or undefined when the server runs no commands. */
  private exec(command: string): Promise<string | undefined> {
    if (this.brokenBy) return Promise.reject(this.brokenBy);
    const run = new Promise<string | undefined>((resolve) => {
      this.client.exec(command, (error, channel) => {
        if (error) return resolve(undefined);
        let out = '';
        channel.on('data', (d: Buffer) => (out += d.toString('utf8')));
        channel.stderr.on('data', () => undefined);
        // sftp-only accounts (ForceCommand internal-sftp) answer any command with an SFTP server that waits on
        // its input: ending the input ends it.
        channel.end();
        channel.on('close', (code: number | null) => resolve(code === 0 ? out : undefined));
      });
    });
    return Promise.race([run, this.lost]);
  }

  async verify(relative: string, uploaded: Uploaded, localPath: string): Promise<string | undefined> {
    const target = this.at(relative);
    const stat = await this.statOrUndefined(target);
    if (!stat) return 'the copy is missing right after upload';
    if (stat.size !== uploaded.bytes)
      return `the server holds ${stat.size} bytes, ${uploaded.bytes} were sent`;
    // A hash the server computes, where it runs commands (OpenSSH with a shell, rclone's server): md5 first
    // (rclone's server answers it from the hash it made while receiving, instantly, where its sha1sum reads the
    // file again; OpenSSH's md5sum and sha1sum take the same time), then sha1.
    for (const [type, length] of [
      ['md5', 32],
      ['sha1', 40],
    ] as const) {
      const out = await this.exec(`${type}sum ${shellArgument(target)}`);
      const remote = out && new RegExp(`^([0-9a-f]{${length}})\\b`, 'i').exec(out.trim())?.[1];
      if (!remote) continue;
      const local = await localDigestOf(uploaded, type, localPath);
      return remote.toLowerCase() === local
        ? undefined
        : `the server's ${type} ${remote} is not the local file's ${local}`;
    }
    // No commands on this server: read the copy back.
    const hash = crypto.createHash('sha256');
    try {
      await Promise.race([pipeline(await this.reader(target, stat.size), hash), this.lost]);
    } catch (error) {
      throw this.describe(error, target);
    }
    const readBack = hash.digest('hex');
    const { sha256 } = await uploaded.local;
    return readBack === sha256 ? undefined : `reading the copy back gave sha256 ${readBack}, not ${sha256}`;
  }

  async publish(from: string, to: string): Promise<{ published: boolean; metadataKept: boolean }> {
    const source = this.at(from);
    const target = this.at(to);
    if (await this.statOrUndefined(target)) return { published: false, metadataKept: false };
    try {
      // The protocol's plain rename, which refuses an existing target (OpenSSH links, then unlinks); never
      // posix-rename, which would replace it.
      await this.request<void>((cb) => this.sftp.rename(source, target, (e) => cb(e, undefined)));
    } catch (error) {
      if (await this.statOrUndefined(target)) return { published: false, metadataKept: false };
      throw this.describe(error, target);
    }
    return { published: true, metadataKept: false };
  }

  async listFolder(relative: string): Promise<{ files: FolderEntry[]; folders: string[] }> {
    const list = (await this.readdir(this.at(relative))) ?? [];
    const prefix = relative === '' ? '' : `${relative}/`;
    return {
      files: this.entriesOf(prefix, list),
      folders: list.filter((f) => f.attrs.isDirectory()).map((f) => f.filename),
    };
  }

  async listTree(relative: string): Promise<FolderEntry[]> {
    const out: FolderEntry[] = [];
    let active = 0;
    const waiting: (() => void)[] = [];
    const walk = async (dir: string): Promise<void> => {
      while (active >= LISTINGS_IN_FLIGHT) await new Promise<void>((r) => waiting.push(r));
      active += 1;
      let listed: { files: FolderEntry[]; folders: string[] };
      try {
        listed = await this.listFolder(dir);
      } finally {
        active -= 1;
        waiting.shift()?.();
      }
      out.push(...listed.files);
      await Promise.all(listed.folders.map((f) => walk(dir === '' ? f : `${dir}/${f}`)));
    };
    await walk(relative);
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  async statFile(relative: string): Promise<FolderEntry | undefined> {
    const stat = await this.statOrUndefined(this.at(relative));
    if (!stat?.isFile()) return undefined;
    return { path: relative, bytes: stat.size, modifiedTime: new Date(stat.mtime * 1000).toISOString() };
  }

  async read(relative: string): Promise<Readable | undefined> {
    const target = this.at(relative);
    const stat = await this.statOrUndefined(target);
    if (!stat?.isFile()) return undefined;
    const source = await this.reader(target, stat.size);
    const out = new PassThrough();
    source.on('error', (error: unknown) => out.destroy(this.describe(error, target)));
    source.pipe(out);
    // ssh2 may never answer reads in flight when the connection goes: fail the stream, never end it short.
    const lost = () => {
      if (!out.writableFinished)
        out.destroy(new Error(`the connection to the server closed while reading ${target}`));
    };
    this.onBreak.add(lost);
    out.on('close', () => {
      this.onBreak.delete(lost);
      source.destroy();
    });
    return out;
  }

  close(): void {
    this.client.end();
  }

  async removeFile(relative: string): Promise<void> {
    const target = this.at(relative);
    try {
      await this.request<void>((cb) => this.sftp.unlink(target, (e) => cb(e, undefined)));
    } catch (error) {
      if ((error as SftpError).code !== NO_SUCH_FILE) throw this.describe(error, target);
    }
  }

  private async reader(target: string, size: number): Promise<Readable> {
    const handle = await this.call<Buffer>(target, (cb) => this.sftp.open(target, 'r', cb));
    const chunk = (this.sftp as unknown as { _maxReadLen?: number })._maxReadLen ?? 32_000;
    return new ParallelReader(this.sftp, handle, size, chunk, target);
  }

  /** A file's bytes; the connection closes when the stream does. */
  async open(relative: string): Promise<Readable> {
    const target = this.at(relative);
    const stat = await this.statOrUndefined(target);
    if (!stat)
      throw new Error(
        `there is no ${target} on the server; run 'litekeep list --from <destination>' to see the copies there`,
      );
    const out = new PassThrough();
    const source = await this.reader(target, stat.size);
    source.on('error', (error: unknown) => out.destroy(this.describe(error, target)));
    source.pipe(out);
    out.on('close', () => this.client.end());
    // A dropped connection must fail the read, not end it short.
    this.client.on('close', () => {
      if (!out.writableFinished)
        out.destroy(new Error(`the connection to the server closed while reading ${target}`));
    });
    return out;
  }
}

/** A folder on an SSH server, through ssh2, with the server's key checked against known_hosts. */
class SftpStore implements FolderStore {
  readonly root: string;
  private readonly folder: string;
  private readonly port: number;
  private readonly user: string;
  private readonly knownHostsFile: string;

  constructor(private readonly options: SftpDestinationOptions) {
    this.port = options.port ?? 22;
    this.user = options.user ?? loginName();
    this.knownHostsFile = options.knownHosts ?? defaultKnownHosts();
    // `~/x` means the login folder, which is where relative paths start anyway.
    const base = options.path.replace(/^~(\/|$)/, '') || '.';
    this.folder = posix.join(base, options.databaseName);
    const shown = this.folder.startsWith('/') ? this.folder : `~/${this.folder}`;
    this.root = `sftp://${this.user}@${options.host}:${this.port}${shown.startsWith('/') ? '' : '/'}${shown}`;
  }

  private get server(): string {
    return `${this.options.host}:${this.port}`;
  }

  /** The sign-in methods to try, in order, and how to name them in a refusal. */
  private authMethods(): { methods: AnyAuthMethod[]; tried: string[] } {
    const env = this.options.env ?? process.env;
    const username = this.user;
    const methods: AnyAuthMethod[] = [];
    const tried: string[] = [];
    const keyFiles = this.options.keyFile
      ? [this.options.keyFile]
      : this.options.password === undefined
        ? DEFAULT_IDENTITIES.map((n) => posix.join(os.homedir(), '.ssh', n)).filter((f) => fs.existsSync(f))
        : [];
    for (const file of keyFiles) {
      let text: Buffer;
      try {
        text = fs.readFileSync(file);
      } catch (error) {
        throw new Error(
          `cannot read keyFile ${file} (${(error as NodeJS.ErrnoException).code}); check the path and its permissions`,
        );
      }
      const key = utils.parseKey(text, this.options.passphrase);
      if (key instanceof Error) {
        if (!this.options.keyFile) continue; // a default identity that needs a passphrase: as ssh, skip it
        throw new Error(
          /passphrase/i.test(key.message)
            ? `keyFile ${file} is encrypted: set 'passphrase', or load it into an ssh-agent and set 'agent: true'`
            : `keyFile ${file} is not a private key litekeep can read (${key.message}); give an OpenSSH or PEM private key`,
        );
      }
      methods.push({ type: 'publickey', username, key: Array.isArray(key) ? key[0] : key });
      tried.push(`key ${file}`);
    }
    const agent =
      typeof this.options.agent === 'string'
        ? this.options.agent
        : this.options.agent === false
          ? undefined
          : env.SSH_AUTH_SOCK;
    if (this.options.agent === true && !agent) {
      throw new Error(`'agent: true' but SSH_AUTH_SOCK is not set; start an ssh-agent, or give 'keyFile'`);
    }
    if (agent) {
      methods.push({ type: 'agent', username, agent });
      tried.push(`the ssh-agent at ${agent}`);
    }
    if (this.options.password !== undefined) {
      methods.push({ type: 'password', username, password: this.options.password });
      tried.push('the password');
    }
    if (methods.length === 0) {
      throw new Error(
        `no way to sign in to ${this.server}: set 'keyFile' or 'password', or run an ssh-agent (SSH_AUTH_SOCK)`,
      );
    }
    return { methods, tried };
  }

  private async connectSsh(): Promise<{ client: SshClient; sftp: SFTPWrapper }> {
    const { methods, tried } = this.authMethods();
    let knownText: string | undefined;
    try {
      knownText = fs.readFileSync(this.knownHostsFile, 'utf8');
    } catch {
      knownText = undefined;
    }
    const lines = parseKnownHosts(knownText ?? '');
    const host = this.options.host;
    const knownTypes = knownKeyTypes(lines, host, this.port);
    const algorithmsFor = (type: string) =>
      type === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [type];
    const preferred = knownTypes
      .flatMap(algorithmsFor)
      .filter((a): a is ServerHostKeyAlgorithm => (HOST_KEY_ALGORITHMS as string[]).includes(a));
    let refusal: string | undefined;
    const client = new Client();
    const config: ConnectConfig = {
      host,
      port: this.port,
      username: this.user,
      readyTimeout: this.options.readyTimeout ?? 20_000,
      // A server that stops answering mid-transfer is noticed within half a minute, not never.
      keepaliveInterval: 10_000,
      keepaliveCountMax: 3,
      authHandler: methods,
      // Ask first for the key types known_hosts has for this server, as ssh does.
      algorithms: { serverHostKey: [...new Set([...preferred, ...HOST_KEY_ALGORITHMS])] },
      hostVerifier: (key: Buffer) => {
        const verdict = checkHostKey(lines, host, this.port, key);
        if (verdict.status === 'known') return true;
        refusal = this.hostKeyRefusal(verdict.status, key, knownText === undefined);
        return false;
      },
    };
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (error: SftpError) => {
        if (settled) return;
        settled = true;
        client.end();
        reject(new Error(refusal ?? this.connectionFailure(error, tried)));
      };
      client.on('error', fail);
      client.on('ready', () => {
        client.sftp((error, sftp) => {
          if (error) return fail(error);
          settled = true;
          resolve({ client, sftp });
        });
      });
      client.connect(config);
    });
  }

  private hostKeyRefusal(
    status: 'unknown' | 'changed' | 'revoked',
    key: Buffer,
    missingFile: boolean,
  ): string {
    const type = keyTypeOf(key);
    const offered = `${type} key ${fingerprint(key)}`;
    const name = knownHostName(this.options.host, this.port);
    const keyscan = `ssh-keyscan -p ${this.port} -t ${type} ${this.options.host} >> ${this.knownHostsFile}`;
    if (status === 'revoked') {
      return `the SSH server ${this.server} offered ${offered}, which ${this.knownHostsFile} marks @revoked; refusing to connect`;
    }
    if (status === 'changed') {
      return (
        `the SSH server ${this.server} offered ${offered}, but ${this.knownHostsFile} has another ${type} key for it ` +
        `(the server was reinstalled, or someone is in between); refusing to connect — if its key really changed, ` +
        `remove the old one (ssh-keygen -R '${name}' -f ${this.knownHostsFile}) and add the new one (${keyscan})`
      );
    }
    return (
      `the SSH server ${this.server} is not a known host (${missingFile ? `there is no ${this.knownHostsFile}` : `not in ${this.knownHostsFile}`}; ` +
      `it offered ${offered}); refusing to connect — check that fingerprint on the server ` +
      `(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then add it: ${keyscan}, or set 'knownHosts'`
    );
  }

  private connectionFailure(error: SftpError, tried: string[]): string {
    const code = typeof error.code === 'string' ? error.code : undefined;
    if (error.level === 'client-authentication') {
      return `the SSH server ${this.server} refused user '${this.user}' (tried ${tried.join(', ')}); check 'user' and the key, agent or password`;
    }
    if (error.level === 'client-timeout') {
      return `no SSH handshake with ${this.server} within ${(this.options.readyTimeout ?? 20_000) / 1000} s; check 'host' and 'port', and that an SSH server answers there`;
    }
    if (
      code &&
      /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ECONNRESET)$/.test(code)
    ) {
      return `cannot reach the SSH server ${this.server} (${code}); check 'host' and 'port', the network, and that sshd is running`;
    }
    return `SSH connection to ${this.server} failed: ${error.message.split('\n')[0]}`;
  }

  /** One line for a failed SFTP request on `path`. */
  private describe = (error: unknown, path: string): Error => {
    const e = error as SftpError;
    if (e?.name === 'AbortError') return e;
    if (e?.code === PERMISSION_DENIED)
      return new Error(
        `permission denied on ${path} on ${this.server}; check that '${this.user}' may write there, or choose another 'path'`,
      );
    if (e?.code === NO_SUCH_FILE) return new Error(`${path} does not exist on ${this.server}`);
    if (typeof e?.code === 'number')
      return new Error(`the SFTP server ${this.server} failed on ${path}: ${e.message} (is its disk full?)`);
    return new Error(
      `the connection to ${this.server} broke during a request on ${path} (${e?.message ?? String(error)}); check that the server is up, then run again`,
    );
  };

  async digestLocal(localPath: string, signal: AbortSignal): Promise<LocalDigests> {
    const { bytes, digests } = await hashFileInWorker(localPath, ['sha256', LOCAL_HASH], signal);
    return { bytes, sha256: digests.sha256, digests: { [LOCAL_HASH]: digests[LOCAL_HASH] } };
  }

  async session<T>(work: (ops: FolderOps) => Promise<T>): Promise<T> {
    const { client, sftp } = await this.connectSsh();
    try {
      return await work(new SftpSession(client, sftp, this.folder, this.describe));
    } finally {
      client.end();
    }
  }

  async open(relative: string): Promise<Readable> {
    const { client, sftp } = await this.connectSsh();
    try {
      return await new SftpSession(client, sftp, this.folder, this.describe).open(relative);
    } catch (error) {
      client.end();
      throw error;
    }
  }

  async connect(): Promise<FolderConnection> {
    const { client, sftp } = await this.connectSsh();
    return new SftpSession(client, sftp, this.folder, this.describe);
  }
}

/**
 * A second machine over SSH, without rclone: copies are `<path>/<database>/<host>/<file>` with metadata in
 * `.litekeep-meta/<file>.json` beside each, the same layout as a local folder destination.
 */
export class SftpDestination extends HostFolderDestination {
  constructor(options: SftpDestinationOptions) {
    super(options.name ?? 'sftp', 'sftp', new SftpStore(options), options.machine ?? os.hostname());
  }
}
