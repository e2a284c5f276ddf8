import crypto from 'node:crypto';
import fs from 'node:fs';
import Database from 'better-sqlite3';
import type { Fingerprint } from '../catalog/index.js';
import { readHead } from '../util/held-files.js';
import { LitekeepError } from '../util/errors.js';

export type IntegrityMode = 'full' | 'quick';

export interface DatabaseFacts {
  integrity: string;
  pageSize: number;
  pageCount: number;
  sqliteVersion: string;
  journalMode: string;
  fingerprint: Fingerprint;
}

const SQLITE_HEADER = Buffer.from('SQLite format 3\0', 'latin1');

/** Checks, before SQLite gets to it, that a path is a readable SQLite file; throws a one-line error otherwise. */
export function assertSqliteFile(file: string, what = 'database'): fs.Stats {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new LitekeepError(`${what} not found: ${file}; check DATABASE_URL, the config file or --db`, {
        exitCode: 2,
        stage: 'snapshot',
      });
    }
    throw new LitekeepError(`cannot access ${what} ${file}: ${code}; check its permissions`, {
      stage: 'snapshot',
    });
  }
  if (stat.isDirectory()) {
    throw new LitekeepError(
      `${file} is a folder, not a SQLite database; point DATABASE_URL or --db at the .db file`,
      {
        exitCode: 2,
        stage: 'snapshot',
      },
    );
  }
  let header: Buffer;
  try {
    // Through the replicator's held descriptor when it has connections to this database (a run in the daemon):
    // an open and close of the file would drop their locks (src/util/held-files.ts).
    header = readHead(file, 16) ?? Buffer.alloc(0);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new LitekeepError(
      `cannot read ${what} ${file}: ${code === 'EACCES' ? 'permission denied' : code}; run litekeep as a user that can read it`,
      { stage: 'snapshot' },
    );
  }
  if (!header.equals(SQLITE_HEADER)) {
    throw new LitekeepError(
      `${file} is not a SQLite database (${stat.size === 0 ? 'it is empty' : "its header is not 'SQLite format 3'"}); check the path`,
      { exitCode: 2, stage: 'snapshot' },
    );
  }
  return stat;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Tables with their row counts and a hash of the schema: what a restore must give back. */
export function fingerprintOf(db: Database.Database): Fingerprint {
  const schemaRows = db
    .prepare(`SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name`)
    .all() as { type: string; name: string; tbl_name: string; sql: string | null }[];
  const schemaHash = crypto.createHash('sha256').update(JSON.stringify(schemaRows)).digest('hex');
  const tables: Record<string, number> = {};
  for (const row of schemaRows) {
    if (row.type !== 'table' || row.name.startsWith('sqlite_') || /^CREATE VIRTUAL/i.test(row.sql ?? ''))
      continue;
    const { n } = db.prepare(`SELECT COUNT(*) AS n FROM ${quoteIdent(row.name)}`).get() as { n: number };
    tables[row.name] = n;
  }
  return { tables, schemaHash };
}

/** Integrity check plus the facts the catalog keeps about a database file. Opens it read-only. */
export function inspectDatabase(file: string, mode: IntegrityMode = 'full'): DatabaseFacts {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const rows = db.pragma(mode === 'quick' ? 'quick_check' : 'integrity_check') as Record<string, string>[];
    const messages = rows.map((row) => Object.values(row)[0]);
    const integrity = messages.length === 1 && messages[0] === 'ok' ? 'ok' : messages.slice(0, 5).join('; ');
    const facts: DatabaseFacts = {
      integrity,
      pageSize: db.pragma('page_size', { simple: true }) as number,
      pageCount: db.pragma('page_count', { simple: true }) as number,
      sqliteVersion: (db.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v,
      journalMode: db.pragma('journal_mode', { simple: true }) as string,
      fingerprint: integrity === 'ok' ? fingerprintOf(db) : { tables: {}, schemaHash: '' },
    };
    return facts;
  } finally {
    db.close();
  }
}

export function compareFingerprints(expected: Fingerprint, actual: Fingerprint): string | undefined {
  if (expected.schemaHash !== actual.schemaHash) return 'schema differs from the one recorded at backup time';
  for (const [table, count] of Object.entries(expected.tables)) {
    if (actual.tables[table] !== count) {
      return `table ${table} has ${actual.tables[table] ?? 'no'} rows, ${count} were recorded at backup time`;
    }
  }
  const extra = Object.keys(actual.tables).filter((t) => !(t in expected.tables));
  if (extra.length) return `unexpected tables ${extra.join(', ')}`;
  return undefined;
}
