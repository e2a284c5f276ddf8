import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomArtifact, readAll, tree, waitFor } from '../helpers/remote.js';
import { checkHostKey, fingerprint, parseKnownHosts } from '../../src/destinations/known-hosts.js';
import { SftpDestination, type SftpDestinationOptions } from '../../src/destinations/sftp.js';
import { RCLONE_MISSING, SSHD_MISSING, titled } from '../helpers/programs.js';
import { startRcloneServer, type RcloneServer } from '../servers/rclone-server.js';
import { startSshServer, type SshServer } from '../servers/sshd.js';

const MiB = 1024 * 1024;
const NAME = 'backup-2026-03-01-030000.db.zst';
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'litekeep-sftp-test-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function knownHosts(...lines: string[]): string {
  const file = path.join(work, `known_hosts-${crypto.randomUUID()}`);
  fs.writeFileSync(file, lines.map((l) => `${l}\n`).join(''));
  return file;
}

describe('known_hosts', () => {
  const blob = Buffer.concat([
    Buffer.from([0, 0, 0, 11]),
    Buffer.from('ssh-ed25519'),
    Buffer.from([0, 0, 0, 32]),
    crypto.randomBytes(32),
  ]);
  const other = Buffer.concat([blob.subarray(0, 19), crypto.randomBytes(32)]);
  const key = blob.toString('base64');

  it('knows a host by name and port, plain, in a list, by wildcard or hashed; a negation wins', () => {
    const salt = crypto.randomBytes(20);
    const hashed = crypto.createHmac('sha1', salt).update('[10.0.0.5]:2222').digest('base64');
    const lines = parseKnownHosts(
      [
        '# comment',
        `backup.example,[backup.example]:2200 ssh-ed25519 ${key}`,
        `|1|${salt.toString('base64')}|${hashed} ssh-ed25519 ${key}`,
        `*.lan,!evil.lan ssh-ed25519 ${key}`,
      ].join('\n'),
    );
    expect(checkHostKey(lines, 'backup.example', 22, blob)).toEqual({ status: 'known' });
    expect(checkHostKey(lines, 'backup.example', 2200, blob)).toEqual({ status: 'known' });
    expect(checkHostKey(lines, 'backup.example', 2222, blob)).toEqual({ status: 'unknown' });
    expect(checkHostKey(lines, '10.0.0.5', 2222, blob)).toEqual({ status: 'known' });
    expect(checkHostKey(lines, '10.0.0.5', 22, blob)).toEqual({ status: 'unknown' });
    expect(checkHostKey(lines, 'nas.lan', 22, blob)).toEqual({ status: 'known' });
    expect(checkHostKey(lines, 'evil.lan', 22, blob)).toEqual({ status: 'unknown' });
  });

  it('another key of the same type for a known host is a changed key; a revoked key is refused', () => {
    const lines = parseKnownHosts(
      `nas ssh-ed25519 ${key}\n@revoked * ssh-ed25519 ${other.toString('base64')}`,
    );
    expect(checkHostKey(lines, 'nas', 22, other)).toEqual({ status: 'revoked' });
    const changed = parseKnownHosts(`nas ssh-ed25519 ${key}`);
    expect(checkHostKey(changed, 'nas', 22, other)).toEqual({
      status: 'changed',
      knownTypes: ['ssh-ed25519'],
    });
    expect(fingerprint(blob)).toBe(
      `SHA256:${crypto.createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`,
    );
  });
});

