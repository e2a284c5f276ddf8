// Upload throughput of litekeep's rclone and sftp destinations against `rclone copyto` of the same file to the
// same server, in one run: rclone's local backend, `rclone serve webdav`, `rclone serve sftp`, and Debian's
// OpenSSH server when it is installed and this runs as root. Run by `npm run bench` (through tsx, to reuse the
// test servers), or: npm run build && node --import tsx bench/remote.ts [--size MiB (512)] [--runs N (2)]
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { RcloneDestination } from '../src/destinations/rclone.js';
import { SftpDestination } from '../src/destinations/sftp.js';
import type { ArtifactMetadata, Destination } from '../src/destinations/types.js';
import { rcloneTestEnv, remoteSection, startRcloneServer } from '../test/servers/rclone-server.js';
import { startSshServer, type SshServer } from '../test/servers/sshd.js';

const { values } = parseArgs({
  options: { size: { type: 'string', default: '512' }, runs: { type: 'string', default: '2' } },
});
const MiB = 1024 * 1024;
const size = Number(values.size) * MiB;
const runs = Number(values.runs);
if (spawnSync('rclone', ['version']).error) {
  console.log('rclone not found (apt-get install -y rclone): skipping the rclone and sftp benchmark');
  process.exit(0);
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'litekeep-bench-remote-'));
const file = path.join(work, 'backup-2026-01-01-000000.db');
const env = rcloneTestEnv();

function writeRandomFile(target: string, bytes: number): string {
  // Random bytes: a compressed or encrypted backup is incompressible too.
  const fd = fs.openSync(target, 'w', 0o600);
  const block = crypto.randomBytes(MiB);
  const hash = crypto.createHash('sha256');
  for (let done = 0; done < bytes; done += MiB) {
    block.writeUInt32LE(done / MiB, 0); // keep blocks distinct
    const n = Math.min(MiB, bytes - done);
    fs.writeSync(fd, block, 0, n);
    hash.update(block.subarray(0, n));
  }
  fs.closeSync(fd);
  return hash.digest('hex');
}

function sha256File(target: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(target)).digest('hex');
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const millis = (ms: number) => `${ms.toFixed(0)} ms`;

async function timed(work_: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await work_();
  return performance.now() - started;
}

function rclone(args: string[], stdinFile?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('rclone', args, { env, stdio: [stdinFile ? 'pipe' : 'ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    if (stdinFile) fs.createReadStream(stdinFile).pipe(child.stdin!);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`rclone ${args[0]}: ${err.trim()}`)),
    );
  });
}

console.log(`remote bench: ${values.size} MiB random file, best of ${runs}, servers on loopback`);
const sha256 = writeRandomFile(file, size);
const metadata: ArtifactMetadata = {
  sha256,
  bytes: size,
  sourceName: 'bench',
  backupTime: new Date().toISOString(),
  compression: 'none',
  encryption: 'none',
  litekeepVersion: 'bench',
};

const webdav = await startRcloneServer('webdav');
const rcloneSftp = await startRcloneServer('sftp');
let openssh: SshServer | undefined;
if (process.getuid?.() === 0 && fs.existsSync('/usr/sbin/sshd')) openssh = await startSshServer();
const knownHosts = path.join(work, 'known_hosts');
fs.writeFileSync(
  knownHosts,
  [`[127.0.0.1]:${rcloneSftp.port} ${rcloneSftp.hostPublicKey}`, openssh?.knownHostsLine ?? ''].join('\n'),
);
const config = path.join(work, 'rclone.conf');
fs.writeFileSync(
  config,
  [
    '[disk]\ntype = local\n',
    remoteSection('web', webdav),
    remoteSection('box', rcloneSftp, { known_hosts_file: knownHosts }),
    openssh
      ? `[openssh]\ntype = sftp\nhost = 127.0.0.1\nport = ${openssh.port}\nuser = ${openssh.user}\nkey_file = ${openssh.clientKey}\nknown_hosts_file = ${knownHosts}\n`
      : '',
  ].join('\n'),
);
env.RCLONE_CONFIG = config;

interface Target {
  label: string;
  /** rclone's name for the place, for `rclone copyto`. */
  remote: string;
  /** Where uploads land on this machine's disk, to check them and clean up. */
  disk: string;
  destination: (folder: string) => Destination;
}

