import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';

export function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'litekeep-pipeline-'));
}

/** A real SQLite database of about `mb` MB: text rows (compressible) plus some random blobs (not). */
export function makeDatabase(file: string, mb = 3): void {
  const db = new Database(file);
  db.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT, body TEXT, blob BLOB)');
  const insert = db.prepare('INSERT INTO notes (title, body, blob) VALUES (?, ?, ?)');
  const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india'];
  const rows = Math.round(mb * 1000);
  db.transaction(() => {
    for (let i = 0; i < rows; i++) {
      const body = Array.from({ length: 120 }, (_, j) => words[(i * 7 + j * 3) % words.length]).join(' ');
      insert.run(`note ${i}`, `${body} #${i}`, i % 10 === 0 ? crypto.randomBytes(2000) : null);
    }
  })();
  db.close();
}

export function sha256sum(file: string): string {
  return execFileSync('sha256sum', [file], { encoding: 'utf8' }).split(' ')[0];
}

/** Runs a bash pipeline (pipefail), returning stdout; throws with stderr on failure. */
export function sh(script: string, env: Record<string, string> = {}): string {
  return execFileSync('bash', ['-o', 'pipefail', '-c', script], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

export const AGE_PTY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'age-pty.py');

/** age CLI key pair made by age-keygen. */
export function ageKeygen(
  dir: string,
  name = 'cli-key.txt',
): { file: string; recipient: string; identity: string } {
  const file = path.join(dir, name);
  execFileSync('age-keygen', ['-o', file], { stdio: 'ignore' });
  const recipient = execFileSync('age-keygen', ['-y', file], { encoding: 'utf8' }).trim();
  const identity = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;
  return { file, recipient, identity };
}
