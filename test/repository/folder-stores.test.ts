import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RcloneDestination } from '../../src/destinations/rclone.js';
import { SftpDestination } from '../../src/destinations/sftp.js';
import { BlobNotFoundError, readAll, type BlobStore } from '../../src/repository/store.js';
import { FolderBlobStore } from '../../src/repository/stores/folder.js';
import { RCLONE_MISSING, SSHD_MISSING, titled } from '../helpers/programs.js';
import { tree, waitFor } from '../helpers/remote.js';
import { tempDir } from '../helpers/temp.js';
import {
  rcloneTestEnv,
  remoteSection,
  startRcloneServer,
  type RcloneServer,
} from '../servers/rclone-server.js';
import { startSshServer, type SshServer } from '../servers/sshd.js';

/**
 * The repository's blob store on an SFTP server (OpenSSH) and on an rclone remote (rclone's WebDAV server,
 * which offers no hash: copies are checked by reading them back), held to the contract of store.ts.
 */

const MiB = 1024 * 1024;
// Made when a test here runs: with the servers missing (a fresh machine) nothing is made, nothing left behind.
let work: string;
beforeAll(() => {
  work = tempDir('litekeep-folder-stores-');
});

const sha256 = (data: Buffer) => crypto.createHash('sha256').update(data).digest('hex');

/** A pack-like object: random bytes in a local file, keyed by their sha256 as packs are. */
function object(bytes: number): { file: string; data: Buffer; id: string; key: string } {
  const data = crypto.randomBytes(bytes);
  const id = sha256(data);
  const file = path.join(work, `object-${crypto.randomUUID()}`);
  fs.writeFileSync(file, data, { mode: 0o600 });
  return { file, data, id, key: `packs/${id.slice(0, 2)}/${id}` };
}

interface Backend {
  /** A store of host web1's repository below `folder`, and where that repository is on the server's disk. */
  open(folder: string, flags?: string[]): { store: BlobStore; disk: string; hosts(): Promise<string[]> };
  kill(): Promise<void>;
  restart(): Promise<void>;
  /** An upload big enough to be caught in flight (rclone's is slowed down with `flags`). */
  killed: { bytes: number; flags?: string[] };
  private: boolean;
}

let sshd: SshServer | undefined;
let sftpOnly: SshServer | undefined;
let webdav: RcloneServer | undefined;
let rcloneConfig: string;

beforeAll(async () => {
  [sshd, sftpOnly, webdav] = await Promise.all([
    SSHD_MISSING ? undefined : startSshServer(),
    SSHD_MISSING ? undefined : startSshServer({ sftpOnly: true }),
    RCLONE_MISSING ? undefined : startRcloneServer('webdav'),
  ]);
  if (webdav) {
    rcloneConfig = path.join(work, 'rclone.conf');
    fs.writeFileSync(rcloneConfig, remoteSection('web', webdav), { mode: 0o600 });
  }
});

afterAll(async () => {
  await Promise.all([sshd?.close(), sftpOnly?.close(), webdav?.close()]);
});

function sftpBackend(server: SshServer): Backend {
  const knownHosts = path.join(work, `known_hosts-${server.port}`);
  fs.writeFileSync(knownHosts, `${server.knownHostsLine}\n`);
  return {
    open(folder) {
      const destination = new SftpDestination({
        host: server.host,
        port: server.port,
        user: server.user,
        path: path.join(server.dir, folder),
        databaseName: 'app',
        machine: 'web1',
        keyFile: server.clientKey,
        knownHosts,
        agent: false,
      });
      return {
        store: new FolderBlobStore(destination, 'web1'),
        disk: path.join(server.dir, folder, 'app', 'web1', 'repo'),
        hosts: () => FolderBlobStore.hosts(destination),
      };
    },
    kill: () => server.kill(),
    restart: () => server.restart(),
    killed: { bytes: 64 * MiB },
    private: true,
  };
}

