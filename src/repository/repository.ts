import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { EXIT, LitekeepError } from '../util/errors.js';
import { ensurePrivateDir, writeFileAtomic } from '../util/fs.js';
import { removeTempsOfDeadProcesses } from '../util/process.js';
import { zstdCompress, zstdDecompressBounded } from './compress.js';
import { canDecrypt, RepositoryDecrypter, RunEncryption, type RepositoryDecryptOptions } from './crypto.js';
import { RepositoryDamagedError } from './errors.js';
import {
  decodeConfig,
  decodeManifest,
  encodeConfig,
  FormatError,
  idFromKey,
  keyCheckOf,
  keys,
  REPOSITORY_VERSION,
  SEGMENT_BYTES,
  SEGMENT_CHUNKS,
  sha256Hex,
  TREE_FANOUT,
  type RepositoryConfig,
  type SnapshotBody,
  type SnapshotFacts,
} from './format.js';
import { idHasher, shortId, type IdHasher } from './ids.js';
import { BlobNotFoundError, getBuffer, type BlobStore } from './store.js';
import { OBJECT_TEMP, objectTempName } from '../naming.js';

/** How the database's `encryption` settings ask this run to write. */
export interface WriteEncryption {
  kind: 'none' | 'age';
  recipients?: string[];
  passphrase?: string;
}

export interface OpenForWriteOptions {
  database: string;
  host: string;
  encryption: WriteEncryption;
  /** `<backupDir>/.litekeep`: the id key and the local index live under it. */
  stateDir: string;
  /** Identities or the passphrase, to recover the id key from `keys/` when this machine lacks it. */
  decrypt?: RepositoryDecryptOptions;
  /** Refuse rather than create a repository that is not there yet (prune, check). */
  mustExist?: boolean;
}

export interface OpenForReadOptions {
  /** `<backupDir>/.litekeep` of this machine, when it has one: its id key is used when it belongs here. */
  stateDir?: string;
  decrypt?: RepositoryDecryptOptions;
}

/** The shared id key of a database on this machine: every encrypted repository it creates uses it. */
const SHARED_KEY = 'repository-id.key';

/**
 * One repository: its config, its id hashing and where this machine keeps its state for it. Opened for write
 * by the machine that backs up (creating it on first use), or for read by restore, verify and check.
 */
export class Repository {
  private decrypterInstance?: RepositoryDecrypter;

  private constructor(
    readonly store: BlobStore,
    readonly config: RepositoryConfig,
    /** Undefined for an encrypted repository opened without its id key (enough for check without data). */
    readonly hasher: IdHasher | undefined,
    /** Where temp files and the local index go. */
    readonly localDir: string,
    private readonly decrypt: RepositoryDecryptOptions | undefined,
    /** The encryption of this run's writes (write mode, encrypted repositories). */
    readonly encryption: RunEncryption | undefined,
  ) {}

  get id(): string {
    return this.config.id;
  }

  get encrypted(): boolean {
    return this.config.encryption === 'age';
  }

  get location(): string {
    return this.store.location;
  }

  /** Whether data packs can be read here (unencrypted, or an identity/passphrase was given). */
  get canReadData(): boolean {
    return !this.encrypted || canDecrypt(this.decrypt);
  }

  async decrypter(): Promise<RepositoryDecrypter> {
    if (!canDecrypt(this.decrypt))
      throw new LitekeepError(
        `the repository at ${this.location} is encrypted: pass --identity FILE (or LITEKEEP_AGE_IDENTITY) or set the passphrase`,
        { exitCode: EXIT.usage, stage: 'restore' },
      );
    this.decrypterInstance ??= await RepositoryDecrypter.create(this.decrypt!);
    return this.decrypterInstance;
  }

  requireHasher(): IdHasher {
    if (!this.hasher)
      throw new LitekeepError(
        `the repository at ${this.location} is encrypted and its id key is not on this machine: pass --identity FILE (or LITEKEEP_AGE_IDENTITY) or set the passphrase`,
        { exitCode: EXIT.usage, stage: 'restore' },
      );
    return this.hasher;
  }

  /** Writes a small object through a private temp file (every store puts files). */
  async putBuffer(key: string, data: Buffer): Promise<'stored' | 'exists'> {
    return putBuffer(this.store, key, data, this.localDir);
  }

