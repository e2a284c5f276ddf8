import { spawnSync } from 'node:child_process';

/**
 * File work on a live database done by another process. POSIX locks belong to a process, and closing *any*
 * descriptor of a file drops every lock the process holds on it: opening the live database here (to copy it, to
 * fsync it, to read its header) would release the locks SQLite holds on it in this process — the restore's own
 * write lock, or those of an application that embeds litekeep — and let another connection commit, or roll
 * back a journal as hot, in the middle of it. A child opens and closes its own descriptors only.
 */
function runOutside(script: string, input: unknown): string {
  const child = spawnSync(process.execPath, ['-e', script, JSON.stringify(input)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
  });
  if (child.status !== 0) {
    const lines = (child.stderr ?? '').trim().split('\n');
    const reason = lines.find((l) => /^\w*Error|E[A-Z]{3,}/.test(l.trim())) ?? lines.at(-1);
    throw new Error(reason?.trim() || child.error?.message || `helper process exited with ${child.status}`);
  }
  return child.stdout;
}

/** Copies each `[from, to]`, creating `to` with mode 0600 before its first byte, and fsyncs it. */
export function copyOutside(pairs: [string, string][]): void {
  runOutside(
    `const fs = require('node:fs');
    const buffer = Buffer.allocUnsafe(1 << 20);
    for (const [from, to] of JSON.parse(process.argv[1])) {
      const input = fs.openSync(from, 'r');
      const output = fs.openSync(to, 'wx', 0o600);
      for (let position = 0, n; (n = fs.readSync(input, buffer, 0, buffer.length, position)) > 0; position += n) {
        for (let written = 0; written < n; ) written += fs.writeSync(output, buffer, written, n - written);
      }
      fs.fsyncSync(output);
      fs.closeSync(output);
      fs.closeSync(input);
    }`,
    pairs,
  );
}

/** fsyncs the files that exist among `files`. */
export function fsyncOutside(files: string[]): void {
  runOutside(
    `const fs = require('node:fs');
    for (const file of JSON.parse(process.argv[1])) {
      if (!fs.existsSync(file)) continue;
      const fd = fs.openSync(file, 'r');
      fs.fsyncSync(fd);
      fs.closeSync(fd);
    }`,
    files,
  );
}

/** The first `bytes` bytes of a file (fewer when it is shorter). */
export function readHeadOutside(file: string, bytes: number): Buffer {
  const hex = runOutside(
    `const fs = require('node:fs');
    const [file, bytes] = JSON.parse(process.argv[1]);
    const buffer = Buffer.alloc(bytes);
    const fd = fs.openSync(file, 'r');
    const n = fs.readSync(fd, buffer, 0, bytes, 0);
    fs.closeSync(fd);
    process.stdout.write(buffer.subarray(0, n).toString('hex'));`,
    [file, bytes],
  );
  return Buffer.from(hex.trim(), 'hex');
}
