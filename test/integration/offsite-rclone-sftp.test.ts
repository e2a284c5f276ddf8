import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, type CliResult } from '../helpers/cli.js';
import { countRows, makeDatabase, tempDir } from '../helpers/db.js';
import { RCLONE_MISSING, titled } from '../helpers/programs.js';
import {
  rcloneTestEnv,
  remoteSection,
  startRcloneServer,
  type RcloneServer,
} from '../servers/rclone-server.js';

/** JSON read back from the CLI; the expectations below check its shape. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const lastOnly = ['--keep-last', '1', '--keep-daily', '0', '--keep-weekly', '0', '--keep-monthly', '0'];

let webdav: RcloneServer;
let sftp: RcloneServer;
let shared: string;
let rcloneConfig: string;
let knownHosts: string;
const made: string[] = [];

beforeAll(async () => {
  if (RCLONE_MISSING) return;
  shared = tempDir('litekeep-offsite-rclone-');
  [webdav, sftp] = await Promise.all([startRcloneServer('webdav'), startRcloneServer('sftp')]);
  rcloneConfig = path.join(shared, 'rclone.conf');
  fs.writeFileSync(rcloneConfig, remoteSection('nas', webdav), { mode: 0o600 });
  knownHosts = path.join(shared, 'known_hosts');
  fs.writeFileSync(knownHosts, `[127.0.0.1]:${sftp.port} ${sftp.hostPublicKey}\n`);
});

afterAll(async () => {
  await Promise.all([webdav?.close(), sftp?.close()]);
  for (const dir of [shared, ...made]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

interface Machine {
  dir: string;
  db: string;
  backups: string;
  cli(args: string[]): Promise<CliResult & { out: Json }>;
}

/** A machine with its database and a config whose destinations are the shared WebDAV (via rclone) and SFTP servers. */
function machine(options: { host: string; rows?: number; prefix: string; config?: object }): Machine {
  const dir = tempDir('litekeep-machine-');
  made.push(dir);
  const db = path.join(dir, 'app.db');
  makeDatabase(db, options.rows ?? 20);
  const config = {
    database: 'app.db',
    backupDir: 'backups',
    timeZone: 'UTC',
    host: options.host,
    compression: { algorithm: 'zstd' },
    destinations: [
      { name: 'nas', type: 'rclone', remote: `nas:${options.prefix}`, rcloneConfig },
      {
        name: 'box',
        type: 'sftp',
        host: '127.0.0.1',
        port: sftp.port,
        user: sftp.user,
        password: sftp.pass,
        path: options.prefix,
        knownHosts,
      },
    ],
    ...options.config,
  };
  fs.writeFileSync(path.join(dir, 'litekeep.yml'), JSON.stringify(config, null, 2));
  return {
    dir,
    db,
    backups: path.join(dir, 'backups'),
    async cli(args: string[]) {
      const r = await runCli(args, { cwd: dir, env: { ...rcloneTestEnv(), TZ: 'UTC' } });
      let out: Json;
      try {
        out = JSON.parse(r.stdout);
      } catch {
        out = undefined;
      }
      return { ...r, out };
    },
  };
}

const onDisk = (server: RcloneServer, ...parts: string[]) => path.join(server.dir, ...parts);