  /** Every snapshot in the store by id, with its manifest's stored size (names checked, contents not read). */
  async snapshotSizes(): Promise<Map<string, number>> {
    const ids = new Map<string, number>();
    for await (const blob of this.store.list(keys.snapshotsPrefix)) {
      const id = idFromKey(blob.key, keys.snapshotsPrefix);
      if (id) ids.set(id, blob.size);
    }
    return ids;
  }

  /** Reads and checks one manifest: its name is the sha256 of its bytes, then compression and body checksum. */
  async readManifest(id: string): Promise<SnapshotBody> {
    const key = keys.snapshot(id);
    const what = `snapshot ${shortId(id)}`;
    let stored: Buffer;
    try {
      stored = await getBuffer(this.store, key, 64 * 1024 * 1024);
    } catch (error) {
      if (error instanceof BlobNotFoundError)
        throw new RepositoryDamagedError(`${what} is missing from ${this.location}`, key, error);
      throw error;
    }
    if (sha256Hex(stored) !== id)
      throw new RepositoryDamagedError(
        `${what} in ${this.location} is damaged (its sha256 is not its name): restore another snapshot and run litekeep check`,
        key,
      );
    try {
      const body = decodeManifest(zstdDecompressBounded(stored, 256 * 1024 * 1024, what), what);
      if (body.repository !== this.id)
        throw new FormatError(`${what}: belongs to repository ${body.repository}, not ${this.id}`);
      return body;
    } catch (error) {
      if (error instanceof FormatError)
        throw new RepositoryDamagedError(`${error.message} (in ${this.location})`, key, error);
      throw error;
    }
  }

  /** The facts of a snapshot: in the clear, or opened from its sealed part with the identity. */
  async factsOf(body: SnapshotBody): Promise<SnapshotFacts> {
    if (body.facts) return body.facts;
    const sealed = Buffer.from(body.sealed ?? '', 'base64');
    const plain = await (await this.decrypter()).decrypt(sealed);
    return JSON.parse(plain.toString('utf8')) as SnapshotFacts;
  }

  /** What a snapshot's facts look like in its manifest: sealed to the recipients when encrypted. */
  async sealFacts(facts: SnapshotFacts): Promise<Pick<SnapshotBody, 'facts' | 'sealed'>> {
    if (!this.encrypted) return { facts };
    if (!this.encryption) throw new Error('sealing needs the run encryption (write mode)');
    const sealed = await this.encryption.encrypt(Buffer.from(JSON.stringify(facts)));
    return { sealed: sealed.toString('base64') };
  }

  encodeManifestObject(manifestPlain: Buffer): Buffer {
    return zstdCompress(manifestPlain);
  }

  static async openForWrite(store: BlobStore, options: OpenForWriteOptions): Promise<Repository> {
    const existing = await readConfig(store);
    if (!existing && options.mustExist)
      throw new LitekeepError(
        `there is no litekeep repository at ${store.location} yet; the next backup run makes it`,
        {
          exitCode: EXIT.failed,
          stage: 'prune',
        },
      );
    const encryption =
      options.encryption.kind === 'age'
        ? await RunEncryption.prepare(options.encryption.recipients, options.encryption.passphrase)
        : undefined;
    const config = existing ?? (await createRepository(store, options, encryption));
    if (config.encryption === 'age' && options.encryption.kind !== 'age')
      throw new LitekeepError(
        `the repository at ${store.location} is encrypted, but encryption is not configured now; configure the recipients (or passphrase) it was made with, or give the destination another prefix or path`,
        { exitCode: EXIT.usage, stage: 'upload' },
      );
    if (config.encryption === 'none' && options.encryption.kind === 'age')
      throw new LitekeepError(
        `the repository at ${store.location} is not encrypted, but encryption is configured now: litekeep never mixes the two in one repository; give the destination another prefix or path for the encrypted one`,
        { exitCode: EXIT.usage, stage: 'upload' },
      );
    if (config.database !== options.database || config.host !== options.host)
      throw new LitekeepError(
        `the repository at ${store.location} belongs to ${config.database} on host '${config.host}', not ${options.database} on '${options.host}'; check 'host' and the destination's path`,
        { exitCode: EXIT.usage, stage: 'upload' },
      );
    const localDir = path.join(options.stateDir, 'repositories', config.id);
    ensurePrivateDir(localDir);
    await removeTempsOfDeadProcesses(localDir, OBJECT_TEMP);
    const idKey =
      config.idHash === 'hmac-sha256'
        ? await idKeyFor(store, config, options.stateDir, options.decrypt, true)
        : undefined;
    if (config.idHash === 'hmac-sha256' && !idKey)
      throw new LitekeepError(
        `the id key of the repository at ${store.location} is not on this machine (${path.join(localDir, 'id.key')}): ` +
          `set encryption.identity (or LITEKEEP_AGE_IDENTITY) once so that litekeep can recover it from the repository`,
        { exitCode: EXIT.usage, stage: 'upload' },
      );
    if (idKey && encryption)
      await keepKeyFileFor(store, localDir, options.encryption, idKey, encryption, existing === undefined);
    return new Repository(store, config, idHasher(idKey), localDir, options.decrypt, encryption);
  }

