import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/db.js';
import { RCLONE_MISSING, SSHD_MISSING, titled } from '../helpers/programs.js';
import { changeDatabase, treeOf } from '../repository/helpers.js';
import { remoteSection, startRcloneServer, type RcloneServer } from '../servers/rclone-server.js';
import { startSshServer, type SshServer } from '../servers/sshd.js';
import { machine, made, rowsOf, type Machine } from './incremental-helpers.js';

/**
 * `format: incremental` on an SFTP server (OpenSSH) and on an rclone remote (rclone's WebDAV server), through
 * the CLI as users run it: backups that upload only what changed, a restore on an empty machine, a full check,
 * and point-in-time recovery from WAL segments shipped there.
 */

let sshd: SshServer | undefined;
let webdav: RcloneServer | undefined;
let shared: string;

beforeAll(async () => {
  [sshd, webdav] = await Promise.all([
    SSHD_MISSING ? undefined : startSshServer(),
    RCLONE_MISSING ? undefined : startRcloneServer('webdav'),
  ]);
  shared = tempDir('litekeep-incr-remote-');
  if (webdav)
    fs.writeFileSync(path.join(shared, 'rclone.conf'), remoteSection('nas', webdav), { mode: 0o600 });
  if (sshd) fs.writeFileSync(path.join(shared, 'known_hosts'), `${sshd.knownHostsLine}\n`);
});

