import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/index.js';
import { runCli } from '../helpers/cli.js';
import { makeDatabase, tempDir } from '../helpers/db.js';
import { startRecorder, type Recorder } from '../servers/http-recorder.js';
import { s3DestinationEntry, s3Operation, startS3Server } from '../servers/s3-server.js';

/** JSON read back from the CLI; the expectations below check its shape. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

let ntfy: Recorder;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  ntfy = await startRecorder();
});
afterAll(async () => {
  for (const f of cleanups.reverse()) await f();
  await ntfy?.close();
});

/** A server that accepts connections and never says a word: a blackholed or wedged endpoint. */
async function silentServer(): Promise<string> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

/**
 * A server that answers every request with 200 and then trickles its body a byte at a time, forever: never
 * idle, never done. Only a ceiling on the whole run ends that.
 */
async function tricklingServer(): Promise<string> {
  const timers = new Set<NodeJS.Timeout>();
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/xml' });
      const timer = setInterval(() => res.write(' '), 100);
      timers.add(timer);
      res.on('close', () => {
        clearInterval(timer);
        timers.delete(timer);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearInterval(t);
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

/** A proxy before the test S3 server that, once `stall` is set, sends the first bytes of downloads only. */
async function stallingS3(): Promise<{ endpoint: string; stall(): void }> {
  const s3 = await startS3Server();
  const target = new URL(s3.endpoint);
  let stalling = false;
  const proxy = http.createServer((req, res) => {
    const upstream = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        if (stalling && s3Operation(req.method ?? 'GET', req.url ?? '/') === 'GetObject') {
          up.once('data', (chunk: Buffer) => {
            res.write(chunk.subarray(0, 100));
            up.pause();
          });
          return;
        }
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    proxy.closeAllConnections();
    await new Promise<void>((resolve) => proxy.close(() => resolve()));
    await s3.close();
  });
  return {
    endpoint: `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`,
    stall: () => (stalling = true),
  };
}

function workspace(endpoint: string): { dir: string; topic: string } {
  const dir = tempDir('litekeep-timeouts-');
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  makeDatabase(path.join(dir, 'app.db'), 50);
  const topic = path.basename(dir);
  const config = {
    database: 'app.db',
    backupDir: 'backups',
    compression: { algorithm: 'none' },
    destinations: [
      s3DestinationEntry({
        endpoint,
        bucket: 'litekeep-test',
        accessKeyId: 'S3RVER',
        secretAccessKey: 'S3RVER',
      }),
    ],
    notify: { ntfy: { server: ntfy.url, topic }, attempts: 1 },
  };
  fs.writeFileSync(path.join(dir, 'litekeep.yml'), JSON.stringify(config, null, 2));
  return { dir, topic };
}

describe('nothing waits forever', () => {
  it('an S3 endpoint that accepts connections and never answers fails after idleTimeout (exit 3)', async () => {
    const w = workspace(await silentServer());
    const r = await runCli(['backup', '--json'], { cwd: w.dir, env: { LITEKEEP_IDLE_TIMEOUT: '1s' } });
    expect(r.code, r.stderr).toBe(3);
    const out = JSON.parse(r.stdout) as Json;
    expect(out.status).toBe('partial');
    const bucket = out.destinations.find((d: Json) => d.destination === 'bucket');
    expect(bucket.status).toBe('failed');
    expect(bucket.error).toMatch(
      /no answer from S3 endpoint http:\/\/127\.0\.0\.1:\d+ for 1s \(idleTimeout\)/,
    );
    expect(fs.existsSync(path.join(w.dir, 'backups', out.file))).toBe(true);
  });

  it('an S3 download that stalls mid-body ends verify and restore after idleTimeout', async () => {
    const s3 = await stallingS3();
    const w = workspace(s3.endpoint);
    const made = await runCli(['backup', '--json'], { cwd: w.dir });
    expect(made.code, made.stderr).toBe(0);
    s3.stall();
    const env = { LITEKEEP_IDLE_TIMEOUT: '1s' };
    const verify = await runCli(['verify', '--from', 'bucket', '--json'], { cwd: w.dir, env });
    expect(verify.code, verify.stderr).toBe(1);
    const [result] = JSON.parse(verify.stdout).results as Json[];
    // A download that stalls says nothing about the backup: no verdict (it is not set aside).
    expect(result).toMatchObject({ status: 'error', source: 'bucket' });
    expect(result.error).toMatch(/download of backup-.* from bucket stalled: no data for 1s \(idleTimeout\)/);
    const target = path.join(w.dir, 'restored.db');
    const restore = await runCli(['restore', '--from', 'bucket', '--to', target], { cwd: w.dir, env });
    expect(restore.code).toBe(1);
    expect(restore.stderr).toMatch(/stalled: no data for 1s \(idleTimeout\)/);
    expect(fs.existsSync(target)).toBe(false);
  });

  it('a run still going after runTimeout is aborted, recorded and notified; the lock is free again', async () => {
    const w = workspace(await tricklingServer());
    const env = { LITEKEEP_IDLE_TIMEOUT: '1s', LITEKEEP_RUN_TIMEOUT: '6s' };
    const r = await runCli(['backup', '--json'], { cwd: w.dir, env });
    // The local backup was made before the upload hung: partly done.
    expect(r.code, r.stderr).toBe(3);
    const out = JSON.parse(r.stdout) as Json;
    expect(out.status).toBe('partial');
    expect(out.error).toMatch(/^the backup run of app was still going after runTimeout 6s and was aborted/);
    expect(out.destinations.find((d: Json) => d.destination === 'bucket').status).toBe('failed');

    const catalog = Catalog.open(path.join(w.dir, 'backups'));
    const [run] = catalog.listRuns(1);
    catalog.close();
    expect(run).toMatchObject({ status: 'partial', exitCode: 3 });
    expect(run.error).toContain('runTimeout 6s');
    const alert = ntfy.requests.filter((q) => q.path === `/${w.topic}`).at(-1)!;
    expect(alert.body).toContain('runTimeout 6s');
    // Temp files are gone, and the next run can take the lock at once.
    const left = fs.readdirSync(path.join(w.dir, 'backups')).filter((f) => f.endsWith('.tmp'));
    expect(left).toEqual([]);
    const next = await runCli(['backup', '--json', '--no-upload'], { cwd: w.dir, env });
    expect(next.code, next.stderr).toBe(0);
  });
});
