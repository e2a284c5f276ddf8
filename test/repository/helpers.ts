import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { takeSnapshot } from '../../src/snapshot/index.js';
import type { SnapshotImage } from '../../src/repository/writer.js';

/** A database with some text, an index and a few blobs: pages of several kinds, like an app's. */
export function makeAppDatabase(file: string, rows = 2000, blobEvery = 50): void {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(`CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, email TEXT, name TEXT);
    CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, user INTEGER, body TEXT, attachment BLOB);
    CREATE INDEX IF NOT EXISTS messages_by_user ON messages (user);`);
  const user = db.prepare('INSERT INTO users (email, name) VALUES (?, ?)');
  const message = db.prepare('INSERT INTO messages (user, body, attachment) VALUES (?, ?, ?)');
  db.transaction(() => {
    for (let i = 0; i < rows / 10; i++) user.run(`user${i}@example.com`, `User ${i}`);
    for (let i = 0; i < rows; i++)
      message.run(
        i % 97,
        `message ${i}: ${'lorem ipsum dolor sit amet '.repeat(1 + (i % 7))}`,
        i % blobEvery === 0 ? crypto.randomBytes(3000) : null,
      );
  })();
  db.close();
}

/** Changes `share` of the messages at random and appends `append` new ones. */
export function changeDatabase(file: string, share: number, append = 0): void {
  const db = new Database(file);
  const count = (db.prepare('SELECT COUNT(*) FROM messages').pluck().get() as number) || 1;
  const update = db.prepare('UPDATE messages SET body = ? WHERE id = ?');
  const insert = db.prepare('INSERT INTO messages (user, body) VALUES (?, ?)');
  db.transaction(() => {
    for (let i = 0; i < Math.ceil(count * share); i++)
      update.run(`changed ${crypto.randomBytes(8).toString('hex')}`, 1 + crypto.randomInt(count));
    for (let i = 0; i < append; i++) insert.run(i % 97, `appended ${i} ${'x'.repeat(100)}`);
  })();
  db.close();
}

/** A real page-exact snapshot (SQLite's online backup API, in litekeep's snapshot process) and its facts. */
export async function snapshotImage(
  source: string,
  target: string,
  time = new Date(),
): Promise<SnapshotImage> {
  const facts = await takeSnapshot({
    source,
    target,
    mode: 'backup-api',
    busyTimeoutMs: 5000,
    integrity: 'full',
  });
  const sha256 = crypto.createHash('sha256').update(fs.readFileSync(target)).digest('hex');
  return {
    path: target,
    sha256,
    pageSize: facts.pageSize,
    pageCount: facts.pageCount,
    time,
    trigger: 'scheduled',
    integrity: facts.integrity,
    fingerprint: facts.fingerprint,
    sqliteVersion: facts.sqliteVersion,
    journalMode: facts.sourceJournalMode,
    backupFile: path.basename(target),
  };
}

export function sha256Of(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Every file under `dir`, relative, sorted. */
export function treeOf(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(path.join(d, e.name), r);
      else out.push(r);
    }
  };
  walk(dir, '');
  return out.sort();
}
