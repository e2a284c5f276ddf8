#!/usr/bin/env node
// `npm run bench`: the commands users run (`litekeep backup`, `litekeep restore`), whole process tree, against
// the command-line tools doing the same work, in one run (bench/cli.mjs). The upload benchmarks and the
// pipeline micro-benchmark run on request. Not a test: it prints figures.
//
//   npm run bench [-- --sizes 100M,1G,4G --runs 5]        (or BENCH_SIZES=100M,1G,4G BENCH_RUNS=5 npm run bench)
//   npm run bench -- --only cli|s3|remote|pipeline|web|incremental [--size MiB] [--rss-sizes MiB,MiB]
//                    (incremental also: [--rss-only] [--db-cache DIR] [--no-restic] [--restore-rounds N])
//   npm run bench -- --only pitr [--size MiB] [--rate tx/s] [--seconds N] [--burst-seconds N]
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const onlyAt = args.indexOf('--only');
const only = onlyAt >= 0 ? args[onlyAt + 1] : 'cli';
const rest = onlyAt >= 0 ? [...args.slice(0, onlyAt), ...args.slice(onlyAt + 2)] : args;
const sizeAt = rest.indexOf('--size');
const size = sizeAt >= 0 ? rest[sizeAt + 1] : '512';

function runScript(script, scriptArgs, nodeArgs = []) {
  console.log(`== ${script} ==`);
  const r = spawnSync(process.execPath, [...nodeArgs, path.join(root, 'bench', script), ...scriptArgs], {
    stdio: 'inherit',
  });
  if (r.status !== 0) {
    console.log(`${script} exited ${r.status}`);
    process.exitCode = r.status ?? 1;
  }
}

if (only === 'cli') runScript('cli.mjs', rest);
else if (only === 'pipeline') runScript('pipeline.mjs', ['--size', size]);
else if (only === 's3') runScript('s3.mjs', ['--size', size]);
// TypeScript through tsx: it starts the same rclone and OpenSSH servers as the tests.
else if (only === 'remote') runScript('remote.ts', ['--size', size], ['--import', 'tsx']);
// The status page rendered from a catalog of 10,000 runs (issue 16).
else if (only === 'web') runScript('web.mjs', []);
// Incremental against full and restic (issue 14): a database of --size MiB, peak memory at each of --rss-sizes.
else if (only === 'incremental') {
  const rssAt = rest.indexOf('--rss-sizes');
  runScript('incremental.mjs', [
    '--size',
    sizeAt >= 0 ? size : '1024',
    '--rss-sizes',
    rssAt >= 0 ? rest[rssAt + 1] : '1024,4096',
    ...['--rss-only', '--no-restic', '--keep'].filter((flag) => rest.includes(flag)),
    ...['--db-cache', '--dir', '--restore-rounds'].flatMap((option) =>
      rest.includes(option) ? [option, rest[rest.indexOf(option) + 1]] : [],
    ),
  ]);
} else if (only === 'pitr') {
  // Point-in-time recovery (issue 15): an app at --rate tx/s for --seconds, alone and replicated, and a burst.
  runScript('pitr.mjs', sizeAt >= 0 ? rest : ['--size', '1024', ...rest]);
} else {
  console.error(`--only ${only}: expected cli, s3, remote, pipeline, web, incremental or pitr`);
  process.exitCode = 2;
}
