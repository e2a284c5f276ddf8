import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/index.js';
import { runCli } from '../helpers/cli.js';
import { filesIn, makeDatabase, tempDir } from '../helpers/db.js';
import { startDriveServer, writeAuthorizedUser, type DriveServer } from '../servers/drive-server.js';
import { backupPageDigest, contents, pageImageDigest, sha256 } from './helpers.js';

let server: DriveServer;
beforeAll(async () => {
  server = await startDriveServer();
});
afterAll(async () => {
  await server.close();
});

describe('disaster recovery from Google Drive alone', () => {
  it('on a machine with an empty backup folder and no catalog, restore latest --from drive lists, downloads, verifies and restores', async () => {
    // The old machine: a database, a backup uploaded to Drive.
    const old = tempDir('litekeep-dr-old-');
    const credentials = await writeAuthorizedUser(server, old);
    const driveEnv = {
      GOOGLE_APPLICATION_CREDENTIALS: credentials,
      LITEKEEP_DRIVE_API_URL: server.url,
      LITEKEEP_DRIVE_TOKEN_URL: server.tokenUrl,
    };
    makeDatabase(path.join(old, 'app.db'), 250);
    const env = { ...driveEnv, DATABASE_URL: 'sqlite:///app.db', BACKUP_DIR: 'backups' };
    const first = await runCli(['backup', '--json'], { cwd: old, env });
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    const b = JSON.parse(first.stdout) as { file: string; plainSha256: string };
    expect(server.filesNamed(b.file)).toHaveLength(1);

    // The new machine: same configuration, nothing on disk but the credentials.
    const fresh = tempDir('litekeep-dr-new-');
    fs.copyFileSync(credentials, path.join(fresh, 'creds.json'));
    const freshEnv = { ...env, GOOGLE_APPLICATION_CREDENTIALS: path.join(fresh, 'creds.json') };
    fs.mkdirSync(path.join(fresh, 'backups'));

    const local = await runCli(['restore', 'latest'], { cwd: fresh, env: freshEnv });
    expect(local.code).toBe(1);
    expect(local.stderr).toMatch(/no backups found in local; check --from/);

    const r = await runCli(['restore', 'latest', '--from', 'drive'], { cwd: fresh, env: freshEnv });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`- selected ${b.file.replace(/\./g, '\\.')} from drive, taken `));
    // The sha256 came from the file's metadata on Drive: there is no catalog here to know it.
    expect(r.stdout).toMatch(/sha256 matches the record/);
    expect(r.stdout).toContain(`restored ${b.file} from drive (taken `);
    const db = path.join(fresh, 'app.db');
    expect(pageImageDigest(db)).toBe(await backupPageDigest(path.join(old, 'backups', b.file)));
    // Only the restored database (no temp, no stale files); the restore is in the new catalog.
    expect(filesIn(fresh)).toEqual(['app.db', 'backups', 'creds.json']);
    expect(contents(db, { asApplication: true })).toMatchObject({ integrity: 'ok', rows: 250 });
    const catalog = Catalog.open(path.join(fresh, 'backups'));
    expect(catalog.history().find((e) => e.kind === 'restore')).toMatchObject({
      backupFile: b.file,
      source: 'drive',
      status: 'ok',
    });
    catalog.close();

    // verify --from drive proves the remote copy, and status shows it per destination.
    const v = await runCli(['verify', 'latest', '--from', 'drive'], { cwd: fresh, env: freshEnv });
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(new RegExp(`^ok {6}app/${b.file.replace(/\./g, '\\.')} from drive: sha256`));
    const s = await runCli(['status'], { cwd: fresh, env: freshEnv });
    expect(s.stdout).toMatch(
      new RegExp(`last verified on drive: ${b.file.replace(/\./g, '\\.')} \\(just now\\)`),
    );

    // A flipped byte in the remote copy: verify fails, restore refuses, the database stays as it is.
    const stored = server.filesNamed(b.file)[0];
    stored.bytes[Math.floor(stored.bytes.length / 2)] ^= 0x01;
    const before = sha256(db);
    const bad = await runCli(['verify', '--from', 'drive'], { cwd: fresh, env: freshEnv });
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/^FAILED {2}app\/\S+ from drive: /);
    // latest passes over a backup whose last verification failed; named, it is refused as damaged.
    const none = await runCli(['restore', 'latest', '--from', 'drive'], { cwd: fresh, env: freshEnv });
    expect(none.code).toBe(1);
    expect(none.stderr.trim()).toMatch(/no usable backup in drive: \S+ failed its last verification/);
    const refused = await runCli(['restore', b.file, '--from', 'drive'], { cwd: fresh, env: freshEnv });
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(/corrupt|damaged/);
    expect(sha256(db)).toBe(before);
    expect(filesIn(fresh)).toEqual(['app.db', 'backups', 'creds.json']);
  });
});
