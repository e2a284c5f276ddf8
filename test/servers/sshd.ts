import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { childrenOf } from '../helpers/programs.js';

export interface SshServer {
  host: string;
  port: number;
  /** The user tests log in as (the one running them: sshd needs root to start, so root). */
  user: string;
  /** A private key the server accepts, and one it does not. */
  clientKey: string;
  strangerKey: string;
  /** `known_hosts` lines for this server: plain, and hashed the way `ssh-keygen -H` writes them. */
  knownHostsLine: string;
  hashedKnownHostsLine: string;
  /** Its folder for tests: an absolute path the test user may write. */
  dir: string;
  /** Kills the server and every session it runs (SIGKILL), as a crash would; waits until they are gone. */
  kill(): Promise<void>;
  restart(): Promise<void>;
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/**
 * Debian's OpenSSH server on a loopback port, with its own config, host key and authorized_keys in a temp folder
 * (nothing of the machine's own ssh setup is read or changed). `sftpOnly` runs it like a backup account:
 * `ForceCommand internal-sftp`, no commands; `setEnv` sets variables of its sessions (a PATH with other tools).
 * Ready once the port accepts connections.
 */
export async function startSshServer(
  options: { sftpOnly?: boolean; setEnv?: Record<string, string> } = {},
): Promise<SshServer> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'litekeep-sshd-'));
  const key = (name: string) => {
    const file = path.join(work, name);
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', file]);
    return file;
  };
  const hostKey = key('host_ed25519');
  const clientKey = key('client_ed25519');
  const strangerKey = key('stranger_ed25519');
  fs.copyFileSync(`${clientKey}.pub`, path.join(work, 'authorized_keys'));
  const dir = path.join(work, 'files');
  fs.mkdirSync(dir);
  // sshd refuses to start without its privilege separation folder (Debian makes it at boot).
  fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const port = await freePort();
  const config = path.join(work, 'sshd_config');
  fs.writeFileSync(
    config,
    [
      'ListenAddress 127.0.0.1',
      `Port ${port}`,
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${path.join(work, 'authorized_keys')}`,
      `PidFile ${path.join(work, 'sshd.pid')}`,
      'UsePAM no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      // The temp folder's owner and modes are not sshd's business here.
      'StrictModes no',
      'Subsystem sftp internal-sftp',
      ...(options.sftpOnly ? ['ForceCommand internal-sftp'] : []),
      ...Object.entries(options.setEnv ?? {}).map(([k, v]) => `SetEnv ${k}=${v}`),
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  const hostPublic = fs.readFileSync(`${hostKey}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
  const knownHostsLine = `[127.0.0.1]:${port} ${hostPublic}`;
  const hashedFile = path.join(work, 'hashed_known_hosts');
  fs.writeFileSync(hashedFile, `${knownHostsLine}\n`);
  execFileSync('ssh-keygen', ['-q', '-H', '-f', hashedFile], { stdio: 'ignore' });
  const hashedKnownHostsLine = fs.readFileSync(hashedFile, 'utf8').trim();

  let child: ChildProcess | undefined;
  const start = async () => {
    const proc = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    // A test process that ends without closing its servers (a failed beforeAll) must not leave them running.
    const orphan = () => killTree(proc.pid!, 'SIGKILL');
    process.once('exit', orphan);
    proc.once('exit', () => process.off('exit', orphan));
    // -e with LogLevel ERROR prints nothing on success: wait until the port accepts connections.
    await new Promise<void>((resolve, reject) => {
      let log = '';
      proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
      const exited = (code: number | null) => reject(new Error(`sshd exited with ${code}: ${log}`));
      proc.once('exit', exited);
      const attempt = (left: number) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.once('connect', () => {
          socket.destroy();
          proc.off('exit', exited);
          resolve();
        });
        socket.once('error', () => {
          socket.destroy();
          if (left === 0) reject(new Error(`sshd did not listen on ${port}: ${log}`));
          else setTimeout(() => attempt(left - 1), 20);
        });
      };
      attempt(500);
    });
  };
  const stop = async (signal: NodeJS.Signals) => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    // The listener and the session processes it forked for each connection.
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      killTree(proc.pid!, signal);
    });
  };
  try {
    await start();
  } catch (error) {
    fs.rmSync(work, { recursive: true, force: true });
    throw error;
  }
  return {
    host: '127.0.0.1',
    port,
    user: os.userInfo().username,
    clientKey,
    strangerKey,
    knownHostsLine,
    hashedKnownHostsLine,
    dir,
    kill: () => stop('SIGKILL'),
    restart: start,
    async close() {
      await stop('SIGTERM');
      fs.rmSync(work, { recursive: true, force: true });
    },
  };
}

/** Signals a process and all its descendants (children first), by pid. */
function killTree(pid: number, signal: NodeJS.Signals): void {
  for (const child of childrenOf(pid)) killTree(child, signal);
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}
