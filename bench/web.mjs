#!/usr/bin/env node
// The status page from a long history: how long the daemon takes to answer GET / (reading the activity log and
// rendering the page, timed inside the server as its Server-Timing header reports it) and whether its memory
// grows with the history. Each catalog size is measured in a fresh process of its own, against the same
// folder contents but for the length of the log. Not a test: it prints figures.
//
//   node bench/web.mjs [--runs 1000,10000,100000] [--views 200] [--dir DIR] [--keep]
//   node bench/web.mjs --measure DIR --views N     (one measurement, JSON on stdout; used by the above)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => import(path.join(root, 'dist', p));

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}

const HOUR = 3_600_000;

/** A workspace like a real one: one database, a local destination that works and a bucket that cannot be reached. */
function writeConfig(dir) {
  const db = new Database(path.join(dir, 'app.db'));
  db.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)');
  const insert = db.prepare('INSERT INTO notes (body) VALUES (?)');
  for (let i = 0; i < 2000; i++) insert.run(`note ${i} `.repeat(20));
  db.close();
  const config = {
    databases: [{ name: 'app', path: 'app.db' }],
    backupDir: 'backups',
    timeZone: 'Europe/Berlin',
    host: 'bench',
    verify: 'never',
    destinations: [
      { name: 'usb', type: 'local', path: 'usb' },
      {
        name: 'bucket',
        type: 's3',
        bucket: 'bench-bucket',
        endpoint: 'http://127.0.0.1:1',
        region: 'us-east-1',
        accessKeyId: 'AKIABENCH',
        secretAccessKey: 'bench-secret-key',
        maxAttempts: 1,
      },
    ],
  };
  fs.writeFileSync(path.join(dir, 'litekeep.yml'), JSON.stringify(config, null, 2));
}

/**
 * `runs` hourly runs before the real ones, as the daemon would have recorded them over the months: a backup per
 * run (removed since by retention, locally and on the destination), an upload to each destination, one failed
 * run in fifty. Written through the catalog's own API.
 */
async function seed(dir, runs) {
  writeConfig(dir);
  const { loadConfig } = await dist('config/index.js');
  const { runBackupForTarget } = await dist('backup/task.js');
  const { Catalog } = await dist('catalog/index.js');
  const { backupFileName } = await dist('naming.js');
  const [target] = loadConfig({ cwd: dir, env: {} }).databases;
  // The newest few are real backups, on disk and in the usb folder: the page reads them as it would.
  for (let i = 0; i < 5; i++) await runBackupForTarget(target, { trigger: 'schedule', notify: false });
  const catalog = Catalog.open(target.backupDir);
  const oldest = Date.now() - (runs + 6) * HOUR;
  for (let i = 0; i < runs; i++) {
    const started = new Date(oldest + i * HOUR);
    const at = (ms) => new Date(started.getTime() + ms).toISOString();
    const id = catalog.startRun('schedule', 'app', started.toISOString());
    if (i % 50 === 49) {
      catalog.finishRun(id, {
        status: 'failed',
        stage: 'snapshot',
        error: 'SQLITE_BUSY: database is locked',
        exitCode: 1,
        durationMs: 120,
      });
      continue;
    }
    const file = backupFileName(started, 'Europe/Berlin', { compression: 'zstd' });
    const bytes = 40_000_000 + i * 1000;
    catalog.recordBackup({
      file,
      runId: id,
      createdAt: started.toISOString(),
      bytes,
      compression: 'zstd',
      encryption: 'none',
      trigger: 'scheduled',
    });
    catalog.recordUpload({
      runId: id,
      backupFile: file,
      destination: 'usb',
      status: 'ok',
      bytes,
      durationMs: 300,
      attempts: 1,
      at: at(2000),
    });
    catalog.recordUpload({
      runId: id,
      backupFile: file,
      destination: 'bucket',
      status: 'failed',
      error: 'connect ECONNREFUSED 127.0.0.1:1',
      attempts: 1,
      at: at(2100),
    });
    catalog.recordDeletion({
      runId: id,
      backupFile: file,
      destination: 'usb',
      reasons: 'no rule keeps it',
      status: 'ok',
      at: at(2 * 86_400_000),
    });
    catalog.markBackupDeleted(file, at(2 * 86_400_000));
    catalog.finishRun(id, {
      status: 'partial',
      exitCode: 3,
      backupFile: file,
      rotated: 1,
      durationMs: 2500 + (i % 17) * 40,
    });
  }
  catalog.close();
}

