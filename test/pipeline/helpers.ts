import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { generateIdentity, readIdentityFile } from '../../src/pipeline/index.js';
import { tempDir as trackedTempDir } from '../helpers/temp.js';

export function tempDir(): string {
  return trackedTempDir('litekeep-pipeline-');
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
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
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

export interface AgeKeyPair {
  file: string;
  recipient: string;
  identity: string;
}

/** An age key pair made by the library: what tests use when the age programs may not be installed. */
export async function ageKeyPair(dir: string, name = 'key.txt'): Promise<AgeKeyPair> {
  const file = path.join(dir, name);
  const { recipient } = await generateIdentity(file);
  const [identity] = await readIdentityFile(file);
  return { file, recipient, identity };
}

/** A key pair made by the age-keygen program (tests that call it first check that it is installed). */
export function ageKeygen(dir: string, name = 'cli-key.txt'): AgeKeyPair {
  const file = path.join(dir, name);
  execFileSync('age-keygen', ['-o', file], { stdio: 'ignore' });
  const recipient = execFileSync('age-keygen', ['-y', file], { encoding: 'utf8' }).trim();
  const identity = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;
  return { file, recipient, identity };
}
