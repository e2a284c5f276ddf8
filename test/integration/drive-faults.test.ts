import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runCli, spawnCli } from '../helpers/cli.js';
import { makeRandomDatabase, tempDir } from '../helpers/db.js';
import { daemonTempDir, killDaemons, msg, removeDaemonDirs, spawnDaemon } from './daemon-helpers.js';
import {
  startDriveServer,
  writeAuthorizedUser,
  type DriveServer,
  type StoredFile,
} from '../servers/drive-server.js';

/** JSON read back from the CLI; the expectations below check its shape. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const KiB = 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let drive: DriveServer;
const cleanups: (() => void)[] = [];

beforeAll(async () => {
  drive = await startDriveServer();
});
afterEach(() => {
  drive.faults.chunkErrors = [];
  drive.faults.expireSessions = [];
  drive.faults.confirmAllWith308 = [];
  drive.faults.stallDownloads = undefined;
  killDaemons();
});
afterAll(async () => {
  await drive?.close();
  cleanups.forEach((f) => f());
  removeDaemonDirs();
});

interface Workspace {
  dir: string;
  backups: string;
  folder: string;
}

/** A ~1.2 MB database of random pages (five 256 KiB chunks on Drive), Drive configured in litekeep.yml. */
async function workspace(dir = tempDir('litekeep-drive-faults-'), extra: Record<string, unknown> = {}) {
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  makeRandomDatabase(path.join(dir, 'app.db'), 150);
  await writeAuthorizedUser(drive, dir);
  const folder = `litekeep-${path.basename(dir)}`;
  const config = {
    database: 'app.db',
    backupDir: 'backups',
    compression: { algorithm: 'none' },
    retention: { last: 10 },
    drive: {
      credentials: 'google-credentials.json',
      folder,
      apiUrl: drive.url,
      tokenUrl: drive.tokenUrl,
      chunkSize: 256 * KiB,
    },
    ...extra,
  };
  fs.writeFileSync(path.join(dir, 'litekeep.yml'), JSON.stringify(config, null, 2));
  return { dir, backups: path.join(dir, 'backups'), folder } satisfies Workspace;
}

async function backup(w: Workspace, env: NodeJS.ProcessEnv = {}) {
  const r = await runCli(['backup', '--json'], { cwd: w.dir, env });
  return { ...r, out: JSON.parse(r.stdout) as Json };
}

/** Whether a Drive file sits (at any depth) inside the workspace's folder. */
function insideFolder(file: StoredFile, folder: string): boolean {
  const parents = file.parents.map((id) => drive.files.get(id)).filter((p) => p !== undefined);
  return parents.some((p) => p.name === folder || insideFolder(p, folder));
}

/**
 * What Drive holds under the backup's name in this workspace's folder, compared with the local file. Tests run
 * within the same second share a backup name, so the folder tells them apart.
 */
function storedMatchesLocal(w: Workspace, file: string): boolean {
  const stored = drive.filesNamed(file).filter((f) => !f.trashed && insideFolder(f, w.folder));
  if (stored.length !== 1) return false;
  return sha256(stored[0].bytes) === sha256(fs.readFileSync(path.join(w.backups, file)));
}

const uploadRequests = (from: number) =>
  drive.requests.slice(from).filter((r) => r.path === '/upload/drive/v3/files');

describe('Drive faults through the CLI', () => {
  it.each([404, 410] as const)(
    'an upload session that expires mid-upload (%i) is started again, and every byte arrives',
    async (status) => {
      const w = await workspace();
      const seen = drive.requests.length;
      drive.faults.expireSessions = [{ chunk: drive.chunkPuts() + 3, status }];
      const r = await backup(w);
      expect(r.code, r.stderr).toBe(0);
      expect(storedMatchesLocal(w, r.out.file)).toBe(true);
      const requests = uploadRequests(seen);
      expect(requests.filter((q) => q.method === 'POST')).toHaveLength(2);
      expect(requests.some((q) => q.status === status)).toBe(true);
      // The new session starts from byte 0: the old session's bytes are gone with it.
      const secondSession = requests.findIndex((q, i) => i > 0 && q.method === 'POST');
      expect(String(requests[secondSession + 1].headers['content-range'])).toMatch(/^bytes 0-/);
    },
  );

  it('403 userRateLimitExceeded on a chunk is retried (after asking where to resume), and every byte arrives', async () => {
    const w = await workspace();
    const seen = drive.requests.length;
    const chunk = drive.chunkPuts() + 2;
    drive.faults.chunkErrors = [{ chunk, status: 403, reason: 'userRateLimitExceeded' }];
    const r = await backup(w);
    expect(r.code, r.stderr).toBe(0);
    expect(storedMatchesLocal(w, r.out.file)).toBe(true);
    const requests = uploadRequests(seen);
    const refused = requests.findIndex((q) => q.status === 403);
    expect(refused).toBeGreaterThan(0);
    expect(String(requests[refused + 1].headers['content-range'])).toMatch(/^bytes \*\/\d+$/);
    expect(r.out.destinations[0]).toMatchObject({ destination: 'drive', status: 'ok' });
    expect(r.out.destinations[0].attempts).toBeGreaterThan(1);
  });

  it('a 308 confirming every byte is followed by a status query, never by an empty range', async () => {
    const w = await workspace();
    const seen = drive.requests.length;
    // The fifth chunk is the last one of this database.
    drive.faults.confirmAllWith308 = Array.from({ length: 10 }, (_, i) => drive.chunkPuts() + 1 + i);
    const r = await backup(w);
    expect(r.code, r.stderr).toBe(0);
    expect(storedMatchesLocal(w, r.out.file)).toBe(true);
    const requests = uploadRequests(seen).filter((q) => q.method === 'PUT');
    expect(requests.every((q) => q.status !== 400)).toBe(true);
    const last = requests.at(-1)!;
    expect(String(last.headers['content-range'])).toMatch(/^bytes \*\/\d+$/);
    expect(last.status).toBe(200);
    expect(requests.at(-2)!.status).toBe(308);
  });
});

