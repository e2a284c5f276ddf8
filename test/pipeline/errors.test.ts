import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CorruptArtifactError,
  DecryptionError,
  InvalidIdentityError,
  InvalidRecipientError,
  generateIdentity,
  openArtifact,
  readIdentityFile,
  restoreArtifactToFile,
  validateRecipients,
  writeArtifact,
  type OpenOptions,
} from '../../src/pipeline/index.js';
import { createDecompressor } from '../../src/pipeline/compression.js';
import { needPrograms } from '../helpers/programs.js';
import { ageKeyPair, ageKeygen, makeDatabase, tempDir } from './helpers.js';

let dir: string;
let db: string;
let identity: string;
let recipient: string;
let encrypted: Buffer; // backup.db.zst.age
let compressedGz: Buffer;
let compressedZst: Buffer;
const open: OpenOptions = { compression: 'zstd', encrypted: true };

beforeAll(async () => {
  dir = tempDir();
  db = path.join(dir, 'source.db');
  makeDatabase(db, 2);
  ({ recipient } = await generateIdentity(path.join(dir, 'key.txt')));
  [identity] = await readIdentityFile(path.join(dir, 'key.txt'));
  open.identities = [identity];
  await writeArtifact(db, path.join(dir, 'backup.db.zst.age'), {
    compression: 'zstd',
    recipients: [recipient],
  });
  encrypted = fs.readFileSync(path.join(dir, 'backup.db.zst.age'));
  await writeArtifact(db, path.join(dir, 'backup.db.gz'), { compression: 'gzip' });
  compressedGz = fs.readFileSync(path.join(dir, 'backup.db.gz'));
  await writeArtifact(db, path.join(dir, 'backup.db.zst'), { compression: 'zstd' });
  compressedZst = fs.readFileSync(path.join(dir, 'backup.db.zst'));
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function headerLength(b: Buffer): number {
  return b.indexOf('\n', b.indexOf('\n--- ') + 1) + 1;
}

/** Decodes `bytes` fully; resolves with the output length or rejects with the stream's error. */
async function decode(bytes: Buffer, options: OpenOptions): Promise<number> {
  let n = 0;
  for await (const chunk of openArtifact(Readable.from([bytes]), options)) n += (chunk as Buffer).length;
  return n;
}

async function restoreBytes(bytes: Buffer, options: OpenOptions): Promise<string> {
  const file = path.join(dir, `case-${Math.random().toString(36).slice(2)}`);
  fs.writeFileSync(file, bytes);
  const plain = `${file}.db`;
  await expect(restoreArtifactToFile(file, plain, options)).rejects.toThrow();
  return plain;
}

describe('decryption failures', () => {
  it('wrong identity → DecryptionError "cannot decrypt with the given identity/passphrase"', async () => {
    const other = await ageKeyPair(dir, 'other.txt');
    const error = await decode(encrypted, { ...open, identities: [other.identity] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DecryptionError);
    expect((error as Error).message).toMatch(/^cannot decrypt with the given identity\/passphrase/);
    expect((error as Error).message).not.toMatch(/\n/);
  });

  it('a passphrase on a recipient file, and an identity on a passphrase file, are wrong keys too', async () => {
    await expect(decode(encrypted, { ...open, identities: [], passphrase: 'x' })).rejects.toThrow(
      /cannot decrypt with the given identity\/passphrase/,
    );
    const pwFile = path.join(dir, 'pw.db.age');
    await writeArtifact(db, pwFile, { compression: 'none', passphrase: 'right one' });
    const pwBytes = fs.readFileSync(pwFile);
    await expect(
      decode(pwBytes, { compression: 'none', encrypted: true, passphrase: 'wrong one' }),
    ).rejects.toThrow(DecryptionError);
    await expect(
      decode(pwBytes, { compression: 'none', encrypted: true, identities: [identity] }),
    ).rejects.toThrow(/cannot decrypt with the given identity\/passphrase/);
  });

  const cuts: Array<[string, (b: Buffer) => Buffer]> = [
    ['inside the header', (b) => b.subarray(0, 40)],
    ['right after the header', (b) => b.subarray(0, headerLength(b) + 20)],
    // Header, 16-byte nonce, then exactly one full 64 KiB + 16-byte-tag chunk: looks complete but is not.
    ['on a 64 KiB chunk boundary', (b) => b.subarray(0, headerLength(b) + 16 + 65536 + 16)],
    ['one byte short', (b) => b.subarray(0, b.length - 1)],
    ['with a byte appended', (b) => Buffer.concat([b, Buffer.from([0])])],
  ];
  for (const [where, cut] of cuts) {
    it(`truncation ${where} → DecryptionError "truncated or corrupt"`, async () => {
      const bytes = cut(encrypted);
      expect(bytes.length).not.toBe(encrypted.length);
      await expect(decode(bytes, open)).rejects.toThrow(/truncated or corrupt/);
      await expect(decode(bytes, open)).rejects.toBeInstanceOf(DecryptionError);
    });
  }

  it('a flipped byte in the middle → DecryptionError, and restore leaves no output file', async () => {
    const bytes = Buffer.from(encrypted);
    bytes[Math.floor(bytes.length / 2)] ^= 0x01;
    await expect(decode(bytes, open)).rejects.toThrow(/truncated or corrupt.*chunk \d+/);
    const plain = await restoreBytes(bytes, open);
    expect(fs.existsSync(plain)).toBe(false);
  });

  it('a flipped byte in the header MAC → DecryptionError', async () => {
    const bytes = Buffer.from(encrypted);
    bytes[bytes.indexOf('\n--- ') + 8] ^= 0x02;
    await expect(decode(bytes, open)).rejects.toThrow(DecryptionError);
  });

  it('a file that is not age at all says so', async () => {
    await expect(decode(compressedZst, open)).rejects.toThrow(/not age-encrypted/);
    await expect(decode(Buffer.alloc(0), open)).rejects.toThrow(/truncated or corrupt.*empty/);
  });

  it('no identity for an encrypted file, or a malformed one, throws at once', () => {
    expect(() => openArtifact(Readable.from([]), { compression: 'none', encrypted: true })).toThrow(
      InvalidIdentityError,
    );
    expect(() =>
      openArtifact(Readable.from([]), {
        compression: 'none',
        encrypted: true,
        identities: ['AGE-SECRET-KEY-1XYZ'],
      }),
    ).toThrow(InvalidIdentityError);
  });
});

describe('compressed data failures', () => {
  for (const [compression, bytes] of [
    ['gzip', () => compressedGz],
    ['zstd', () => compressedZst],
  ] as const) {
    it(`${compression}: truncated, flipped and empty input → CorruptArtifactError`, async () => {
      const b = bytes();
      const options: OpenOptions = { compression, encrypted: false };
      await expect(decode(b.subarray(0, b.length - 5), options)).rejects.toBeInstanceOf(CorruptArtifactError);
      const flipped = Buffer.from(b);
      flipped[Math.floor(b.length / 2)] ^= 0x10;
      await expect(decode(flipped, options)).rejects.toThrow(/truncated or corrupt/);
      await expect(decode(Buffer.alloc(0), options)).rejects.toThrow(/empty/);
    });
  }

  it('zstd decompression waits for the reader: 64 MiB of zeros do not pile up in memory', async () => {
    const zeros = path.join(dir, 'zeros.bin');
    fs.writeFileSync(zeros, Buffer.alloc(64 * 1024 * 1024));
    await writeArtifact(zeros, `${zeros}.zst`, { compression: 'zstd', level: 1 });
    const frame = fs.readFileSync(`${zeros}.zst`);
    expect(frame.length).toBeLessThan(64 * 1024);
    const [decompressor] = createDecompressor('zstd');
    decompressor.end(frame);
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    expect(decompressor.readableLength).toBeLessThan(1024 * 1024);
    let total = 0;
    for await (const chunk of decompressor) total += (chunk as Buffer).length;
    expect(total).toBe(64 * 1024 * 1024);
  });
});

describe('recipients, identities and keys', () => {
  it('validateRecipients accepts age1 keys and names the bad one', async () => {
    const good = (await ageKeyPair(dir, 'good.txt')).recipient;
    expect(() => validateRecipients([good, recipient])).not.toThrow();
    const bad = `${good.slice(0, -1)}${good.endsWith('q') ? 'p' : 'q'}`;
    for (const wrong of [
      bad,
      'age1short',
      'hello',
      '',
      'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk user@host',
    ]) {
      let error: unknown;
      try {
        validateRecipients([good, wrong]);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(InvalidRecipientError);
      expect((error as InvalidRecipientError).recipient).toBe(wrong);
      if (wrong.length > 0) expect((error as Error).message).toContain(wrong.slice(0, 20));
    }
    expect(() => validateRecipients(['ssh-ed25519 AAAAC3Nz'])).toThrow(
      /SSH public key, which litekeep does not support/,
    );
  });

  it('writeArtifact rejects an invalid recipient, or recipients with a passphrase, before writing', async () => {
    const out = path.join(dir, 'never.age');
    await expect(
      writeArtifact(db, out, { compression: 'none', recipients: ['age1nope'] }),
    ).rejects.toBeInstanceOf(InvalidRecipientError);
    await expect(
      writeArtifact(db, out, { compression: 'none', recipients: [recipient], passphrase: 'x' }),
    ).rejects.toThrow(/not both/);
    await expect(writeArtifact(db, out, { compression: 'gzip', level: 12 })).rejects.toThrow(/gzip level 12/);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('generateIdentity writes age-keygen format, mode 0600, and refuses to overwrite', async () => {
    const file = path.join(dir, 'new-key.txt');
    const { recipient: r } = await generateIdentity(file);
    const text = fs.readFileSync(file, 'utf8');
    expect(text).toMatch(
      /^# created: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n# public key: age1[0-9a-z]{58}\nAGE-SECRET-KEY-1[0-9A-Z]{58}\n$/,
    );
    expect(text).toContain(`# public key: ${r}\n`);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    await expect(generateIdentity(file)).rejects.toThrow(/already exists/);
    expect(fs.readFileSync(file, 'utf8')).toBe(text);
    expect(fs.readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('readIdentityFile reads age-keygen files and rejects others with the line number', async (ctx) => {
    needPrograms(ctx, 'age-keygen');
    const cli = ageKeygen(dir, 'cli.txt');
    expect(await readIdentityFile(cli.file)).toEqual([cli.identity]);
    const both = path.join(dir, 'both.txt');
    fs.writeFileSync(both, `${fs.readFileSync(cli.file, 'utf8')}\n# second\n${identity}\n`);
    expect(await readIdentityFile(both)).toEqual([cli.identity, identity]);
    const bad = path.join(dir, 'bad.txt');
    fs.writeFileSync(bad, '# comment\nage1notasecret\n');
    await expect(readIdentityFile(bad)).rejects.toThrow(/line 2 is not an age identity/);
    fs.writeFileSync(bad, '-----BEGIN OPENSSH PRIVATE KEY-----\n');
    await expect(readIdentityFile(bad)).rejects.toThrow(/PEM\/SSH private key/);
    fs.writeFileSync(bad, `${identity.slice(0, -1)}${identity.endsWith('Q') ? 'P' : 'Q'}\n`);
    await expect(readIdentityFile(bad)).rejects.toThrow(/damaged age identity/);
    await expect(readIdentityFile(path.join(dir, 'missing.txt'))).rejects.toThrow(
      /cannot read identity file .*ENOENT/,
    );
  });

  it('our passphrase files carry a scrypt stanza with work factor 18, as the age CLI writes', () => {
    const header = fs.readFileSync(path.join(dir, 'pw.db.age')).subarray(0, 200).toString('latin1');
    expect(header.split('\n')[1]).toMatch(/^-> scrypt [A-Za-z0-9+/]{22} 18$/m);
  });
});
