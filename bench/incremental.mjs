#!/usr/bin/env node
// Incremental backups (issue 14): bytes uploaded and time of the second snapshot after (a) 1% of rows updated at
// random, (b) 1% new rows appended, (c) no change — litekeep `format: incremental` against litekeep `full` and
// `restic backup` of a `.backup` copy of the same states; restore time incremental vs full; peak RSS of the
// whole process tree; and the chunking measurement behind docs/format.md. Not a test: it prints figures.
//
//   node bench/incremental.mjs [--size MiB] [--rss-sizes 1024,4096] [--restore-rounds 3] [--dir DIR] [--keep]
//                              [--no-restic] [--rss-only] [--db-cache DIR]
//
// --rss-only measures only the memory of a first snapshot and its restore at each of --rss-sizes (no cases, no
// restic, no timed restores); --db-cache DIR keeps each built database there and reuses it (the build is
// deterministic), so that runs before and after a change measure the same files at a fraction of the cost.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { Compressor } from 'zstd-napi';
import { descendants } from './process-tree.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist', 'cli', 'main.js');
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const size = Number(arg('size', '1024'));
const rssSizes = arg('rss-sizes', `${size}`).split(',').map(Number);
const keep = process.argv.includes('--keep');
const rssOnly = process.argv.includes('--rss-only');
const dbCache = arg('db-cache');
const workDir = arg('dir') ?? fs.mkdtempSync(path.join(os.tmpdir(), 'litekeep-bench-incr-'));
fs.mkdirSync(workDir, { recursive: true });
const useRestic = !process.argv.includes('--no-restic') && spawnSync('restic', ['version']).status === 0;
const MiB = 1024 * 1024;
const mb = (bytes) => `${(bytes / MiB).toFixed(2)} MiB`;
const sec = (s) => `${s.toFixed(2)} s`;

if (!fs.existsSync(cli)) {
  console.error('build first: npm run build');
  process.exit(2);
}

// ---------------------------------------------------------------- a realistic database

const WORDS =
  'the a to and of in is you that it for on was with as have be at not this are or but from by they we say her she will an my one all would there their what so up out if about who get which go me when make can like time no just him know take people into year your good some could them see other than then now look only come its over think also back after use two how our work first well way even new want because any these give day most us'.split(
    ' ',
  );

function sentence(rand, words) {
  const out = [];
  for (let i = 0; i < words; i++) out.push(WORDS[rand() % WORDS.length]);
  return out.join(' ');
}

function prng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

/**
 * Users and messages with an index, text of varying length and a few blobs, 4 KiB pages, WAL: about `mib` MiB.
 * Deterministic (seeded), so the same size gives the same file.
 */
function buildDatabase(file, mib) {
  const db = new Database(file);
  db.pragma('page_size = 4096');
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  db.exec(`CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT NOT NULL, created INTEGER);
    CREATE TABLE messages (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, created INTEGER NOT NULL,
      subject TEXT, body TEXT NOT NULL, attachment BLOB);
    CREATE INDEX messages_by_user ON messages (user_id, created);`);
  const rand = prng(42);
  const insertUser = db.prepare('INSERT INTO users (email, name, created) VALUES (?, ?, ?)');
  const insertMessage = db.prepare(
    'INSERT INTO messages (user_id, created, subject, body, attachment) VALUES (?, ?, ?, ?, ?)',
  );
  const users = Math.max(100, mib * 40);
  db.transaction(() => {
    for (let i = 0; i < users; i++) insertUser.run(`user${i}@example.com`, sentence(rand, 2), 1700000000 + i);
  })();
  let t = 1700000000;
  while (
    fs.statSync(file).size + (fs.existsSync(`${file}-wal`) ? fs.statSync(`${file}-wal`).size : 0) <
    mib * MiB
  ) {
    db.transaction(() => {
      for (let i = 0; i < 5000; i++) {
        const attach = rand() % 100 < 3 ? crypto.randomBytes(2048 + (rand() % 6144)) : null;
        insertMessage.run(
          rand() % users,
          (t += 7),
          sentence(rand, 6),
          sentence(rand, 20 + (rand() % 120)),
          attach,
        );
      }
    })();
    db.pragma('wal_checkpoint(TRUNCATE)');
  }
  db.close();
}

