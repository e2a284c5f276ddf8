import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { filesIn, makeDatabase, tempDir } from '../helpers/db.js';
import { killDaemons, msg, spawnDaemon } from '../integration/daemon-helpers.js';
import { startRecorder, type Recorder } from '../servers/http-recorder.js';

/** JSON read back from the CLI; the expectations check its shape. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

let ntfy: Recorder;
beforeAll(async () => {
  ntfy = await startRecorder();
});
afterAll(() => ntfy?.close());
afterEach(killDaemons);

function workspace(rows = 50) {
  const dir = tempDir('litekeep-flags-');
  const db = path.join(dir, 'app.db');
  makeDatabase(db, rows);
  const backups = path.join(dir, 'backups');
  return { dir, db, backups, env: { DATABASE_URL: 'sqlite:///app.db', BACKUP_DIR: backups } };
}

const backupNames = (dir: string) => filesIn(dir).filter((f) => f.startsWith('backup-'));

describe('a backup folder on its own', () => {
  it('list, status and history read it with --dir alone, naming the database from its activity log', async () => {
    const w = workspace();
    expect((await runCli(['backup', '--db', w.db, '--dir', w.backups], { cwd: w.dir })).code).toBe(0);
    // Another folder, nothing configured: the backup folder alone is enough.
    const elsewhere = tempDir('litekeep-flags-cwd-');
    const list = await runCli(['list', '--dir', w.backups, '--json'], { cwd: elsewhere });
    expect(list.code, list.stderr).toBe(0);
    const listed = JSON.parse(list.stdout) as Json;
    expect(listed).toMatchObject({ database: 'app', backupDir: w.backups });
    expect(listed.backups.map((b: Json) => b.name)).toEqual(backupNames(w.backups));
    const status = await runCli(['status', '--dir', w.backups, '--json'], { cwd: elsewhere });
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({
      database: 'app',
      count: 1,
      lastSuccess: { file: listed.backups[0].name },
    });
    const history = await runCli(['history', '--dir', w.backups, '--runs'], { cwd: elsewhere });
    expect(history.code, history.stderr).toBe(0);
    expect(history.stdout).toMatch(
      /^app:\n {2}\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC {2}run #1 schedule: ok backup-/,
    );

    // A folder without an activity log (files copied off a disk) is named after itself; reading creates nothing.
    const copied = path.join(elsewhere, 'usb-copy');
    fs.mkdirSync(copied);
    fs.copyFileSync(path.join(w.backups, listed.backups[0].name), path.join(copied, listed.backups[0].name));
    const plain = await runCli(['list', '--dir', copied, '--json'], { cwd: elsewhere });
    expect(JSON.parse(plain.stdout)).toMatchObject({ database: 'usb-copy', backups: [{ inCatalog: false }] });
    expect(filesIn(copied)).toEqual([listed.backups[0].name]);
    const missing = await runCli(['status', '--dir', path.join(elsewhere, 'nowhere')], { cwd: elsewhere });
    expect(missing.stdout).toContain('backups: 0');
    expect(fs.existsSync(path.join(elsewhere, 'nowhere'))).toBe(false);

    // Without --dir, the error says that it would do.
    const none = await runCli(['list'], { cwd: elsewhere });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('(or --dir to read a backup folder alone)');
  });

  it('list --limit shows the newest n, and says how many there are', async () => {
    const w = workspace();
    for (let i = 0; i < 3; i++)
      expect((await runCli(['backup', '--no-prune'], { cwd: w.dir, env: w.env })).code).toBe(0);
    // Newest first, as litekeep orders them (two backups in one second: by the time recorded, not the name).
    const listed = await runCli(['list', '--json'], { cwd: w.dir, env: w.env });
    const all = (JSON.parse(listed.stdout).backups as Json[]).map((b) => b.name as string);
    expect([...all].sort()).toEqual(backupNames(w.backups).sort());
    expect(all).toHaveLength(3);
    const json = JSON.parse(
      (await runCli(['list', '--limit', '2', '--json'], { cwd: w.dir, env: w.env })).stdout,
    ) as Json;
    expect(json.backups.map((b: Json) => b.name)).toEqual(all.slice(0, 2));
    expect(json.total).toBe(3);
    const human = await runCli(['list', '--limit', '2'], { cwd: w.dir, env: w.env });
    expect(human.stdout).toContain('(the newest 2 of 3)');
    expect(human.stdout).not.toContain(all[2]);
    const bad = await runCli(['list', '--limit', '0'], { cwd: w.dir, env: w.env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe("litekeep: --limit must be a whole number >= 1, got '0'\n");
  });
});

describe('destinations by name', () => {
  function withDestinations() {
    const w = workspace();
    const usb = path.join(w.dir, 'usb');
    const nas = path.join(w.dir, 'nas');
    fs.writeFileSync(
      path.join(w.dir, 'litekeep.yml'),
      `destinations:\n  - { name: usb, type: local, path: ${usb} }\n  - { name: nas, type: local, path: ${nas} }\n`,
    );
    // Copies are `<path>/<database>/<host>/<file>`.
    return { ...w, usb: path.join(usb, 'app', os.hostname()), nas: path.join(nas, 'app', os.hostname()) };
  }

  it('sync --to uploads to that destination only, and a wrong name gets the names there are', async () => {
    const w = withDestinations();
    expect((await runCli(['backup', '--no-upload'], { cwd: w.dir, env: w.env })).code).toBe(0);
    const [file] = backupNames(w.backups);
    const sync = await runCli(['sync', '--to', 'usb'], { cwd: w.dir, env: w.env });
    expect(sync.code, sync.stderr).toBe(0);
    expect(sync.stdout).toContain('app → usb: ok, uploaded 1 missing');
    expect(sync.stdout).not.toContain('nas');
    expect(backupNames(w.usb)).toEqual([file]);
    expect(backupNames(w.nas)).toEqual([]);
    const typo = await runCli(['sync', '--to', 'usv'], { cwd: w.dir, env: w.env });
    expect(typo.code).toBe(2);
    expect(typo.stderr).toBe(
      'litekeep: no destination named usv for app (did you mean usb?); configured: usb, nas\n',
    );
  });

  it('status --from reports what a destination holds, and --max-age judges its newest copy', async () => {
    const w = withDestinations();
    expect((await runCli(['backup', '--no-upload'], { cwd: w.dir, env: w.env })).code).toBe(0);
    expect((await runCli(['sync', '--to', 'usb'], { cwd: w.dir, env: w.env })).code).toBe(0);
    const [file] = backupNames(w.backups);
    const usb = await runCli(['status', '--from', 'usb', '--max-age', '1h', '--json'], {
      cwd: w.dir,
      env: w.env,
    });
    expect(usb.code, usb.stderr).toBe(0);
    expect(JSON.parse(usb.stdout)).toMatchObject({
      database: 'app',
      from: 'usb',
      type: 'local',
      count: 1,
      totalBytes: fs.statSync(path.join(w.usb, file)).size,
      newest: { name: file },
      stale: false,
    });
    const nas = await runCli(['status', '--from', 'nas', '--max-age', '1h'], { cwd: w.dir, env: w.env });
    expect(nas.code).toBe(1);
    expect(nas.stdout).toBe(
      'app on nas (local):\n  backups: 0, 0 B\n  newest: none\n  STALE: no backup found\n',
    );
  });
});

describe('config --db', () => {
  it('shows one database with its own overrides', async () => {
    const dir = tempDir('litekeep-flags-');
    makeDatabase(path.join(dir, 'a.db'), 5);
    makeDatabase(path.join(dir, 'b.db'), 5);
    fs.writeFileSync(
      path.join(dir, 'litekeep.yml'),
      'databases:\n  - { name: a, path: a.db, retention: { daily: 3 } }\n  - { name: b, path: b.db }\n',
    );
    const row = (out: string, key: string) => out.split('\n').find((l) => l.startsWith(`${key} `));
    const a = await runCli(['config', '--db', 'a'], { cwd: dir });
    expect(a.code, a.stderr).toBe(0);
    expect(row(a.stdout, 'retention.daily')).toMatch(/^retention\.daily +3 /);
    expect(a.stdout).toContain(`database a: ${path.join(dir, 'a.db')} → ${path.join(dir, 'backups', 'a')}`);
    expect(a.stdout).not.toContain('database b:');
    const b = await runCli(['config', '--db', 'b', '--json'], { cwd: dir });
    expect(JSON.parse(b.stdout).settings['retention.daily'].value).toBe(7);
  });
});

describe('daemon flags', () => {
  it('takes --db, --dir, --no-upload and --no-notify like backup does', async () => {
    const w = workspace(20);
    const usb = path.join(w.dir, 'usb');
    fs.writeFileSync(
      path.join(w.dir, 'litekeep.yml'),
      `destinations:\n  - { name: usb, type: local, path: ${usb} }\nnotify:\n  ntfy: { server: ${ntfy.url}, topic: t }\n`,
    );
    const dir = path.join(w.dir, 'elsewhere');
    const before = ntfy.requests.length;
    // Nothing configured as the database: --db names it; the catch-up run at start makes the backup.
    const daemon = spawnDaemon(['--db', w.db, '--dir', dir, '--no-upload', '--no-notify'], { cwd: w.dir });
    const done = await daemon.waitFor(msg('backup of app done'));
    expect(backupNames(dir)).toEqual([done.file]);
    daemon.process.kill('SIGTERM');
    expect((await daemon.exited).code, daemon.stderr()).toBe(0);
    expect(fs.existsSync(usb)).toBe(false);
    expect(ntfy.requests.length).toBe(before);
    expect(fs.existsSync(w.backups)).toBe(false);
  });
});

describe('errors', () => {
  it('have one prefix, point at the help of the command used, and suggest what was meant', async () => {
    const w = workspace(5);
    const run = (args: string[], env: NodeJS.ProcessEnv = w.env) => runCli(args, { cwd: w.dir, env });
    expect((await run(['list', '--frobnicate'])).stderr).toBe(
      "litekeep: unknown option '--frobnicate' (see litekeep list --help)\n",
    );
    expect((await run(['notify', 'test', '--all'])).stderr).toBe(
      "litekeep: unknown option '--all' (see litekeep notify test --help)\n",
    );
    const typo = await run(['lst']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toBe("litekeep: unknown command 'lst' (did you mean list?) (see litekeep --help)\n");
    const setting = await run(['list'], { ...w.env, LITEKEEP_TIMEZONE: 'UTC' });
    expect(setting.code).toBe(2);
    expect(setting.stderr).toMatch(
      /^litekeep: unknown setting LITEKEEP_TIMEZONE in environment \(did you mean LITEKEEP_TIME_ZONE\?\); /,
    );
    fs.writeFileSync(path.join(w.dir, 'litekeep.yml'), 'timezone: UTC\n');
    const key = await run(['list']);
    expect(key.stderr).toMatch(
      /^litekeep: unknown key 'timezone' in config file .* \(did you mean timeZone\?\); known keys: /,
    );
    fs.rmSync(path.join(w.dir, 'litekeep.yml'));
    // A failed run and a warning: the same prefix.
    fs.mkdirSync(w.backups);
    fs.writeFileSync(path.join(w.backups, 'backup-1999.db'), 'x');
    const warned = await run(['list']);
    expect(warned.stderr).toBe('litekeep: warning: unrecognised file left alone: backup-1999.db\n');
    const failed = await run(['backup'], { DATABASE_URL: 'sqlite:///missing.db', BACKUP_DIR: w.backups });
    expect(failed.code).toBe(2);
    expect(failed.stderr).toMatch(/^litekeep: missing: database not found: /);
    expect(failed.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('--quiet', () => {
  it('prints nothing when all is well, and only the failures when something failed', async () => {
    const w = workspace(10);
    const ok = await runCli(['backup', '--quiet'], { cwd: w.dir, env: w.env });
    expect(ok).toEqual({ code: 0, stdout: '', stderr: '' });
    expect((await runCli(['list', '-q'], { cwd: w.dir, env: w.env })).stdout).toBe('');
    // A destination that cannot be written: the local backup is safe (exit 3), and that one line is all.
    const blocked = path.join(w.dir, 'blocked');
    fs.writeFileSync(blocked, 'a file where a folder should be');
    fs.writeFileSync(
      path.join(w.dir, 'litekeep.yml'),
      `destinations:\n  - { name: usb, type: local, path: ${blocked} }\n`,
    );
    const partial = await runCli(['backup', '--quiet'], { cwd: w.dir, env: w.env });
    expect(partial.code).toBe(3);
    expect(partial.stdout).toBe('');
    expect(partial.stderr).toMatch(/^litekeep: app: upload to usb failed: .+\n$/);
  });
});
