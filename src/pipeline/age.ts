import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import type { Decrypter, Identity, Recipient, Stanza } from 'age-encryption';
import { EXIT, LitekeepError } from '../util/errors.js';
import { fsyncDir, publishNoClobber } from '../util/fs.js';
import {
  ArtifactOptionsError,
  DecryptionError,
  InvalidIdentityError,
  InvalidRecipientError,
} from './errors.js';

/*
 * age v1 (https://age-encryption.org/v1): the library builds and checks the header (recipient stanzas, key
 * wrapping, header MAC); the payload STREAM runs here on node:crypto, which is ~20x faster than the pure-JS
 * cipher. Payload: 16-byte nonce, then ChaCha20-Poly1305 chunks of 64 KiB plaintext keyed with
 * HKDF-SHA256(file key, nonce, "payload"); chunk nonce = 11-byte big-endian counter || last-chunk flag.
 */

const CHUNK = 64 * 1024;
const TAG = 16;
const NONCE = 16;
const MAGIC = Buffer.from('age-encryption.org/v1\n');
const ARMOR = Buffer.from('-----BEGIN AGE ENCRYPTED FILE-----');
const MAC_LINE = Buffer.from('\n--- ');
// Headers are a few hundred bytes per recipient; anything this large is not a header we wrote.
const MAX_HEADER = 1024 * 1024;
const SCRYPT_LABEL = Buffer.from('age-encryption.org/v1/scrypt');
// Same default as the age CLI: ~0.7 s and 256 MiB with node:crypto.
const SCRYPT_WRITE_LOG_N = 18;
// The library's reader limit; 2^20 already needs 1 GiB of memory.
const SCRYPT_MAX_LOG_N = 20;

const CANNOT_DECRYPT =
  'cannot decrypt with the given identity/passphrase: none of them opens this file; check the identity file or passphrase it was encrypted to';
const CORRUPT = 'the encrypted file is truncated or corrupt';

type AgeLibrary = typeof import('age-encryption');
let library: Promise<AgeLibrary> | undefined;

/** The age library, loaded when something is first encrypted or decrypted: a plain backup never pays for it. */
function ageLibrary(): Promise<AgeLibrary> {
  library ??= import('age-encryption');
  return library;
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64').replace(/=+$/, '');
}

function scrypt(passphrase: string, salt: Buffer, logN: number): Promise<Buffer> {
  const N = 2 ** logN;
  return new Promise((resolve, reject) =>
    crypto.scrypt(
      passphrase,
      Buffer.concat([SCRYPT_LABEL, salt]),
      32,
      { N, r: 8, p: 1, maxmem: 256 * N * 8 },
      (error, key) => (error ? reject(error) : resolve(key)),
    ),
  );
}

function sealFileKey(key: Buffer, fileKey: Uint8Array): Buffer {
  const cipher = crypto.createCipheriv('chacha20-poly1305', key, Buffer.alloc(12), { authTagLength: TAG });
  return Buffer.concat([cipher.update(fileKey), cipher.final(), cipher.getAuthTag()]);
}

function openFileKey(key: Buffer, body: Uint8Array): Buffer | null {
  if (body.length !== 32) return null;
  const decipher = crypto.createDecipheriv('chacha20-poly1305', key, Buffer.alloc(12), {
    authTagLength: TAG,
  });
  decipher.setAuthTag(body.subarray(16));
  try {
    return Buffer.concat([decipher.update(body.subarray(0, 16)), decipher.final()]);
  } catch {
    return null;
  }
}

/** The scrypt recipient on node:crypto's native scrypt (about twice as fast as the library's, and off-thread). */
class NativeScryptRecipient implements Recipient {
  constructor(private readonly passphrase: string) {}
  async wrapFileKey(fileKey: Uint8Array): Promise<Stanza[]> {
    const salt = crypto.randomBytes(16);
    const key = await scrypt(this.passphrase, salt, SCRYPT_WRITE_LOG_N);
    const { Stanza } = await ageLibrary();
    return [new Stanza(['scrypt', b64(salt), String(SCRYPT_WRITE_LOG_N)], sealFileKey(key, fileKey))];
  }
}