/** (a): 1% of the messages get a new body, chosen at random. */
function updateRandomRows(file, share) {
  const db = new Database(file);
  const rand = prng(7);
  const max = db.prepare('SELECT MAX(id) FROM messages').pluck().get();
  const count = db.prepare('SELECT COUNT(*) FROM messages').pluck().get();
  const update = db.prepare('UPDATE messages SET body = ? WHERE id = ?');
  db.transaction(() => {
    for (let i = 0; i < Math.round(count * share); i++)
      update.run(sentence(rand, 20 + (rand() % 120)), 1 + (rand() % max));
  })();
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}

/** (b): 1% more messages, appended. */
function appendRows(file, share) {
  const db = new Database(file);
  const rand = prng(9);
  const count = db.prepare('SELECT COUNT(*) FROM messages').pluck().get();
  const users = db.prepare('SELECT COUNT(*) FROM users').pluck().get();
  let t = db.prepare('SELECT MAX(created) FROM messages').pluck().get();
  const insert = db.prepare('INSERT INTO messages (user_id, created, subject, body) VALUES (?, ?, ?, ?)');
  db.transaction(() => {
    for (let i = 0; i < Math.round(count * share); i++)
      insert.run(rand() % users, (t += 7), sentence(rand, 6), sentence(rand, 20 + (rand() % 120)));
  })();
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}

// ---------------------------------------------------------------- measuring

/** Runs the command given as JSON and prints what getrusage says of it and of every child it waited for. */
const PROBE = [
  'import json,resource,subprocess,sys,time',
  't=time.monotonic()',
  'r=subprocess.run(json.loads(sys.argv[1]), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=sys.argv[2])',
  'd=time.monotonic()-t',
  'u=resource.getrusage(resource.RUSAGE_CHILDREN)',
  'print(json.dumps({"seconds": d, "cpu": u.ru_utime + u.ru_stime, "maxrss_kb": u.ru_maxrss, "code": r.returncode, "out": r.stdout.decode()[-200000:], "err": r.stderr.decode()[-2000:]}))',
].join('\n');

/**
 * Wall time, CPU time (user + system, every thread) and peak RSS of a command and every child it waited for
 * (python's getrusage of children). On a shared machine CPU time moves less with the load than wall time.
 */
function measure(command, args, options = {}) {
  const out = execFileSync(
    'python3',
    ['-c', PROBE, JSON.stringify([command, ...args]), options.cwd ?? process.cwd()],
    {
      env: { ...process.env, ...options.env },
      encoding: 'utf8',
      maxBuffer: 64 * MiB,
    },
  );
  const result = JSON.parse(out);
  if (result.code !== 0 && !options.allowFail)
    throw new Error(`${command} ${args.join(' ')} failed (${result.code}): ${result.err}`);
  return result;
}

const PAGE = Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }));

/** RSS in bytes of every process below `rootPid` (not `rootPid` itself: the measuring wrapper). */
function treeRss(rootPid) {
  let rss = 0;
  for (const pid of descendants(rootPid).slice(1)) {
    try {
      rss += Number(fs.readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * PAGE;
    } catch {
      // gone meanwhile
    }
  }
  return rss;
}

/**
 * As `measure`, and the peak RSS of the whole process tree (the sum over every process at once: the command,
 * its snapshot child, its worker threads are inside their processes), sampled from /proc every 50 ms.
 */
function measureTree(command, args, options = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'python3',
      ['-c', PROBE, JSON.stringify([command, ...args]), options.cwd ?? process.cwd()],
      {
        env: { ...process.env, ...options.env },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    let peak = 0;
    const timer = setInterval(() => (peak = Math.max(peak, treeRss(child.pid))), 50);
    child.on('error', reject);
    child.on('exit', () => {
      clearInterval(timer);
      try {
        const result = JSON.parse(out);
        if (result.code !== 0)
          return reject(new Error(`${command} ${args.join(' ')} failed (${result.code}): ${result.err}`));
        resolve({ ...result, treeRss: peak });
      } catch (error) {
        reject(error);
      }
    });
  });
}

