import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CLI_SOURCE, cleanEnv, runCli, TSX_LOADER } from '../helpers/cli.js';
import { countRows, filesIn, makeDatabase, tempDir } from '../helpers/db.js';
import {
  FOLDER_MIME,
  startDriveServer,
  writeAuthorizedUser,
  type DriveServer,
} from '../servers/drive-server.js';
import { startRecorder, type Recorder } from '../servers/http-recorder.js';

/** JSON read back from the CLI; the expectations below check its shape. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

let drive: DriveServer;
let ntfy: Recorder;
const cleanups: (() => void)[] = [];

beforeAll(async () => {
  drive = await startDriveServer();
  ntfy = await startRecorder();
});
afterEach(() => {
  drive.faults.invalidGrant = false;
  drive.faults.quotaExceeded = false;
  ntfy.requests.length = 0;
});
afterAll(async () => {
  await drive?.close();
  await ntfy?.close();
  cleanups.forEach((f) => f());
});

interface Workspace {
  dir: string;
  backups: string;
  folder: string;
  env: NodeJS.ProcessEnv;
}

/**
 * A database with a litekeep.yml; Drive is configured the way users do it (a `drive` section or only
 * GOOGLE_APPLICATION_CREDENTIALS), always pointed at the loopback server.
 */
async function workspace(
  options: {
    drive?: Record<string, unknown>;
    retention?: Record<string, number>;
    credentials?: boolean;
  } = {},
): Promise<Workspace> {
  const dir = tempDir('litekeep-drive-');
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  makeDatabase(path.join(dir, 'app.db'), 40);
  if (options.credentials !== false) await writeAuthorizedUser(drive, dir);
  const folder = `litekeep-${path.basename(dir)}`;
  const config: Record<string, unknown> = {
    database: 'app.db',
    backupDir: 'backups',
    compression: { algorithm: 'none' },
    retention: options.retention ?? { last: 10 },
    notify: { ntfy: { server: ntfy.url, topic: 'backups' }, attempts: 1 },
  };
  if (options.drive) config.drive = { folder, ...options.drive };
  fs.writeFileSync(path.join(dir, 'litekeep.yml'), JSON.stringify(config, null, 2));
  return { dir, backups: path.join(dir, 'backups'), folder, env: {} };
}

const driveSection = (extra: Record<string, unknown> = {}) => ({
  credentials: 'google-credentials.json',
  apiUrl: drive.url,
  tokenUrl: drive.tokenUrl,
  ...extra,
});

async function backup(w: Workspace, args: string[] = [], env: NodeJS.ProcessEnv = {}) {
  const r = await runCli(['backup', '--json', ...args], { cwd: w.dir, env: { ...w.env, ...env } });
  return { ...r, out: JSON.parse(r.stdout) as Record<string, Json> };
}

function folderOf(name: string) {
  return [...drive.files.values()].filter((f) => f.mimeType === FOLDER_MIME && f.name === name && !f.trashed);
}

function backupsIn(folderName: string) {
  const ids = new Set(folderOf(folderName).map((f) => f.id));
  return [...drive.files.values()].filter(
    (f) => f.parents.some((p) => ids.has(p)) && f.mimeType !== FOLDER_MIME,
  );
}

const backupNames = (dir: string) => filesIn(dir).filter((f) => f.startsWith('backup-'));
const ntfyText = () => ntfy.requests.map((r) => `${JSON.stringify(r.headers)}\n${r.body}`).join('\n---\n');

