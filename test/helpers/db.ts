import fs from 'node:fs';
import Database from 'better-sqlite3';

export { tempDir } from './temp.js';

/** A small real database with `rows` rows in table `items`. */
export function makeDatabase(file: string, rows = 200, journalMode: 'wal' | 'delete' = 'wal'): void {
  const db = new Database(file);
  db.pragma(`journal_mode = ${journalMode}`);
  db.exec('CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, payload BLOB)');
  const insert = db.prepare('INSERT INTO items (name, payload) VALUES (?, ?)');
  db.transaction(() => {
    for (let i = 0; i < rows; i++) insert.run(`item ${i}`, Buffer.alloc(64, i % 256));
  })();
  db.close();
}

/** A database of `rows` rows of `bytesPerRow` random (incompressible) bytes in table `blobs`. */
export function makeRandomDatabase(file: string, rows: number, bytesPerRow = 8000): void {
  const db = new Database(file);
  db.exec('CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL)');
  db.prepare(
    'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) ' +
      'INSERT INTO blobs (data) SELECT randomblob(?) FROM n',
  ).run(rows, bytesPerRow);
  db.close();
}

export function countRows(file: string, table = 'items'): number {
  const db = new Database(file, { readonly: true });
  try {
    return (db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
  } finally {
    db.close();
  }
}

export function filesIn(dir: string): string[] {
  return fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
}
