import os from 'node:os';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { PassThrough, Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pipeline as pipelineCallback } from 'node:stream';
import type { Compression } from '../naming.js';
import {
  AgeDecryptStream,
  AgeEncryptStream,
  decrypterForFileKey,
  makeDecrypter,
  prepareEncryption,
} from './age.js';
import {
  createCompressor,
  createDecompressor,
  translateDecompressionError,
  validateCompression,
} from './compression.js';
import { ArtifactDecodeError } from './errors.js';
import { createSha256Counter } from './hash.js';

export interface ArtifactOptions {
  compression: Compression;
  /** gzip 1–9 (default 6), zstd 1–19+ (default 3). Ignored for `none`. */
  level?: number;
  /** zstd worker threads (0: compress on the calling thread; default 1 on a machine with several cores). */
  threads?: number;
  /** age recipients (`age1...`); encrypts when non-empty. */
  recipients?: string[];
  /** age passphrase (scrypt); exclusive with recipients. */
  passphrase?: string;
  /**
   * Decode the packed bytes as they are handed to the file (with openArtifact, the decoder restores use) and
   * compare them with the plain bytes that went in; any difference or decoding error fails the write with an
   * ArtifactDecodeError. Proves the encoding; that the file holds those bytes is ArtifactResult.sha256's job.
   */
  checkDecodes?: boolean;
}

export interface ArtifactResult {
  /** sha256 (hex) and size of the artifact as written. */
  sha256: string;
  bytes: number;
  /** sha256 (hex) and size of the plain database that went in. */
  plainSha256: string;
  plainBytes: number;
  /**
   * The age file key of an encrypted artifact, kept in memory only so that `checkArtifactDecodes` can prove
   * the file opens without the identity. Never store or print it.
   */
  fileKey?: Buffer;
  /** With checkDecodes: the bytes written decoded back to exactly the plain input. */
  decodeChecked: boolean;
}

export interface OpenOptions {
  compression: Compression;
  encrypted: boolean;
  /** `AGE-SECRET-KEY-1...` strings (see readIdentityFile). */
  identities?: string[];
  passphrase?: string;
  /** The file key of an artifact this process wrote (ArtifactResult.fileKey), instead of an identity. */
  fileKey?: Buffer;
}

// Bigger reads than fs's 64 KiB default cut per-chunk overhead; memory stays a few of these per stage.
const READ_CHUNK = 256 * 1024;

/**
 * A write stream that creates `file` with mode 0600 and fsyncs it before 'close' (so before pipeline()
 * resolves). An existing file keeps its mode on open, hence the chmod.
 */
async function privateSink(file: string): Promise<fs.WriteStream> {
  await fsp.chmod(file, 0o600).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
  return fs.createWriteStream(file, { mode: 0o600, flush: true, highWaterMark: READ_CHUNK });
}

function isEncrypting(options: ArtifactOptions): boolean {
  return options.passphrase !== undefined || (options.recipients?.length ?? 0) > 0;
}

/**
 * Streams `sourcePath` through hash → compress → encrypt → hash into `destPath` (a temp path the caller
 * chose), mode 0600, fsynced. Memory stays flat whatever the size. On failure or abort `destPath` is removed.
 */
export async function writeArtifact(
  sourcePath: string,
  destPath: string,
  options: ArtifactOptions,
  onProgress?: (plainBytesDone: number) => void,
  signal?: AbortSignal,
): Promise<ArtifactResult> {
  validateCompression(options.compression, options.level, options.threads);
  // Key wrapping (scrypt takes ~0.7 s) happens before any file is created.
  const encryption = isEncrypting(options)
    ? await prepareEncryption(options.recipients, options.passphrase)
    : undefined;
  signal?.throwIfAborted();
  const plain = createSha256Counter(onProgress);
  const stages: Transform[] = [plain];
  // One zstd worker by default on a machine with more than one core: the calling thread is busy hashing and
  // encrypting, and the worker overlaps compression with that (measured: 234 → 320 MB/s with age, 2 cores).
  const threads = options.threads ?? (os.availableParallelism() > 1 ? 1 : 0);
  const compressor = createCompressor(options.compression, options.level, threads);
  if (compressor) stages.push(compressor);
  if (encryption) stages.push(new AgeEncryptStream(encryption));
  // With nothing in between, the artifact is the plain file: one hash serves both.
  const packed = stages.length > 1 ? createSha256Counter() : plain;
  if (packed !== plain) stages.push(packed);

  const check = options.checkDecodes
    ? await decodeAsWritten(options.compression, encryption?.fileKey)
    : undefined;
  if (check) {
    stages.splice(1, 0, check.recordPlain);
    stages.push(check.tee);
  }

  let ok = false;
  try {
    await pipeline(
      [
        fs.createReadStream(sourcePath, { highWaterMark: READ_CHUNK }),
        ...stages,
        await privateSink(destPath),
      ],
      { signal },
    );
    await check?.done;
    ok = true;
  } finally {
    check?.stop();
    if (!ok) await fsp.rm(destPath, { force: true });
  }
  return {
    sha256: packed.sha256,
    bytes: packed.bytes,
    plainSha256: plain.sha256,
    plainBytes: plain.bytes,
    fileKey: encryption?.fileKey,
    decodeChecked: check !== undefined,
  };
}