describe('Drive through the CLI', () => {
  it('without Drive configured, backups stay local and nothing complains', async () => {
    const w = await workspace();
    const r = await backup(w);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.out.destinations).toEqual([]);
  });

  it('uploads after each backup; link in summary, JSON and ntfy; --no-drive skips; list --from drive', async () => {
    const w = await workspace({ drive: driveSection() });
    const first = await backup(w);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    const d = first.out.destinations[0];
    expect(d).toMatchObject({ destination: 'drive', type: 'google-drive', status: 'ok' });
    expect(d.link).toMatch(/^https?:\/\/\S+/);
    const stored = backupsIn(w.folder);
    expect(stored.map((f) => f.name)).toEqual([first.out.file]);
    expect(stored[0].bytes.equals(fs.readFileSync(first.out.path))).toBe(true);
    expect(ntfyText()).toContain(d.link);

    const text = await runCli(['backup'], { cwd: w.dir, env: w.env });
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/uploaded to drive: https?:\/\/\S+/);

    const skipped = await backup(w, ['--no-drive']);
    expect(skipped.code).toBe(0);
    expect(skipped.out.destinations).toEqual([]);
    expect(backupsIn(w.folder).map((f) => f.name)).not.toContain(skipped.out.file);

    const list = await runCli(['list', '--from', 'drive', '--json'], { cwd: w.dir, env: w.env });
    expect(list.code).toBe(0);
    const listed = JSON.parse(list.stdout);
    expect(listed.backups).toHaveLength(2);
    expect(listed.backups.map((b: Json) => b.name)).toContain(first.out.file);
    expect(listed.backups.find((b: Json) => b.name === first.out.file)).toMatchObject({
      bytes: first.out.bytes,
      link: d.link,
    });
  });

  it('Drive retention defaults to the local policy, trashes, and leaves foreign files alone', async () => {
    const w = await workspace({ drive: driveSection(), retention: { last: 2 } });
    const first = await backup(w);
    expect(first.code).toBe(0);
    const folderId = folderOf(w.folder)[0].id;
    const foreign = drive.addFile({ name: 'notes.txt', parents: [folderId], mimeType: 'text/plain' });
    const names = [first.out.file];
    for (let i = 0; i < 2; i++) {
      const r = await backup(w);
      expect(r.code).toBe(0);
      names.push(r.out.file);
    }
    const live = backupsIn(w.folder).filter((f) => !f.trashed);
    expect(live.map((f) => f.name).sort()).toEqual([...names.slice(1), 'notes.txt'].sort());
    expect(drive.files.get(foreign.id)?.trashed).toBe(false);
    // Pruned on Drive means trashed (recoverable), not deleted.
    expect(backupsIn(w.folder).find((f) => f.name === names[0])?.trashed).toBe(true);
    expect(backupNames(w.backups).sort()).toEqual(names.slice(1).sort());
  });

  it('two hosts share one Drive folder: each keeps and prunes only its own copies; a new machine asks which host', async () => {
    const alpha = await workspace({ drive: driveSection(), retention: { last: 1 } });
    const beta = await workspace({ drive: driveSection(), retention: { last: 1 } });
    // One folder for both, as two machines configured alike would have.
    for (const w of [alpha, beta]) {
      const file = path.join(w.dir, 'litekeep.yml');
      const config = JSON.parse(fs.readFileSync(file, 'utf8'));
      config.drive.folder = alpha.folder;
      fs.writeFileSync(file, JSON.stringify(config, null, 2));
    }
    alpha.env = { LITEKEEP_HOST: 'alpha' };
    beta.env = { LITEKEEP_HOST: 'beta' };
    makeDatabase(path.join(beta.dir, 'app.db'), 25); // 65 rows: beta's copies restore apart from alpha's
    const a1 = await backup(alpha);
    const b1 = await backup(beta);
    expect([a1.code, b1.code]).toEqual([0, 0]);
    const live = () => backupsIn(alpha.folder).filter((f) => !f.trashed);
    const owned = () => live().map((f) => `${f.appProperties.host}/${f.name}`);
    expect(owned().sort()).toEqual([`alpha/${a1.out.file}`, `beta/${b1.out.file}`].sort());

    // alpha's retention (last 1) removes alpha's old copy on its next run, never beta's. Backups are named to
    // the second: the next one waits for the next second.
    const second = Math.floor(Date.now() / 1000);
    while (Math.floor(Date.now() / 1000) === second) await new Promise((resolve) => setTimeout(resolve, 20));
    const a2 = await backup(alpha);
    expect(a2.code).toBe(0);
    expect(owned().sort()).toEqual([`alpha/${a2.out.file}`, `beta/${b1.out.file}`].sort());

    // A new machine with the same config and no copies of its own: it asks, then restores the host it is told.
    const gamma = await workspace({ drive: driveSection() });
    fs.copyFileSync(path.join(alpha.dir, 'litekeep.yml'), path.join(gamma.dir, 'litekeep.yml'));
    fs.rmSync(path.join(gamma.dir, 'app.db'));
    const env = { LITEKEEP_HOST: 'gamma' };
    const ask = await runCli(['restore', 'latest', '--from', 'drive'], { cwd: gamma.dir, env });
    expect(ask.code).toBe(2);
    expect(ask.stderr.trim()).toMatch(/from several hosts \(alpha, beta\); choose one with --host NAME$/);
    const r = await runCli(['restore', b1.out.file, '--from', 'drive', '--host', 'beta'], {
      cwd: gamma.dir,
      env,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(countRows(path.join(gamma.dir, 'app.db'))).toBe(65);
  });

  it('a missing credentials file named by GOOGLE_APPLICATION_CREDENTIALS: keep the local backup, exit 3, say how to fix', async () => {
    const w = await workspace({ credentials: false });
    const r = await backup(w, [], {
      GOOGLE_APPLICATION_CREDENTIALS: path.join(w.dir, 'nowhere.json'),
      LITEKEEP_DRIVE_API_URL: drive.url,
      LITEKEEP_DRIVE_TOKEN_URL: drive.tokenUrl,
    });
    expect(r.code).toBe(3);
    expect(r.out.status).toBe('partial');
    expect(fs.existsSync(r.out.path)).toBe(true);
    expect(r.out.destinations[0]).toMatchObject({ destination: 'drive', status: 'failed' });
    expect(r.out.destinations[0].error).toContain('litekeep auth google');
    expect(r.out.destinations[0].error).not.toContain('\n');
  });

  it('a revoked refresh token (invalid_grant): re-authorize message, failure notification, exit 3', async () => {
    const w = await workspace({ drive: driveSection() });
    drive.faults.invalidGrant = true;
    const r = await backup(w);
    expect(r.code).toBe(3);
    expect(fs.existsSync(r.out.path)).toBe(true);
    const error = r.out.destinations[0].error as string;
    expect(error).toMatch(/re-?authori[sz]e/i);
    expect(error).toContain('litekeep auth google');
    const final = ntfy.requests.at(-1)!;
    expect(`${JSON.stringify(final.headers)}\n${final.body}`).toMatch(/partly failed|FAILED/i);
    expect(final.body).toContain('litekeep auth google');
    const history = JSON.parse((await runCli(['history', '--json'], { cwd: w.dir })).stdout).events as Json[];
    expect(history.find((e) => e.kind === 'upload')).toMatchObject({
      destination: 'drive',
      status: 'failed',
    });
  });

  it('quota exceeded: exit 3, the local backup is kept, the message names the quota', async () => {
    const w = await workspace({ drive: driveSection() });
    drive.faults.quotaExceeded = true;
    const r = await backup(w);
    expect(r.code).toBe(3);
    expect(fs.existsSync(r.out.path)).toBe(true);
    expect(r.out.destinations[0].error).toMatch(/quota/i);
    expect(backupsIn(w.folder)).toEqual([]);
  });

  it('a folder deleted between runs is created again and the backup lands in it', async () => {
    const w = await workspace({ drive: driveSection() });
    expect((await backup(w)).code).toBe(0);
    const [old] = folderOf(w.folder);
    drive.deleteFile(old.id);
    const r = await backup(w);
    expect(r.code).toBe(0);
    const [fresh] = folderOf(w.folder);
    expect(fresh.id).not.toBe(old.id);
    expect(backupsIn(w.folder).map((f) => f.name)).toContain(r.out.file);
  });

  it('auth google: loopback flow through the CLI writes a 0600 credentials file that backup then uses', async () => {
    const w = await workspace({
      credentials: false,
      drive: {
        credentials: 'creds/google.json',
        apiUrl: drive.url,
        tokenUrl: drive.tokenUrl,
        authUrl: drive.authUrl,
      },
    });
    fs.mkdirSync(path.join(w.dir, 'creds'));
    const child = spawn(
      process.execPath,
      [
        '--import',
        TSX_LOADER,
        CLI_SOURCE,
        'auth',
        'google',
        '--no-browser',
        '--client-id',
        drive.clientId,
        '--client-secret',
        drive.clientSecret,
      ],
      { cwd: w.dir, env: cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr.on('data', (b: Buffer) => {
        stderr += b.toString();
        const m = /^\s+(http:\/\/127\.0\.0\.1:\d+\S*)$/m.exec(stderr);
        if (m) resolve(m[1]);
      });
      child.on('close', () => reject(new Error(`auth exited before printing a URL: ${stderr}`)));
    });
    const code = new Promise<number | null>((resolve) => child.on('close', resolve));
    // The "browser": the authorize page redirects to litekeep's loopback listener.
    const page = await fetch(url, { redirect: 'follow' });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('authorized');
    expect(await code).toBe(0);
    expect(stdout).toContain('saved Drive credentials');
    expect(drive.authorizations.at(-1)?.scope).toContain('drive.file');
    const credentials = path.join(w.dir, 'creds', 'google.json');
    expect(fs.statSync(credentials).mode & 0o777).toBe(0o600);
    expect(JSON.parse(fs.readFileSync(credentials, 'utf8'))).toMatchObject({
      type: 'authorized_user',
      client_id: drive.clientId,
    });

    const r = await backup(w);
    expect(r.code).toBe(0);
    expect(r.out.destinations[0]).toMatchObject({ destination: 'drive', status: 'ok' });
    expect(backupsIn(w.folder).map((f) => f.name)).toEqual([r.out.file]);
  });
});
