import crypto from 'node:crypto';
import type { Decrypter } from 'age-encryption';
import {
  AgeDecryptStream,
  AgeEncryptStream,
  decrypterForFileKey,
  makeDecrypter,
  prepareEncryption,
  type EncryptionSetup,
} from '../pipeline/age.js';
import type { Transform } from 'node:stream';

/** What a reader may decrypt with: the identities or the passphrase of the database's `encryption` settings. */
export interface RepositoryDecryptOptions {
  identities?: string[];
  passphrase?: string;
}

export function canDecrypt(options: RepositoryDecryptOptions | undefined): boolean {
  return (options?.identities?.length ?? 0) > 0 || options?.passphrase !== undefined;
}

/**
 * Encryption of one run: one age header (one scrypt with a passphrase) for every object the run writes, each
 * object with a fresh payload nonce, so each is a complete age file that `age -d` opens. The file key stays in
 * memory only: it lets the run prove that what it wrote decrypts, without the identity.
 */
export class RunEncryption {
  private constructor(
    private readonly setup: EncryptionSetup,
    private readonly own: Decrypter,
  ) {}

  static async prepare(
    recipients: string[] | undefined,
    passphrase: string | undefined,
  ): Promise<RunEncryption> {
    const setup = await prepareEncryption(recipients, passphrase);
    return new RunEncryption(setup, await decrypterForFileKey(setup.fileKey));
  }

  async encrypt(plain: Buffer): Promise<Buffer> {
    return transformBuffer(new AgeEncryptStream(this.setup), plain);
  }

  encryptStream(): Transform {
    return new AgeEncryptStream(this.setup);
  }

  decryptOwnStream(): Transform {
    return new AgeDecryptStream(this.own);
  }

  /** Opens an object this run encrypted: the proof that the bytes as stored give back the plaintext. */
  async decryptOwn(stored: Buffer): Promise<Buffer> {
    return transformBuffer(new AgeDecryptStream(this.own), stored);
  }
}

/**
 * The reader's decrypter. Every pack of one run shares one header: the first one unwrapped (with scrypt, for a
 * passphrase, ~1 s) serves the rest. Only byte-identical headers hit the cache, and the header MAC that
 * decryptHeader checked the first time covers every byte of it.
 */
class CachingDecrypter {
  private readonly cache = new Map<string, Uint8Array>();
  constructor(private readonly inner: Decrypter) {}
  async decryptHeader(header: Uint8Array): Promise<Uint8Array> {
    const key = crypto.createHash('sha256').update(header).digest('hex');
    const hit = this.cache.get(key);
    if (hit) return hit;
    const fileKey = await this.inner.decryptHeader(header);
    if (this.cache.size > 256) this.cache.clear();
    this.cache.set(key, fileKey);
    return fileKey;
  }
}

/** A decrypting stream factory for a reader; throws InvalidIdentityError when it has nothing to decrypt with. */
export class RepositoryDecrypter {
  private constructor(private readonly decrypter: CachingDecrypter) {}
  static async create(options: RepositoryDecryptOptions): Promise<RepositoryDecrypter> {
    return new RepositoryDecrypter(
      new CachingDecrypter(await makeDecrypter(options.identities, options.passphrase)),
    );
  }
  stream(): Transform {
    // AgeDecryptStream asks its decrypter for the header only; the cache answers that like a Decrypter would.
    return new AgeDecryptStream(this.decrypter as unknown as Decrypter);
  }
  decrypt(stored: Buffer): Promise<Buffer> {
    return transformBuffer(this.stream(), stored);
  }
}

/** Runs a whole buffer through a transform (the age streams): for objects of a few MiB. */
export function transformBuffer(stream: Transform, input: Buffer): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const out: Buffer[] = [];
    stream.on('data', (part: Buffer) => out.push(part));
    stream.on('error', reject);
    stream.on('end', () => resolve(Buffer.concat(out)));
    stream.end(input);
  });
}
