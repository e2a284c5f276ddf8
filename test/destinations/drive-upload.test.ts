import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  DriveChecksumMismatchError,
  DriveFolderNotFoundError,
  DriveQuotaExceededError,
  DriveRequestError,
  GoogleDriveDestination,
  uploadBackupToDrive,
  type GoogleDriveOptions,
} from '../../src/destinations/google-drive.js';
import type { ArtifactMetadata } from '../../src/destinations/types.js';
import {
  FOLDER_MIME,
  startDriveServer,
  writeAuthorizedUser,
  type DriveServer,
  type LoggedRequest,
} from '../servers/drive-server.js';

const KiB = 1024;
const NAME = 'backup-2026-03-01-030000.db.zst';

let server: DriveServer;
let dir: string;
let credentialsPath: string;

beforeEach(async () => {
  server = await startDriveServer();
  dir = await mkdtemp(join(tmpdir(), 'litekeep-drive-'));
  credentialsPath = await writeAuthorizedUser(server, dir);
});

afterEach(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

/** Deterministic, incompressible-looking bytes: a corrupted byte anywhere shows up in the comparison. */
function bytesOf(size: number, seed = 1): Buffer {
  const out = Buffer.alloc(size);
  let x = seed * 2654435761;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

async function localFile(
  size: number,
  name = NAME,
): Promise<{ path: string; data: Buffer; meta: ArtifactMetadata }> {
  const data = bytesOf(size);
  const path = join(dir, name);
  await writeFile(path, data);
  const meta: ArtifactMetadata = {
    sha256: createHash('sha256').update(data).digest('hex'),
    bytes: data.length,
    plainSha256: 'a'.repeat(64),
    plainBytes: size * 3,
    sourceName: 'app',
    backupTime: '2026-03-01T03:00:00.000Z',
    compression: 'zstd',
    encryption: 'none',
    litekeepVersion: '0.1.0',
  };
  return { path, data, meta };
}

function destination(extra: Partial<GoogleDriveOptions> = {}): GoogleDriveDestination {
  return new GoogleDriveDestination({
    credentialsPath,
    chunkSize: 256 * KiB,
    retryBaseMs: 1,
    endpoints: { apiRootUrl: server.url, tokenUrl: server.tokenUrl },
    ...extra,
  });
}

const chunkPuts = () =>
  server.requests.filter((r) => r.method === 'PUT' && /^bytes \d/.test(String(r.headers['content-range'])));
const statusQueries = () =>
  server.requests.filter((r) => r.method === 'PUT' && /^bytes \*\//.test(String(r.headers['content-range'])));
const rangeStart = (r: LoggedRequest) => Number(/^bytes (\d+)-/.exec(String(r.headers['content-range']))![1]);

function storedBytes(name = NAME): Buffer {
  const files = server.filesNamed(name);
  expect(files).toHaveLength(1);
  return files[0].bytes;
}

describe('GoogleDriveDestination.put', () => {
  it('uploads a multi-chunk file with the resumable protocol and stores litekeep metadata', async () => {
    const { path, data, meta } = await localFile(2 * 1024 * KiB + 12_345);
    const progress: number[] = [];
    const result = await destination().put(path, NAME, meta, { onProgress: (n) => progress.push(n) });

    expect(storedBytes().equals(data)).toBe(true);
    // 8 full 256 KiB chunks and a short last one, each a separate PUT with its own Content-Range.
    const puts = chunkPuts();
    expect(puts).toHaveLength(9);
    expect(puts.map(rangeStart)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8].map((i) => i * 256 * KiB));
    expect(puts.every((r) => r.bodyBytes <= 256 * KiB)).toBe(true);
    const init = server.requests.find((r) => r.method === 'POST' && r.path === '/upload/drive/v3/files')!;
    expect(init.query.uploadType).toBe('resumable');
    expect(init.headers['x-upload-content-length']).toBe(String(data.length));

    const file = server.filesNamed(NAME)[0];
    const folder = server.files.get(file.parents[0])!;
    expect(folder).toMatchObject({ name: 'litekeep-backups', mimeType: FOLDER_MIME });
    expect(file.appProperties).toEqual({
      litekeep: '1',
      sha256: meta.sha256,
      bytes: String(data.length),
      plainSha256: meta.plainSha256,
      plainBytes: String(meta.plainBytes),
      source: 'app',
      backupTime: meta.backupTime,
      compression: 'zstd',
      encryption: 'none',
      version: '0.1.0',
    });
    expect(result).toMatchObject({
      id: file.id,
      link: `https://drive.google.com/file/d/${file.id}/view?usp=drivesdk`,
      bytes: data.length,
      attempts: 1,
    });
    expect(result.durationMs).toBeGreaterThanOrEqual(0);
    expect(progress.at(-1)).toBe(data.length);
  });

  it('reuses the folder it found and keeps appProperties within Drive’s 124-byte limit', async () => {
    const { path, meta } = await localFile(1000);
    const longSource = 'ä'.repeat(100);
    const dest = destination();
    await dest.put(path, NAME, { ...meta, sourceName: longSource });
    await dest.put(path, 'backup-2026-03-02-030000.db.zst', { ...meta, sourceName: longSource });
    const folders = [...server.files.values()].filter((f) => f.mimeType === FOLDER_MIME);
    expect(folders).toHaveLength(1);
    for (const file of server.files.values())
      for (const [k, v] of Object.entries(file.appProperties))
        expect(Buffer.byteLength(k) + Buffer.byteLength(v)).toBeLessThanOrEqual(124);
  });

  it('retries a chunk answered with 500 after asking the session how far it got', async () => {
    const { path, data, meta } = await localFile(1024 * KiB + 100);
    server.faults.chunkErrors.push({ chunk: 3, status: 500 });
    const result = await destination().put(path, NAME, meta);

    expect(storedBytes().equals(data)).toBe(true);
    expect(result.attempts).toBe(2);
    expect(statusQueries()).toHaveLength(1);
    const starts = chunkPuts().map(rangeStart);
    // The third chunk (offset 512 KiB) was sent twice: once failing, once after the status query.
    expect(starts).toEqual([0, 256, 512, 512, 768, 1024].map((k) => k * KiB));
  });

  it('waits and retries on 429 with Retry-After', async () => {
    const { path, data, meta } = await localFile(600 * KiB);
    server.faults.chunkErrors.push({ chunk: 2, status: 429, retryAfter: '1' });
    const result = await destination({ retryBaseMs: 0 }).put(path, NAME, meta);

    expect(storedBytes().equals(data)).toBe(true);
    expect(result.attempts).toBe(2);
    const failed = server.requests.find((r) => r.status === 429)!;
    expect(failed).toBeDefined();
    expect(chunkPuts().map(rangeStart)).toEqual([0, 256, 256, 512].map((k) => k * KiB));
  });

  it('resumes from the 256 KiB boundary Drive kept when the connection drops mid-chunk', async () => {
    const { path, data, meta } = await localFile(1536 * KiB + 7);
    // Chunk 2 covers [512 KiB, 1024 KiB); the server keeps whole 256 KiB units of what arrived, then hangs up.
    server.faults.dropChunks.push({ chunk: 2, afterBytes: 300 * KiB });
    const result = await destination({ chunkSize: 512 * KiB }).put(path, NAME, meta);

    expect(storedBytes().equals(data)).toBe(true);
    expect(result.attempts).toBe(2);
    const starts = chunkPuts().map(rangeStart);
    expect(starts.slice(0, 3)).toEqual([0, 512 * KiB, 768 * KiB]);
    expect(statusQueries()).toHaveLength(1);
  });

  it('gives up after maxAttempts when a chunk keeps failing', async () => {
    const { path, meta } = await localFile(300 * KiB);
    for (let chunk = 1; chunk <= 10; chunk++) server.faults.chunkErrors.push({ chunk, status: 503 });
    const error = await destination({ maxAttempts: 3 })
      .put(path, NAME, meta)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DriveRequestError);
    expect(String((error as Error).message)).toMatch(/failed 3 times/);
    expect(chunkPuts()).toHaveLength(3);
    expect(server.filesNamed(NAME)).toHaveLength(0);
  });

  it('fails on a checksum mismatch and deletes the bad remote copy', async () => {
    const { path, meta } = await localFile(300 * KiB);
    server.faults.wrongChecksum = true;
    const error = await destination()
      .put(path, NAME, meta)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DriveChecksumMismatchError);
    expect((error as Error).message).toMatch(/sha256 Google Drive reports/);
    expect(server.filesNamed(NAME)).toHaveLength(0);
  });

  it('refuses an artifact whose bytes do not match the sha256 it was declared with', async () => {
    const { path, meta } = await localFile(1000);
    const error = await destination()
      .put(path, NAME, { ...meta, sha256: 'f'.repeat(64) })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DriveChecksumMismatchError);
    expect(server.filesNamed(NAME)).toHaveLength(0);
  });

  it('reports a full Drive as DriveQuotaExceededError', async () => {
    const { path, meta } = await localFile(1000);
    server.faults.quotaExceeded = true;
    const error = await destination()
      .put(path, NAME, meta)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DriveQuotaExceededError);
    expect((error as Error).message).toMatch(/storageQuotaExceeded.*free space/);
  });

  it('recreates its folder when it was deleted between two uploads', async () => {
    const first = await localFile(1000, 'backup-2026-03-01-030000.db');
    const second = await localFile(300 * KiB, 'backup-2026-03-02-030000.db');
    const dest = destination();
    await dest.put(first.path, 'backup-2026-03-01-030000.db', first.meta);
    const oldFolder = server.filesNamed('litekeep-backups')[0].id;
    server.deleteFile(oldFolder);

    await dest.put(second.path, 'backup-2026-03-02-030000.db', second.meta);
    const folders = server.filesNamed('litekeep-backups');
    expect(folders).toHaveLength(1);
    expect(folders[0].id).not.toBe(oldFolder);
    expect(storedBytes('backup-2026-03-02-030000.db').equals(second.data)).toBe(true);
    expect(server.filesNamed('backup-2026-03-02-030000.db')[0].parents).toEqual([folders[0].id]);
  });

  it('uploads into a folder given by id, and names a missing id clearly', async () => {
    const { path, data, meta } = await localFile(1000);
    const folder = server.addFile({ name: 'mine', mimeType: FOLDER_MIME });
    await destination({ folderId: folder.id }).put(path, NAME, meta);
    expect(server.filesNamed(NAME)[0].parents).toEqual([folder.id]);
    expect(storedBytes().equals(data)).toBe(true);

    const error = await destination({ folderId: 'nope' })
      .put(path, NAME, meta)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DriveFolderNotFoundError);
  });

  it('uploadBackupToDrive returns id and webViewLink', async () => {
    const { path, data } = await localFile(1000);
    const result = await uploadBackupToDrive(path, {
      credentialsPath,
      sourceName: 'app',
      endpoints: { apiRootUrl: server.url, tokenUrl: server.tokenUrl },
    });
    const file = server.filesNamed(NAME)[0];
    expect(result).toEqual({
      id: file.id,
      webViewLink: `https://drive.google.com/file/d/${file.id}/view?usp=drivesdk`,
    });
    expect(file.bytes.equals(data)).toBe(true);
    expect(file.appProperties).toMatchObject({
      litekeep: '1',
      source: 'app',
      compression: 'zstd',
      bytes: '1000',
    });
    expect(await readFile(path)).toEqual(data);
  });
});
