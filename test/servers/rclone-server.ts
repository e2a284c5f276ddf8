import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** rclone's environment for tests: no user config, no AWS_CA_BUNDLE (rclone 1.60 refuses it). */
export function rcloneTestEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, RCLONE_CONFIG: '/nonexistent/rclone.conf', ...extra };
  delete env.AWS_CA_BUNDLE;
  for (const key of Object.keys(env)) if (key.startsWith('RCLONE_CONFIG_')) delete env[key];
  return env;
}

/** rclone's reversible "obscured" form of a password, as its config files hold them. */
export function obscure(password: string): string {
  return execFileSync('rclone', ['obscure', password], { env: rcloneTestEnv(), encoding: 'utf8' }).trim();
}

export interface RcloneServer {
  kind: 'webdav' | 'sftp';
  /** The folder it serves: what a client's uploads become on disk. */
  dir: string;
  host: string;
  port: number;
  user: string;
  pass: string;
  /** For `sftp`: the server's host key (`<type> <base64>`), for a known_hosts line. */
  hostPublicKey?: string;
  /** Kills the server outright (SIGKILL), as a crash or a power cut would; waits until it is gone. */
  kill(): Promise<void>;
  /** Starts it again on the same port, serving the same folder. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A real server made by `rclone serve webdav|sftp` on loopback, with a user and password, serving a temp folder.
 * Ready once rclone says it listens (no fixed wait).
 */
export async function startRcloneServer(
  kind: 'webdav' | 'sftp',
  options: { user?: string; pass?: string; dir?: string } = {},
): Promise<RcloneServer> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `litekeep-rclone-${kind}-`));
  const dir = options.dir ?? path.join(work, 'data');
  fs.mkdirSync(dir, { recursive: true });
  const user = options.user ?? 'litekeep';
  const pass = options.pass ?? 'correct horse';
  let hostPublicKey: string | undefined;
  const extra: string[] = [];
  if (kind === 'sftp') {
    // An ed25519 host key made here (rclone reads PKCS#8), so that no ssh-keygen is needed.
    const key = path.join(work, 'host_ed25519');
    const pair = crypto.generateKeyPairSync('ed25519');
    fs.writeFileSync(key, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    const raw = (pair.publicKey.export({ format: 'der', type: 'spki' }) as Buffer).subarray(-32);
    const blob = Buffer.concat([lengthPrefixed(Buffer.from('ssh-ed25519')), lengthPrefixed(raw)]);
    hostPublicKey = `ssh-ed25519 ${blob.toString('base64')}`;
    // Its own host key and no authorized_keys: nothing from ~/.ssh or ~/.cache is read or written.
    const authorizedKeys = path.join(work, 'authorized_keys');
    fs.writeFileSync(authorizedKeys, '');
    extra.push('--key', key, '--authorized-keys', authorizedKeys);
  }
  let child: ChildProcess | undefined;
  let port = 0;

  const start = async () => {
    const proc = spawn(
      'rclone',
      ['serve', kind, dir, '--addr', `127.0.0.1:${port}`, '--user', user, '--pass', pass, ...extra],
      {
        env: rcloneTestEnv({ RCLONE_CACHE_DIR: path.join(work, 'cache') }),
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    child = proc;
    // A test process that ends without closing its servers (a failed beforeAll) must not leave them running.
    const orphan = () => proc.kill('SIGKILL');
    process.once('exit', orphan);
    proc.once('exit', () => process.off('exit', orphan));
    port = await new Promise<number>((resolve, reject) => {
      let log = '';
      const onData = (d: Buffer) => {
        log += d.toString();
        const m = /(?:Server started on http:\/\/|SFTP server listening on )127\.0\.0\.1:(\d+)/.exec(log);
        if (m) {
          proc.stderr!.off('data', onData);
          proc.stderr!.resume();
          resolve(Number(m[1]));
        }
      };
      proc.stderr!.on('data', onData);
      proc.once('exit', (code) => reject(new Error(`rclone serve ${kind} exited with ${code}: ${log}`)));
    });
  };
  const stop = async (signal: NodeJS.Signals) => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill(signal);
    });
  };
  try {
    await start();
  } catch (error) {
    fs.rmSync(work, { recursive: true, force: true });
    throw error;
  }
  return {
    kind,
    dir,
    host: '127.0.0.1',
    get port() {
      return port;
    },
    user,
    pass,
    hostPublicKey,
    kill: () => stop('SIGKILL'),
    restart: start,
    async close() {
      await stop('SIGTERM');
      fs.rmSync(work, { recursive: true, force: true });
    },
  };
}

/** An rclone config file section for a server (the password obscured, as rclone keeps it). */
export function remoteSection(
  name: string,
  server: RcloneServer,
  overrides: Record<string, string> = {},
): string {
  const settings: Record<string, string> =
    server.kind === 'webdav'
      ? { type: 'webdav', url: `http://127.0.0.1:${server.port}/`, vendor: 'other', user: server.user }
      : { type: 'sftp', host: '127.0.0.1', port: String(server.port), user: server.user };
  Object.assign(settings, { pass: obscure(server.pass) }, overrides);
  return `[${name}]\n${Object.entries(settings)
    .map(([k, v]) => `${k} = ${v}`)
    .join('\n')}\n`;
}

/** An SSH wire-format string: a 4-byte big-endian length, then the bytes. */
function lengthPrefixed(bytes: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}
