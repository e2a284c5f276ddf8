import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomArtifact, readAll, tree, waitFor } from '../helpers/remote.js';
import { RcloneDestination, type RcloneDestinationOptions } from '../../src/destinations/rclone.js';
import { spawn } from 'node:child_process';
import { TSX_LOADER } from '../helpers/cli.js';
import { descendantsOf, isRunning, RCLONE_MISSING, titled } from '../helpers/programs.js';
import {
  rcloneTestEnv,
  remoteSection,
  startRcloneServer,
  type RcloneServer,
} from '../servers/rclone-server.js';

const MiB = 1024 * 1024;
const NAME = 'backup-2026-03-01-030000.db.zst';
let work: string;
let configPath: string;
let webdav: RcloneServer;
let sftp: RcloneServer;
let proxy: CorruptingProxy;

beforeAll(async () => {
  if (RCLONE_MISSING) return;
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'litekeep-rclone-test-'));
  [webdav, sftp] = await Promise.all([startRcloneServer('webdav'), startRcloneServer('sftp')]);
  proxy = await corruptingProxy(webdav.port);
  const knownHosts = path.join(work, 'known_hosts');
  fs.writeFileSync(knownHosts, `[127.0.0.1]:${sftp.port} ${sftp.hostPublicKey}\n`);
  configPath = path.join(work, 'rclone.conf');
  fs.writeFileSync(
    configPath,
    [
      '[disk]\ntype = local\n',
      remoteSection('web', webdav),
      remoteSection('box', sftp, { known_hosts_file: knownHosts }),
      remoteSection('badpass', webdav, { pass: obscureFor('not the password') }),
      remoteSection('flipping', webdav, { url: `http://127.0.0.1:${proxy.port}/` }),
    ].join('\n'),
    { mode: 0o600 },
  );
});