/** The deterministic database of `mib` MiB at `file`: built, or copied from --db-cache when built before. */
function databaseOf(file, mib) {
  if (!dbCache) return buildDatabase(file, mib);
  fs.mkdirSync(dbCache, { recursive: true });
  const cached = path.join(dbCache, `app-${mib}.db`);
  if (!fs.existsSync(cached)) {
    buildDatabase(`${cached}.tmp`, mib);
    fs.renameSync(`${cached}.tmp`, cached);
  }
  fs.copyFileSync(cached, file);
}

function dirBytes(dir) {
  if (!fs.existsSync(dir)) return 0;
  let total = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    total += entry.isDirectory() ? dirBytes(p) : fs.statSync(p).size;
  }
  return total;
}

function workspace(name, format) {
  const dir = path.join(workDir, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'litekeep.yml'),
    JSON.stringify({
      database: path.join(workDir, 'app.db'),
      backupDir: 'backups',
      timeZone: 'UTC',
      host: 'bench',
      vacuum: false,
      prune: false,
      notify: {},
      destinations: [{ name: 'dest', type: 'local', path: 'dest', format }],
    }),
  );
  return dir;
}

function litekeepBackup(dir) {
  const r = measure(process.execPath, [cli, 'backup', '--json', '--trigger', 'scheduled'], { cwd: dir });
  const out = JSON.parse(r.out);
  return { ...r, json: out, destination: out.destinations[0] };
}

/** Chunking: zstd level 3 on the whole file, on every page alone, and on runs of 16 and 64 pages. */
function chunkingFigures(file) {
  const data = fs.readFileSync(file);
  const c = new Compressor();
  c.setParameters({ compressionLevel: 3, checksumFlag: true });
  const page = 4096;
  const frames = (pages) => {
    const started = process.hrtime.bigint();
    let out = 0;
    for (let p = 0; p < data.length; p += pages * page)
      out += c.compress(data.subarray(p, p + pages * page)).length;
    const us = Number(process.hrtime.bigint() - started) / 1000 / (data.length / page);
    return { ratio: data.length / out, usPerPage: us };
  };
  const whole = (() => {
    const started = process.hrtime.bigint();
    let out = 0;
    // In 64 MiB pieces: one frame per piece compresses like the whole file, without holding its output twice.
    for (let p = 0; p < data.length; p += 64 * MiB) out += c.compress(data.subarray(p, p + 64 * MiB)).length;
    return {
      ratio: data.length / out,
      usPerPage: Number(process.hrtime.bigint() - started) / 1000 / (data.length / page),
    };
  })();
  return { whole, onePage: frames(1), sixteen: frames(16), sixtyFour: frames(64) };
}

/**
 * Peak memory of a first incremental snapshot (everything new: the worst case) and of its restore at each of
 * --rss-sizes, and of a `format: full` run of the same database (the local full backup that every run makes
 * first, alone): the whole tree's RSS sampled from /proc, the largest process's (getrusage), and CPU time.
 */
