#!/usr/bin/env node
// Point-in-time recovery under load (issue 15): an app committing small transactions at a steady rate to a
// large WAL database, first alone, then while `litekeep replicate` (default mode) follows it; then a burst at
// the machine's maximum, alone and replicated; then restores to random seconds against the restore of their
// base snapshot. Not a test: it prints figures.
//
//   node bench/pitr.mjs [--size MiB] [--rate tx/s] [--seconds N] [--burst-seconds N] [--restores N] [--dir DIR]
//                       [--fingerprint-every DURATION]
//   (npm run bench -- --only pitr [--size 1024] [...])
//
// Writer: its own process (better-sqlite3, WAL, synchronous=NORMAL as apps in WAL mode run, the default
// wal_autocheckpoint of 1000 pages); each commit inserts one ~120-byte row. Latency is the time of each
// transaction call. WAL size is sampled every 100 ms by the writer. Replication lag: every 200 ms the bench
// reads the WAL's last commit; the lag of that sample is the time until the shipper's state says it has shipped
// it (polled every 50 ms), so a sample's lag includes up to 200 ms of the app's commit being visible before the
// sample. litekeep's CPU is the user+system time of its process tree; memory the peak RSS summed over the tree.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { descendants } from './process-tree.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist', 'cli', 'main.js');
const { walMarkOf } = await import(pathToFileURL(path.join(root, 'dist', 'pitr', 'capture.js')).href);

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}
const sizeMiB = Number(arg('size', '1024'));
const rate = Number(arg('rate', '1000'));
const seconds = Number(arg('seconds', '600'));
const burstSeconds = Number(arg('burst-seconds', '30'));
const restores = Number(arg('restores', '3'));
/** `replicate.fingerprintEvery` for the run (default: litekeep's own default). */
const fingerprintEvery = arg('fingerprint-every', undefined);
const work = fs.mkdtempSync(path.join(arg('dir', os.tmpdir()), 'litekeep-bench-pitr-'));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------------------
// The database and the app.

function buildDatabase(file, mib) {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  db.exec(`CREATE TABLE filler (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
           CREATE TABLE events (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL);
           CREATE INDEX events_at ON events (at);`);
  const insert = db.prepare(
    `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < @count)
     INSERT INTO filler (body) SELECT randomblob(3000) FROM n`,
  );
  const rows = Math.ceil((mib * 2 ** 20) / 3100);
  for (let done = 0; done < rows; done += 20000) insert.run({ count: Math.min(20000, rows - done) });
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}

// One app process for the whole benchmark, its connection open throughout (as an app's is: the last connection
// closing checkpoints and deletes the WAL, which a follower must treat as a gap). `run RATE SECONDS LOG` commits
// at RATE tx/s (0: as fast as it can) and answers with its figures.
const WRITER = `
const Database = require('better-sqlite3');
const fs = require('fs');
const file = process.argv[1];
const db = new Database(file);
db.pragma('journal_mode = wal');
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 5000');
const insert = db.prepare('INSERT INTO events (at, kind, body) VALUES (?, ?, ?)');
const commit = db.transaction((at) => insert.run(at, 'tick', 'event at ' + at + ' ' + 'x'.repeat(80)).lastInsertRowid);
function run(rate, seconds, log) {
  const latencies = [];
  const commits = [];
  let errors = 0;
  let walMax = 0;
  const walSamples = [];
  const sampler = setInterval(() => {
    try { const s = fs.statSync(file + '-wal').size; walMax = Math.max(walMax, s); walSamples.push(s); } catch {}
  }, 100);
  const start = Date.now();
  const end = start + seconds * 1000;
  const perMs = rate / 1000;
  let done = 0;
  const one = () => {
    const t0 = process.hrtime.bigint();
    try {
      const id = commit(Date.now());
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      commits.push(Date.now(), Number(id));
    } catch (e) { errors++; }
    done++;
  };
  const finish = () => {
    clearInterval(sampler);
    fs.writeFileSync(log, JSON.stringify({ commits }));
    latencies.sort((a, b) => a - b);
    walSamples.sort((a, b) => a - b);
    const q = (xs, p) => xs.length ? xs[Math.min(xs.length - 1, Math.floor(xs.length * p))] : 0;
    process.stdout.write(JSON.stringify({ commits: done - errors, errors, seconds: (Date.now() - start) / 1000,
      p50: q(latencies, 0.5), p99: q(latencies, 0.99), max: latencies.at(-1) ?? 0,
      walMax, walP99: q(walSamples, 0.99) }) + '\\n');
  };
  const tick = () => {
    const now = Date.now();
    if (now >= end) return finish();
    if (perMs > 0) { const due = Math.floor((now - start) * perMs); while (done < due) one(); setTimeout(tick, 1); }
    else { for (let i = 0; i < 200; i++) one(); setImmediate(tick); }
  };
  tick();
}
require('readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const [verb, rate, seconds, log] = line.split(' ');
  if (verb === 'run') run(Number(rate), Number(seconds), log);
  if (verb === 'quit') { db.close(); process.exit(0); }
});
`;

