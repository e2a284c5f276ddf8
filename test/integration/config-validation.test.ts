import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { makeDatabase, tempDir } from '../helpers/db.js';
import { s3DestinationEntry, startS3Server, type S3TestServer } from '../servers/s3-server.js';

/** JSON read back from the CLI; the expectations below check its shape. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const LOOPBACK_DNS = pathToFileURL(
  path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'loopback-dns.mjs'),
).href;
const cleanups: (() => Promise<void> | void)[] = [];
let s3: S3TestServer;

beforeAll(async () => {
  s3 = await startS3Server();
});
afterAll(async () => {
  for (const f of cleanups.reverse()) await f();
  await s3?.close();
});

function workspace(s3Settings: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const dir = tempDir('litekeep-config-validation-');
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  makeDatabase(path.join(dir, 'app.db'), 10);
  const config = {
    database: 'app.db',
    backupDir: 'backups',
    compression: { algorithm: 'none' },
    destinations: [s3DestinationEntry(s3, s3Settings)],
    ...extra,
  };
  const file = path.join(dir, 'litekeep.yml');
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
  return { dir, file, backups: path.join(dir, 'backups') };
}

describe('impossible settings stop litekeep before any work', () => {
  it.each([
    [
      'an S3 bucket name that is a URL',
      { bucket: 's3://my-bucket/backups' },
      /^litekeep: invalid destinations\[0\]\.bucket 's3:\/\/my-bucket\/backups' from config file .*litekeep\.yml: not an S3 bucket name: give the bare bucket name/,
    ],
    [
      'an S3 bucket name with a space',
      { bucket: 'my backups' },
      /^litekeep: invalid destinations\[0\]\.bucket 'my backups' from config file .*litekeep\.yml: not an S3 bucket name: a bucket name has only letters/,
    ],
    [
      'an access key without its secret',
      { secretAccessKey: undefined },
      /^litekeep: destinations\[0\] \(s3\) sets accessKeyId but not secretAccessKey from config file .*litekeep\.yml: set both, or neither/,
    ],
    [
      'an endpoint that is not a URL',
      { endpoint: 's3.example.com:9000' },
      /^litekeep: invalid destinations\[0\]\.endpoint 's3\.example\.com:9000' from config file .*: expected a URL such as https:\/\/s3\.example\.com/,
    ],
    [
      'a part size below 5 MiB',
      { partSize: 1024 },
      /^litekeep: invalid destinations\[0\]\.partSize 1024 from config file .*: expected a whole number of bytes from 5242880/,
    ],
  ])(
    '%s: exit 2 with one line naming the key and its source, and no backup made',
    async (_label, settings, message) => {
      const w = workspace({ endpoint: s3.endpoint, ...settings });
      for (const args of [['backup'], ['daemon'], ['status']]) {
        const r = await runCli(args, { cwd: w.dir });
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
        expect(r.stderr).toMatch(message);
        expect(r.stderr.trim().split('\n')).toHaveLength(1);
      }
      expect(fs.existsSync(w.backups)).toBe(false);
    },
  );

  it.each([
    [
      'a format that is neither full nor incremental',
      { format: 'incremantal' },
      /^litekeep: invalid destinations\[0\]\.format 'incremantal' from config file .*: expected full or incremental$/,
    ],
    [
      'a pack size on a full-file destination',
      { packSize: 16777216 },
      /^litekeep: invalid destinations\[0\]\.packSize 16777216 from config file .*: it applies only to format: incremental/,
    ],
    [
      'a pack size below 1 MiB',
      { format: 'incremental', packSize: 4096 },
      /^litekeep: invalid destinations\[0\]\.packSize 4096 from config file .*: expected bytes from 1048576 \(1 MiB\)/,
    ],
  ])('%s (format, packSize): exit 2 with one line, no backup made', async (_label, settings, message) => {
    const w = workspace({ endpoint: s3.endpoint, ...settings });
    const r = await runCli(['backup'], { cwd: w.dir });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr.trim()).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(fs.existsSync(w.backups)).toBe(false);
  });

  it('a webhook URL that does not parse: exit 2 naming the key and the environment variable, secret not shown', async () => {
    const w = workspace({ endpoint: s3.endpoint });
    const r = await runCli(['backup'], {
      cwd: w.dir,
      env: { LITEKEEP_NOTIFY_WEBHOOK_URL: 'hooks.example.com/abc' },
    });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(
      /^litekeep: invalid notify\.webhook\.url \(secret\) from environment \(LITEKEEP_NOTIFY_WEBHOOK_URL\): expected an http\(s\) URL/,
    );
    expect(r.stderr).not.toContain('hooks.example.com/abc');
    expect(fs.existsSync(w.backups)).toBe(false);
  });

  it('an unreachable remote is not a configuration error: the local backup is made, exit 3', async () => {
    const w = workspace({ endpoint: 'http://127.0.0.1:1' });
    const r = await runCli(['backup', '--json'], { cwd: w.dir });
    expect(r.code, r.stderr).toBe(3);
    expect(fs.readdirSync(w.backups).filter((f) => f.startsWith('backup-'))).toHaveLength(1);
  });
});

describe('error messages point at the fix', () => {
  it('a 413 from an S3-compatible server names partSize', async () => {
    // A proxy before the service that caps request bodies, as nginx's client_max_body_size does.
    const proxy = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(413, { 'content-type': 'text/html' });
        res.end('<html><head><title>413 Request Entity Too Large</title></head></html>');
      });
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => proxy.close(() => resolve())));
    const w = workspace({ endpoint: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` });
    const r = await runCli(['backup', '--json'], { cwd: w.dir });
    expect(r.code, r.stderr).toBe(3);
    const bucket = (JSON.parse(r.stdout) as Json).destinations[0];
    expect(bucket.error).toMatch(
      /\(HTTP 413\).*refused a request as too large; lower 'partSize' \(now 16 MiB/,
    );
  });

  it('a virtual-hosted bucket name that does not resolve names forcePathStyle', async () => {
    const port = new URL(s3.endpoint).port;
    const w = workspace({ endpoint: `http://localhost:${port}`, forcePathStyle: false });
    const r = await runCli(['backup', '--json'], {
      cwd: w.dir,
      env: { NODE_OPTIONS: `--import ${LOOPBACK_DNS}` },
    });
    expect(r.code, r.stderr).toBe(3);
    const bucket = (JSON.parse(r.stdout) as Json).destinations[0];
    expect(bucket.error).toMatch(
      new RegExp(
        `the virtual-hosted name ${s3.bucket}\\.localhost .*does not resolve; set forcePathStyle: true`,
      ),
    );
    // With path-style addressing the same service works.
    fs.writeFileSync(
      w.file,
      fs.readFileSync(w.file, 'utf8').replace('"forcePathStyle": false', '"forcePathStyle": true'),
    );
    const fixed = await runCli(['backup', '--json'], {
      cwd: w.dir,
      env: { NODE_OPTIONS: `--import ${LOOPBACK_DNS}` },
    });
    expect(fixed.code, fixed.stderr).toBe(0);
  });
});