/** Mirrors the library's ScryptIdentity checks (sole stanza, canonical arguments, work factor cap). */
class NativeScryptIdentity implements Identity {
  constructor(private readonly passphrase: string) {}
  async unwrapFileKey(stanzas: Stanza[]): Promise<Uint8Array | null> {
    for (const s of stanzas) {
      if (s.args[0] !== 'scrypt') continue;
      if (stanzas.length !== 1) throw new Error('scrypt recipient is not the only one in the header');
      if (s.args.length !== 3 || !/^[1-9][0-9]*$/.test(s.args[2])) throw new Error('invalid scrypt stanza');
      const salt = Buffer.from(s.args[1], 'base64');
      if (salt.length !== 16 || b64(salt) !== s.args[1]) throw new Error('invalid scrypt stanza');
      const logN = Number(s.args[2]);
      if (logN > SCRYPT_MAX_LOG_N) throw new Error(`scrypt work factor 2^${logN} is too high`);
      return openFileKey(await scrypt(this.passphrase, salt, logN), s.body);
    }
    return null;
  }
}

/** Adds no stanza; it is how we learn the file key the library drew, to run the payload ourselves. */
class FileKeyCapture implements Recipient {
  fileKey?: Buffer;
  wrapFileKey(fileKey: Uint8Array): Stanza[] {
    this.fileKey = Buffer.from(fileKey);
    return [];
  }
}

function describeRecipient(recipient: string): string {
  return recipient.length > 40 ? `${recipient.slice(0, 36)}...` : recipient;
}

/** Rejects with InvalidRecipientError for the first string that age cannot encrypt to. */
export async function validateRecipients(list: string[]): Promise<void> {
  const age = await ageLibrary();
  for (const recipient of list) checkRecipient(age, recipient);
}

function checkRecipient(age: AgeLibrary, recipient: string): void {
  if (typeof recipient !== 'string' || recipient.trim() === '')
    throw new InvalidRecipientError(String(recipient), 'empty age recipient; expected an age1... public key');
  const shown = describeRecipient(recipient);
  if (/^(ssh-|ecdsa-)/.test(recipient.trim()))
    throw new InvalidRecipientError(
      recipient,
      `recipient "${shown}" is an SSH public key, which litekeep does not support; use an age1... key (litekeep keygen, or age-keygen)`,
    );
  try {
    new age.Encrypter().addRecipient(recipient);
  } catch (error) {
    throw new InvalidRecipientError(
      recipient,
      `invalid age recipient "${shown}" (${(error as Error).message}); expected an age1... public key (age-keygen -y key.txt prints it)`,
    );
  }
}

export interface EncryptionSetup {
  /** The age header, including the MAC line. */
  header: Buffer;
  fileKey: Buffer;
}

/** Builds the header with the library, for recipients or a passphrase (one or the other, as age requires). */
export async function prepareEncryption(
  recipients: string[] | undefined,
  passphrase?: string,
): Promise<EncryptionSetup> {
  const age = await ageLibrary();
  const encrypter = new age.Encrypter();
  if (passphrase !== undefined) {
    if (recipients && recipients.length > 0)
      throw new ArtifactOptionsError(
        'age encrypts to recipients or to a passphrase, not both; configure only one',
      );
    if (passphrase === '')
      throw new ArtifactOptionsError('the encryption passphrase is empty; set a non-empty one');
    encrypter.addRecipient(new NativeScryptRecipient(passphrase));
  } else {
    if (!recipients || recipients.length === 0)
      throw new ArtifactOptionsError('encryption needs at least one recipient or a passphrase');
    for (const recipient of recipients) {
      checkRecipient(age, recipient);
      encrypter.addRecipient(recipient);
    }
  }
  const capture = new FileKeyCapture();
  encrypter.addRecipient(capture);
  // The library encrypts an empty stream; only its header is kept (our payload gets a fresh nonce). Read from
  // its stream form, not the buffer form: that one collects the output with `new Response(...)`, which loads
  // Node's fetch implementation, and with it loaded V8 ran a full garbage collection every ~40 MB of the
  // backup that followed (measured: 60-140 mark-compacts and 1-1.4 s of GC per GiB, against a few).
  const reader = (await encrypter.encrypt(new ReadableStream({ start: (c) => c.close() }))).getReader();
  let sample = Buffer.alloc(0);
  let end = -1;
  try {
    while (end < 0) {
      const { done, value } = await reader.read();
      if (done) break;
      sample = Buffer.concat([sample, value]);
      end = headerEnd(sample);
    }
  } finally {
    await reader.cancel();
  }
  if (end < 0 || !capture.fileKey)
    throw new Error('age-encryption produced no header; library behaviour changed');
  return { header: Buffer.from(sample.subarray(0, end)), fileKey: capture.fileKey };
}