function startApp(file) {
  const child = spawn(process.execPath, ['-e', WRITER, file], {
    cwd: root,
    env: { ...process.env, NODE_PATH: path.join(root, 'node_modules') },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const replies = [];
  readline.createInterface({ input: child.stdout }).on('line', (line) => replies.shift()?.(JSON.parse(line)));
  return {
    run: (txPerSecond, duration, log) =>
      new Promise((resolve) => {
        replies.push(resolve);
        child.stdin.write(`run ${txPerSecond} ${duration} ${log}\n`);
      }),
    quit: () => new Promise((resolve) => (child.on('exit', resolve), child.stdin.write('quit\n'))),
  };
}

// ---------------------------------------------------------------------------------------------------------
// litekeep and its process tree.

const PAGE = Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }));
const TICK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));

/** RSS summed over the tree, and the CPU seconds (user + system, with reaped children's) it has used. */
function tree(rootPid) {
  let rss = 0;
  let cpu = 0;
  for (const pid of descendants(rootPid)) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime, stime, cutime, cstime: fields 14-17 of stat, 11-14 after the command name.
      cpu += (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / TICK;
      rss += Number(fs.readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * PAGE;
    } catch {
      // gone meanwhile
    }
  }
  return { rss, cpu };
}

function startReplicate(dir) {
  const child = spawn(process.execPath, [cli, 'replicate', '--json'], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const events = [];
  const waiting = [];
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      const event = JSON.parse(line);
      events.push({ ...event, at: Date.now() });
      for (const w of waiting.splice(0)) w();
    } catch {
      // not an event
    }
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    events,
    exited,
    stderr: () => stderr,
    async waitFor(test, ms = 1800_000) {
      const deadline = Date.now() + ms;
      while (!events.some(test)) {
        if (Date.now() > deadline) throw new Error('timed out waiting for litekeep');
        if (child.exitCode !== null)
          throw new Error(`litekeep replicate exited ${child.exitCode}: ${stderr}`);
        await new Promise((resolve) => {
          waiting.push(resolve);
          setTimeout(resolve, 1000);
        });
      }
    },
  };
}

/** Lag samples while the writer runs: WAL end marks, each answered when the shipper's state has shipped it. */
function sampleLag(db, stateFile, until) {
  const pending = [];
  const lags = [];
  const shipped = (mark, state) => {
    const last = state?.lastShipped;
    if (!last) return false;
    const a = last.generation;
    const b = mark.generation;
    if (a.salt1 === b.salt1 && a.salt2 === b.salt2) return last.frame >= mark.frame;
    return a.checkpointSequence > b.checkpointSequence || (state.epoch ?? 0) > 0;
  };
  const sampler = setInterval(async () => {
    const mark = await walMarkOf(db).catch(() => undefined);
    if (mark) pending.push({ at: Date.now(), mark });
  }, 200);
  const poller = setInterval(() => {
    let state;
    try {
      state = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
    } catch {
      return;
    }
    const now = Date.now();
    while (pending.length && shipped(pending[0].mark, state)) lags.push(now - pending.shift().at);
  }, 50);
  return until.then(async () => {
    clearInterval(sampler);
    // Whatever is still pending is answered within the next seconds, or counted at its age.
    const deadline = Date.now() + 15_000;
    while (pending.length && Date.now() < deadline) await sleep(50);
    clearInterval(poller);
    for (const p of pending) lags.push(Date.now() - p.at);
    return lags.sort((a, b) => a - b);
  });
}

async function timed(args, cwd) {
  const started = Date.now();
  await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`litekeep ${args.join(' ')}: ${code} ${err}`)),
    );
  });
  return (Date.now() - started) / 1000;
}

// ---------------------------------------------------------------------------------------------------------

const q = (xs, p) => (xs.length ? xs[Math.min(xs.length - 1, Math.floor(xs.length * p))] : NaN);
const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;
const ms = (n) => `${n.toFixed(2)} ms`;

