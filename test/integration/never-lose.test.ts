import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BackupManager, type BackupResult, type BackupTrigger } from '../../src/backup/manager.js';
import { Catalog } from '../../src/catalog/index.js';
import { loadConfig, type DatabaseTarget } from '../../src/config/index.js';
import { buildS3Metadata } from '../../src/destinations/s3-metadata.js';
import { CLI_SOURCE, cleanEnv, runCli, TSX_LOADER } from '../helpers/cli.js';
import { countRows, filesIn, makeDatabase, tempDir } from '../helpers/db.js';
import { canMount, mountTmpfs } from '../helpers/mount.js';
import { rawS3Client, startS3Server, type S3TestServer } from '../servers/s3-server.js';

const DAY = 86400_000;
const made: string[] = [];
let s3: S3TestServer;
let raw: S3Client;

beforeAll(async () => {
  s3 = await startS3Server();
  raw = rawS3Client(s3);
});

afterAll(async () => {
  raw?.destroy();
  await s3?.close();
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

interface Machine {
  dir: string;
  db: string;
  backups: string;
  env: Record<string, string>;
  target: () => DatabaseTarget;
}

/**
 * A machine: its database, its backup folder and a config file with an S3 destination and a local folder
 * destination that other machines may share. `host` is what it calls itself there.
 */
function machine(
  options: { host?: string; rows?: number; shared?: string; prefix?: string; config?: object } = {},
): Machine {
  const dir = tempDir('litekeep-never-');
  made.push(dir);
  const db = path.join(dir, 'app.db');
  makeDatabase(db, options.rows ?? 20);
  const shared = options.shared ?? path.join(dir, 'shared');
  const config = {
    database: 'app.db',
    backupDir: 'backups',
    timeZone: 'UTC',
    compression: { algorithm: 'zstd' },
    ...(options.host ? { host: options.host } : {}),
    destinations: [
      {
        name: 'bucket',
        type: 's3',
        bucket: s3.bucket,
        prefix: options.prefix ?? `never/${path.basename(dir)}`,
        endpoint: s3.endpoint,
        forcePathStyle: true,
        region: 'us-east-1',
        accessKeyId: s3.accessKeyId,
        secretAccessKey: s3.secretAccessKey,
        checksumMode: 'when-required',
        maxAttempts: 1,
      },
      { name: 'usb', type: 'local', path: shared },
    ],
    ...options.config,
  };
  fs.writeFileSync(path.join(dir, 'litekeep.yml'), JSON.stringify(config, null, 2));
  const env = { TZ: 'UTC' };
  return {
    dir,
    db,
    backups: path.join(dir, 'backups'),
    env,
    target: () => loadConfig({ cwd: dir, env: { ...cleanEnv(), ...env } }).databases[0],
  };
}

/** A real backup as litekeep makes it, taken at a given time (the library's clock seam). */
async function backupAt(m: Machine, when: Date, trigger: BackupTrigger = 'scheduled'): Promise<BackupResult> {
  const manager = new BackupManager(m.target());
  try {
    return await manager.createBackup({ now: when, trigger });
  } finally {
    manager.close();
  }
}

const cli = (m: Machine, args: string[]) => runCli(args, { cwd: m.dir, env: m.env });
const backupFiles = (dir: string) => filesIn(dir).filter((f) => f.startsWith('backup-'));

function flipByte(file: string): void {
  const bytes = fs.readFileSync(file);
  bytes[Math.floor(bytes.length / 2)] ^= 0x01;
  fs.writeFileSync(file, bytes);
}

describe('retention never removes a backup better than what it keeps', () => {
  it('backups that failed verify count toward no rule: the only verified one stays', async () => {
    const m = machine({ config: { destinations: [] } });
    const now = Date.now();
    const good = await backupAt(m, new Date(now - 3 * DAY));
    const bad1 = await backupAt(m, new Date(now - 2 * DAY));
    const bad2 = await backupAt(m, new Date(now - 1 * DAY));
    flipByte(bad1.path);
    flipByte(bad2.path);
    const v = await cli(m, ['verify', 'all']);
    expect(v.code).toBe(1);
    expect(v.stdout.match(/^FAILED/gm)).toHaveLength(2);

    const onlyLast2 = ['--keep-last', '2', '--keep-daily', '0', '--keep-weekly', '0', '--keep-monthly', '0'];
    const plan = await cli(m, ['prune', '--dry-run', '--json', ...onlyLast2]);
    const decisions = JSON.parse(plan.stdout).decisions as {
      name: string;
      action: string;
      reasons: string[];
    }[];
    expect(decisions.find((d) => d.name === good.file)).toMatchObject({
      action: 'keep',
      reasons: ['last 1'],
    });
    for (const bad of [bad1, bad2]) {
      const d = decisions.find((x) => x.name === bad.file)!;
      expect(d.action).toBe('keep');
      expect(d.reasons[0]).toMatch(/^not counted: failed verification .*: .*(corrupt|damaged)/);
    }

    const r = await cli(m, ['prune', ...onlyLast2]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/set aside and counted by no rule, because their newest verification failed/);
    expect(backupFiles(m.backups)).toEqual([good.file, bad1.file, bad2.file].sort());

    // Asked for, the set-aside ones go — but never the newest backup there is, nor the verified one.
    const cleaned = await cli(m, ['prune', '--remove-failed', ...onlyLast2]);
    expect(cleaned.code).toBe(0);
    expect(backupFiles(m.backups)).toEqual([good.file, bad2.file].sort());
    const catalog = Catalog.open(m.backups);
    const deletions = catalog.history().filter((e) => e.kind === 'deletion');
    catalog.close();
    expect(deletions.map((d) => (d as { backupFile: string }).backupFile)).toEqual([bad1.file]);
  });

  it('the newest backup known to be good is never removed, even when the rules prefer newer unknown ones', async () => {
    const m = machine({ config: { destinations: [] } });
    const now = Date.now();
    const good = await backupAt(m, new Date(now - 3 * DAY));
    // Two newer files the catalog never checked (copied in by hand after the catalog was lost).
    const unknown = [2, 1].map((d) => {
      const name = `backup-${new Date(now - d * DAY).toISOString().slice(0, 10)}-010000.db.zst`;
      fs.copyFileSync(good.path, path.join(m.backups, name));
      return name;
    });
    const r = await cli(m, [
      'prune',
      '--json',
      ...['--keep-last', '1', '--keep-daily', '0', '--keep-weekly', '0', '--keep-monthly', '0'],
    ]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.decisions.find((d: { name: string }) => d.name === good.file)).toMatchObject({
      action: 'keep',
      reasons: ['newest good backup'],
    });
    expect(out.removed).toEqual([unknown[0]]);
    expect(backupFiles(m.backups)).toEqual([good.file, unknown[1]].sort());
  });
});

describe('manual backups do not delete the nightly one', () => {
  it('with 7/4/12, a backup before a risky change and one after it both survive, and the nightly one too', async () => {
    // A zone where it is about noon now, so that "an hour ago" is the same calendar day.
    const offset = 12 - new Date().getUTCHours();
    const timeZone = offset >= 0 ? `Etc/GMT-${offset}` : `Etc/GMT+${-offset}`;
    const m = machine({ config: { destinations: [], timeZone } });
    const now = Date.now();
    // A week of nightly backups, the newest one an hour ago: today's.
    const nightly: BackupResult[] = [];
    for (let d = 6; d >= 0; d--) nightly.push(await backupAt(m, new Date(now - d * DAY - 3600_000)));
    const dry = await cli(m, ['backup', '--dry-run', '--trigger', 'manual', '--json']);
    expect(dry.code).toBe(0);
    const plan = JSON.parse(dry.stdout);
    expect(plan).toMatchObject({ trigger: 'manual', removals: [], prune: true });
    expect(plan.file).toMatch(/^backup-\d{4}-\d\d-\d\d-\d{6}\.db\.zst$/);
    expect(backupFiles(m.backups)).toHaveLength(7);

    const before = await cli(m, ['backup', '--trigger', 'manual', '--json']);
    const after = await cli(m, ['backup', '--trigger', 'manual', '--json']);
    for (const r of [before, after]) {
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ status: 'ok', trigger: 'manual', removed: [] });
    }
    const files = backupFiles(m.backups);
    expect(files).toContain(JSON.parse(before.stdout).file);
    expect(files).toContain(JSON.parse(after.stdout).file);
    expect(files).toContain(nightly.at(-1)!.file);
    expect(files).toHaveLength(9);

    // The next scheduled run rotates the scheduled series as if no manual backup were there: daily 3 keeps
    // itself (today's bucket), and yesterday's and the day before's nightly ones.
    const only = ['--keep-weekly', '0', '--keep-monthly', '0'];
    const next = await cli(m, ['backup', '--trigger', 'scheduled', '--json', '--keep-daily', '3', ...only]);
    const out = JSON.parse(next.stdout);
    expect(out.removed.sort()).toEqual([nightly[6], ...nightly.slice(0, 4)].map((b) => b.file).sort());
    expect(backupFiles(m.backups)).toContain(JSON.parse(before.stdout).file);
    expect(backupFiles(m.backups)).toContain(JSON.parse(after.stdout).file);
    // And it names what it removes.
    const text = await cli(m, ['backup', '--trigger', 'scheduled', '--keep-daily', '1', ...only]);
    expect(text.stdout).toMatch(/rotated 3 old backups: backup-\S+, backup-\S+, backup-\S+/);
  });

  it('backup --dry-run names what a run would remove, and changes nothing', async () => {
    const m = machine({ config: { destinations: [] } });
    const old = await backupAt(m, new Date(Date.now() - 40 * DAY));
    const files = backupFiles(m.backups);
    const r = await cli(m, [
      'backup',
      '--dry-run',
      '--keep-last',
      '1',
      '--keep-daily',
      '0',
      '--keep-weekly',
      '0',
      '--keep-monthly',
      '0',
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^dry run: app would be backed up as \S+backup-\S+\.db\.zst \(scheduled\)/);
    expect(r.stdout).toContain(`    ${old.file} (last: all 1 kept by newer backups)`);
    expect(r.stdout).toContain('nothing was changed');
    expect(backupFiles(m.backups)).toEqual(files);
  });
});

describe("hosts sharing a destination cannot overwrite or delete each other's copies", () => {
  it('two hosts, one bucket and one shared folder, backups of the same name: each keeps its own', async () => {
    const prefix = `never/shared-${Date.now()}`;
    const shared = tempDir('litekeep-shared-usb-');
    made.push(shared);
    const alpha = machine({ host: 'alpha', rows: 10, prefix, shared });
    const beta = machine({ host: 'beta', rows: 30, prefix, shared });
    const when = new Date(Date.now() - DAY);
    const a = await backupAt(alpha, when);
    const b = await backupAt(beta, when);
    expect(a.file).toBe(b.file);
    for (const m of [alpha, beta]) {
      const r = await cli(m, ['sync', '--json']);
      expect(r.code).toBe(0);
    }
    const key = (host: string) => `${prefix}/app/${host}/${a.file}`;
    const listing = await cli(alpha, ['list', '--from', 'bucket', '--json']);
    const remote = JSON.parse(listing.stdout).backups as { id: string; host: string; sha256: string }[];
    expect(remote.map((o) => [o.host, o.id]).sort()).toEqual([
      ['alpha', key('alpha')],
      ['beta', key('beta')],
    ]);
    expect(remote.find((o) => o.host === 'alpha')!.sha256).toBe(a.sha256);
    expect(remote.find((o) => o.host === 'beta')!.sha256).toBe(b.sha256);
    expect(fs.existsSync(path.join(shared, 'app', 'alpha', a.file))).toBe(true);
    expect(fs.existsSync(path.join(shared, 'app', 'beta', b.file))).toBe(true);

    // alpha's retention removes alpha's copies only.
    await backupAt(alpha, new Date());
    const pruned = await cli(alpha, [
      'backup',
      '--json',
      ...['--keep-last', '1', '--keep-daily', '0', '--keep-weekly', '0', '--keep-monthly', '0'],
    ]);
    expect(pruned.code).toBe(0);
    const after = JSON.parse((await cli(beta, ['list', '--from', 'bucket', '--json'])).stdout).backups as {
      id: string;
    }[];
    expect(after.map((o) => o.id)).toContain(key('beta'));
    expect(after.map((o) => o.id)).not.toContain(key('alpha'));
    expect(fs.existsSync(path.join(shared, 'app', 'beta', b.file))).toBe(true);
    expect(fs.existsSync(path.join(shared, 'app', 'alpha', a.file))).toBe(false);

    // A new machine: copies from two hosts, none its own — it asks which.
    const fresh = machine({ host: 'gamma', rows: 1, prefix, shared });
    fs.rmSync(fresh.db);
    const ask = await cli(fresh, ['restore', 'latest', '--from', 'bucket']);
    expect(ask.code).toBe(2);
    expect(ask.stderr.trim()).toMatch(
      /holds copies of app from several hosts \(alpha, beta\); choose one with --host NAME$/,
    );
    const r = await cli(fresh, ['restore', b.file, '--from', 'bucket', '--host', 'beta']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/- selected \S+ from bucket \(host beta\)/);
    expect(countRows(fresh.db)).toBe(30);
  });

  it('copies in the layout of earlier versions stay listable, restorable and prunable', async () => {
    const prefix = `never/legacy-${Date.now()}`;
    const m = machine({ host: 'alpha', rows: 15, prefix });
    const old = await backupAt(m, new Date(Date.now() - 2 * DAY));
    // What litekeep wrote before host folders: `<prefix>/<db>/<file>` and `<path>/<db>/<file>`, the host in
    // the metadata.
    const metadata = {
      sha256: old.sha256,
      bytes: old.bytes,
      plainSha256: old.plainSha256,
      plainBytes: old.plainBytes,
      sourceName: 'app',
      backupTime: old.createdAt,
      compression: old.compression,
      encryption: old.encryption,
      litekeepVersion: '0.1.0',
      host: 'alpha',
    } as const;
    await raw.send(
      new PutObjectCommand({
        Bucket: s3.bucket,
        Key: `${prefix}/app/${old.file}`,
        Body: fs.readFileSync(old.path),
        Metadata: buildS3Metadata(metadata),
      }),
    );
    const usb = path.join(m.dir, 'shared', 'app');
    fs.mkdirSync(path.join(usb, '.litekeep-meta'), { recursive: true });
    fs.copyFileSync(old.path, path.join(usb, old.file));
    fs.writeFileSync(path.join(usb, '.litekeep-meta', `${old.file}.json`), JSON.stringify(metadata));

    // Listed, and counted as present: sync uploads nothing again.
    const listed = JSON.parse((await cli(m, ['list', '--from', 'bucket', '--json'])).stdout).backups;
    expect(listed).toMatchObject([{ name: old.file, id: `${prefix}/app/${old.file}`, host: 'alpha' }]);
    const synced = JSON.parse((await cli(m, ['sync', '--json'])).stdout);
    expect(JSON.stringify(synced)).not.toContain(`"caughtUp":["${old.file}"]`);

    // Restorable on a new machine that has only the bucket.
    fs.rmSync(m.backups, { recursive: true });
    fs.rmSync(m.db);
    const r = await cli(m, ['restore', 'latest', '--from', 'bucket']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(countRows(m.db)).toBe(15);

    // Prunable: a newer backup and last 1 remove the old-layout copies too.
    const args = ['--keep-last', '1', '--keep-daily', '0', '--keep-weekly', '0', '--keep-monthly', '0'];
    const b = await cli(m, ['backup', '--json', ...args]);
    expect(b.code).toBe(0);
    const destinations = JSON.parse(b.stdout).destinations as { destination: string; removed?: string[] }[];
    for (const d of destinations) expect(d.removed).toEqual([old.file]);
    const after = JSON.parse((await cli(m, ['list', '--from', 'bucket', '--json'])).stdout).backups;
    expect(after.map((o: { id: string }) => o.id)).toEqual([
      `${prefix}/app/alpha/${JSON.parse(b.stdout).file}`,
    ]);
    expect(fs.existsSync(path.join(usb, old.file))).toBe(false);
  });
});

describe('a clock error cannot empty the history', () => {
  it('one backup named a year ahead and within 30d: every older backup stays, the future one is reported', async () => {
    const m = machine({
      config: { destinations: [], retention: { daily: 0, weekly: 0, monthly: 0, within: '30d' } },
    });
    const now = Date.now();
    const past: BackupResult[] = [];
    for (const d of [20, 10, 5]) past.push(await backupAt(m, new Date(now - d * DAY)));
    await backupAt(m, new Date(now + 365 * DAY));
    const r = await cli(m, ['backup', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.removed).toEqual([]);
    expect(out.warnings.join('\n')).toMatch(
      /dated in the future, kept and not counted by retention \(check the clock\)/,
    );
    for (const b of past) expect(fs.existsSync(b.path)).toBe(true);
    const dry = await cli(m, ['prune', '--dry-run']);
    expect(dry.stderr).toMatch(/is dated in the future \(check the clock\)/);
  });
});

describe('no plaintext readable by others, nothing large left behind', () => {
  it('every file of a running backup is private from its first byte, whatever the umask', async () => {
    const m = machine({ config: { destinations: [] } });
    // Large enough that VACUUM INTO takes a while to watch.
    const db = new Database(m.db);
    const insert = db.prepare('INSERT INTO items (name, payload) VALUES (?, ?)');
    db.transaction(() => {
      for (let i = 0; i < 40_000; i++) insert.run(`row ${i}`, Buffer.alloc(1024, i % 251));
    })();
    db.close();
    fs.mkdirSync(m.backups, { mode: 0o700 });
    const seen = new Map<string, number>();
    let watching = true;
    const watch = (async () => {
      while (watching) {
        for (const name of fs.readdirSync(m.backups)) {
          if (!name.startsWith('.backup-')) continue;
          try {
            seen.set(name, fs.statSync(path.join(m.backups, name)).mode & 0o777);
          } catch {
            // gone between readdir and stat
          }
        }
        await new Promise((r) => setImmediate(r));
      }
    })();
    const r = await new Promise<number>((resolve) => {
      const child = spawn(
        'sh',
        ['-c', `umask 022; exec "${process.execPath}" --import ${TSX_LOADER} ${CLI_SOURCE} backup`],
        { cwd: m.dir, env: { ...cleanEnv(), ...m.env }, stdio: 'ignore' },
      );
      child.on('close', (code) => resolve(code ?? 1));
    });
    watching = false;
    await watch;
    expect(r).toBe(0);
    expect(seen.size).toBeGreaterThan(0);
    for (const [name, mode] of seen) expect(`${name} ${mode.toString(8)}`).toBe(`${name} 600`);
  });

  it("Ctrl-C during restore and verify removes their temp files; a killed run's leftovers go at the next run", async () => {
    const m = machine({ config: { destinations: [] }, rows: 20 });
    // Incompressible rows: fetching and checking the backup takes long enough to be interrupted.
    const db = new Database(m.db);
    const insert = db.prepare('INSERT INTO items (name, payload) VALUES (?, ?)');
    db.transaction(() => {
      for (let i = 0; i < 60_000; i++) insert.run(`row ${i}`, crypto.randomBytes(2048));
    })();
    db.close();
    expect((await cli(m, ['backup'])).code).toBe(0);
    const before = fs.readFileSync(m.db);
    for (const command of ['restore', 'verify']) {
      let pid: number | undefined;
      const out = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, ['--import', TSX_LOADER, CLI_SOURCE, command, 'latest'], {
          cwd: m.dir,
          env: { ...cleanEnv(), ...m.env },
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        pid = child.pid;
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        // Interrupted as soon as its temp file (restore) or folder (verify) exists: mid-fetch.
        const poll = setInterval(() => {
          const started =
            command === 'restore'
              ? filesIn(m.dir).some((f) => f.includes('.restore-'))
              : tempFolders(pid).length > 0;
          if (started) {
            clearInterval(poll);
            child.kill('SIGINT');
          }
        }, 2);
        child.on('close', (code) => {
          clearInterval(poll);
          resolve({ code, stderr });
        });
      });
      expect(out.code, `${command}: ${out.stderr}`).toBe(1);
      expect(out.stderr).toMatch(/SIGINT received, stopping the (restore|verification)/);
      expect(filesIn(m.dir).filter((f) => f.includes('.restore-'))).toEqual([]);
      expect(tempFolders(pid)).toEqual([]);
      expect(fs.readFileSync(m.db).equals(before)).toBe(true);
    }

    // Leftovers of runs that were killed outright (pid 2147483646 is not running).
    const dead = 2147483646;
    const leftovers = [
      path.join(m.backups, `.backup-2026-01-01-000000.db.${dead}.abc.tmp`),
      path.join(m.backups, `.backup-2026-01-01-000000.db.${dead}.abc.tmp-journal`),
      path.join(m.dir, `.app.db.restore-${dead}-abc.tmp`),
      path.join(m.dir, `.app.db.restore-${dead}-abc.tmp-journal`),
    ];
    for (const file of leftovers) fs.writeFileSync(file, 'x');
    expect((await cli(m, ['backup'])).code).toBe(0);
    expect((await cli(m, ['restore', 'latest', '--dry-run'])).code).toBe(0);
    for (const file of leftovers) expect(fs.existsSync(file), file).toBe(false);
  });
});

/** Verify folders that a process made in the temp folder. */
function tempFolders(pid: number | undefined): string[] {
  return fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith(`litekeep-verify-${pid}-`));
}

describe('nothing counts as a backup before its bytes decode back to the snapshot', () => {
  it.each([
    ['zstd', {}],
    ['zstd + age (only the recipient on this machine)', { encryption: { recipients: [] as string[] } }],
  ])(
    'a %s artifact damaged on disk is not published, and nothing older is touched',
    async (_label, extra) => {
      const m = machine({ config: { destinations: [] } });
      const config = extra as { encryption?: { recipients: string[] } };
      if (config.encryption) {
        const key = await runCli(['keygen', 'key.txt'], { cwd: m.dir });
        config.encryption.recipients = [/recipient: (age1\S+)/.exec(key.stdout)![1]];
        const yml = JSON.parse(fs.readFileSync(path.join(m.dir, 'litekeep.yml'), 'utf8'));
        fs.writeFileSync(path.join(m.dir, 'litekeep.yml'), JSON.stringify({ ...yml, ...config }));
      }
      const old = await backupAt(m, new Date(Date.now() - DAY));
      const manager = new BackupManager(m.target());
      try {
        await expect(manager.createBackup({ onPacked: (artifact) => flipByte(artifact) })).rejects.toThrow(
          /the new backup on disk is not the bytes that were written \(.*\); it was not kept/,
        );
        // An intact one passes the same check.
        const ok = await manager.createBackup({});
        expect(ok.artifactChecked).toBe(true);
        expect(backupFiles(m.backups)).toEqual([old.file, ok.file].sort());
      } finally {
        manager.close();
      }
      expect(filesIn(m.backups).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    },
  );

  it('stopped while the new backup is read back, the run says it was aborted (not that the disk is bad)', async () => {
    const m = machine({ config: { destinations: [] } });
    const old = await backupAt(m, new Date(Date.now() - DAY));
    const manager = new BackupManager(m.target());
    const stop = new AbortController();
    try {
      const run = manager.createBackup({ signal: stop.signal, onPacked: () => stop.abort() });
      await expect(run).rejects.toThrow(/^backup aborted; temp files removed$/);
    } finally {
      manager.close();
    }
    expect(backupFiles(m.backups)).toEqual([old.file]);
    expect(filesIn(m.backups).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('what the review of this change found', () => {
  it("verifying another host's copy uses nothing this host recorded, and its verdict never steers this host's retention", async () => {
    const prefix = `never/verify-${Date.now()}`;
    const shared = tempDir('litekeep-shared-verify-');
    made.push(shared);
    const alpha = machine({ host: 'alpha', rows: 10, prefix, shared });
    const beta = machine({ host: 'beta', rows: 20, prefix, shared });
    const when = new Date(Date.now() - DAY);
    const a = await backupAt(alpha, when);
    await backupAt(beta, when);
    for (const m of [alpha, beta]) expect((await cli(m, ['sync'])).code).toBe(0);
    const v = await cli(alpha, ['verify', a.file, '--from', 'usb', '--host', 'beta']);
    expect(v.stdout).toMatch(/^ok {6}app\/\S+ from usb \(host beta\): .*fingerprint not recorded/);
    expect(v.code).toBe(0);
    const catalog = Catalog.open(alpha.backups);
    const verdicts = catalog.history().filter((e) => e.kind === 'verification');
    catalog.close();
    expect(verdicts.map((e) => (e as { destination: string }).destination)).toEqual(['usb@beta']);
  });

  it.skipIf(!canMount())(
    'a full temp folder is an ERROR, not a FAILED backup; --remove-failed never removes the newest',
    async () => {
      const m = machine({ config: { destinations: [] } });
      const now = Date.now();
      const older = await backupAt(m, new Date(now - 2 * DAY));
      const newest = await backupAt(m, new Date(now - DAY));
      const small = mountTmpfs({ sizeKb: 64 });
      try {
        const v = await runCli(['verify', 'all'], { cwd: m.dir, env: { ...m.env, TMPDIR: small.dir } });
        expect(v.code).toBe(1);
        expect(v.stdout.match(/^ERROR /gm)).toHaveLength(2);
        expect(v.stdout).not.toMatch(/^FAILED/m);
      } finally {
        small.unmount();
      }
      const r = await cli(m, ['prune', '--remove-failed', '--keep-last', '5']);
      expect(r.code).toBe(0);
      expect(backupFiles(m.backups)).toEqual([older.file, newest.file].sort());
      // Both proven bad now: --remove-failed takes the older one, never the newest there is.
      flipByte(older.path);
      flipByte(newest.path);
      expect((await cli(m, ['verify', 'all'])).stdout.match(/^FAILED/gm)).toHaveLength(2);
      expect((await cli(m, ['prune', '--remove-failed', '--keep-last', '5'])).code).toBe(0);
      expect(backupFiles(m.backups)).toEqual([newest.file]);
    },
  );

  it('a run whose clock jumped forward removes nothing and says so; latest then passes over the future backup', async () => {
    const m = machine({
      config: { destinations: [], retention: { daily: 0, weekly: 0, monthly: 0, within: '30d' } },
    });
    const now = Date.now();
    const past: BackupResult[] = [];
    for (let d = 20; d >= 1; d--) past.push(await backupAt(m, new Date(now - d * DAY)));
    // The run of a machine whose clock is a year ahead, as the daemon would do it.
    const future = new Date(now + 365 * DAY);
    const manager = new BackupManager(m.target());
    let held: string | undefined;
    try {
      const b = await manager.createBackup({ now: future });
      const prune = await manager.prune({ protect: [b.file], madeByRun: b.file, now: future });
      held = prune.held;
      expect(prune.removed).toEqual([]);
    } finally {
      manager.close();
    }
    expect(held).toMatch(
      /dated 366 days after the newest one before it .* would remove 20 of 20 backups: nothing was removed/,
    );
    for (const b of past) expect(fs.existsSync(b.path)).toBe(true);
    // The clock is right again: latest is the newest backup that is not in the future.
    const r = await cli(m, ['restore', 'latest', '--dry-run']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/- passed over: backup-\S+ is dated in the future/);
    expect(r.stdout).toContain(`- selected ${past.at(-1)!.file} from local`);
  });

  it('a local destination that overlaps the backup folder is refused', async () => {
    const m = machine({ config: { destinations: [{ name: 'same', type: 'local', path: 'backups' }] } });
    const r = await cli(m, ['backup']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toMatch(
      /^litekeep: app: destination 'same' \(\S+\) overlaps the backup folder \S+; point its path at another disk or folder$/,
    );
    expect(fs.existsSync(m.backups)).toBe(false);
  });

  it('dry runs leave an older catalog as it is', async () => {
    const m = machine({ config: { destinations: [] } });
    await backupAt(m, new Date(Date.now() - DAY));
    // Make the catalog look like one written before this version (schema 1).
    const file = path.join(m.backups, '.litekeep', 'catalog.db');
    const db = new Database(file);
    db.pragma('user_version = 1');
    db.close();
    const before = fs.readFileSync(file);
    for (const args of [['backup', '--dry-run'], ['prune', '--dry-run'], ['list'], ['status']]) {
      const r = await cli(m, args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    }
    const after = new Database(file, { readonly: true });
    expect(after.pragma('user_version', { simple: true })).toBe(1);
    after.close();
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    const restored = path.join(m.dir, 'nowhere', 'yet', 'x.db');
    expect((await cli(m, ['restore', 'latest', '--dry-run', '--to', restored])).code).toBe(0);
    expect(fs.existsSync(path.join(m.dir, 'nowhere'))).toBe(false);
  });

  it('the first backup records the host name, and later runs keep it when the system one changes', async () => {
    const m = machine({ config: {} });
    const prefix = JSON.parse(fs.readFileSync(path.join(m.dir, 'litekeep.yml'), 'utf8')).destinations[0]
      .prefix;
    expect((await cli(m, ['backup'])).code).toBe(0);
    const record = path.join(m.backups, '.litekeep', 'host');
    expect(fs.readFileSync(record, 'utf8').trim()).toBe(os.hostname());
    // As if the container had been recreated under another host name: the folder's record decides.
    fs.writeFileSync(record, 'the-first-name\n');
    const b = await cli(m, ['backup', '--json']);
    expect(b.code).toBe(0);
    const listing = JSON.parse((await cli(m, ['list', '--from', 'bucket', '--json'])).stdout).backups as {
      id: string;
    }[];
    expect(listing.map((o) => o.id)).toContain(`${prefix}/app/the-first-name/${JSON.parse(b.stdout).file}`);
  });
});