describe.skipIf(RCLONE_MISSING)(titled('rclone and sftp destinations, end to end', RCLONE_MISSING), () => {
  it('back up to both, list them, restore from each on an empty machine, apply each one retention', async () => {
    const prefix = `e2e-${Date.now()}`;
    const m = machine({ host: 'alpha', rows: 33, prefix });
    const first = await m.cli(['backup', '--json']);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    const file = first.out.file as string;
    for (const d of first.out.destinations) expect(d, d.destination).toMatchObject({ status: 'ok' });
    const local = fs.readFileSync(first.out.path);
    for (const server of [webdav, sftp]) {
      expect(sha256(fs.readFileSync(onDisk(server, prefix, 'app', 'alpha', file)))).toBe(sha256(local));
      expect(fs.existsSync(onDisk(server, prefix, 'app', 'alpha', '.litekeep-meta', `${file}.json`))).toBe(
        true,
      );
    }
    for (const from of ['nas', 'box']) {
      const listed = await m.cli(['list', '--from', from, '--json']);
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.out.backups).toMatchObject([{ name: file, host: 'alpha', sha256: first.out.sha256 }]);
    }

    // A new machine: no backups folder, no database, only the configuration.
    fs.rmSync(m.backups, { recursive: true });
    for (const from of ['nas', 'box']) {
      fs.rmSync(m.db, { force: true });
      const r = await m.cli(['restore', 'latest', '--from', from]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`selected ${file.replace(/\./g, '\\.')} from ${from}`));
      expect(countRows(m.db)).toBe(33);
    }
    const verify = await m.cli(['verify', 'latest', '--from', 'box', '--json']);
    expect(verify.code, verify.stderr).toBe(0);

    // A newer backup and "keep the last one": the older copy goes from both, by this host's rules.
    const second = await m.cli(['backup', '--json', ...lastOnly]);
    expect(second.code, second.stderr).toBe(0);
    for (const d of second.out.destinations) expect(d.removed, d.destination).toEqual([file]);
    for (const server of [webdav, sftp]) {
      expect(
        fs.readdirSync(onDisk(server, prefix, 'app', 'alpha')).filter((f) => f.startsWith('backup-')),
      ).toEqual([second.out.file]);
      expect(fs.readdirSync(onDisk(server, prefix, 'app', 'alpha', '.litekeep-meta'))).toEqual([
        `${second.out.file}.json`,
      ]);
    }
  }, 120_000);

  it('two hosts share the remotes: each keeps its own copies, retention removes only its own', async () => {
    const prefix = `shared-${Date.now()}`;
    const alpha = machine({ host: 'alpha', rows: 10, prefix });
    const beta = machine({ host: 'beta', rows: 30, prefix });
    const a = await alpha.cli(['backup', '--json']);
    const b = await beta.cli(['backup', '--json']);
    expect([a.code, b.code]).toEqual([0, 0]);
    for (const from of ['nas', 'box']) {
      const all = (await alpha.cli(['list', '--from', from, '--json'])).out.backups as Json[];
      expect(all.map((o) => o.host).sort()).toEqual(['alpha', 'beta']);
    }
    const pruned = await alpha.cli(['backup', '--json', ...lastOnly]);
    expect(pruned.code, pruned.stderr).toBe(0);
    for (const server of [webdav, sftp]) {
      expect(fs.existsSync(onDisk(server, prefix, 'app', 'beta', b.out.file))).toBe(true);
      expect(fs.existsSync(onDisk(server, prefix, 'app', 'alpha', a.out.file))).toBe(false);
    }
    // A third machine restores beta's backup when asked for it by host.
    const gamma = machine({ host: 'gamma', rows: 1, prefix });
    fs.rmSync(gamma.db);
    const ask = await gamma.cli(['restore', 'latest', '--from', 'box']);
    expect(ask.code).toBe(2);
    expect(ask.stderr).toMatch(/several hosts \(alpha, beta\); choose one with --host NAME/);
    const r = await gamma.cli(['restore', 'latest', '--from', 'nas', '--host', 'beta']);
    expect(r.code, r.stderr).toBe(0);
    expect(countRows(gamma.db)).toBe(30);
  }, 120_000);

  it('servers down: the backup is kept locally (exit 3), and sync uploads what they missed once they are back', async () => {
    const prefix = `outage-${Date.now()}`;
    const m = machine({ host: 'alpha', prefix });
    await Promise.all([webdav.kill(), sftp.kill()]);
    let down: Awaited<ReturnType<Machine['cli']>>;
    try {
      down = await m.cli(['backup', '--json']);
    } finally {
      await Promise.all([webdav.restart(), sftp.restart()]);
    }
    expect(down.code).toBe(3);
    expect(fs.existsSync(down.out.path)).toBe(true);
    const byName = Object.fromEntries(down.out.destinations.map((d: Json) => [d.destination, d]));
    expect(byName.nas.error).toMatch(/cannot reach 'nas:outage-\d+'/);
    expect(byName.box.error).toMatch(/cannot reach the SSH server 127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
    const status = await m.cli(['status', '--json']);
    for (const d of status.out.destinations) expect(d.missing, d.destination).toEqual([down.out.file]);

    const sync = await m.cli(['sync', '--json']);
    expect(sync.stderr).toBe('');
    expect(sync.code).toBe(0);
    for (const d of sync.out.destinations) expect(d.caughtUp, d.destination).toEqual([down.out.file]);
    for (const server of [webdav, sftp]) {
      expect(sha256(fs.readFileSync(onDisk(server, prefix, 'app', 'alpha', down.out.file)))).toBe(
        sha256(fs.readFileSync(down.out.path)),
      );
    }
  }, 120_000);

  it('is refused at start (exit 2, one line, nothing backed up) when rclone or the remote or known_hosts is missing', async () => {
    const prefix = `refused-${Date.now()}`;
    const cases: [string, object, RegExp][] = [
      [
        'no rclone',
        {
          destinations: [
            { name: 'nas', type: 'rclone', remote: 'nas:x', rclone: '/nonexistent/rclone', rcloneConfig },
          ],
        },
        /destination 'nas': rclone is not installed \(no '\/nonexistent\/rclone' found\); install it/,
      ],
      [
        'unknown remote',
        { destinations: [{ name: 'cloud', type: 'rclone', remote: 'dropbox:backups', rcloneConfig }] },
        /destination 'cloud': rclone has no remote 'dropbox:' \(config file .*rclone\.conf\); run 'rclone config' to add it/,
      ],
      [
        'no known_hosts',
        {
          destinations: [
            {
              name: 'box',
              type: 'sftp',
              host: '127.0.0.1',
              port: sftp.port,
              path: 'x',
              knownHosts: 'missing_known_hosts',
            },
          ],
        },
        /destination 'box': there is no known_hosts file at .*missing_known_hosts, so the SSH server's key cannot be checked; add it \(ssh-keyscan -p \d+ 127\.0\.0\.1 >> /,
      ],
    ];
    for (const [label, config, pattern] of cases) {
      const m = machine({ host: 'alpha', prefix, config });
      const r = await m.cli(['backup']);
      expect(r.code, label).toBe(2);
      expect(r.stderr.trim().split('\n'), label).toHaveLength(1);
      expect(r.stderr, label).toMatch(pattern);
      expect(fs.existsSync(m.backups), label).toBe(false);
    }
  }, 120_000);
});