/** Name, why it is skipped (a program missing), the backend, and whether the server is killed mid-upload. */
const backends: [string, string | undefined, () => Backend, boolean][] = [
  // A shell account: copies are checked with md5sum run on the server.
  ['sftp (OpenSSH)', SSHD_MISSING, () => sftpBackend(sshd!), true],
  // A backup account that runs no commands: copies are checked by reading them back.
  ['sftp (OpenSSH, sftp-only account)', SSHD_MISSING, () => sftpBackend(sftpOnly!), false],
  [
    'rclone (WebDAV)',
    RCLONE_MISSING,
    () => {
      const server = webdav!;
      return {
        open(folder, flags) {
          const destination = new RcloneDestination({
            remote: `web:${folder}`,
            databaseName: 'app',
            host: 'web1',
            configPath: rcloneConfig,
            env: rcloneTestEnv(),
            ...(flags ? { flags } : {}),
          });
          return {
            store: new FolderBlobStore(destination, 'web1'),
            disk: path.join(server.dir, folder, 'app', 'web1', 'repo'),
            hosts: () => FolderBlobStore.hosts(destination),
          };
        },
        kill: () => server.kill(),
        restart: () => server.restart(),
        killed: { bytes: 12 * MiB, flags: ['--bwlimit', '4M', '--low-level-retries', '1'] },
        private: false,
      };
    },
    true,
  ],
];

