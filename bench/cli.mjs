#!/usr/bin/env node
// The commands users run (`litekeep backup`, `litekeep restore latest --to`), each a child process as a user
// runs it, against the command-line tools doing the same work done well, in the same run, interleaved. Time is
// the wall clock of the whole command, start-up included; memory is the peak, over the run, of the RSS (and PSS)
// summed over the command and every process below it, sampled every 50 ms from /proc. Not a test: it prints
// figures.
//
//   node bench/cli.mjs [--sizes 100M,1G,4G] [--runs 5] [--cases none,zstd,age,restore-zstd,restore-age]
//                      [--dir DIR] [--keep] [--json FILE] [--cli dist/cli/main.js]
//   (or BENCH_SIZES / BENCH_RUNS / BENCH_CASES / BENCH_DIR in the environment)
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { descendants } from './process-tree.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function arg(name, env, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i > 0) return process.argv[i + 1];
  return process.env[env] ?? fallback;
}

/** `100M`, `1G`, `4G` or a number of MiB. */
function parseSize(text) {
  const m = /^(\d+(?:\.\d+)?)([MG]?)i?B?$/i.exec(text.trim());
  if (!m) throw new Error(`bad size '${text}': use e.g. 100M, 1G, 4G`);
  return Math.round(Number(m[1]) * (m[2].toUpperCase() === 'G' ? 1024 : 1));
}

// Another build (e.g. of an older commit) can be measured the same way: --cli path/to/dist/cli/main.js.
const cli = path.resolve(arg('cli', 'BENCH_CLI', path.join(root, 'dist', 'cli', 'main.js')));
const sizes = arg('sizes', 'BENCH_SIZES', '100M,1G').split(',').map(parseSize);
const runs = Number(arg('runs', 'BENCH_RUNS', '5'));
const caseNames = arg('cases', 'BENCH_CASES', 'none,zstd,age,restore-zstd,restore-age').split(',');
const keep = process.argv.includes('--keep');
const jsonOut = arg('json', 'BENCH_JSON', undefined);
const givenDir = arg('dir', 'BENCH_DIR', undefined);
const workDir = givenDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'litekeep-bench-cli-'));
fs.mkdirSync(workDir, { recursive: true });

if (!fs.existsSync(cli)) {
  console.error('build first: npm run build');
  process.exit(2);
}
const missing = [
  'sqlite3',
  'zstd',
  'openssl',
  ...(caseNames.some((c) => c.includes('age')) ? ['age', 'age-keygen'] : []),
].filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
if (missing.length) {
  console.error(
    `bench/cli.mjs needs ${missing.join(', ')} for the command-line side (apt-get install -y sqlite3 zstd openssl age)`,
  );
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------------------
// The database: an app's tables with indexes, text that compresses like text and blobs that do not.

const WORDS = (() => {
  // A fixed vocabulary (seeded, so every run builds the same kind of text).
  let seed = 42;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const letters = 'etaoinshrdlucmfwypvbgkqjxz';
  return Array.from({ length: 4000 }, () => {
    const n = 2 + Math.floor(rand() * 9);
    let w = '';
    for (let i = 0; i < n; i++) w += letters[Math.floor(rand() ** 2 * letters.length)];
    return w;
  });
})();

function corpus(bytes) {
  const parts = [];
  let n = 0;
  for (let i = 0; n < bytes; i++) {
    const w = WORDS[(i * 7919 + (i >> 3) * 104729) % WORDS.length];
    parts.push(w);
    n += w.length + 1;
  }
  return parts.join(' ');
}

function buildDatabase(file, mib) {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  db.exec(`
    CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, created TEXT NOT NULL);
    CREATE TABLE messages (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
      created TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL, attachment BLOB);
  `);
  const text = corpus(1 << 20);
  db.prepare(
    `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
     INSERT INTO users (name, email, created)
     SELECT substr(@text, 1 + abs(random()) % 100000, 12), 'u' || i || '@example.org',
            datetime(1600000000 + i * 977, 'unixepoch') FROM n`,
  ).run({ text });
  // About 2.7 KB a row: 1.5 KB of text, a 2 KiB random blob on every other row.
  const rows = Math.ceil((mib * 2 ** 20) / 2900);
  const insert = db.prepare(
    `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < @count)
     INSERT INTO messages (user_id, created, subject, body, attachment)
     SELECT 1 + abs(random()) % 20000, datetime(1700000000 + abs(random()) % 60000000, 'unixepoch'),
            substr(@text, 1 + abs(random()) % 1000000, 40),
            substr(@text, 1 + abs(random()) % 1000000, 1200 + abs(random()) % 600),
            CASE WHEN abs(random()) % 2 = 0 THEN randomblob(2048) END
     FROM n`,
  );
  for (let done = 0; done < rows; done += 20000) insert.run({ text, count: Math.min(20000, rows - done) });
  db.exec(`
    CREATE INDEX messages_by_user ON messages (user_id, created);
    CREATE INDEX messages_by_subject ON messages (subject);
    CREATE INDEX users_by_email ON users (email);
  `);
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}

// ---------------------------------------------------------------------------------------------------------
// Measuring a process tree.

const PAGE = Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }));

