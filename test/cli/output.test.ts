import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { countRows, filesIn, makeDatabase, tempDir } from '../helpers/db.js';

function workspace(rows = 40) {
  const dir = tempDir('litekeep-output-');
  const db = path.join(dir, 'app.db');
  makeDatabase(db, rows);
  const backups = path.join(dir, 'backups');
  return {
    dir,
    db,
    backups,
    env: { DATABASE_URL: 'sqlite:///app.db', BACKUP_DIR: backups } as NodeJS.ProcessEnv,
  };
}

const backupNames = (dir: string) => filesIn(dir).filter((f) => f.startsWith('backup-'));
const row = (out: string, key: string) => out.split('\n').find((l) => l.startsWith(`${key} `)) ?? '';

describe('config', () => {
  it('prints durations as durations, and says why Drive is on or off', async () => {
    const w = workspace(1);
    const off = await runCli(['config'], { cwd: w.dir, env: { ...w.env, LITEKEEP_LOCK_WAIT: '90s' } });
    expect(off.code, off.stderr).toBe(0);
    expect(row(off.stdout, 'maxAge')).toMatch(/^maxAge +26h +default$/);
    expect(row(off.stdout, 'stopTimeout')).toMatch(/^stopTimeout +10m +default$/);
    expect(row(off.stdout, 'lockWait')).toMatch(/^lockWait +90s +environment \(LITEKEEP_LOCK_WAIT\)$/);
    expect(off.stdout).not.toMatch(/93600000|600000/);
    expect(row(off.stdout, 'drive.enabled')).toMatch(
      /^drive\.enabled +true \(inactive\) +default; Drive stays off: no GOOGLE_APPLICATION_CREDENTIALS or drive\.\* key set$/,
    );
    const on = await runCli(['config'], {
      cwd: w.dir,
      env: { ...w.env, GOOGLE_APPLICATION_CREDENTIALS: 'creds.json' },
    });
    expect(row(on.stdout, 'drive.enabled')).toMatch(
      /^drive\.enabled +true +default; Drive is on: drive\.credentials set in environment \(GOOGLE_APPLICATION_CREDENTIALS\)$/,
    );
  });
});

describe('times', () => {
  it('history, status, list, prune and restore show one format: wall clock in the zone, and the zone', async () => {
    const w = workspace(10);
    const env = { ...w.env, LITEKEEP_TIME_ZONE: 'Asia/Tokyo' };
    expect((await runCli(['backup'], { cwd: w.dir, env })).code).toBe(0);
    const stamp = /\d{4}-\d\d-\d\d \d\d:\d\d:\d\d Asia\/Tokyo/;
    for (const args of [
      ['history'],
      ['status'],
      ['list'],
      ['prune', '--dry-run'],
      ['restore', 'latest', '--dry-run'],
    ]) {
      const r = await runCli(args, { cwd: w.dir, env });
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      expect(r.stdout, args.join(' ')).toMatch(stamp);
      // No ISO timestamps in what people read.
      expect(r.stdout, args.join(' ')).not.toMatch(/\d\dT\d\d:\d\d:\d\d/);
    }
  });
});