for (const [name, missing, make, kills] of backends) {
  describe.skipIf(missing)(titled(`the repository's blob store on ${name}`, missing), () => {
    it('stores once (private where the server has modes), never replaces other bytes, lists by prefix without temps, reads, removes', async () => {
      const backend = make();
      const { store, disk, hosts } = backend.open(`contract-${Date.now()}`);
      try {
        const a = object(3 * MiB + 7);
        expect(await store.put(a.key, a.file, a.data.length, a.id)).toBe('stored');
        expect(fs.readFileSync(path.join(disk, a.key)).equals(a.data)).toBe(true);
        if (backend.private) {
          expect(fs.statSync(path.join(disk, a.key)).mode & 0o777).toBe(0o600);
          for (const dir of ['', 'packs', `packs/${a.id.slice(0, 2)}`])
            expect(fs.statSync(path.join(disk, dir)).mode & 0o777, dir || 'repo').toBe(0o700);
        }
        // The same object again (a retried run): there already, nothing sent, nothing changed.
        const before = fs.statSync(path.join(disk, a.key)).mtimeMs;
        expect(await store.put(a.key, a.file, a.data.length, a.id)).toBe('exists');
        expect(fs.statSync(path.join(disk, a.key)).mtimeMs).toBe(before);

        // Other bytes under a taken key, of the same size or not: refused, the object untouched.
        const same = path.join(work, `other-${crypto.randomUUID()}`);
        const other = crypto.randomBytes(a.data.length);
        fs.writeFileSync(same, other);
        await expect(store.put(a.key, same, other.length, sha256(other))).rejects.toThrow(
          /already holds other bytes .*nothing was replaced — run litekeep check/,
        );
        const shorter = path.join(work, `shorter-${crypto.randomUUID()}`);
        fs.writeFileSync(shorter, other.subarray(1));
        await expect(store.put(a.key, shorter, other.length - 1, sha256(other.subarray(1)))).rejects.toThrow(
          /already holds other bytes \(3145735 bytes, not 3145734\)/,
        );
        expect(fs.readFileSync(path.join(disk, a.key)).equals(a.data)).toBe(true);
        // A local file that is not what the repository recorded is never stored.
        const b = object(1000);
        await expect(store.put(b.key, b.file, b.data.length, a.id)).rejects.toThrow(/changed during upload/);
        expect(fs.existsSync(path.join(disk, b.key))).toBe(false);
        expect(await store.put(b.key, b.file, b.data.length, b.id)).toBe('stored');

        const config = object(200);
        await store.put('config', config.file, config.data.length, config.id);
        const segment = object(5000);
        await store.put('wal/0000000000000001-00000001', segment.file, segment.data.length, segment.id);
        // An upload in progress elsewhere (a live process's temp) is no object.
        const live = path.join(disk, 'packs', a.id.slice(0, 2), `.${a.id}.1.0badf00d.tmp`);
        fs.writeFileSync(live, 'partial');

        const packs = [a, b].sort((x, y) => (x.key < y.key ? -1 : 1));
        const listed = [];
        for await (const blob of store.list('packs/')) listed.push({ key: blob.key, size: blob.size });
        expect(listed).toEqual(packs.map((p) => ({ key: p.key, size: p.data.length })));
        const byKey = [];
        for await (const blob of store.list(`packs/${b.id.slice(0, 2)}/${b.id.slice(0, 10)}`))
          byKey.push(blob.key);
        expect(byKey).toEqual([b.key]);
        const all = [];
        for await (const blob of store.list('')) all.push(blob.key);
        expect(all.sort()).toEqual(
          ['config', 'wal/0000000000000001-00000001', ...packs.map((p) => p.key)].sort(),
        );
        const none = [];
        for await (const blob of store.list('index/')) none.push(blob);
        expect(none).toEqual([]);

        expect((await readAll(await store.get(a.key))).equals(a.data)).toBe(true);
        await expect(store.get('packs/00/missing')).rejects.toBeInstanceOf(BlobNotFoundError);
        expect(await store.stat(b.key)).toMatchObject({ key: b.key, size: b.data.length });
        expect(await store.stat('snapshots/nothing')).toBeUndefined();
        expect(await hosts()).toEqual(['web1']);

        await store.remove(b.key);
        expect(fs.existsSync(path.join(disk, b.key))).toBe(false);
        await store.remove(b.key);
        expect(await store.stat(b.key)).toBeUndefined();
        expect(tree(disk)).toEqual(
          [
            'config',
            a.key,
            `packs/${a.id.slice(0, 2)}/.${a.id}.1.0badf00d.tmp`,
            'wal/0000000000000001-00000001',
          ].sort(),
        );
      } finally {
        store.close();
      }
    }, 120_000);

    // Played once per kind of server (the sftp-only account runs the same upload code as the shell account).
    if (kills)
      it('a server killed mid-upload leaves nothing under the final name; the next upload sweeps the partial file', async () => {
        const backend = make();
        const killed = backend.killed;
        const folder = `killed-${Date.now()}`;
        const { store, disk } = backend.open(folder, killed.flags);
        const big = object(killed.bytes);
        const dir = path.join(disk, 'packs', big.id.slice(0, 2));
        try {
          const upload = store.put(big.key, big.file, big.data.length, big.id).then(
            () => undefined,
            (e: Error) => e,
          );
          try {
            await waitFor(() =>
              tree(dir).some((f) => f.endsWith('.tmp') && fs.statSync(path.join(dir, f)).size > MiB),
            );
          } finally {
            await backend.kill();
          }
          const error = await upload.finally(() => backend.restart());
          expect(error).toBeInstanceOf(Error);
          expect(error!.message.split('\n')).toHaveLength(1);
          expect(error!.message).toMatch(
            new RegExp(`^upload of ${big.key} in the repository on (sftp|rclone) failed: `),
          );
          const partial = tree(dir);
          expect(partial).toHaveLength(1);
          expect(partial[0]).toMatch(new RegExp(`^\\.${big.id}\\.${process.pid}\\.[0-9a-f]+\\.tmp$`));
          expect(fs.statSync(path.join(dir, partial[0])).size).toBeLessThan(big.data.length);
          expect(await store.stat(big.key)).toBeUndefined();
          const listed = [];
          for await (const blob of store.list('packs/')) listed.push(blob);
          expect(listed).toEqual([]);

          expect(await store.put(big.key, big.file, big.data.length, big.id)).toBe('stored');
          expect(tree(dir)).toEqual([big.id]);
          expect(sha256(fs.readFileSync(path.join(dir, big.id)))).toBe(big.id);
        } finally {
          store.close();
        }
      }, 120_000);
  });
}