afterAll(async () => {
  await proxy?.close();
  await Promise.all([webdav?.close(), sftp?.close()]);
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

function obscureFor(password: string): string {
  return remoteSection('x', { ...webdav, pass: password } as RcloneServer).match(/pass = (\S+)/)![1];
}

function destination(remote: string, overrides: Partial<RcloneDestinationOptions> = {}): RcloneDestination {
  return new RcloneDestination({
    remote,
    databaseName: 'app',
    host: 'web1',
    configPath,
    env: rcloneTestEnv(),
    ...overrides,
  });
}

interface Backend {
  label: string;
  /** The remote, a folder of its own per test. */
  remote: (test: string) => string;
  /** Where that remote's files land on this machine's disk. */
  disk: (test: string) => string;
  /** Whether the backend keeps litekeep's metadata on the object (no sidecar). */
  keepsMetadata: boolean;
}

const backends: Backend[] = [
  {
    label: 'the local backend',
    remote: (t) => `disk:${path.join(work, 'disk', t)}`,
    disk: (t) => path.join(work, 'disk', t),
    keepsMetadata: true,
  },
  {
    label: 'rclone serve webdav',
    remote: (t) => `web:${t}`,
    disk: (t) => path.join(webdav.dir, t),
    keepsMetadata: false,
  },
  {
    label: 'rclone serve sftp',
    remote: (t) => `box:${t}`,
    disk: (t) => path.join(sftp.dir, t),
    keepsMetadata: false,
  },
];

describe.skipIf(RCLONE_MISSING)(titled('RcloneDestination', RCLONE_MISSING), () => {
  describe.each(backends)('through $label', (backend) => {
    it('uploads, lists with metadata, downloads the same bytes and removes; the copy is on the server', async () => {
      const t = `roundtrip`;
      const d = destination(backend.remote(t));
      const { file, data, metadata } = randomArtifact(work, 3 * MiB + 17);
      const put = await d.put(file, NAME, metadata);
      expect(put.id).toBe(`${backend.remote(t)}/app/web1/${NAME}`);
      const disk = backend.disk(t);
      expect(fs.readFileSync(path.join(disk, 'app', 'web1', NAME)).equals(data)).toBe(true);
      expect(tree(disk)).toEqual(
        backend.keepsMetadata
          ? [`app/web1/${NAME}`]
          : [`app/web1/${NAME}`, `app/web1/.litekeep-meta/${NAME}.json`].sort(),
      );
      const listed = await d.list();
      expect(listed).toHaveLength(1);
      expect(listed[0]).toMatchObject({ name: NAME, id: put.id, host: 'web1', bytes: data.length, metadata });
      expect(await d.stat(NAME)).toMatchObject({ id: put.id, metadata: { sha256: metadata.sha256 } });
      expect((await readAll(await d.get(listed[0]))).equals(data)).toBe(true);
      await d.remove(listed[0]);
      expect(tree(disk)).toEqual([]);
      expect(await d.list()).toEqual([]);
    });

    it("never overwrites: the same bytes again are a success, other bytes under this host's name are refused", async () => {
      const t = 'clash';
      const d = destination(backend.remote(t));
      const first = randomArtifact(work, 4000);
      await d.put(first.file, NAME, first.metadata);
      await d.put(first.file, NAME, first.metadata);
      const other = randomArtifact(work, 4000);
      await expect(d.put(other.file, NAME, other.metadata)).rejects.toThrow(
        /refused: .*\/app\/web1\/backup-2026-03-01-030000\.db\.zst already holds other bytes .*give each machine its own 'host'/,
      );
      const disk = path.join(backend.disk(t), 'app');
      expect(fs.readFileSync(path.join(disk, 'web1', NAME)).equals(first.data)).toBe(true);
      // Another machine's copy of the same name lives beside it, and is not this host's to remove.
      await destination(backend.remote(t), { host: 'web 2' }).put(other.file, NAME, {
        ...other.metadata,
        host: 'web 2',
      });
      expect(fs.readFileSync(path.join(disk, 'web%202', NAME)).equals(other.data)).toBe(true);
      const listed = await d.list();
      expect(listed.map((o) => `${o.host}:${o.metadata?.sha256}`).sort()).toEqual(
        [`web 2:${other.metadata.sha256}`, `web1:${first.metadata.sha256}`].sort(),
      );
      const theirs = listed.find((o) => o.host === 'web 2')!;
      await expect(d.remove(theirs)).rejects.toThrow(/belongs to host 'web 2'/);
      expect(fs.existsSync(path.join(disk, 'web%202', NAME))).toBe(true);
      await expect(
        d.remove({ ...theirs, id: `${backend.remote(t)}/elsewhere/web1/${NAME}` }),
      ).rejects.toThrow(/not a litekeep copy/);
    });

    it('does not count a copy whose bytes disagree with the backup, and leaves nothing behind', async () => {
      const t = 'mismatch';
      const d = destination(backend.remote(t));
      const { file, metadata } = randomArtifact(work, 5000);
      await expect(d.put(file, NAME, { ...metadata, sha256: '00'.repeat(32) })).rejects.toThrow(
        /failed verification: the local file's sha256 .* run the backup again/,
      );
      expect(tree(backend.disk(t))).toEqual([]);
      expect(await d.list()).toEqual([]);
    });
  });

  it('keeps the copy private on the local backend (mode 0600, like the backup itself)', async () => {
    const d = destination(`disk:${path.join(work, 'private')}`);
    const { file, metadata } = randomArtifact(work, 1000);
    fs.chmodSync(file, 0o600);
    await d.put(file, NAME, metadata);
    expect(fs.statSync(path.join(work, 'private', 'app', 'web1', NAME)).mode & 0o777).toBe(0o600);
  });

  it('checks a copy without hashes by reading it back: bytes changed on the way are caught and not kept', async () => {
    const d = destination('flipping:flipped');
    const { file, metadata } = randomArtifact(work, 2 * MiB);
    proxy.flipNextUpload();
    await expect(d.put(file, NAME, metadata)).rejects.toThrow(
      /^upload of backup-2026-03-01-030000\.db\.zst to rclone failed verification: reading the copy back gave sha256 [0-9a-f]{64}, not [0-9a-f]{64}; the remote copy was removed/,
    );
    expect(proxy.flipped).toBe(1);
    expect(tree(path.join(webdav.dir, 'flipped'))).toEqual([]);
    // Once the network behaves, the same upload goes through.
    await d.put(file, NAME, metadata);
    expect(tree(path.join(webdav.dir, 'flipped'))).toEqual(
      [`app/web1/${NAME}`, `app/web1/.litekeep-meta/${NAME}.json`].sort(),
    );
  });

  it('a server killed mid-upload leaves no copy that counts; the next run sweeps the partial file and uploads', async () => {
    // Slowed down so that the server can be killed while bytes are still arriving.
    const d = destination('web:killed', { flags: ['--bwlimit', '4M', '--low-level-retries', '1'] });
    const { file, data, metadata } = randomArtifact(work, 12 * MiB);
    const hostDir = path.join(webdav.dir, 'killed', 'app', 'web1');
    const upload = d.put(file, NAME, metadata).then(
      () => undefined,
      (e: Error) => e,
    );
    try {
      await waitFor(() =>
        tree(hostDir).some((f) => f.endsWith('.tmp') && fs.statSync(path.join(hostDir, f)).size > MiB),
      );
    } finally {
      await webdav.kill();
    }
    const error = await upload.finally(() => webdav.restart());
    expect(error).toBeInstanceOf(Error);
    expect(error!.message.split('\n')).toHaveLength(1);
    expect(error!.message).toMatch(
      /^upload of backup-2026-03-01-030000\.db\.zst on rclone failed: cannot reach 'web:killed'/,
    );
    // The partial upload is on the server's disk, but under a temp name that no listing counts.
    const partial = tree(hostDir);
    expect(partial).toHaveLength(1);
    expect(partial[0]).toMatch(/^\.backup-2026-03-01-030000\.db\.zst\.\d+\.[0-9a-z]+\.tmp$/);
    expect(fs.statSync(path.join(hostDir, partial[0])).size).toBeLessThan(data.length);
    expect(await d.list()).toEqual([]);
    expect(await d.stat(NAME)).toBeUndefined();

    await destination('web:killed').put(file, NAME, metadata);
    expect(tree(hostDir)).toEqual([NAME, `.litekeep-meta/${NAME}.json`].sort());
    expect(fs.readFileSync(path.join(hostDir, NAME)).equals(data)).toBe(true);
  });

  it('a wrong password is one line naming the remote and rclone config, with no secret in it', async () => {
    const d = destination('badpass:x');
    const error = await d.list().catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    const message = (error as Error).message;
    expect(message.split('\n')).toHaveLength(1);
    expect(message).toMatch(
      /^listing badpass:x\/app on rclone failed: rclone could not sign in to 'badpass:' \(.*401.*\); check its credentials with 'rclone config'/,
    );
    expect(message).not.toContain('not the password');
    expect(message).not.toContain(obscureFor('not the password'));
  });

  it('masks credentials that rclone prints (a password in a URL, an obscured password in the config)', async () => {
    const secret = 'hunter2-very-secret';
    const d = destination(`:webdav,url='http://litekeep:${secret}@127.0.0.1:1/':x`, {
      flags: ['--low-level-retries', '1'],
    });
    const error = await d.list().catch((e: Error) => e);
    const message = (error as Error).message;
    expect(message).toMatch(/cannot reach/);
    expect(message).not.toContain(secret);
    expect(message).toContain('***');
  });

  it('leaves no rclone process behind, even when litekeep is killed outright', async () => {
    const script = path.join(work, 'hold.mts');
    fs.writeFileSync(
      script,
      [
        `import { RcloneDestination } from ${JSON.stringify(path.resolve('src/destinations/rclone.ts'))};`,
        `const d = new RcloneDestination(${JSON.stringify({ remote: 'web:held', databaseName: 'app', host: 'h', configPath })});`,
        'await d.list();',
        "console.log('listed');",
        'setInterval(() => undefined, 1000);',
      ].join('\n'),
    );
    const child = spawn(process.execPath, ['--import', TSX_LOADER, script], {
      env: rcloneTestEnv(),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve) =>
      child.stdout!.on('data', (d: Buffer) => d.toString().includes('listed') && resolve()),
    );
    const below = descendantsOf(child.pid!);
    expect(below.length).toBeGreaterThan(0);
    child.kill('SIGKILL');
    await waitFor(() => below.every((pid) => !isRunning(pid)), 'the rclone processes to end', 10_000);
  });

  it('says so when rclone is missing', async () => {
    const d = destination('disk:/tmp', { binary: path.join(work, 'no-such-rclone') });
    await expect(d.list()).rejects.toThrow(
      /rclone is not installed \(no '.*no-such-rclone' found\); install it/,
    );
  });
});

interface CorruptingProxy {
  port: number;
  flipped: number;
  /** The next PUT's body gets one byte flipped on its way to the server, as bad memory or a bad NIC would. */
  flipNextUpload(): void;
  close(): Promise<void>;
}

async function corruptingProxy(targetPort: number): Promise<CorruptingProxy> {
  let armed = false;
  const state = { flipped: 0 };
  const server = http.createServer((req, res) => {
    const flip = armed && req.method === 'PUT' && !req.url?.includes('.litekeep-meta');
    if (flip) armed = false;
    const upstream = http.request(
      { host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    let done = false;
    req.on('data', (chunk: Buffer) => {
      if (flip && !done) {
        chunk[Math.floor(chunk.length / 2)] ^= 0x01;
        done = true;
        state.flipped += 1;
      }
      upstream.write(chunk);
    });
    req.on('end', () => upstream.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    get flipped() {
      return state.flipped;
    },
    flipNextUpload() {
      armed = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