describe('keys and encrypted backups', () => {
  it('keygen prints the recipient for litekeep.yml and for .env; the .env form works as printed', async () => {
    const w = workspace(20);
    const key = path.join(w.dir, 'key.txt');
    const r = await runCli(['keygen', key], { cwd: w.dir });
    expect(r.code, r.stderr).toBe(0);
    const recipient = /recipient: (age1[0-9a-z]+)/.exec(r.stdout)![1];
    expect(r.stdout).toContain(`or in .env:              LITEKEEP_ENCRYPTION_RECIPIENTS=${recipient}\n`);
    expect(r.stdout).toContain(`                         LITEKEEP_AGE_IDENTITY=${key}\n`);
    // The printed lines, as they are, in the app's .env.
    const envLines = r.stdout
      .split('\n')
      .map((l) => l.replace(/^or in \.env:/, '').trim())
      .filter((l) => /^LITEKEEP_[A-Z_]+=/.test(l));
    fs.writeFileSync(path.join(w.dir, '.env'), `DATABASE_URL=sqlite:///app.db\n${envLines.join('\n')}\n`);
    const backup = await runCli(['backup', '--dir', w.backups], { cwd: w.dir });
    expect(backup.code, backup.stderr).toBe(0);
    expect(backupNames(w.backups)[0]).toMatch(/\.db\.zst\.age$/);
  });

  it('the restore hint of an encrypted backup names --identity, and works as printed', async () => {
    const w = workspace(30);
    const key = path.join(w.dir, 'key.txt');
    const recipient = /recipient: (age1[0-9a-z]+)/.exec(
      (await runCli(['keygen', key], { cwd: w.dir })).stdout,
    )![1];
    const env = { ...w.env, LITEKEEP_ENCRYPTION_RECIPIENTS: recipient };
    const unknown = await runCli(['backup'], { cwd: w.dir, env });
    expect(unknown.stdout).toMatch(
      /restore with: litekeep restore backup-\S+\.db\.zst\.age --db \S+ --dir \S+ --identity KEY_FILE {2}\(KEY_FILE: the age identity of encryption\.recipients\)/,
    );
    const known = await runCli(['backup', '--no-prune'], {
      cwd: w.dir,
      env: { ...env, LITEKEEP_AGE_IDENTITY: key },
    });
    const hint = /restore with: litekeep (.*)$/m.exec(known.stdout)![1];
    expect(hint).toMatch(new RegExp(`--identity ${key}$`));
    // Run the hint, word for word, from anywhere, with nothing configured.
    makeDatabase(w.db, 5);
    const restored = await runCli(hint.split(' '), { cwd: tempDir('litekeep-output-cwd-') });
    expect(restored.code, restored.stderr).toBe(0);
    expect(countRows(w.db)).toBe(30);
  });

  it('an unwritable key path is a one-line error naming the fix', async () => {
    const w = workspace(1);
    const notAFolder = path.join(w.dir, 'app.db', 'key.txt');
    for (const target of [path.join(w.dir, 'missing', 'key.txt'), notAFolder]) {
      const r = await runCli(['keygen', target], { cwd: w.dir });
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(
        `litekeep: cannot write ${target}: its folder does not exist; give a path in a folder you can write to: litekeep keygen /path/to/key.txt\n`,
      );
    }
  });
});

describe('restore by path and by a mistyped name', () => {
  it('restores a backup file given by its path, checked against the activity log that knows it', async () => {
    const w = workspace(25);
    // Uncompressed: a flipped byte below is found by the recorded sha256, not first by zstd's own checksum.
    expect((await runCli(['backup', '--compression', 'none'], { cwd: w.dir, env: w.env })).code).toBe(0);
    const [file] = backupNames(w.backups);
    const elsewhere = path.join(w.dir, 'usb');
    fs.mkdirSync(elsewhere);
    fs.copyFileSync(path.join(w.backups, file), path.join(elsewhere, file));
    makeDatabase(w.db, 5);
    const r = await runCli(['restore', path.join(elsewhere, file), '--json'], { cwd: w.dir, env: w.env });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ backup: file, source: elsewhere, target: w.db });
    expect(countRows(w.db)).toBe(25);
    // A damaged copy is caught by the sha256 the backup folder's activity log recorded.
    const bytes = fs.readFileSync(path.join(elsewhere, file));
    bytes[bytes.length >> 1] ^= 1;
    fs.writeFileSync(path.join(elsewhere, file), bytes);
    const damaged = await runCli(['restore', `./usb/${file}`], { cwd: w.dir, env: w.env });
    expect(damaged.code).toBe(1);
    expect(damaged.stderr).toMatch(/is damaged: its sha256 is/);
    // A file whose name does not say how it is packed.
    fs.copyFileSync(path.join(w.backups, file), path.join(elsewhere, 'app-backup.sqlite'));
    const unnamed = await runCli(['restore', './usb/app-backup.sqlite'], { cwd: w.dir, env: w.env });
    expect(unnamed.code).toBe(2);
    expect(unnamed.stderr).toMatch(/^litekeep: app-backup\.sqlite is not named like a litekeep backup/);
    expect(countRows(w.db)).toBe(25);
  });

  it('a mistyped backup name gets a did-you-mean and changes nothing', async () => {
    const w = workspace(10);
    expect((await runCli(['backup'], { cwd: w.dir, env: w.env })).code).toBe(0);
    const [file] = backupNames(w.backups);
    const before = fs.readFileSync(w.db);
    const latest = await runCli(['restore', 'lastest'], { cwd: w.dir, env: w.env });
    expect(latest.code).toBe(2);
    expect(latest.stderr).toBe(
      "litekeep: backup lastest not found in local (did you mean latest?); run 'litekeep list' to see the names\n",
    );
    const near = file.replace(/\.db\.zst$/, '.db.zts');
    const name = await runCli(['restore', near], { cwd: w.dir, env: w.env });
    expect(name.stderr).toContain(`(did you mean ${file}?)`);
    expect(fs.readFileSync(w.db)).toEqual(before);
  });
});