  static async openForRead(store: BlobStore, options: OpenForReadOptions = {}): Promise<Repository> {
    const config = await readConfig(store);
    if (!config)
      throw new LitekeepError(`there is no litekeep repository at ${store.location} (no config object)`, {
        stage: 'restore',
      });
    const idKey =
      config.idHash === 'hmac-sha256'
        ? await idKeyFor(store, config, options.stateDir, options.decrypt, false)
        : undefined;
    const hasher = config.idHash === 'sha256' || idKey ? idHasher(idKey) : undefined;
    const localDir = await fsp.mkdtemp(path.join(os.tmpdir(), `litekeep-repo-${process.pid}-`));
    await fsp.chmod(localDir, 0o700);
    return new Repository(store, config, hasher, localDir, options.decrypt, undefined);
  }

  /** Removes the temp folder of a repository opened for read. */
  async closeRead(): Promise<void> {
    if (path.basename(this.localDir).startsWith(`litekeep-repo-${process.pid}-`))
      await fsp.rm(this.localDir, { recursive: true, force: true });
  }
}

/** Readers killed before their cleanup left temp folders behind: the pid in the name says whose. */
export async function removeDeadReadDirs(): Promise<void> {
  await removeTempsOfDeadProcesses(os.tmpdir(), /^litekeep-repo-(\d+)-[A-Za-z0-9]+$/);
}

async function readConfig(store: BlobStore): Promise<RepositoryConfig | undefined> {
  let bytes: Buffer;
  try {
    bytes = await getBuffer(store, keys.config, 1024 * 1024);
  } catch (error) {
    if (error instanceof BlobNotFoundError) return undefined;
    throw error;
  }
  try {
    return decodeConfig(bytes);
  } catch (error) {
    if (error instanceof FormatError)
      throw new LitekeepError(`the repository at ${store.location} cannot be used: ${error.message}`, {
        exitCode: EXIT.failed,
        stage: 'repository',
        cause: error,
      });
    throw error;
  }
}

/**
 * A new repository: keys first (encrypted to the recipients, so that a machine with the identity can recover
 * the id key), then `config`, which makes it exist. Written once, never rewritten.
 */
async function createRepository(
  store: BlobStore,
  options: OpenForWriteOptions,
  encryption: RunEncryption | undefined,
): Promise<RepositoryConfig> {
  const scratch = path.join(options.stateDir, 'repositories');
  ensurePrivateDir(scratch);
  const config: RepositoryConfig = {
    litekeepRepository: REPOSITORY_VERSION,
    id: crypto.randomBytes(16).toString('hex'),
    created: new Date().toISOString(),
    pageChunking: { pagesPerChunk: 1 },
    idHash: encryption ? 'hmac-sha256' : 'sha256',
    encryption: encryption ? 'age' : 'none',
    segmentChunks: SEGMENT_CHUNKS,
    segmentBytes: SEGMENT_BYTES,
    treeFanout: TREE_FANOUT,
    database: options.database,
    host: options.host,
  };
  if (encryption) {
    const idKey = await sharedIdKey(options.stateDir);
    config.keyCheck = keyCheckOf(idKey);
    const sealed = await encryption.encrypt(idKey);
    await putBuffer(store, keys.key(sha256Hex(sealed)), sealed, scratch);
    await saveRepositoryKey(options.stateDir, config.id, idKey);
  }
  const result = await putBuffer(store, keys.config, encodeConfig(config), scratch);
  if (result === 'exists') {
    // Another run created it meanwhile (it cannot be ours: runs are serialised); use what is there.
    const there = await readConfig(store);
    if (!there)
      throw new LitekeepError(`the repository config at ${store.location} vanished while creating it`);
    return there;
  }
  return config;
}