async function rssFigures(sourceDb) {
  const MB = (bytes) => `${(bytes / 1e6).toFixed(0)} MB`;
  console.log(
    '\npeak RSS of a first incremental snapshot, of its restore and of a full-format run of the same database ' +
      '(whole tree sampled from /proc / largest process; CPU user + system):',
  );
  for (const mib of rssSizes) {
    const dir = path.join(workDir, `rss-${mib}`);
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'app.db');
    if (mib === size && sourceDb) fs.copyFileSync(sourceDb, file);
    else databaseOf(file, mib);
    const config = (format) =>
      JSON.stringify({
        database: file,
        backupDir: `backups-${format}`,
        timeZone: 'UTC',
        host: 'bench',
        vacuum: false,
        prune: false,
        notify: {},
        destinations: [{ name: 'dest', type: 'local', path: `dest-${format}`, format }],
      });
    fs.writeFileSync(path.join(dir, 'litekeep.yml'), config('incremental'));
    fs.writeFileSync(path.join(dir, 'full.yml'), config('full'));
    const r = await measureTree(process.execPath, [cli, 'backup', '--json', '--trigger', 'scheduled'], {
      cwd: dir,
    });
    const snapshotId = JSON.parse(r.out).destinations[0].snapshot.id;
    const restored = await measureTree(
      process.execPath,
      [cli, 'restore', snapshotId, '--from', 'dest', '--to', path.join(dir, 'restored.db')],
      { cwd: dir },
    );
    const fullRun = await measureTree(
      process.execPath,
      [cli, 'backup', '--config', 'full.yml', '--json', '--trigger', 'scheduled'],
      { cwd: dir },
    );
    const line = (what, m) =>
      `${what} ${MB(m.treeRss)} tree / ${MB(m.maxrss_kb * 1024)} largest, CPU ${sec(m.cpu)} (wall ${sec(m.seconds)})`;
    console.log(
      `  ${mib} MiB (${mb(fs.statSync(file).size)}): ${line('snapshot', r)}; ${line('its restore', restored)}; ` +
        `${line('full-format run', fullRun)} (target < 200 MB, flat)`,
    );
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- the run

function main() {
  const loaded = os.loadavg()[0];
  console.log(
    `litekeep incremental bench: node ${process.version}, ${os.cpus().length} cores, load ${loaded.toFixed(1)}, ` +
      `restic ${useRestic ? execFileSync('restic', ['version'], { encoding: 'utf8' }).split(' ')[1] : 'absent'}, work dir ${workDir}`,
  );
  if (rssOnly) return rssFigures();
  const db = path.join(workDir, 'app.db');
  console.log(`building a ${size} MiB database (users, messages with an index, text, a few blobs)…`);
  databaseOf(db, size);
  console.log(`database: ${mb(fs.statSync(db).size)}`);

  const chunking = chunkingFigures(db);
  console.log('\nchunking (zstd -3 on the database file):');
  for (const [name, f] of Object.entries(chunking))
    console.log(`  ${name.padEnd(10)} ratio ${f.ratio.toFixed(2)}  ${f.usPerPage.toFixed(1)} µs/page`);

  const incremental = workspace('incremental', 'incremental');
  const full = workspace('full', 'full');
  const resticRepo = path.join(workDir, 'restic');
  const resticEnv = {
    RESTIC_PASSWORD: 'bench',
    RESTIC_REPOSITORY: resticRepo,
    RESTIC_CACHE_DIR: path.join(workDir, 'restic-cache'),
  };
  const copy = path.join(workDir, 'copy', 'app.db');
  fs.mkdirSync(path.dirname(copy), { recursive: true });
  if (useRestic) measure('restic', ['init'], { env: resticEnv });

  const resticBackup = () => {
    fs.rmSync(copy, { force: true });
    const d = new Database(db, { readonly: true });
    return d.backup(copy, { progress: () => 0x7fffffff }).then(() => {
      d.close();
      // restic 0.14's data_added counts bytes before compression: what it stored is the repository's growth.
      const before = dirBytes(resticRepo);
      const r = measure('restic', ['backup', '--json', '--host', 'bench', path.dirname(copy)], {
        env: resticEnv,
      });
      return { seconds: r.seconds, added: dirBytes(resticRepo) - before, maxrss_kb: r.maxrss_kb };
    });
  };

  const rows = [];
  const step = async (label, change) => {
    change?.();
    const inc = litekeepBackup(incremental);
    const fullRun = litekeepBackup(full);
    const restic = useRestic ? await resticBackup() : undefined;
    const snap = inc.destination.snapshot;
    rows.push({
      label,
      incBytes: snap.uploadedBytes,
      incSnapshotSeconds: inc.destination.durationMs / 1000,
      incRunSeconds: inc.seconds,
      incRss: inc.maxrss_kb,
      fullBytes: fullRun.destination.bytes,
      fullRunSeconds: fullRun.seconds,
      resticBytes: restic?.added,
      resticSeconds: restic?.seconds,
      snapshot: snap.id,
      fullFile: fullRun.json.file,
    });
    console.log(
      `${label}: incremental ${mb(snap.uploadedBytes)} (snapshot stage ${sec(inc.destination.durationMs / 1000)}` +
        `${snap.sameImageAs ? ', the same image as the last snapshot' : ''}, ` +
        `run ${sec(inc.seconds)}); full ${mb(fullRun.destination.bytes)} (run ${sec(fullRun.seconds)})` +
        (restic ? `; restic added ${mb(restic.added)} (${sec(restic.seconds)})` : ''),
    );
  };

  return (async () => {
    await step('first snapshot');
    await step('(a) 1% of rows updated at random', () => updateRandomRows(db, 0.01));
    await step('(b) 1% new rows appended', () => appendRows(db, 0.01));
    await step('(c) no change');

    console.log(
      '\n| case | incremental | full (zstd) | restic added | incremental / full | incremental / restic | incremental snapshot time | full run | restic time |',
    );
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const r of rows)
      console.log(
        `| ${r.label} | ${mb(r.incBytes)} | ${mb(r.fullBytes)} | ${r.resticBytes === undefined ? '—' : mb(r.resticBytes)} | ` +
          `${(r.incBytes / r.fullBytes).toFixed(3)}x | ${r.resticBytes ? `${(r.incBytes / r.resticBytes).toFixed(3)}x` : '—'} | ` +
          `${sec(r.incSnapshotSeconds)} | ${sec(r.fullRunSeconds)} | ${r.resticSeconds === undefined ? '—' : sec(r.resticSeconds)} |`,
      );

    // Restore: the last incremental snapshot against the full compressed file of the same state.
    const incOut = path.join(workDir, 'restored-incremental.db');
    const fullOut = path.join(workDir, 'restored-full.db');
    const last = rows.at(-1);
    // Interleaved rounds, so that both see the same machine (a shared one's load comes and goes); the median
    // of the per-round ratios is the figure.
    const rounds = Number(arg('restore-rounds', '3'));
    const ratios = [];
    const cpuRatios = [];
    let incRss = 0;
    for (let round = 0; round < rounds; round++) {
      fs.rmSync(incOut, { force: true });
      fs.rmSync(fullOut, { force: true });
      const incRestore = measure(
        process.execPath,
        [cli, 'restore', last.snapshot, '--from', 'dest', '--to', incOut],
        { cwd: incremental },
      );
      const fullRestore = measure(process.execPath, [cli, 'restore', last.fullFile, '--to', fullOut], {
        cwd: full,
      });
      incRss = Math.max(incRss, incRestore.maxrss_kb);
      ratios.push(incRestore.seconds / fullRestore.seconds);
      cpuRatios.push(incRestore.cpu / fullRestore.cpu);
      console.log(
        `restore round ${round + 1}: incremental ${sec(incRestore.seconds)} (CPU ${sec(incRestore.cpu)}, peak RSS ${(incRestore.maxrss_kb / 1024).toFixed(0)} MB), ` +
          `full ${sec(fullRestore.seconds)} (CPU ${sec(fullRestore.cpu)}, peak RSS ${(fullRestore.maxrss_kb / 1024).toFixed(0)} MB): ` +
          `${(incRestore.seconds / fullRestore.seconds).toFixed(2)}x wall, ${(incRestore.cpu / fullRestore.cpu).toFixed(2)}x CPU`,
      );
    }
    const medianOf = (list) => [...list].sort((x, y) => x - y)[Math.floor(list.length / 2)];
    console.log(
      `\nrestore: incremental / full ${medianOf(ratios).toFixed(2)}x wall (${medianOf(cpuRatios).toFixed(2)}x CPU), ` +
        `the median of ${rounds} interleaved rounds (target ≤ 1.5x); ` +
        `incremental peak RSS ${(incRss / 1024).toFixed(0)} MB`,
    );

    const a = rows[1];
    const b = rows[2];
    const c = rows[3];
    console.log('\ntargets:');
    console.log(
      `  (a) ≤ 0.15x full: ${(a.incBytes / a.fullBytes).toFixed(3)}x; ≤ 0.2x restic: ${a.resticBytes ? (a.incBytes / a.resticBytes).toFixed(3) + 'x' : '—'}`,
    );
    console.log(`  (b) ≤ 0.05x full: ${(b.incBytes / b.fullBytes).toFixed(3)}x`);
    console.log(`  (c) ≤ 1 MiB and ≤ 5 s: ${mb(c.incBytes)}, snapshot stage ${sec(c.incSnapshotSeconds)}`);
    console.log(`  repository on disk after all: ${mb(dirBytes(path.join(incremental, 'dest')))}`);

    await rssFigures(db);
  })();
}

main()
  .catch((error) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(() => {
    if (!keep && !arg('dir')) fs.rmSync(workDir, { recursive: true, force: true });
  });