afterAll(async () => {
  await Promise.all([sshd?.close(), webdav?.close()]);
  if (shared) fs.rmSync(shared, { recursive: true, force: true });
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

interface Remote {
  name: string;
  /** The destination entry of a machine's config, for the repository folder `folder` on the server. */
  destination(folder: string): object;
  /** Where host web1's repository of `app` is on the server's disk. */
  repo(folder: string): string;
  private: boolean;
}

const remotes: [string, string | undefined, () => Remote][] = [
  [
    'sftp (OpenSSH)',
    SSHD_MISSING,
    () => ({
      name: 'box',
      destination: (folder) => ({
        name: 'box',
        type: 'sftp',
        host: sshd!.host,
        port: sshd!.port,
        user: sshd!.user,
        keyFile: sshd!.clientKey,
        agent: false,
        knownHosts: path.join(shared, 'known_hosts'),
        path: path.join(sshd!.dir, folder),
        format: 'incremental',
      }),
      repo: (folder) => path.join(sshd!.dir, folder, 'app', 'web1', 'repo'),
      private: true,
    }),
  ],
  [
    'rclone (WebDAV)',
    RCLONE_MISSING,
    () => ({
      name: 'nas',
      destination: (folder) => ({
        name: 'nas',
        type: 'rclone',
        remote: `nas:${folder}`,
        rcloneConfig: path.join(shared, 'rclone.conf'),
        format: 'incremental',
      }),
      repo: (folder) => path.join(webdav!.dir, folder, 'app', 'web1', 'repo'),
      private: false,
    }),
  ],
];

/** Bytes of the repository's files on the server's disk, by key. */
function filesOn(repo: string): Map<string, number> {
  return new Map(treeOf(repo).map((key) => [key, fs.statSync(path.join(repo, key)).size]));
}

let folders = 0;
const folderName = () => `r${Date.now().toString(36)}-${folders++}`;

for (const [title, missing, make] of remotes) {
  describe.skipIf(missing)(titled(`format: incremental on ${title}`, missing), () => {
    it('a second backup uploads only changed pages; an empty machine restores the same rows; check --read-data passes', async () => {
      const remote = make();
      const folder = folderName();
      const m = await machine(() => [remote.destination(folder)], { rows: 3000 });
      const first = await m.backup();
      expect(first.code, first.stderr).toBe(0);
      const s1 = first.destinations[0].snapshot;
      const repo = remote.repo(folder);
      const afterFirst = filesOn(repo);
      expect([...afterFirst.keys()]).toContain('config');
      expect([...afterFirst.keys()]).toContain(`snapshots/${s1.id}`);
      const packBytes = (files: Map<string, number>, keys: string[]) =>
        keys.filter((k) => k.startsWith('packs/')).reduce((sum, k) => sum + files.get(k)!, 0);
      const firstPacks = packBytes(afterFirst, [...afterFirst.keys()]);
      expect(firstPacks).toBeGreaterThan(100_000);
      // Nothing but objects under their names: no temp file is left by a run that succeeded.
      expect([...afterFirst.keys()].filter((k) => k.split('/').some((p) => p.startsWith('.')))).toEqual([]);
      if (remote.private) {
        for (const key of afterFirst.keys())
          expect(fs.statSync(path.join(repo, key)).mode & 0o777, key).toBe(0o600);
        expect(fs.statSync(repo).mode & 0o777).toBe(0o700);
      }

      changeDatabase(m.db, 0.01, 20);
      const second = await m.backup();
      expect(second.code, second.stderr).toBe(0);
      const s2 = second.destinations[0].snapshot;
      const afterSecond = filesOn(repo);
      const added = [...afterSecond.keys()].filter((k) => !afterFirst.has(k));
      // Every object of the first run is still there, unchanged; the second added a few packs, not a copy.
      for (const [key, bytes] of afterFirst) expect(afterSecond.get(key), key).toBe(bytes);
      expect(added).toContain(`snapshots/${s2.id}`);
      expect(added.filter((k) => k.startsWith('packs/')).length).toBeGreaterThan(0);
      expect(packBytes(afterSecond, added)).toBeLessThan(firstPacks / 4);
      expect(s2.addedChunks).toBeLessThan(s1.addedChunks / 4);
      const rows = rowsOf(m.db);

      // A new machine: only the configuration (no database, no backup folder, no local index).
      const fresh = await machine(() => [remote.destination(folder)], { db: false });
      const out = path.join(fresh.dir, 'restored.db');
      const restored = await fresh.cli(['restore', 'latest', '--from', remote.name, '--to', out, '--json']);
      expect(restored.code, restored.stderr).toBe(0);
      expect(JSON.parse(restored.stdout).backup).toBe(s2.id);
      expect(rowsOf(out)).toEqual(rows);
      const older = path.join(fresh.dir, 'older.db');
      const first_ = await fresh.cli(['restore', s1.id.slice(0, 12), '--from', remote.name, '--to', older]);
      expect(first_.code, first_.stderr).toBe(0);
      expect(rowsOf(older).messages).toBe(3000);

      const check = await fresh.cli(['check', '--from', remote.name, '--read-data']);
      expect(check.code, check.stdout + check.stderr).toBe(0);
      expect(check.stdout).toMatch(/^ok .*2 snapshots/m);
      // A damaged pack on the server is found by the same check.
      const pack = added.find((k) => k.startsWith('packs/'))!;
      const bytes = fs.readFileSync(path.join(repo, pack));
      bytes[Math.floor(bytes.length / 2)] ^= 0xff;
      fs.writeFileSync(path.join(repo, pack), bytes);
      const damaged = await fresh.cli(['check', '--from', remote.name, '--read-data']);
      expect(damaged.code, damaged.stdout + damaged.stderr).toBe(1);
      expect(damaged.stdout + damaged.stderr).toContain(pack.split('/').at(-1)!.slice(0, 12));
    }, 300_000);

    it('replicate --once ships WAL segments there; restore --at on an empty machine reads them back', async () => {
      const remote = make();
      const folder = folderName();
      const m: Machine = await machine(() => [remote.destination(folder)], { rows: 500 });
      // The app: one connection that stays open and never checkpoints, so its WAL holds every commit.
      const app = new Database(m.db);
      try {
        app.pragma('wal_autocheckpoint = 0');
        const insert = app.prepare('INSERT INTO messages (user, body) VALUES (?, ?)');
        const commit = (n: number, label: string) =>
          app.transaction(() => {
            for (let i = 0; i < n; i++) insert.run(i % 97, `${label} ${i}`);
          })();

        commit(10, 'before the base');
        const base = await m.cli(['replicate', '--once']);
        expect(base.code, base.stderr).toBe(0);
        expect(base.stdout).toMatch(/base snapshot taken/);
        commit(25, 'shipped');
        const shipped = await m.cli(['replicate', '--once']);
        expect(shipped.code, shipped.stderr).toBe(0);
        const at = new Date();
        const rowsAt = rowsOf(m.db);
        commit(40, 'after the moment');
        const later = await m.cli(['replicate', '--once']);
        expect(later.code, later.stderr).toBe(0);

        const wal = treeOf(remote.repo(folder)).filter((k) => k.startsWith('wal/'));
        expect(wal.length).toBeGreaterThanOrEqual(2);

        const fresh = await machine(() => [remote.destination(folder)], { db: false });
        const out = path.join(fresh.dir, 'at.db');
        const r = await fresh.cli(['restore', '--from', remote.name, '--at', at.toISOString(), '--to', out]);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toMatch(/point in time .*: base snapshot [0-9a-f]{12} .* WAL segment/);
        expect(rowsOf(out)).toEqual(rowsAt);
        const now = path.join(fresh.dir, 'now.db');
        const all = await fresh.cli([
          'restore',
          '--from',
          remote.name,
          '--at',
          new Date().toISOString(),
          '--to',
          now,
        ]);
        expect(all.code, all.stderr).toBe(0);
        expect(rowsOf(now)).toEqual(rowsOf(m.db));
        expect(rowsOf(now).messages).toBe(500 + 10 + 25 + 40);
      } finally {
        app.close();
      }
    }, 300_000);
  });
}