/** Index just past the header's `--- MAC` line, or -1 if `buf` does not hold all of it yet. */
function headerEnd(buf: Buffer): number {
  const mac = buf.indexOf(MAC_LINE);
  if (mac < 0) return -1;
  const newline = buf.indexOf(0x0a, mac + MAC_LINE.length);
  return newline < 0 ? -1 : newline + 1;
}

function chunkNonce(counter: number, last: boolean): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64BE(BigInt(counter), 3);
  nonce[11] = last ? 1 : 0;
  return nonce;
}

function payloadKey(fileKey: Buffer, nonce: Buffer): Buffer {
  return Buffer.from(crypto.hkdfSync('sha256', fileKey, nonce, 'payload', 32));
}

/** Encrypts a byte stream into an age file (header, nonce, STREAM chunks). */
export class AgeEncryptStream extends Transform {
  private readonly key: Buffer;
  private readonly prefix: Buffer;
  private started = false;
  // A full chunk waits here until more input shows that it is not the last one (the flag is in the nonce).
  private readonly pending = Buffer.allocUnsafe(CHUNK);
  private fill = 0;
  private counter = 0;

  constructor(setup: EncryptionSetup) {
    super();
    const nonce = crypto.randomBytes(NONCE);
    this.key = payloadKey(setup.fileKey, nonce);
    this.prefix = Buffer.concat([setup.header, nonce]);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (!this.started) {
      this.started = true;
      this.push(this.prefix);
    }
    let offset = 0;
    while (offset < chunk.length) {
      if (this.fill === CHUNK) this.seal(this.pending, false);
      // A whole chunk with input after it is not the last one: sealed straight from the input, without a copy.
      if (this.fill === 0 && chunk.length - offset > CHUNK) {
        this.seal(chunk.subarray(offset, offset + CHUNK), false);
        offset += CHUNK;
        continue;
      }
      const n = Math.min(CHUNK - this.fill, chunk.length - offset);
      chunk.copy(this.pending, this.fill, offset, offset + n);
      this.fill += n;
      offset += n;
    }
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (!this.started) {
      this.started = true;
      this.push(this.prefix);
    }
    // An empty last chunk is valid only for an empty file, which is exactly when fill can be 0 here.
    this.seal(this.pending, true);
    callback();
  }

  /**
   * Seals `plain` (the pending chunk or a whole chunk of the input) and pushes ciphertext and tag as they come
   * from the cipher. No concatenation: each copy was a fresh 64 KiB allocation, and that churn of external
   * memory made V8 run a full garbage collection every ~40 MB (measured: 1.1 s of GC per GiB against 0.2 s
   * without encryption, more than the cipher itself).
   */
  private seal(plain: Buffer, last: boolean): void {
    const cipher = crypto.createCipheriv('chacha20-poly1305', this.key, chunkNonce(this.counter, last), {
      authTagLength: TAG,
    });
    const body = plain === this.pending ? cipher.update(plain.subarray(0, this.fill)) : cipher.update(plain);
    cipher.final();
    if (plain === this.pending) this.fill = 0;
    this.counter++;
    if (body.length > 0) this.push(body);
    this.push(cipher.getAuthTag());
  }
}

/** Opens exactly the file whose key it was given; the header MAC still has to check out under that key. */
class KnownFileKey implements Identity {
  constructor(private readonly fileKey: Buffer) {}
  unwrapFileKey(): Uint8Array {
    return this.fileKey;
  }
}

/**
 * A decrypter for an artifact this process just wrote, from the file key it drew: the machine that backs up
 * holds only recipients, yet can prove the new file decrypts before anything older is removed.
 */