const targets: Target[] = [
  {
    label: 'rclone destination, local backend',
    remote: `disk:${path.join(work, 'disk')}`,
    disk: path.join(work, 'disk'),
    destination: (folder) =>
      new RcloneDestination({
        remote: `disk:${path.join(work, 'disk', folder)}`,
        databaseName: 'b',
        host: 'h',
        configPath: config,
        env,
      }),
  },
  {
    label: 'rclone destination, rclone serve webdav',
    remote: 'web:',
    disk: webdav.dir,
    destination: (folder) =>
      new RcloneDestination({
        remote: `web:${folder}`,
        databaseName: 'b',
        host: 'h',
        configPath: config,
        env,
      }),
  },
  {
    label: 'rclone destination, rclone serve sftp',
    remote: 'box:',
    disk: rcloneSftp.dir,
    destination: (folder) =>
      new RcloneDestination({
        remote: `box:${folder}`,
        databaseName: 'b',
        host: 'h',
        configPath: config,
        env,
      }),
  },
  {
    label: 'sftp destination, rclone serve sftp',
    remote: 'box:',
    disk: rcloneSftp.dir,
    destination: (folder) =>
      new SftpDestination({
        host: '127.0.0.1',
        port: rcloneSftp.port,
        user: rcloneSftp.user,
        password: rcloneSftp.pass,
        path: folder,
        databaseName: 'b',
        machine: 'h',
        knownHosts,
        agent: false,
      }),
  },
];
if (openssh) {
  const server = openssh;
  targets.push(
    {
      label: 'rclone destination, OpenSSH',
      remote: `openssh:${server.dir}`,
      disk: server.dir,
      destination: (folder) =>
        new RcloneDestination({
          remote: `openssh:${server.dir}/${folder}`,
          databaseName: 'b',
          host: 'h',
          configPath: config,
          env,
        }),
    },
    {
      label: 'sftp destination, OpenSSH',
      remote: `openssh:${server.dir}`,
      disk: server.dir,
      destination: (folder) =>
        new SftpDestination({
          host: '127.0.0.1',
          port: server.port,
          user: server.user,
          keyFile: server.clientKey,
          path: `${server.dir}/${folder}`,
          databaseName: 'b',
          machine: 'h',
          knownHosts,
          agent: false,
        }),
    },
  );
} else {
  console.log('OpenSSH rows skipped: they need /usr/sbin/sshd (openssh-server) and root');
}

const clean = (dir: string) => {
  for (const entry of fs.readdirSync(dir)) fs.rmSync(path.join(dir, entry), { recursive: true, force: true });
};

try {
  console.log(
    `${'destination'.padEnd(42)} ${'litekeep'.padStart(9)} ${'copyto'.padStart(9)} ${'ratio'.padStart(6)}`,
  );
  for (const [index, target] of targets.entries()) {
    fs.mkdirSync(target.disk, { recursive: true });
    let best = { litekeep: Infinity, copyto: Infinity };
    for (let run = 0; run < runs; run++) {
      // Alternate who goes first, so that neither always gets the warmer cache.
      const order = run % 2 === 0 ? ['litekeep', 'copyto'] : ['copyto', 'litekeep'];
      for (const who of order) {
        clean(target.disk);
        if (who === 'litekeep') {
          // A folder of its own each time: rclone's servers cache listings, so one emptied behind their back
          // would still look full.
          const folder = `lk${index}-${run}`;
          const d = target.destination(folder);
          let id = '';
          const ms = await timed(async () => (id = (await d.put(file, path.basename(file), metadata)).id));
          const stored = path.join(target.disk, folder, 'b', 'h', path.basename(file));
          if (sha256File(stored) !== sha256) throw new Error(`${target.label}: ${id} holds other bytes`);
          best.litekeep = Math.min(best.litekeep, ms);
        } else {
          const ms = await timed(() =>
            rclone([
              'copyto',
              file,
              `${target.remote}${target.remote.endsWith(':') ? '' : '/'}rc${index}-${run}/copy.db`,
            ]),
          );
          best.copyto = Math.min(best.copyto, ms);
        }
      }
    }
    clean(target.disk);
    console.log(
      `${target.label.padEnd(42)} ${seconds(best.litekeep).padStart(9)} ${seconds(best.copyto).padStart(9)} ${(best.copyto / best.litekeep).toFixed(2).padStart(5)}x`,
    );
    best = { litekeep: Infinity, copyto: Infinity };
  }
  // What one small operation costs: a listing through litekeep's rclone daemon against a separate `rclone`
  // process for it (what litekeep did first), for the choice litekeep made (docs/benchmarks.md).
  for (const target of targets.filter((t) => t.label.startsWith('rclone destination'))) {
    const folder = 'small';
    const d = target.destination(folder) as RcloneDestination;
    await d.list(); // starts the daemon
    const daemon = await timed(async () => {
      for (let i = 0; i < 5; i++) await d.list();
    });
    d.destroy();
    const remote = `${target.remote}${target.remote.endsWith(':') ? '' : '/'}${folder}`;
    const processes = await timed(async () => {
      for (let i = 0; i < 5; i++)
        await rclone(['lsjson', '-R', '--files-only', remote]).catch(() => undefined);
    });
    console.log(
      `${`one listing, ${target.label.replace('rclone destination, ', '')}`.padEnd(42)} ${millis(daemon / 5).padStart(9)} ${millis(processes / 5).padStart(9)}  (rcd / a process each)`,
    );
  }
  // What rcat (streaming from stdin) costs against copyto, for the choice litekeep made (docs/benchmarks.md).
  for (const target of targets.slice(0, 3)) {
    clean(target.disk);
    const rcat = await timed(() =>
      rclone(
        ['rcat', '--size', String(size), `${target.remote}${target.remote.endsWith(':') ? '' : '/'}rcat.db`],
        file,
      ),
    );
    clean(target.disk);
    console.log(
      `${`rclone rcat --size, ${target.label.replace('rclone destination, ', '')}`.padEnd(42)} ${seconds(rcat).padStart(9)}`,
    );
  }
} finally {
  await Promise.all([webdav.close(), rcloneSftp.close(), openssh?.close()]);
  fs.rmSync(work, { recursive: true, force: true });
}
