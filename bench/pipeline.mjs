// Benchmark of the artifact pipeline (hash → compress → age-encrypt → hash) against the stock CLIs on the
// same file, in one run. Usage: npm run build && node bench/pipeline.mjs [--size MiB] [--dir DIR] [--keep]
// Each litekeep case runs in its own child process so that its peak RSS (maxRSS) is its own.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = fileURLToPath(import.meta.url);
const distDir = process.env.LITEKEEP_DIST ?? path.join(path.dirname(here), '..', 'dist');
const api = () => import(pathToFileURL(path.join(distDir, 'pipeline', 'index.js')).href);

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

if (process.argv[2] === '--child') {
  const job = JSON.parse(process.argv[3]);
  const lib = await api();
  const start = performance.now();
  let bytes;
  if (job.kind === 'write') {
    const { writeArtifact } = lib;
    bytes = (await writeArtifact(job.source, job.out, job.options)).bytes;
  } else if (job.kind === 'restore') {
    const { restoreArtifactToFile } = lib;
    bytes = (await restoreArtifactToFile(job.source, job.out, job.options)).bytes;
  } else if (job.kind === 'library-age') {
    // The pure-JS payload path, for comparison with ours (the "before").
    const { Encrypter } = await import('age-encryption');
    const encrypter = new Encrypter();
    encrypter.addRecipient(job.recipient);
    const web = await encrypter.encrypt(Readable.toWeb(fs.createReadStream(job.source)));
    await pipeline(Readable.fromWeb(web), fs.createWriteStream(job.out));
    bytes = fs.statSync(job.out).size;
  }
  const ms = performance.now() - start;
  process.stdout.write(JSON.stringify({ ms, bytes, maxRssKiB: process.resourceUsage().maxRSS }));
  process.exit(0);
}

async function makeDatabase(file, mib) {
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(file);
  db.pragma('journal_mode = OFF');
  db.pragma('synchronous = OFF');
  db.exec(
    'CREATE TABLE events (id INTEGER PRIMARY KEY, at TEXT, user TEXT, kind TEXT, body TEXT, payload BLOB)',
  );
  const insert = db.prepare('INSERT INTO events (at, user, kind, body, payload) VALUES (?, ?, ?, ?, ?)');
  const words =
    'the of and to in is that for it as was with be by on not he this are or his from at which'.split(' ');
  const kinds = ['login', 'logout', 'purchase', 'view', 'comment', 'upload'];
  const target = mib * 1024 * 1024;
  let i = 0;
  const rand = Math.random;
  const batch = db.transaction((n) => {
    for (let k = 0; k < n; k++, i++) {
      const body = Array.from(
        { length: 20 + Math.floor(rand() * 60) },
        () => words[Math.floor(rand() * words.length)],
      ).join(' ');
      // A random blob now and then keeps the ratio near a real database's (~3x), not a text file's.
      const payload = i % 8 === 0 ? crypto.randomBytes(300) : null;
      insert.run(
        new Date(1.7e12 + i * 1000).toISOString(),
        `user${Math.floor(rand() * 5000)}`,
        kinds[i % 6],
        body,
        payload,
      );
    }
  });
  while (fs.statSync(file).size < target) batch(20000);
  db.close();
}