async function main() {
  const db = path.join(work, 'app.db');
  console.log(`building a ${sizeMiB} MiB WAL database in ${work} ...`);
  buildDatabase(db, sizeMiB);
  fs.writeFileSync(
    path.join(work, 'litekeep.yml'),
    JSON.stringify({
      database: 'app.db',
      backupDir: 'backups',
      host: 'bench',
      notify: {},
      replicate: { enabled: true, interval: '1s', ...(fingerprintEvery ? { fingerprintEvery } : {}) },
      destinations: [{ name: 'vault', type: 'local', path: 'vault', format: 'incremental' }],
    }),
  );
  const stateFile = path.join(work, 'backups', '.litekeep', 'replication', 'vault.json');
  const results = {};

  const app = startApp(db);
  console.log(`steady ${rate} tx/s for ${seconds} s, without litekeep ...`);
  results.alone = await app.run(rate, seconds, path.join(work, 'alone.json'));

  console.log('starting litekeep replicate; a few commits, then its first base snapshot ...');
  const litekeep = startReplicate(work);
  await litekeep.waitFor((e) => e.kind === 'started');
  const baseStarted = Date.now();
  await app.run(20, 2, path.join(work, 'prime.json'));
  await litekeep.waitFor((e) => e.kind === 'base' && e.ok);
  results.firstBaseSeconds = (Date.now() - baseStarted) / 1000;
  await sleep(3000);
  const cpuBefore = tree(litekeep.child.pid).cpu;
  let peakRss = 0;
  const memory = setInterval(() => (peakRss = Math.max(peakRss, tree(litekeep.child.pid).rss)), 250);

  console.log(`steady ${rate} tx/s for ${seconds} s, with litekeep replicate ...`);
  const eventsBefore = litekeep.events.length;
  const steadyStarted = Date.now();
  const writing = app.run(rate, seconds, path.join(work, 'replicated.json'));
  const lags = sampleLag(db, stateFile, writing);
  results.replicated = await writing;
  results.lag = await lags;
  results.cpuSeconds = tree(litekeep.child.pid).cpu - cpuBefore;
  results.peakRss = peakRss;
  const during = litekeep.events.slice(eventsBefore);
  const steadyGaps = during.filter((e) => e.kind === 'gap' && e.reason !== 'start');
  results.gaps = steadyGaps.length;
  // When each came, from the start of the steady run (to tell them from the moments litekeep does other work).
  results.gapTimes = steadyGaps.map((e) => ((e.at - steadyStarted) / 1000).toFixed(1));
  results.errors = during.filter((e) => e.kind === 'error').map((e) => e.error);

  console.log(`burst at the machine's maximum for ${burstSeconds} s, with litekeep ...`);
  const burstEvents = litekeep.events.length;
  const burstWriting = app.run(0, burstSeconds, path.join(work, 'burst-replicated.json'));
  const burstLags = sampleLag(db, stateFile, burstWriting);
  results.burstReplicated = await burstWriting;
  results.burstLag = await burstLags;
  results.burstGaps = litekeep.events
    .slice(burstEvents)
    .filter((e) => e.kind === 'gap' && e.reason !== 'start').length;
  clearInterval(memory);
  results.peakRss = Math.max(results.peakRss, peakRss);
  litekeep.child.kill('SIGTERM');
  await litekeep.exited;

  console.log(`burst at the machine's maximum for ${burstSeconds} s, without litekeep ...`);
  results.burstAlone = await app.run(0, burstSeconds, path.join(work, 'burst-alone.json'));
  await app.quit();

  // Restores to random seconds of the steady replicated run, against the restore of the base they start from.
  const { commits } = JSON.parse(fs.readFileSync(path.join(work, 'replicated.json'), 'utf8'));
  const times = [];
  for (let i = 0; i < commits.length; i += 2) times.push([commits[i], commits[i + 1]]);
  results.restores = [];
  for (let i = 0; i < restores; i++) {
    const [at] = times[Math.floor(((i + 0.5) / restores) * times.length)];
    const target = new Date(at + 1500);
    const out = path.join(work, `restored-${i}.db`);
    // Exit 3: restored, but only to the last whole point before a gap (counted and printed, not a crash).
    let partial = false;
    const restoreStarted = Date.now();
    const seconds = await timed(
      ['restore', '--from', 'vault', '--at', target.toISOString(), '--to', out, '--yes'],
      work,
    ).catch((error) => {
      if (!/: 3 /.test(error.message) || !fs.existsSync(out)) throw error;
      partial = true;
      return (Date.now() - restoreStarted) / 1000;
    });
    const restored = new Database(out, { readonly: true });
    const last = restored.prepare('SELECT max(id) AS id FROM events').get().id;
    restored.close();
    // The last commit at or before the moment, and at or before a second earlier (commits seen within 1 s).
    const exact = times.filter(([t]) => t <= target.getTime()).at(-1)?.[1];
    const earlier = times.filter(([t]) => t <= target.getTime() - 1000).at(-1)?.[1];
    fs.rmSync(out);
    results.restores.push({ at: target.toISOString(), seconds, last, exact, earlier, partial });
  }
  // The newest snapshot is the base of every moment after it: restored alone, as any snapshot.
  const baseOut = path.join(work, 'restored-base.db');
  results.baseRestoreSeconds = await timed(
    ['restore', 'latest', '--from', 'vault', '--to', baseOut, '--yes'],
    work,
  );
  fs.rmSync(baseOut);
  results.segments = fs.readdirSync(path.join(work, 'vault', 'app', 'bench', 'repo', 'wal')).length;

  report(results);
  if (!process.argv.includes('--keep')) fs.rmSync(work, { recursive: true, force: true });
}

