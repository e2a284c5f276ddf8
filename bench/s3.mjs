#!/usr/bin/env node
// Upload throughput of litekeep's S3 destination against `rclone copyto` of the same file to the same local
// s3rver, in one run. Usage: npm run build && node bench/s3.mjs [--size MiB (512)] [--part-size MiB (16)]
// s3rver runs in its own process so that neither uploader shares an event loop with the server.
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { S3Destination } from '../dist/destinations/s3.js';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const { values } = parseArgs({
  options: { size: { type: 'string', default: '512' }, 'part-size': { type: 'string', default: '16' } },
});
const MiB = 1024 * 1024;
const size = Number(values.size) * MiB;
const partSize = Number(values['part-size']) * MiB;
if (!(size > 0) || !(partSize >= 5 * MiB)) {
  console.error('usage: node bench/s3.mjs [--size MiB > 0] [--part-size MiB >= 5]');
  process.exit(2);
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'litekeep-bench-s3-'));
const dataDir = path.join(work, 's3rver');
const file = path.join(work, 'backup-2026-01-01-000000.db');
const bucket = 'bench-bucket';
const rcloneConfig = path.join(work, 'rclone.conf');
fs.writeFileSync(rcloneConfig, '');

function writeRandomFile(target, bytes) {
  // Random bytes: an encrypted or compressed backup is incompressible too.
  const fd = fs.openSync(target, 'w');
  const block = crypto.randomBytes(MiB);
  const hash = crypto.createHash('sha256');
  for (let done = 0; done < bytes;) {
    const n = Math.min(MiB, bytes - done);
    block[0] = done & 0xff; // keep blocks distinct
    fs.writeSync(fd, block, 0, n);
    hash.update(block.subarray(0, n));
    done += n;
  }
  fs.closeSync(fd);
  return hash.digest('hex');
}

function sha256File(target) {
  const hash = crypto.createHash('sha256');
  const fd = fs.openSync(target, 'r');
  const buf = Buffer.alloc(4 * MiB);
  for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) hash.update(buf.subarray(0, n));
  fs.closeSync(fd);
  return hash.digest('hex');
}

function storedPath(key) {
  return path.join(dataDir, bucket, `${key}._S3rver_object`);
}

async function startServer() {
  const script = `
    const S3rver = require('s3rver');
    const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: process.argv[1],
      vhostBuckets: false, configureBuckets: [{ name: ${JSON.stringify(bucket)} }] });
    server.run().then((a) => console.log(String(a.port)));
  `;
  const child = spawn(process.execPath, ['-e', script, dataDir], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise((resolve, reject) => {
    child.stdout.once('data', (d) => resolve(Number(String(d).trim())));
    child.once('exit', (code) => reject(new Error(`s3rver exited with ${code}`)));
  });
  return { endpoint: `http://127.0.0.1:${port}`, stop: () => child.kill() };
}

const mbps = (bytes, ms) => bytes / MiB / (ms / 1000);

console.log(
  `s3 bench: ${values.size} MiB random file, part size ${values['part-size']} MiB, s3rver on loopback`,
);
const sha256 = writeRandomFile(file, size);
const server = await startServer();
const results = {};
try {
  const destination = new S3Destination({
    bucket,
    prefix: 'litekeep',
    databaseName: 'bench',
    endpoint: server.endpoint,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    checksumMode: 'when-required',
    partSize,
  });
  let started = performance.now();
  const put = await destination.put(file, path.basename(file), {
    sha256,
    bytes: size,
    sourceName: 'bench',
    backupTime: new Date().toISOString(),
    compression: 'none',
    encryption: 'none',
    litekeepVersion: 'bench',
  });
  results.litekeep = performance.now() - started;
  destination.destroy();
  if (sha256File(storedPath(put.id)) !== sha256) throw new Error('litekeep upload stored different bytes');
  console.log(
    `litekeep S3Destination.put  ${(results.litekeep / 1000).toFixed(2)} s  ${mbps(size, results.litekeep).toFixed(1)} MiB/s (verified)`,
  );

  const rclone = spawnSync('rclone', ['version'], { encoding: 'utf8' });
  if (rclone.error || rclone.status !== 0) {
    console.log('rclone not found (apt-get install -y rclone): skipping the comparison');
  } else {
    const env = {
      ...process.env,
      RCLONE_CONFIG_BENCH_TYPE: 's3',
      RCLONE_CONFIG_BENCH_PROVIDER: 'Other',
      RCLONE_CONFIG_BENCH_ENDPOINT: server.endpoint,
      RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: 'S3RVER',
      RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: 'S3RVER',
      RCLONE_CONFIG_BENCH_REGION: 'us-east-1',
      RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: 'true',
      // An empty config file: the remote comes from the env vars, and the user's own config stays out of it.
      RCLONE_CONFIG: rcloneConfig,
    };
    // rclone 1.60's AWS SDK refuses to start when AWS_CA_BUNDLE is set ("unsupported transport"); the
    // endpoint is plain http on loopback, so no CA bundle is needed.
    delete env.AWS_CA_BUNDLE;
    // Same part size and parallelism as litekeep's defaults, so the comparison is like for like.
    const args = [
      'copyto',
      file,
      `bench:${bucket}/rclone/${path.basename(file)}`,
      '--s3-chunk-size',
      `${values['part-size']}M`,
      '--s3-upload-concurrency',
      '4',
      '--s3-upload-cutoff',
      `${values['part-size']}M`,
    ];
    started = performance.now();
    const run = spawnSync('rclone', args, { env, encoding: 'utf8' });
    results.rclone = performance.now() - started;
    if (run.status !== 0) throw new Error(`rclone failed: ${run.stderr.trim().split('\n').at(-1)}`);
    if (sha256File(storedPath(`rclone/${path.basename(file)}`)) !== sha256) {
      throw new Error('rclone upload stored different bytes');
    }
    console.log(
      `rclone ${rclone.stdout.split('\n')[0].split(' ')[1]} copyto          ${(results.rclone / 1000).toFixed(2)} s  ${mbps(size, results.rclone).toFixed(1)} MiB/s (verified)`,
    );
    console.log(`ratio litekeep/rclone throughput: ${(results.rclone / results.litekeep).toFixed(2)}x`);
  }
} finally {
  server.stop();
  fs.rmSync(work, { recursive: true, force: true });
}