export async function decrypterForFileKey(fileKey: Buffer): Promise<Decrypter> {
  const decrypter = new (await ageLibrary()).Decrypter();
  decrypter.addIdentity(new KnownFileKey(fileKey));
  return decrypter;
}

export async function makeDecrypter(
  identities: string[] | undefined,
  passphrase: string | undefined,
): Promise<Decrypter> {
  const decrypter = new (await ageLibrary()).Decrypter();
  for (const identity of identities ?? []) {
    try {
      decrypter.addIdentity(identity);
    } catch {
      throw new InvalidIdentityError(
        `invalid age identity "${identity.slice(0, 18)}..."; expected an AGE-SECRET-KEY-1... line from an age identity file`,
      );
    }
  }
  if (passphrase !== undefined) decrypter.addIdentity(new NativeScryptIdentity(passphrase));
  if ((identities ?? []).length === 0 && passphrase === undefined)
    throw new InvalidIdentityError(
      'the file is encrypted: give an identity file or the passphrase to decrypt it',
    );
  return decrypter;
}

/** Decrypts an age file. Wrong keys, truncation and tampering all end the stream with a DecryptionError. */
export class AgeDecryptStream extends Transform {
  private state: 'header' | 'nonce' | 'payload' = 'header';
  private head: Buffer = Buffer.alloc(0);
  private fileKey?: Buffer;
  private key?: Buffer;
  private readonly pending = Buffer.allocUnsafe(CHUNK + TAG);
  private fill = 0;
  private counter = 0;