/**
 * The repository's `keys/` must open with the current recipients: when they changed since this machine last
 * wrote a key file (or it never recorded one), it adds one for them. Only recipient lists are recorded (they
 * are public); a changed passphrase is not noticed.
 */
async function keepKeyFileFor(
  store: BlobStore,
  localDir: string,
  settings: WriteEncryption,
  idKey: Buffer,
  encryption: RunEncryption,
  justCreated: boolean,
): Promise<void> {
  const record = path.join(localDir, 'key-files.json');
  const fingerprint =
    settings.passphrase !== undefined
      ? 'passphrase'
      : sha256Hex(Buffer.from(JSON.stringify([...(settings.recipients ?? [])].sort())));
  let known: string[] = [];
  try {
    known = JSON.parse(await fsp.readFile(record, 'utf8')) as string[];
  } catch {
    // none recorded yet
  }
  if (known.includes(fingerprint)) return;
  if (!justCreated) {
    const sealed = await encryption.encrypt(idKey);
    await putBuffer(store, keys.key(sha256Hex(sealed)), sealed, localDir);
  }
  await writeFileAtomic(record, JSON.stringify([...known, fingerprint]), 0o600);
}

/** The id key this machine uses for every encrypted repository of the database it creates. */
async function sharedIdKey(stateDir: string): Promise<Buffer> {
  const file = path.join(stateDir, SHARED_KEY);
  const existing = await readKeyFile(file);
  if (existing) return existing;
  const key = crypto.randomBytes(32);
  await writeFileAtomic(file, key.toString('hex') + '\n', 0o600);
  return key;
}

async function saveRepositoryKey(stateDir: string, repositoryId: string, key: Buffer): Promise<void> {
  const dir = path.join(stateDir, 'repositories', repositoryId);
  ensurePrivateDir(dir);
  await writeFileAtomic(path.join(dir, 'id.key'), key.toString('hex') + '\n', 0o600);
}

async function readKeyFile(file: string): Promise<Buffer | undefined> {
  try {
    const text = (await fsp.readFile(file, 'utf8')).trim();
    return /^[0-9a-f]{64}$/.test(text) ? Buffer.from(text, 'hex') : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The id key of an encrypted repository: this machine's copy when it matches the repository's key check, else
 * recovered from `keys/` with the identity or passphrase (and, when writing, saved for the next runs).
 */
async function idKeyFor(
  store: BlobStore,
  config: RepositoryConfig,
  stateDir: string | undefined,
  decrypt: RepositoryDecryptOptions | undefined,
  save: boolean,
): Promise<Buffer | undefined> {
  const candidates = stateDir
    ? [path.join(stateDir, 'repositories', config.id, 'id.key'), path.join(stateDir, SHARED_KEY)]
    : [];
  for (const file of candidates) {
    const key = fs.existsSync(file) ? await readKeyFile(file) : undefined;
    if (key && keyCheckOf(key) === config.keyCheck) return key;
  }
  if (!canDecrypt(decrypt)) return undefined;
  const decrypter = await RepositoryDecrypter.create(decrypt!);
  for await (const blob of store.list(keys.keysPrefix)) {
    let key: Buffer;
    try {
      key = await decrypter.decrypt(await getBuffer(store, blob.key, 1024 * 1024));
    } catch {
      continue;
    }
    if (key.length === 32 && keyCheckOf(key) === config.keyCheck) {
      if (save && stateDir) await saveRepositoryKey(stateDir, config.id, key);
      return key;
    }
  }
  return undefined;
}

/** Writes a small object: straight into the store when it can (`putBytes`), else through a private temp file in `dir`. */
export async function putBuffer(
  store: BlobStore,
  key: string,
  data: Buffer,
  dir: string,
): Promise<'stored' | 'exists'> {
  if (store.putBytes) return store.putBytes(key, data, sha256Hex(data));
  ensurePrivateDir(dir);
  const temp = path.join(dir, objectTempName(key.replace(/\//g, '_')));
  await fsp.writeFile(temp, data, { mode: 0o600, flag: 'wx' });
  try {
    return await store.put(key, temp, data.length, sha256Hex(data));
  } finally {
    await fsp.rm(temp, { force: true });
  }
}