function report(r) {
  const line = (name, a, b) => console.log(`| ${name} | ${a} | ${b} |`);
  console.log(
    `\nmachine: ${os.cpus().length} cores, load average ${os
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}`,
  );
  console.log(`database ${sizeMiB} MiB; first base snapshot ${r.firstBaseSeconds.toFixed(1)} s`);
  console.log(`\n| steady ${rate} tx/s, ${seconds} s | without litekeep | with litekeep replicate |`);
  console.log('| --- | --- | --- |');
  line(
    'commits (errors)',
    `${r.alone.commits} (${r.alone.errors})`,
    `${r.replicated.commits} (${r.replicated.errors})`,
  );
  line(
    'commit latency p50 / p99 / max',
    `${ms(r.alone.p50)} / ${ms(r.alone.p99)} / ${ms(r.alone.max)}`,
    `${ms(r.replicated.p50)} / ${ms(r.replicated.p99)} / ${ms(r.replicated.max)}`,
  );
  line('p99 ratio', '1', (r.replicated.p99 / r.alone.p99).toFixed(2) + 'x');
  line(
    'WAL size p99 / max',
    `${mb(r.alone.walP99)} / ${mb(r.alone.walMax)}`,
    `${mb(r.replicated.walP99)} / ${mb(r.replicated.walMax)}`,
  );
  console.log(
    `\nreplication lag (${r.lag.length} samples): p50 ${q(r.lag, 0.5)} ms, p99 ${q(r.lag, 0.99)} ms, max ${r.lag.at(-1)} ms`,
  );
  console.log(
    `gaps: ${r.gaps} steady${r.gapTimes.length ? ` (at ${r.gapTimes.join(', ')} s)` : ''}, ${r.burstGaps} in the burst; shipping errors: ${r.errors.length ? r.errors.join('; ') : 'none'}`,
  );
  console.log(
    `litekeep CPU ${r.cpuSeconds.toFixed(1)} s over ${seconds} s (${((100 * r.cpuSeconds) / seconds).toFixed(1)}% of a core); peak RSS of its tree ${mb(r.peakRss)}`,
  );
  console.log(`\n| burst at the maximum, ${burstSeconds} s | without litekeep | with litekeep replicate |`);
  console.log('| --- | --- | --- |');
  line(
    'commits/s',
    (r.burstAlone.commits / r.burstAlone.seconds).toFixed(0),
    (r.burstReplicated.commits / r.burstReplicated.seconds).toFixed(0),
  );
  line('commit latency p99', ms(r.burstAlone.p99), ms(r.burstReplicated.p99));
  line('WAL size max', mb(r.burstAlone.walMax), mb(r.burstReplicated.walMax));
  console.log(`burst lag p99 ${q(r.burstLag, 0.99)} ms, max ${r.burstLag.at(-1)} ms`);
  console.log(
    `\nrestores (${r.segments} segments stored; the newest snapshot restored alone: ${r.baseRestoreSeconds.toFixed(1)} s):`,
  );
  for (const x of r.restores)
    console.log(
      `  --at ${x.at}: ${x.seconds.toFixed(1)} s (${(x.seconds / r.baseRestoreSeconds).toFixed(2)}x), last id ${x.last} (commits by then: ${x.exact}; by a second earlier: ${x.earlier})${x.partial ? ' — partial: stopped at a gap before it (exit 3)' : ''}`,
    );
}

await main();