describe.skipIf(SSHD_MISSING)(titled('SftpDestination against OpenSSH', SSHD_MISSING), () => {
  let sshd: SshServer;
  let sftpOnly: SshServer;
  beforeAll(async () => {
    [sshd, sftpOnly] = await Promise.all([startSshServer(), startSshServer({ sftpOnly: true })]);
  });
  afterAll(async () => {
    await Promise.all([sshd?.close(), sftpOnly?.close()]);
  });

  function destination(server: SshServer, overrides: Partial<SftpDestinationOptions> = {}): SftpDestination {
    return new SftpDestination({
      host: server.host,
      port: server.port,
      user: server.user,
      path: server.dir,
      databaseName: 'app',
      machine: 'web1',
      keyFile: server.clientKey,
      knownHosts: knownHosts(server.knownHostsLine),
      agent: false,
      ...overrides,
    });
  }

  it('uploads, lists with metadata, downloads the same bytes and removes; the copy is on the server, private', async () => {
    const d = destination(sshd, {
      path: path.join(sshd.dir, 'roundtrip'),
      knownHosts: knownHosts(sshd.hashedKnownHostsLine),
    });
    const { file, data, metadata } = randomArtifact(work, 5 * MiB + 3);
    const put = await d.put(file, NAME, metadata);
    expect(put.id).toBe(`sftp://${sshd.user}@127.0.0.1:${sshd.port}${sshd.dir}/roundtrip/app/web1/${NAME}`);
    const hostDir = path.join(sshd.dir, 'roundtrip', 'app', 'web1');
    expect(fs.readFileSync(path.join(hostDir, NAME)).equals(data)).toBe(true);
    expect(fs.statSync(path.join(hostDir, NAME)).mode & 0o777).toBe(0o600);
    expect(fs.statSync(hostDir).mode & 0o777).toBe(0o700);
    expect(JSON.parse(fs.readFileSync(path.join(hostDir, '.litekeep-meta', `${NAME}.json`), 'utf8'))).toEqual(
      metadata,
    );
    expect(tree(hostDir)).toEqual([NAME, `.litekeep-meta/${NAME}.json`].sort());
    const listed = await d.list();
    expect(listed).toEqual([
      expect.objectContaining({ name: NAME, id: put.id, host: 'web1', bytes: data.length, metadata }),
    ]);
    expect((await readAll(await d.get(listed[0]))).equals(data)).toBe(true);
    await d.remove(listed[0]);
    expect(tree(hostDir)).toEqual([]);
  });

  it("never overwrites: the same bytes again are a success, other bytes under this host's name are refused", async () => {
    const where = path.join(sshd.dir, 'clash');
    const d = destination(sshd, { path: where });
    const first = randomArtifact(work, 3000);
    await d.put(first.file, NAME, first.metadata);
    await d.put(first.file, NAME, first.metadata);
    const other = randomArtifact(work, 3000);
    await expect(d.put(other.file, NAME, other.metadata)).rejects.toThrow(
      /refused: sftp:\/\/.*\/clash\/app\/web1\/backup-2026-03-01-030000\.db\.zst already holds other bytes .*give each machine its own 'host'/,
    );
    expect(fs.readFileSync(path.join(where, 'app', 'web1', NAME)).equals(first.data)).toBe(true);
    // A copy whose sidecar was never written (the process died right after renaming it into place) is
    // recognised by its bytes, and gets its sidecar.
    fs.rmSync(path.join(where, 'app', 'web1', '.litekeep-meta', `${NAME}.json`));
    await expect(d.put(other.file, NAME, other.metadata)).rejects.toThrow(
      /already holds other bytes \(sha256 unknown/,
    );
    await d.put(first.file, NAME, first.metadata);
    expect(fs.existsSync(path.join(where, 'app', 'web1', '.litekeep-meta', `${NAME}.json`))).toBe(true);
    // Another machine beside it; not ours to remove.
    await destination(sshd, { path: where, machine: 'web2' }).put(other.file, NAME, other.metadata);
    const theirs = (await d.list()).find((o) => o.host === 'web2')!;
    await expect(d.remove(theirs)).rejects.toThrow(/belongs to host 'web2'/);
    expect(fs.existsSync(path.join(where, 'app', 'web2', NAME))).toBe(true);
  });

  it('checks the copy with a hash computed on the server, and on an sftp-only account by reading it back', async () => {
    for (const server of [sshd, sftpOnly]) {
      const d = destination(server, { path: path.join(server.dir, 'verified') });
      const { file, data, metadata } = randomArtifact(work, 2 * MiB);
      await d.put(file, NAME, metadata);
      expect(fs.readFileSync(path.join(server.dir, 'verified', 'app', 'web1', NAME)).equals(data)).toBe(true);
    }
  });

  it('does not count a copy whose hash on the server disagrees, and removes it', async () => {
    // A server whose md5sum reports other bytes than it holds, as a failing disk would make it.
    const bin = path.join(work, 'lying-bin');
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(path.join(bin, 'md5sum'), `#!/bin/sh\necho ${'0'.repeat(32)}  "$1"\n`, { mode: 0o755 });
    const lying = await startSshServer({ setEnv: { PATH: `${bin}:/usr/bin:/bin` } });
    try {
      const where = path.join(lying.dir, 'lying');
      const { file, metadata } = randomArtifact(work, 100_000);
      await expect(destination(lying, { path: where }).put(file, NAME, metadata)).rejects.toThrow(
        new RegExp(
          `^upload of ${NAME.replace(/\./g, '\\.')} to sftp failed verification: the server's md5 0{32} is not the local file's [0-9a-f]{32}; the remote copy was removed`,
        ),
      );
      expect(tree(where)).toEqual([]);
    } finally {
      await lying.close();
    }
  });

  it('checks with sha1 on a server without md5sum (the local file read again with sha256), and refuses a wrong sha1', async () => {
    const bin = path.join(work, 'no-md5-bin');
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(path.join(bin, 'md5sum'), '#!/bin/sh\necho "md5sum: not found" >&2\nexit 127\n', {
      mode: 0o755,
    });
    const server = await startSshServer({ setEnv: { PATH: `${bin}:/usr/bin:/bin` } });
    try {
      const good = path.join(server.dir, 'sha1');
      const { file, data, metadata } = randomArtifact(work, 3 * MiB);
      await destination(server, { path: good }).put(file, NAME, metadata);
      expect(fs.readFileSync(path.join(good, 'app', 'web1', NAME)).equals(data)).toBe(true);
      // Now its sha1sum reports other bytes than it holds.
      fs.writeFileSync(path.join(bin, 'sha1sum'), `#!/bin/sh\necho ${'0'.repeat(40)}  "$1"\n`, {
        mode: 0o755,
      });
      const bad = path.join(server.dir, 'bad-sha1');
      await expect(destination(server, { path: bad }).put(file, NAME, metadata)).rejects.toThrow(
        /failed verification: the server's sha1 0{40} is not the local file's [0-9a-f]{40}; the remote copy was removed/,
      );
      expect(tree(bad)).toEqual([]);
    } finally {
      await server.close();
    }
  });

  it('refuses a server whose key is unknown, changed or revoked, and a missing known_hosts, naming the fix', async () => {
    const { file, metadata } = randomArtifact(work, 100);
    const otherKey = 'AAAAC3NzaC1lZDI1NTE5AAAAIGm2Yw2bPG1p2xI6b6y6q6jQbR6m4cQ2Fh6Dq1n3c1m2';
    const cases: [string, string | undefined, RegExp][] = [
      [
        'unknown',
        knownHosts('[127.0.0.1]:1 ' + sshd.knownHostsLine.split(' ').slice(1).join(' ')),
        new RegExp(
          `is not a known host \\(not in .*; it offered ssh-ed25519 key SHA256:[A-Za-z0-9+/]+\\); refusing to connect — .*ssh-keyscan -p ${sshd.port} -t ssh-ed25519 127\\.0\\.0\\.1 >> `,
        ),
      ],
      [
        'changed',
        knownHosts(`[127.0.0.1]:${sshd.port} ssh-ed25519 ${otherKey}`),
        /has another ssh-ed25519 key for it .*refusing to connect — .*ssh-keygen -R/,
      ],
      [
        'revoked',
        knownHosts(sshd.knownHostsLine, `@revoked ${sshd.knownHostsLine}`),
        /marks @revoked; refusing to connect/,
      ],
      [
        'missing',
        path.join(work, 'no-such-known-hosts'),
        /there is no .*no-such-known-hosts; .*refusing to connect/,
      ],
    ];
    for (const [label, file_, pattern] of cases) {
      const d = destination(sshd, { path: path.join(sshd.dir, `refused-${label}`), knownHosts: file_ });
      const error = await d.put(file, NAME, metadata).catch((e: Error) => e);
      expect(error, label).toBeInstanceOf(Error);
      expect((error as Error).message, label).toMatch(pattern);
      expect((error as Error).message.split('\n'), label).toHaveLength(1);
      expect(fs.existsSync(path.join(sshd.dir, `refused-${label}`)), label).toBe(false);
    }
  });

  it('refuses a key the server does not accept, naming what was tried', async () => {
    const d = destination(sshd, { keyFile: sshd.strangerKey });
    await expect(d.list()).rejects.toThrow(
      new RegExp(`refused user '${sshd.user}' \\(tried key ${sshd.strangerKey}\\); check 'user' and the key`),
    );
  });

  it('signs in through an ssh-agent', async () => {
    const socket = path.join(work, 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
    try {
      await waitFor(() => fs.existsSync(socket));
      execFileSync('ssh-add', ['-q', sshd.clientKey], {
        env: { ...process.env, SSH_AUTH_SOCK: socket },
        stdio: 'ignore',
      });
      const d = destination(sshd, { keyFile: undefined, agent: socket, path: path.join(sshd.dir, 'agent') });
      const { file, data, metadata } = randomArtifact(work, 1000);
      await d.put(file, NAME, metadata);
      expect(fs.readFileSync(path.join(sshd.dir, 'agent', 'app', 'web1', NAME)).equals(data)).toBe(true);
    } finally {
      agent.kill();
    }
  });

  it('a server killed mid-upload leaves no copy that counts; the next run sweeps the partial file and uploads', async () => {
    const where = path.join(sshd.dir, 'killed');
    const d = destination(sshd, { path: where });
    const { file, data, metadata } = randomArtifact(work, 64 * MiB);
    const hostDir = path.join(where, 'app', 'web1');
    const upload = d.put(file, NAME, metadata).then(
      () => undefined,
      (e: Error) => e,
    );
    await waitFor(() =>
      tree(hostDir).some((f) => f.endsWith('.tmp') && fs.statSync(path.join(hostDir, f)).size > MiB),
    );
    await sshd.kill();
    const error = await upload;
    expect(error).toBeInstanceOf(Error);
    expect(error!.message.split('\n')).toHaveLength(1);
    expect(error!.message).toMatch(
      /^upload of backup-2026-03-01-030000\.db\.zst on sftp failed: the connection to 127\.0\.0\.1:\d+ broke/,
    );
    await sshd.restart();
    const partial = tree(hostDir);
    expect(partial).toHaveLength(1);
    expect(partial[0]).toMatch(/^\.backup-2026-03-01-030000\.db\.zst\.\d+\.[0-9a-z]+\.tmp$/);
    expect(fs.statSync(path.join(hostDir, partial[0])).size).toBeLessThan(data.length);
    expect(await d.list()).toEqual([]);

    await d.put(file, NAME, metadata);
    expect(tree(hostDir)).toEqual([NAME, `.litekeep-meta/${NAME}.json`].sort());
    expect(fs.readFileSync(path.join(hostDir, NAME)).equals(data)).toBe(true);
  });
});

describe.skipIf(RCLONE_MISSING)(titled('SftpDestination against rclone serve sftp', RCLONE_MISSING), () => {
  let server: RcloneServer;
  beforeAll(async () => {
    server = await startRcloneServer('sftp');
  });
  afterAll(async () => {
    await server?.close();
  });

  function destination(overrides: Partial<SftpDestinationOptions> = {}): SftpDestination {
    return new SftpDestination({
      host: '127.0.0.1',
      port: server.port,
      user: server.user,
      password: server.pass,
      path: 'backups',
      databaseName: 'app',
      machine: 'web1',
      knownHosts: knownHosts(`[127.0.0.1]:${server.port} ${server.hostPublicKey}`),
      agent: false,
      ...overrides,
    });
  }

  it('signs in with a password, uploads (in order, as this server needs), lists, downloads', async () => {
    const d = destination();
    const { file, data, metadata } = randomArtifact(work, 4 * MiB + 5);
    await d.put(file, NAME, metadata);
    expect(fs.readFileSync(path.join(server.dir, 'backups', 'app', 'web1', NAME)).equals(data)).toBe(true);
    const listed = await d.list();
    expect(listed).toEqual([expect.objectContaining({ name: NAME, metadata })]);
    expect((await readAll(await d.get(listed[0]))).equals(data)).toBe(true);
  });

  it('a wrong password is refused in one line, without the password', async () => {
    const d = destination({ password: 'not the password' });
    const error = await d.list().catch((e: Error) => e);
    expect((error as Error).message).toMatch(
      new RegExp(
        `^listing .* on sftp failed: the SSH server 127\\.0\\.0\\.1:${server.port} refused user 'litekeep' \\(tried the password\\)`,
      ),
    );
    expect((error as Error).message).not.toContain('not the password');
  });

  it('an unreachable server is named', async () => {
    await server.kill();
    try {
      await expect(destination().list()).rejects.toThrow(
        new RegExp(
          `cannot reach the SSH server 127\\.0\\.0\\.1:${server.port} \\(ECONNREFUSED\\); check 'host' and 'port'`,
        ),
      );
    } finally {
      await server.restart();
    }
  });
});
