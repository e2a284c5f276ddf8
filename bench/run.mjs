#!/usr/bin/env node
// `npm run bench`: litekeep's snapshot speed and memory against cp and the sqlite3 CLI on the same file, in one
// run; then the pipeline (compression/encryption), S3 upload and rclone/SFTP upload benchmarks. Not a test: it
// prints figures.
//
//   node bench/run.mjs [--size MiB] [--sizes 1024,4096] [--only core|pipeline|s3|remote|incremental] [--dir DIR]
//   [--keep]
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist', 'cli', 'main.js');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}
const sizes = (arg('sizes') ?? arg('size', '1024')).split(',').map(Number);
const only = arg('only');
const keep = process.argv.includes('--keep');
const workDir = arg('dir') ?? fs.mkdtempSync(path.join(os.tmpdir(), 'litekeep-bench-'));

if (!fs.existsSync(cli)) {
  console.error('build first: npm run build');
  process.exit(2);
}

/** A WAL database of about `mib` MiB: half incompressible blobs, half repetitive text, like real app data. */
function buildDatabase(file, mib) {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  db.exec('CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, kind TEXT, body BLOB)');
  const rowsPerMiB = 128; // 8 KiB rows
  const insertBlob = db.prepare('INSERT INTO rows (kind, body) VALUES (?, randomblob(4096))');
  const insertText = db.prepare('INSERT INTO rows (kind, body) VALUES (?, ?)');
  const text = 'user said hello, assistant answered with a long and helpful message; '.repeat(60);
  const total = mib * rowsPerMiB;
  for (let done = 0; done < total; done += 10_000) {
    db.transaction(() => {
      for (let i = done; i < Math.min(total, done + 10_000); i++) {
        insertBlob.run('blob');
        insertText.run('text', text);
      }
    })();
  }
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}

/**
 * Runs a command and returns its wall time and peak RSS, including every child it waited for (the snapshot
 * process), measured by python's getrusage(RUSAGE_CHILDREN), which sees the whole process tree.
 */