  constructor(private readonly decrypter: Decrypter) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      if (this.state !== 'header') {
        this.consume(chunk);
        callback();
        return;
      }
      this.head = Buffer.concat([this.head, chunk]);
      this.checkMagic(false);
      const end = headerEnd(this.head);
      if (end < 0) {
        if (this.head.length > MAX_HEADER)
          throw new DecryptionError(`${CORRUPT}: no end of the age header found`);
        callback();
        return;
      }
      const header = this.head.subarray(0, end);
      const rest = this.head.subarray(end);
      this.head = Buffer.alloc(0);
      this.decrypter.decryptHeader(header).then(
        (fileKey) => {
          try {
            this.fileKey = Buffer.from(fileKey);
            this.state = 'nonce';
            this.consume(rest);
            callback();
          } catch (error) {
            callback(error as Error);
          }
        },
        (error: unknown) => callback(headerError(error)),
      );
    } catch (error) {
      callback(error as Error);
    }
  }

  private checkMagic(complete: boolean): void {
    const n = Math.min(this.head.length, MAGIC.length);
    if (this.head.subarray(0, n).equals(MAGIC.subarray(0, n))) {
      if (complete && n < MAGIC.length)
        throw new DecryptionError(`${CORRUPT}: it ends inside the age header`);
      return;
    }
    if (this.head.subarray(0, ARMOR.length).equals(ARMOR))
      throw new DecryptionError(
        'the file is ASCII-armored age, which litekeep does not read; run `age -d` on it, or re-encrypt without -a',
      );
    throw new DecryptionError(
      'the file is not age-encrypted (no age header); check its name and the encryption setting',
    );
  }

  private consume(chunk: Buffer): void {
    let offset = 0;
    if (this.state === 'nonce') {
      const n = Math.min(NONCE - this.fill, chunk.length);
      chunk.copy(this.pending, this.fill, 0, n);
      this.fill += n;
      offset = n;
      if (this.fill < NONCE) return;
      this.key = payloadKey(this.fileKey!, Buffer.from(this.pending.subarray(0, NONCE)));
      this.fill = 0;
      this.state = 'payload';
    }
    // Each opened chunk is pushed as the decipher made it: concatenating them cost a copy and a fresh
    // allocation per input chunk (garbage collection, see AgeEncryptStream.seal).
    while (offset < chunk.length) {
      if (this.fill === CHUNK + TAG) this.push(this.open(false));
      const n = Math.min(CHUNK + TAG - this.fill, chunk.length - offset);
      chunk.copy(this.pending, this.fill, offset, offset + n);
      this.fill += n;
      offset += n;
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      if (this.state === 'header') {
        if (this.head.length === 0) throw new DecryptionError(`${CORRUPT}: it is empty`);
        this.checkMagic(true);
        throw new DecryptionError(`${CORRUPT}: it ends inside the age header`);
      }
      if (this.state === 'nonce' || this.fill < TAG)
        throw new DecryptionError(`${CORRUPT}: it ends before the first data chunk`);
      if (this.fill === TAG && this.counter > 0)
        throw new DecryptionError(`${CORRUPT}: empty final chunk (chunk ${this.counter})`);
      this.push(this.open(true));
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  private open(last: boolean): Buffer {
    const decipher = crypto.createDecipheriv('chacha20-poly1305', this.key!, chunkNonce(this.counter, last), {
      authTagLength: TAG,
    });
    decipher.setAuthTag(this.pending.subarray(this.fill - TAG, this.fill));
    const body = decipher.update(this.pending.subarray(0, this.fill - TAG));
    try {
      decipher.final();
    } catch {
      // A full chunk that fails as non-final, or any chunk that fails as final: cut off, altered or reordered.
      throw new DecryptionError(
        `${CORRUPT}: chunk ${this.counter} (at ~${this.counter * 64} KiB of data) failed authentication; fetch it again or restore another backup`,
      );
    }
    this.fill = 0;
    this.counter++;
    return body;
  }
}

/** Whether a decryption failure means "not our key" rather than "damaged data". */
export function isWrongKey(error: unknown): boolean {
  return error instanceof DecryptionError && error.message === CANNOT_DECRYPT;
}

function headerError(error: unknown): Error {
  if (error instanceof LitekeepError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (/no identity matched/.test(message)) return new DecryptionError(CANNOT_DECRYPT, { cause: error });
  return new DecryptionError(`${CORRUPT}: bad age header (${message})`, { cause: error });
}

/** Reads AGE-SECRET-KEY-1... lines from an age identity file (as age-keygen writes); `#` lines are comments. */
export async function readIdentityFile(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (error) {
    throw new InvalidIdentityError(
      `cannot read identity file ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); check the path`,
      { cause: error },
    );
  }
  const { identityToRecipient } = await ageLibrary();
  const identities: string[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('-----BEGIN'))
      throw new InvalidIdentityError(
        `${file} is a PEM/SSH private key; litekeep reads age identity files only (make one with litekeep keygen or age-keygen)`,
      );
    if (!line.startsWith('AGE-SECRET-KEY-'))
      throw new InvalidIdentityError(
        `${file} line ${i + 1} is not an age identity (expected AGE-SECRET-KEY-1...)`,
      );
    try {
      await identityToRecipient(line);
    } catch {
      throw new InvalidIdentityError(
        `${file} line ${i + 1} is a damaged age identity (bad checksum or length)`,
      );
    }
    identities.push(line);
  }
  if (identities.length === 0)
    throw new InvalidIdentityError(`${file} contains no age identity (expected an AGE-SECRET-KEY-1... line)`);
  return identities;
}

/**
 * Writes a new X25519 identity in age-keygen's format, mode 0600. The file appears complete or not at all,
 * and an existing file is never replaced (losing a key loses every backup made for it).
 */
export async function generateIdentity(file: string): Promise<{ recipient: string }> {
  const { generateX25519Identity, identityToRecipient } = await ageLibrary();
  const identity = await generateX25519Identity();
  const recipient = await identityToRecipient(identity);
  const created = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const text = `# created: ${created}\n# public key: ${recipient}\n${identity}\n`;
  const dir = path.dirname(path.resolve(file));
  const temp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now().toString(36)}.tmp`);
  const refuse = () =>
    new LitekeepError(`${file} already exists; litekeep never overwrites a key file: choose another path`, {
      exitCode: EXIT.usage,
      stage: 'keygen',
    });
  if (
    await fsp.stat(file).then(
      () => true,
      () => false,
    )
  )
    throw refuse();
  const handle = await fsp.open(temp, 'wx', 0o600);
  try {
    await handle.chmod(0o600);
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  let published: boolean;
  try {
    published = await publishNoClobber(temp, file);
  } finally {
    await fsp.rm(temp, { force: true });
  }
  if (!published) throw refuse();
  await fsyncDir(dir);
  return { recipient };
}