describe('nothing waits forever', () => {
  it('a Drive download that stalls after its headers ends verify and restore with a clear error', async () => {
    const w = await workspace();
    const r = await backup(w);
    expect(r.code, r.stderr).toBe(0);
    drive.faults.stallDownloads = { afterBytes: 1000 };
    const env = { LITEKEEP_IDLE_TIMEOUT: '1s' };

    const verify = await runCli(['verify', '--from', 'drive', '--json'], { cwd: w.dir, env });
    expect(verify.code, verify.stderr).toBe(1);
    const [result] = JSON.parse(verify.stdout).results as Json[];
    // A download that stalls says nothing about the backup: no verdict (it is not set aside).
    expect(result.status).toBe('error');
    expect(result.error).toMatch(/download of backup-.* stalled: no data for 1s \(idleTimeout\)/);

    const target = path.join(w.dir, 'restored.db');
    const restore = await runCli(['restore', '--from', 'drive', '--to', target], { cwd: w.dir, env });
    expect(restore.code).toBe(1);
    expect(restore.stderr).toMatch(/stalled: no data for 1s \(idleTimeout\)/);
    expect(fs.existsSync(target)).toBe(false);
    expect(fs.readdirSync(w.dir).filter((f) => f.includes('.restore-'))).toEqual([]);

    // Nothing was left holding the database's lock.
    drive.faults.stallDownloads = undefined;
    const after = await backup(w);
    expect(after.code, after.stderr).toBe(0);
  });

  it('Ctrl-C during a restore whose download hangs stops it at once; the database stays as it was', async () => {
    const w = await workspace();
    const r = await backup(w);
    expect(r.code, r.stderr).toBe(0);
    const db = path.join(w.dir, 'app.db');
    const before = sha256(fs.readFileSync(db));
    drive.faults.stallDownloads = { afterBytes: 1000 };
    const seen = drive.requests.length;
    const child = spawnCli(['restore', 'latest', '--from', 'drive', '--force'], { cwd: w.dir });
    for (let i = 0; i < 400 && !drive.requests.slice(seen).some((q) => q.query.alt === 'media'); i++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    child.process.kill('SIGINT');
    const result = await child.exited;
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('SIGINT received, stopping the restore');
    expect(sha256(fs.readFileSync(db))).toBe(before);
    expect(
      fs.readdirSync(w.dir).filter((f) => f.includes('.restore-') || f.includes('before-restore')),
    ).toEqual([]);
    // The lock went with the restore.
    drive.faults.stallDownloads = undefined;
    expect((await backup(w)).code).toBe(0);
  });

  it('the daemon’s verification of a stalled download fails and the next tick runs', async () => {
    const w = await workspace(daemonTempDir('litekeep-drive-stall-'), { verify: 'after-backup' });
    drive.faults.stallDownloads = { afterBytes: 0 };
    const daemon = spawnDaemon(['--schedule', '*/2 * * * * *'], {
      cwd: w.dir,
      env: { LITEKEEP_IDLE_TIMEOUT: '1s', LITEKEEP_CATCH_UP: 'false' },
    });
    const failed = await daemon.waitFor(msg('on drive failed'), 30_000);
    expect(String(failed.error)).toMatch(/stalled: no data for 1s \(idleTimeout\)/);
    // The verification let go of the lock: the next tick backs up instead of being skipped.
    await daemon.waitFor(
      (rec) =>
        String(rec.msg).startsWith('backup of app done') &&
        daemon.records.indexOf(rec) > daemon.records.indexOf(failed),
      30_000,
    );
    daemon.process.kill('SIGTERM');
    expect((await daemon.exited).code, daemon.stderr()).toBe(0);
  });
});
