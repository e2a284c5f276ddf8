import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  DriveChecksumMismatchError,
  DriveFileNotFoundError,
  downloadVerified,
  GoogleDriveDestination,
  type GoogleDriveOptions,
} from '../../src/destinations/google-drive.js';
import type { ArtifactMetadata } from '../../src/destinations/types.js';
import {
  FOLDER_MIME,
  startDriveServer,
  writeAuthorizedUser,
  type DriveServer,
} from '../servers/drive-server.js';

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

function destination(extra: Partial<GoogleDriveOptions> = {}): GoogleDriveDestination {
  return new GoogleDriveDestination({
    credentialsPath,
    chunkSize: 256 * 1024,
    retryBaseMs: 1,
    endpoints: { apiRootUrl: server.url, tokenUrl: server.tokenUrl },
    host: 'web1',
    ...extra,
  });
}

async function own(dest: GoogleDriveDestination, name: string) {
  const object = await dest.stat(name);
  if (!object) throw new Error(`${name} is not on Drive`);
  return object;
}

async function upload(
  dest: GoogleDriveDestination,
  name: string,
  source = 'app',
  size = 5000,
  fill: string = name,
): Promise<Buffer> {
  const data = Buffer.alloc(size, fill);
  const path = join(dir, `upload-${name}`);
  await writeFile(path, data);
  const meta: ArtifactMetadata = {
    sha256: createHash('sha256').update(data).digest('hex'),
    bytes: size,
    sourceName: source,
    backupTime: '2026-03-01T03:00:00.000Z',
    compression: 'none',
    encryption: 'none',
    litekeepVersion: '0.1.0',
    host: dest.host,
  };
  await dest.put(path, name, meta);
  return data;
}

describe('GoogleDriveDestination list/stat/remove', () => {
  it('lists only the backups litekeep uploaded into its folder, across pages', async () => {
    const dest = destination({ pageSize: 2 });
    const names = [1, 2, 3, 4, 5].map((d) => `backup-2026-03-0${d}-030000.db`);
    for (const name of names) await upload(dest, name);
    const folderId = server.filesNamed('litekeep-backups')[0].id;
    // Things that must never be listed (and so never pruned):
    server.addFile({ name: 'backup-2026-03-06-030000.db', parents: [folderId] }); // not uploaded by litekeep
    server.addFile({ name: 'notes.txt', parents: [folderId], appProperties: { litekeep: '1' } }); // not our name
    server.addFile({ name: 'backup-2026-03-07-030000.db', appProperties: { litekeep: '1' } }); // other folder
    server.addFile({
      name: 'backup-2026-03-08-030000.db',
      parents: [folderId],
      appProperties: { litekeep: '1' },
      trashed: true,
    });

    const listed = await dest.list();
    expect(listed.map((o) => o.name)).toEqual(names);
    const listCalls = server.requests.filter((r) => r.method === 'GET' && r.path === '/drive/v3/files');
    expect(listCalls.some((r) => r.query.pageToken)).toBe(true);
    const first = listed[0];
    const file = server.filesNamed(names[0])[0];
    expect(first).toMatchObject({
      id: file.id,
      bytes: 5000,
      link: `https://drive.google.com/file/d/${file.id}/view?usp=drivesdk`,
      metadata: { sha256: file.appProperties.sha256, bytes: 5000, sourceName: 'app', compression: 'none' },
    });
  });

  it('filters by sourceName when given', async () => {
    await upload(destination(), 'backup-2026-03-01-030000.db', 'app');
    await upload(destination(), 'backup-2026-03-02-030000.db', 'other');
    const listed = await destination({ sourceName: 'app' }).list();
    expect(listed.map((o) => o.name)).toEqual(['backup-2026-03-01-030000.db']);
    expect(await destination({ sourceName: 'app' }).stat('backup-2026-03-02-030000.db')).toBeUndefined();
  });

  it('returns an empty list, without creating anything, when the folder does not exist yet', async () => {
    expect(await destination().list()).toEqual([]);
    expect([...server.files.values()].filter((f) => f.mimeType === FOLDER_MIME)).toHaveLength(0);
  });

  it('remove() moves to the trash by default and deletes outright when configured', async () => {
    const dest = destination();
    await upload(dest, 'backup-2026-03-01-030000.db');
    await upload(dest, 'backup-2026-03-02-030000.db');
    await dest.remove(await own(dest, 'backup-2026-03-01-030000.db'));
    const trashed = server.filesNamed('backup-2026-03-01-030000.db');
    expect(trashed).toHaveLength(1);
    expect(trashed[0].trashed).toBe(true);
    expect((await dest.list()).map((o) => o.name)).toEqual(['backup-2026-03-02-030000.db']);

    const second = await own(dest, 'backup-2026-03-02-030000.db');
    await destination({ trash: false }).remove(second);
    expect(server.filesNamed('backup-2026-03-02-030000.db')).toHaveLength(0);
    expect(await dest.list()).toEqual([]);
    // Removing what is already gone is not an error: another pruner may have been first.
    await dest.remove(second);
  });

  it("lists every host's copies with their host, and removes only its own, by id", async () => {
    const mine = destination();
    const theirs = destination({ host: 'web2' });
    await upload(mine, 'backup-2026-03-01-030000.db');
    await upload(theirs, 'backup-2026-03-01-030000.db', 'app', 5000, 'other bytes');
    const listed = await mine.list();
    expect(listed.map((o) => o.host).sort()).toEqual(['web1', 'web2']);
    const other = listed.find((o) => o.host === 'web2')!;
    await expect(mine.remove(other)).rejects.toThrow(/belongs to host 'web2'/);
    expect(server.files.get(other.id)?.trashed).toBe(false);
    // stat and remove by name are this host's copy only.
    const ours = await own(mine, 'backup-2026-03-01-030000.db');
    expect(ours.host).toBe('web1');
    await mine.remove(ours);
    expect(server.files.get(other.id)?.trashed).toBe(false);
    expect(server.files.get(ours.id)?.trashed).toBe(true);
  });

  it('put() of a name this host already holds: the same bytes are that file, other bytes are refused', async () => {
    const dest = destination();
    await upload(dest, 'backup-2026-03-01-030000.db');
    await upload(dest, 'backup-2026-03-01-030000.db');
    expect(server.filesNamed('backup-2026-03-01-030000.db')).toHaveLength(1);
    await expect(upload(dest, 'backup-2026-03-01-030000.db', 'app', 5000, 'different')).rejects.toThrow(
      /already holds a different backup-2026-03-01-030000\.db from host 'web1'.*its own 'host'/,
    );
    expect(server.filesNamed('backup-2026-03-01-030000.db')).toHaveLength(1);
  });

  it('remove() never touches a foreign file with a backup-like name', async () => {
    const dest = destination();
    await upload(dest, 'backup-2026-03-01-030000.db');
    const folderId = server.filesNamed('litekeep-backups')[0].id;
    const foreign = server.addFile({ name: 'backup-2026-03-02-030000.db', parents: [folderId] });
    // Not litekeep's: it is not listed, so retention can never name it; stat does not find it either.
    expect((await dest.list()).map((o) => o.name)).toEqual(['backup-2026-03-01-030000.db']);
    expect(await dest.stat('backup-2026-03-02-030000.db')).toBeUndefined();
    expect(server.files.get(foreign.id)?.trashed).toBe(false);
  });
});