function memoryOf(pid) {
  let rss = 0;
  let pss = 0;
  try {
    rss = Number(fs.readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * PAGE;
    const rollup = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    pss = Number(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? 0) * 1024;
  } catch {
    // gone meanwhile
  }
  return { rss, pss };
}

/** Runs `command` and returns its wall time and the peak RSS/PSS of its whole process tree. */
function measure(command, args, { env, cwd } = {}) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { env, cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr = (stderr + chunk).slice(-2000)));
    let peakRss = 0;
    let peakPss = 0;
    const sample = () => {
      let rss = 0;
      let pss = 0;
      for (const pid of descendants(child.pid)) {
        const m = memoryOf(pid);
        rss += m.rss;
        pss += m.pss;
      }
      peakRss = Math.max(peakRss, rss);
      peakPss = Math.max(peakPss, pss);
    };
    const timer = setInterval(sample, 50);
    child.on('error', reject);
    child.on('exit', (code) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      clearInterval(timer);
      if (code !== 0) reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${stderr.trim()}`));
      else resolve({ seconds, peakRss, peakPss });
    });
  });
}

// ---------------------------------------------------------------------------------------------------------
// The cases.

const q = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;
const cleanEnv = Object.fromEntries(
  Object.entries(process.env).filter(
    ([k]) =>
      !k.startsWith('LITEKEEP_') &&
      !['DATABASE_URL', 'BACKUP_DIR', 'AI_WORKSPACE', 'GOOGLE_APPLICATION_CREDENTIALS'].includes(k),
  ),
);
const shell = (script) => ['bash', ['-c', `set -euo pipefail\n${script}`]];

/** The same work as a backup, with the sqlite3 CLI, zstd, age and openssl, parallel where the tools allow. */
function backupScript(db, out, packing, recipient) {
  const tmp = `${out}.snapshot`;
  const check = `${out}.check`;
  const pack =
    packing === 'none'
      ? ''
      : `zstd -3 -q -c ${q(tmp)}${packing === 'age' ? ` | age -r ${q(recipient)}` : ''} | tee ${q(`${out}.part`)} | openssl dgst -sha256 -r > /dev/null & pack=$!`;
  return `
    # A consistent snapshot (made durable once, at the end, as litekeep does)
    sqlite3 ${q(db)} "PRAGMA synchronous=OFF; VACUUM INTO '${tmp}'"
    # integrity_check, sha256 of the snapshot and the packing, side by side
    sqlite3 ${q(tmp)} 'PRAGMA integrity_check' > ${q(check)} & check=$!
    openssl dgst -sha256 -r ${q(tmp)} > /dev/null & hash=$!
    ${pack}
    wait $check; wait $hash; ${packing === 'none' ? '' : 'wait $pack'}
    test "$(cat ${q(check)})" = ok
    ${packing === 'none' ? `mv ${q(tmp)} ${q(out)}` : `mv ${q(`${out}.part`)} ${q(out)}; rm ${q(tmp)}`}
    sync ${q(out)}; sync -f ${q(path.dirname(out))}
    rm ${q(check)}`;
}

function restoreScript(artifact, out, encrypted, identity) {
  const part = `${out}.part`;
  return `
    ${encrypted ? `age -d -i ${q(identity)} ${q(artifact)} | zstd -d -q -c > ${q(part)}` : `zstd -d -q -c ${q(artifact)} > ${q(part)}`}
    test "$(sqlite3 ${q(part)} 'PRAGMA integrity_check')" = ok
    sync ${q(part)}; mv ${q(part)} ${q(out)}; sync -f ${q(path.dirname(out))}`;
}

const CASES = {
  none: { title: 'backup --compression none', same: 'VACUUM INTO + integrity_check ‖ sha256 + sync' },
  zstd: { title: 'backup (zstd)', same: 'the same ‖ zstd -3 | sha256' },
  age: { title: 'backup (zstd + age)', same: 'the same ‖ zstd -3 | age -r | sha256' },
  'restore-zstd': { title: 'restore latest --to (zstd)', same: 'zstd -d + integrity_check + sync' },
  'restore-age': {
    title: 'restore latest --to (zstd + age)',
    same: 'age -d | zstd -d + integrity_check + sync',
  },
};

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const mb = (bytes) => `${(bytes / 1e6).toFixed(0)} MB`;
const secs = (list) =>
  `${median(list).toFixed(2)} s (${Math.min(...list).toFixed(2)}–${Math.max(...list).toFixed(2)})`;

async function startupFigure(env, cwd) {
  const times = [];
  for (let i = 0; i < 11; i++)
    times.push((await measure(process.execPath, [cli, '--version'], { env, cwd })).seconds);
  return { median: median(times), min: Math.min(...times), max: Math.max(...times) };
}

async function benchSize(mib, key) {
  const dir = path.join(workDir, `size-${mib}`);
  fs.mkdirSync(dir, { recursive: true });
  const db = path.join(dir, 'app.db');
  if (!fs.existsSync(db)) {
    process.stdout.write(`building a ${mib} MiB database with indexes... `);
    buildDatabase(db, mib);
    console.log(`${(fs.statSync(db).size / 2 ** 20).toFixed(0)} MiB`);
  }
  const cwd = path.join(dir, 'cwd'); // no config file, no .env: the flags and the environment say it all
  fs.mkdirSync(cwd, { recursive: true });
  const plainEnv = { ...cleanEnv };
  const ageEnv = { ...cleanEnv, LITEKEEP_ENCRYPTION_RECIPIENTS: key.recipient };
  const lk = (args, env) => measure(process.execPath, [cli, ...args], { env, cwd });
  const runDir = path.join(dir, 'run');
  const fresh = () => {
    fs.rmSync(runDir, { recursive: true, force: true });
    fs.mkdirSync(runDir, { recursive: true });
  };
  const warm = () => execFileSync('cat', [db], { stdio: ['ignore', 'ignore', 'inherit'] });

  // The backups that the restore cases restore, made once by litekeep.
  const sources = {};
  for (const [name, env] of [
    ['restore-zstd', plainEnv],
    ['restore-age', ageEnv],
  ]) {
    if (!caseNames.includes(name)) continue;
    const folder = path.join(dir, name);
    fs.rmSync(folder, { recursive: true, force: true });
    await lk(['backup', '--db', db, '--dir', folder, '--compression', 'zstd'], env);
    const file = fs.readdirSync(folder).find((f) => f.startsWith('backup-'));
    sources[name] = { folder, artifact: path.join(folder, file) };
  }

  const contenders = {
    none: {
      litekeep: () =>
        lk(['backup', '--db', db, '--dir', path.join(runDir, 'lk'), '--compression', 'none'], plainEnv),
      same: () => measure(...shell(backupScript(db, path.join(runDir, 'same.db'), 'none'))),
    },
    zstd: {
      litekeep: () =>
        lk(['backup', '--db', db, '--dir', path.join(runDir, 'lk'), '--compression', 'zstd'], plainEnv),
      same: () => measure(...shell(backupScript(db, path.join(runDir, 'same.db.zst'), 'zstd'))),
    },
    age: {
      litekeep: () =>
        lk(['backup', '--db', db, '--dir', path.join(runDir, 'lk'), '--compression', 'zstd'], ageEnv),
      same: () =>
        measure(...shell(backupScript(db, path.join(runDir, 'same.db.zst.age'), 'age', key.recipient))),
    },
    'restore-zstd': {
      litekeep: () =>
        lk(
          [
            'restore',
            'latest',
            '--db',
            db,
            '--dir',
            sources['restore-zstd'].folder,
            '--to',
            path.join(runDir, 'lk.db'),
            '--yes',
          ],
          plainEnv,
        ),
      same: () =>
        measure(
          ...shell(restoreScript(sources['restore-zstd'].artifact, path.join(runDir, 'same.db'), false)),
        ),
    },
    'restore-age': {
      litekeep: () =>
        lk(
          [
            'restore',
            'latest',
            '--db',
            db,
            '--dir',
            sources['restore-age'].folder,
            '--to',
            path.join(runDir, 'lk.db'),
            '--yes',
            '--identity',
            key.file,
          ],
          ageEnv,
        ),
      same: () =>
        measure(
          ...shell(
            restoreScript(sources['restore-age'].artifact, path.join(runDir, 'same.db'), true, key.file),
          ),
        ),
    },
  };

  const results = Object.fromEntries(caseNames.map((c) => [c, { litekeep: [], same: [] }]));
  for (let run = 0; run < runs; run++) {
    for (const name of caseNames) {
      // Interleaved, and alternating which goes first, so that a slow patch of the machine hits both.
      const order = run % 2 === 0 ? ['litekeep', 'same'] : ['same', 'litekeep'];
      for (const who of order) {
        fresh();
        warm();
        const r = await contenders[name][who]();
        results[name][who].push(r);
        process.stdout.write(
          `  ${mib} MiB ${name} run ${run + 1}/${runs} ${who}: ${r.seconds.toFixed(2)} s, tree ${mb(r.peakRss)} RSS\n`,
        );
      }
    }
  }
  fs.rmSync(runDir, { recursive: true, force: true });
  return { mib, dbBytes: fs.statSync(db).size, results };
}

function report(all, startup) {
  const lines = [];
  lines.push(
    `litekeep --version: median ${startup.median.toFixed(3)} s (${startup.min.toFixed(3)}–${startup.max.toFixed(3)}), 11 runs`,
  );
  for (const { mib, dbBytes, results } of all) {
    const target = mib <= 256 ? 1.5 : 1.1;
    lines.push('');
    lines.push(
      `== ${mib} MiB requested, database file ${(dbBytes / 2 ** 20).toFixed(0)} MiB; median of ${runs} (min–max) ==`,
    );
    lines.push(
      '| case | litekeep | the same work | ratio | target | litekeep peak RSS / PSS (tree) | the same work peak RSS |',
    );
    lines.push('| --- | --- | --- | --- | --- | --- | --- |');
    for (const [name, r] of Object.entries(results)) {
      const lt = r.litekeep.map((x) => x.seconds);
      const st = r.same.map((x) => x.seconds);
      const ratio = median(lt) / median(st);
      const rss = Math.max(...r.litekeep.map((x) => x.peakRss));
      const pss = Math.max(...r.litekeep.map((x) => x.peakPss));
      const sameRss = Math.max(...r.same.map((x) => x.peakRss));
      const met = ratio <= target ? 'met' : 'missed';
      lines.push(
        `| ${CASES[name].title} | ${secs(lt)} | ${secs(st)} (${CASES[name].same}) | ${ratio.toFixed(2)}x | ≤ ${target}x: ${met} | ${mb(rss)} / ${mb(pss)}${rss < 150e6 ? '' : ' (over 150 MB)'} | ${mb(sameRss)} |`,
      );
    }
  }
  return lines.join('\n');
}

try {
  console.log(
    `litekeep CLI bench: node ${process.version}, ${os.cpus().length} cores, load ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}, ` + `sizes ${sizes.map((s) => `${s} MiB`).join(', ')}, ${runs} runs, work dir ${workDir}`,
  );
  const keyFile = path.join(workDir, 'age-key.txt');
  if (!fs.existsSync(keyFile)) execFileSync('age-keygen', ['-o', keyFile], { stdio: 'ignore' });
  const recipient = execFileSync('age-keygen', ['-y', keyFile], { encoding: 'utf8' }).trim();
  const key = { file: keyFile, recipient };
  const startup = await startupFigure(cleanEnv, workDir);
  const all = [];
  for (const mib of sizes) all.push(await benchSize(mib, key));
  const text = report(all, startup);
  console.log(`\n${text}`);
  console.log(
    `\nload average at the end: ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  if (jsonOut)
    fs.writeFileSync(
      jsonOut,
      JSON.stringify({ date: new Date().toISOString(), startup, all, text }, null, 2),
    );
} finally {
  if (!keep && !givenDir) fs.rmSync(workDir, { recursive: true, force: true });
}