function runChild(job) {
  const r = spawnSync(process.execPath, [here, '--child', JSON.stringify(job)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`child ${JSON.stringify(job.label)} failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

function runShell(script) {
  const start = performance.now();
  const r = spawnSync('bash', ['-o', 'pipefail', '-c', script], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${script} failed: ${r.stderr}`);
  return performance.now() - start;
}

const sizeMiB = Number(arg('size', '1024'));
const dir = fs.mkdtempSync(path.join(arg('dir', os.tmpdir()), 'litekeep-bench-'));
try {
  const db = path.join(dir, 'bench.db');
  process.stderr.write(`making a ${sizeMiB} MiB SQLite database in ${dir} ...\n`);
  await makeDatabase(db, sizeMiB);
  const plainBytes = fs.statSync(db).size;
  const { generateIdentity } = await api();
  const keyFile = path.join(dir, 'key.txt');
  const { recipient } = await generateIdentity(keyFile);
  const identities = fs
    .readFileSync(keyFile, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('AGE-SECRET-KEY-1'));
  const hasAge = spawnSync('age', ['--version']).status === 0;
  const out = (name) => path.join(dir, name);
  const cases = [
    ['none', false, `cp "${db}" "${out('cli.none')}"`, 'cp'],
    ['none', true, `age -r ${recipient} -o "${out('cli.age')}" "${db}"`, 'age -r'],
    ['gzip', false, `gzip -6 -c "${db}" > "${out('cli.gz')}"`, 'gzip -6'],
    ['gzip', true, `gzip -6 -c "${db}" | age -r ${recipient} > "${out('cli.gz.age')}"`, 'gzip -6 | age -r'],
    ['zstd', false, `zstd -3 -q -c "${db}" > "${out('cli.zst')}"`, 'zstd -3'],
    [
      'zstd',
      true,
      `zstd -3 -q -c "${db}" | age -r ${recipient} > "${out('cli.zst.age')}"`,
      'zstd -3 | age -r',
    ],
  ];
  const rows = [];
  const mbps = (ms) => plainBytes / 1e6 / (ms / 1000);
  for (const [compression, encrypt, script, baseline] of cases) {
    if (encrypt && !hasAge) continue;
    const label = `litekeep ${compression}${encrypt ? ' + age' : ''}`;
    const file = out(`lk.${compression}${encrypt ? '.age' : ''}`);
    const options = { compression, recipients: encrypt ? [recipient] : undefined };
    const lk = runChild({ kind: 'write', label, source: db, out: file, options });
    const cliMs = runShell(script);
    rows.push({
      case: label,
      'MB/s': mbps(lk.ms).toFixed(0),
      baseline,
      'baseline MB/s': mbps(cliMs).toFixed(0),
      'speed vs baseline': `${(cliMs / lk.ms).toFixed(2)}x`,
      ratio: (plainBytes / lk.bytes).toFixed(2),
      'peak RSS MB': (lk.maxRssKiB / 1024).toFixed(0),
    });
    fs.rmSync(out(path.basename(script.match(/"([^"]*cli\.[^"]*)"/)[1])), { force: true });
    if (compression === 'zstd' || compression === 'none') {
      const restored = runChild({
        kind: 'restore',
        label: `restore ${label}`,
        source: file,
        out: out('restored.db'),
        options: { compression, encrypted: encrypt, identities },
      });
      const cliRestore = encrypt
        ? `age -d -i "${keyFile}" "${file}" ${compression === 'zstd' ? '| zstd -d -q' : ''} > "${out('cli-restored.db')}"`
        : `${compression === 'zstd' ? `zstd -d -q -c "${file}"` : `cat "${file}"`} > "${out('cli-restored.db')}"`;
      const cliMs2 = runShell(cliRestore);
      rows.push({
        case: `restore ${compression}${encrypt ? ' + age' : ''}`,
        'MB/s': mbps(restored.ms).toFixed(0),
        baseline: encrypt
          ? `age -d${compression === 'zstd' ? ' | zstd -d' : ''}`
          : compression === 'zstd'
            ? 'zstd -d'
            : 'cat',
        'baseline MB/s': mbps(cliMs2).toFixed(0),
        'speed vs baseline': `${(cliMs2 / restored.ms).toFixed(2)}x`,
        ratio: '',
        'peak RSS MB': (restored.maxRssKiB / 1024).toFixed(0),
      });
      fs.rmSync(out('restored.db'), { force: true });
      fs.rmSync(out('cli-restored.db'), { force: true });
    }
    fs.rmSync(file, { force: true });
  }
  const lib = runChild({ kind: 'library-age', label: 'library', source: db, out: out('lib.age'), recipient });
  rows.push({
    case: 'age-encryption library STREAM (before)',
    'MB/s': mbps(lib.ms).toFixed(0),
    baseline: '',
    'baseline MB/s': '',
    'speed vs baseline': '',
    ratio: '',
    'peak RSS MB': (lib.maxRssKiB / 1024).toFixed(0),
  });
  console.log(
    `plain database: ${(plainBytes / 1048576).toFixed(0)} MiB; MB = 10^6 bytes; ${os.cpus().length} cores`,
  );
  console.table(rows);
} finally {
  if (!process.argv.includes('--keep')) fs.rmSync(dir, { recursive: true, force: true });
}