/**
 * The plain bytes that went into the packing stages and whose decoded copy has not come out yet: a few MiB
 * (what sits inside the compressor and the stream buffers), since decoding follows writing chunk by chunk.
 */
export class PlainBacklog {
  private readonly chunks: Buffer[] = [];
  private offset = 0;

  add(chunk: Buffer): void {
    if (chunk.length > 0) this.chunks.push(chunk);
  }

  /** Compares `decoded` with the oldest plain bytes not yet matched and drops them; false on any difference. */
  match(decoded: Buffer): boolean {
    let at = 0;
    while (at < decoded.length) {
      const first = this.chunks[0];
      if (!first) return false; // decoded to more bytes than went in
      const n = Math.min(first.length - this.offset, decoded.length - at);
      if (!decoded.subarray(at, at + n).equals(first.subarray(this.offset, this.offset + n))) return false;
      at += n;
      this.offset += n;
      if (this.offset === first.length) {
        this.chunks.shift();
        this.offset = 0;
      }
    }
    return true;
  }

  /** Every plain byte has been matched. */
  get empty(): boolean {
    return this.chunks.length === 0;
  }
}

/**
 * The decode-before-publish check done while writing rather than by reading the file back afterwards: each
 * packed chunk is handed to the file and to the decoder, and what the decoder gives back is compared with the
 * plain chunk it came from (memcmp, cheaper than hashing it again). The whole run then decodes once, on data
 * still in the CPU cache, instead of decrypting, decompressing and hashing the artifact in a second pass.
 */
async function decodeAsWritten(
  compression: Compression,
  fileKey: Buffer | undefined,
): Promise<{ recordPlain: Transform; tee: Transform; done: Promise<void>; stop: () => void }> {
  const backlog = new PlainBacklog();
  const input = new PassThrough({ highWaterMark: READ_CHUNK });
  const decoded = await openArtifact(input, { compression, encrypted: fileKey !== undefined, fileKey });
  const recordPlain = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      backlog.add(chunk);
      callback(null, chunk);
    },
  });
  let failed: Error | undefined;
  const tee = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (failed) return callback(failed);
      if (input.write(chunk)) return callback(null, chunk);
      // The file waits for the decoder: the backlog stays as small as the stages in between.
      const go = () => {
        input.off('drain', go);
        input.off('close', go);
        callback(failed ?? null, chunk);
      };
      input.on('drain', go);
      input.on('close', go);
    },
    flush(callback) {
      input.end();
      callback();
    },
  });
  const compare = new Writable({
    highWaterMark: READ_CHUNK,
    write(chunk: Buffer, _encoding, callback) {
      callback(
        backlog.match(chunk)
          ? null
          : new ArtifactDecodeError('the packed bytes decode to other bytes than the snapshot'),
      );
    },
    final(callback) {
      callback(
        backlog.empty
          ? null
          : new ArtifactDecodeError('the packed bytes decode to fewer bytes than the snapshot'),
      );
    },
  });
  const done = pipeline(decoded, compare).catch((error: unknown) => {
    failed =
      error instanceof ArtifactDecodeError
        ? error
        : new ArtifactDecodeError(`the packed bytes do not decode (${(error as Error).message})`, {
            cause: error,
          });
    tee.destroy(failed);
    throw failed;
  });
  // Reported by the await in writeArtifact (or superseded by the write's own error).
  done.catch(() => undefined);
  return { recordPlain, tee, done, stop: () => decoded.destroy() };
}

/**
 * Turns an artifact stream back into the plain database bytes. Option errors (no identity for an encrypted
 * file, a malformed identity) reject at once; everything found in the data (wrong key, truncation, tampering,
 * a corrupt compressed stream) ends the returned stream with an error, never with short output.
 */
export async function openArtifact(input: Readable, options: OpenOptions): Promise<Readable> {
  validateCompression(options.compression);
  const stages: Transform[] = [];
  if (options.encrypted)
    stages.push(
      new AgeDecryptStream(
        options.fileKey
          ? await decrypterForFileKey(options.fileKey)
          : await makeDecrypter(options.identities, options.passphrase),
      ),
    );
  stages.push(...createDecompressor(options.compression));
  const out = new PassThrough({ highWaterMark: READ_CHUNK });
  // pipeline() destroys every stream, `out` included, with the first error. Listeners added before it run
  // first, so the reader gets the translated one-line error (a destroyed stream ignores later destroys).
  for (const stage of stages)
    stage.on('error', (error) => out.destroy(translateDecompressionError(options.compression, error)));
  pipelineCallback([input, ...stages, out], (error) => {
    if (error) out.destroy(error);
  });
  return out;
}

/** Artifact file → plain file (mode 0600, fsynced). Removes `plainPath` on failure. */
export async function restoreArtifactToFile(
  artifactPath: string,
  plainPath: string,
  options: OpenOptions,
): Promise<{ sha256: string; bytes: number }> {
  const decoded = await openArtifact(
    fs.createReadStream(artifactPath, { highWaterMark: READ_CHUNK }),
    options,
  );
  const counter = createSha256Counter();
  let ok = false;
  try {
    await pipeline(decoded, counter, await privateSink(plainPath));
    ok = true;
  } finally {
    decoded.destroy();
    if (!ok) await fsp.rm(plainPath, { force: true });
  }
  return counter.digest();
}