/** One size, in this (fresh) process: GET / through the daemon's own server, `views` times. */
async function measure(dir, views) {
  const { loadConfig } = await dist('config/index.js');
  const { startHttpServer } = await dist('scheduler/index.js');
  const { statusFromCatalog } = await dist('backup/health.js');
  const { statusPageRoutes } = await dist('web/index.js');
  const resolved = loadConfig({ cwd: dir, env: {} });
  const maxAgeMs = 26 * HOUR;
  const server = await startHttpServer({
    listen: '127.0.0.1:0',
    getStatus: () => statusFromCatalog(resolved.databases, maxAgeMs),
    routes: statusPageRoutes({
      source: {
        targets: resolved.databases,
        timeZone: resolved.timeZone,
        maxAgeMs,
        schedule: {
          expression: '0 * * * *',
          nextRun: () => new Date(Date.now() + HOUR),
          running: () => false,
        },
        actions: false,
      },
    }),
  });
  const timings = [];
  let bytes = 0;
  let rssAfterWarmUp = 0;
  for (let i = 0; i < views; i++) {
    const response = await fetch(`${server.url}/`);
    const html = await response.text();
    if (response.status !== 200) throw new Error(`GET / answered ${response.status}`);
    bytes = Buffer.byteLength(html);
    // Server-Timing: collect;dur=12.3, render;dur=4.5 (measured inside the request handler).
    const parts = Object.fromEntries(
      (response.headers.get('server-timing') ?? '').split(',').map((p) => {
        const [name, dur] = p.trim().split(';dur=');
        return [name, Number(dur)];
      }),
    );
    timings.push({ collect: parts.collect, render: parts.render, total: parts.collect + parts.render });
    if (i === 9) {
      globalThis.gc?.();
      rssAfterWarmUp = process.memoryUsage().rss;
    }
  }
  globalThis.gc?.();
  const rssEnd = process.memoryUsage().rss;
  await server.close();
  const measured = timings
    .slice(10)
    .map((t) => t.total)
    .sort((a, b) => a - b);
  const pick = (q) => measured[Math.min(measured.length - 1, Math.floor(q * measured.length))];
  const median = (key) =>
    timings
      .slice(10)
      .map((t) => t[key])
      .sort((a, b) => a - b)[Math.floor((timings.length - 10) / 2)];
  return {
    views,
    pageBytes: bytes,
    collectMs: median('collect'),
    renderMs: median('render'),
    medianMs: pick(0.5),
    p95Ms: pick(0.95),
    maxMs: measured[measured.length - 1],
    rssAfterWarmUpMB: rssAfterWarmUp / 1e6,
    rssEndMB: rssEnd / 1e6,
    maxRssMB: process.resourceUsage().maxRSS / 1e3,
  };
}

async function main() {
  const measureDir = arg('measure');
  const views = Number(arg('views', '200'));
  if (measureDir) {
    process.stdout.write(JSON.stringify(await measure(measureDir, views)) + '\n');
    return;
  }
  if (!fs.existsSync(path.join(root, 'dist', 'web', 'index.js'))) {
    console.error('build first: npm run build');
    process.exit(2);
  }
  const sizes = arg('runs', '1000,10000,100000').split(',').map(Number);
  const workDir = arg('dir') ?? fs.mkdtempSync(path.join(os.tmpdir(), 'litekeep-bench-web-'));
  console.log(
    `\n## Status page (GET / through the daemon's server, ${views} views each, first 10 not counted)\n`,
  );
  console.log(
    '| runs in the log | page | collect (median) | render (median) | total median | p95 | max | RSS after 10 views | RSS after all | peak RSS |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  try {
    for (const runs of sizes) {
      const dir = path.join(workDir, `runs-${runs}`);
      fs.mkdirSync(dir, { recursive: true });
      const t = Date.now();
      await seed(dir, runs);
      const seeded = ((Date.now() - t) / 1000).toFixed(1);
      const child = spawnSync(
        process.execPath,
        ['--expose-gc', fileURLToPath(import.meta.url), '--measure', dir, '--views', String(views)],
        {
          encoding: 'utf8',
        },
      );
      if (child.status !== 0) throw new Error(`measuring ${runs} runs failed: ${child.stderr.slice(-2000)}`);
      const r = JSON.parse(child.stdout.trim().split('\n').pop());
      const ms = (n) => `${n.toFixed(1)} ms`;
      const mb = (n) => `${n.toFixed(0)} MB`;
      console.log(
        `| ${runs + 5} (seeded in ${seeded} s) | ${(r.pageBytes / 1024).toFixed(0)} KiB | ${ms(r.collectMs)} | ${ms(r.renderMs)} | **${ms(r.medianMs)}** | ${ms(r.p95Ms)} | ${ms(r.maxMs)} | ${mb(r.rssAfterWarmUpMB)} | ${mb(r.rssEndMB)} | ${mb(r.maxRssMB)} |`,
      );
    }
  } finally {
    if (!process.argv.includes('--keep')) fs.rmSync(workDir, { recursive: true, force: true });
  }
}

await main();