function measure(command, args, env = {}) {
  const probe = [
    'import json,resource,subprocess,sys,time',
    't=time.monotonic()',
    'r=subprocess.run(json.loads(sys.argv[1]), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)',
    'd=time.monotonic()-t',
    'u=resource.getrusage(resource.RUSAGE_CHILDREN)',
    'print(json.dumps({"seconds": d, "maxrss_kb": u.ru_maxrss, "code": r.returncode, "err": r.stderr.decode()[-300:]}))',
  ].join('\n');
  const out = execFileSync('python3', ['-c', probe, JSON.stringify([command, ...args])], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  const result = JSON.parse(out);
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} failed: ${result.err}`);
  return result;
}

function best(times, fn) {
  let winner;
  for (let i = 0; i < times; i++) {
    const r = fn(i);
    if (!winner || r.seconds < winner.seconds)
      winner = { ...r, maxrss_kb: Math.max(r.maxrss_kb, winner?.maxrss_kb ?? 0) };
  }
  return winner;
}

const fmt = (s) => `${s.toFixed(2)} s`;
const mb = (kb) => `${(kb / 1024).toFixed(0)} MB`;

function coreBench(mib) {
  const dir = path.join(workDir, `core-${mib}`);
  fs.mkdirSync(dir, { recursive: true });
  const db = path.join(dir, 'bench.db');
  if (!fs.existsSync(db)) {
    process.stdout.write(`building a ${mib} MiB database... `);
    buildDatabase(db, mib);
    console.log(`${(fs.statSync(db).size / 2 ** 20).toFixed(0)} MiB`);
  }
  const out = (name) => path.join(dir, name);
  const clean = () => {
    for (const f of fs.readdirSync(dir))
      if (f !== 'bench.db') fs.rmSync(out(f), { recursive: true, force: true });
  };
  const hasSqlite = spawnSync('sqlite3', ['-version']).status === 0;
  const env = { LITEKEEP_NOTIFY_NTFY_TOPIC: '', GOOGLE_APPLICATION_CREDENTIALS: '' };
  const litekeep = (extra) => (i) => {
    clean();
    return measure(
      process.execPath,
      [
        cli,
        'backup',
        '--db',
        db,
        '--dir',
        out(`lk${i}`),
        '--compression',
        'none',
        '--no-prune',
        '--no-upload',
        '--no-notify',
        ...extra,
      ],
      env,
    );
  };
  // Warm the page cache so that every contender reads from memory.
  measure('cat', [db]);
  const results = {
    cp: best(3, () => {
      clean();
      return measure('cp', [db, out('cp.db')]);
    }),
    sqliteBackup: hasSqlite
      ? best(3, () => {
          clean();
          return measure('sqlite3', [db, `.backup '${out('s.db')}'`]);
        })
      : undefined,
    sqliteVacuum: hasSqlite
      ? best(3, () => {
          clean();
          return measure('sqlite3', [db, `VACUUM INTO '${out('v.db')}'`]);
        })
      : undefined,
    // The same work with the sqlite3 CLI and coreutils: copy, check, hash, make durable.
    sqliteVacuumChecked: hasSqlite
      ? best(3, () => {
          clean();
          const v = out('vc.db');
          return measure('sh', [
            '-c',
            `sqlite3 '${db}' "VACUUM INTO '${v}'" && sqlite3 '${v}' 'PRAGMA integrity_check' >/dev/null && sha256sum '${v}' >/dev/null && sync '${v}'`,
          ]);
        })
      : undefined,
    noVacuum: best(3, litekeep(['--no-vacuum'])),
    vacuum: best(3, litekeep([])),
  };
  clean();
  console.log(`\n== snapshot, ${mib} MiB database (best of 3, warm cache) ==`);
  const row = (name, r, ref, target) =>
    console.log(
      `${name.padEnd(34)} ${fmt(r.seconds).padStart(9)}${ref ? `  ${(r.seconds / ref.seconds).toFixed(2)}x ${target}` : ''}`,
    );
  row('cp', results.cp);
  if (results.sqliteBackup) row('sqlite3 .backup', results.sqliteBackup);
  if (results.sqliteVacuum) row('sqlite3 VACUUM INTO', results.sqliteVacuum);
  row('litekeep backup --no-vacuum', results.noVacuum, results.cp, 'of cp (target <= 1.3x)');
  if (results.sqliteBackup)
    row('  (vs sqlite3 .backup)', results.noVacuum, results.sqliteBackup, 'of sqlite3 .backup');
  row(
    'litekeep backup (VACUUM INTO)',
    results.vacuum,
    results.sqliteVacuum,
    'of sqlite3 VACUUM INTO (target <= 1.1x)',
  );
  if (results.sqliteVacuumChecked) {
    row('sqlite3 VACUUM INTO+check+sha+sync', results.sqliteVacuumChecked);
    row('  litekeep vs that same work', results.vacuum, results.sqliteVacuumChecked, 'of the shell pipeline');
  }
  console.log(
    `peak RSS of litekeep (process tree): --no-vacuum ${mb(results.noVacuum.maxrss_kb)}, vacuum ${mb(results.vacuum.maxrss_kb)} (target < 150 MB)`,
  );
  return results;
}

function runScript(script, extra, nodeArgs = []) {
  const file = path.join(root, 'bench', script);
  if (!fs.existsSync(file)) return;
  console.log(`\n== ${script} ==`);
  const r = spawnSync(process.execPath, [...nodeArgs, file, ...extra], { stdio: 'inherit' });
  if (r.status !== 0) console.log(`${script} exited ${r.status}`);
}

try {
  console.log(`litekeep bench: node ${process.version}, ${os.cpus().length} cores, work dir ${workDir}`);
  if (!only || only === 'core') for (const mib of sizes) coreBench(mib);
  if (!only || only === 'pipeline') runScript('pipeline.mjs', ['--size', String(sizes[0])]);
  if (!only || only === 's3') runScript('s3.mjs', ['--size', String(Math.min(sizes[0], 512))]);
  // TypeScript through tsx: it starts the same rclone and OpenSSH servers as the tests.
  if (!only || only === 'remote')
    runScript('remote.ts', ['--size', String(Math.min(sizes[0], 512))], ['--import', 'tsx']);
  if (!only || only === 'incremental')
    runScript('incremental.mjs', ['--size', String(sizes[0]), '--rss-sizes', sizes.join(',')]);
} finally {
  if (!keep && !arg('dir')) fs.rmSync(workDir, { recursive: true, force: true });
}