describe('downloads', () => {
  it('get() streams the bytes and downloadVerified writes a checked 0600 file', async () => {
    const dest = destination();
    const data = await upload(dest, 'backup-2026-03-01-030000.db', 'app', 700 * 1024);
    const chunks: Buffer[] = [];
    for await (const c of await dest.get(await own(dest, 'backup-2026-03-01-030000.db')))
      chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).equals(data)).toBe(true);

    const target = join(dir, 'restored.db');
    const result = await downloadVerified(dest, 'backup-2026-03-01-030000.db', target);
    expect((await readFile(target)).equals(data)).toBe(true);
    expect(result).toEqual({
      path: target,
      bytes: data.length,
      sha256: createHash('sha256').update(data).digest('hex'),
    });
    expect((await stat(target)).mode & 0o777).toBe(0o600);
  });

  it('downloadVerified fails on corrupted remote bytes and leaves no file behind', async () => {
    const dest = destination();
    await upload(dest, 'backup-2026-03-01-030000.db');
    const file = server.filesNamed('backup-2026-03-01-030000.db')[0];
    file.bytes = Buffer.concat([file.bytes.subarray(0, 100), Buffer.from('X'), file.bytes.subarray(101)]);
    const sub = join(dir, 'restore');
    await (await import('node:fs/promises')).mkdir(sub);
    const error = await downloadVerified(dest, 'backup-2026-03-01-030000.db', join(sub, 'restored.db')).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DriveChecksumMismatchError);
    expect(await readdir(sub)).toEqual([]);
  });

  it('get() of a name that is not there is DriveFileNotFoundError', async () => {
    await expect(
      destination().get({ name: 'backup-2026-01-01-000000.db', id: 'no-such-id', bytes: 0 }),
    ).rejects.toBeInstanceOf(DriveFileNotFoundError);
  });
});
