import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import Database from 'better-sqlite3';
import { expect } from 'vitest';

/**
 * An app in its own process: each transaction inserts row n and sets meta.last = n, with the app's own
 * autocheckpoint at 20 pages (by default) so that its checkpoints reset the WAL while litekeep follows it;
 * 0 is the app of cooperative mode, which leaves checkpoints to litekeep. `reopen` closes its connection (the
 * last one, SQLite then checkpoints and deletes the WAL) and opens a new one.
 */
const WRITER = `
const Database = require('better-sqlite3');
let db, insert, mark, commit;
function open() {
  db = new Database(process.argv[1]);
  db.pragma('journal_mode = wal');
  db.pragma('wal_autocheckpoint = ' + Number(process.argv[2]));
  db.exec("CREATE TABLE IF NOT EXISTS notes (n INTEGER PRIMARY KEY, body TEXT NOT NULL)");
  db.exec("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, last INTEGER NOT NULL)");
  db.exec("INSERT OR IGNORE INTO meta VALUES ('last', 0)");
  insert = db.prepare('INSERT INTO notes (n, body) VALUES (?, ?)');
  mark = db.prepare("UPDATE meta SET last = ? WHERE k = 'last'");
  commit = db.transaction((n) => { insert.run(n, 'note ' + n + ' ' + 'x'.repeat(300 + (n % 7) * 200)); mark.run(n); });
}
open();
let n = 0;
require('readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const [verb, count] = line.split(' ');
  if (verb === 'burst') for (let i = 0; i < Number(count); i++) commit(++n);
  if (verb === 'checkpoint') db.pragma('wal_checkpoint(' + count + ')');
  if (verb === 'reopen') { db.close(); open(); }
  process.stdout.write('done ' + n + '\\n');
});
process.stdout.write('ready\\n');
`;

const children: ChildProcessWithoutNullStreams[] = [];

/** Kills every writer a test started (afterEach). */
export function stopWriters(): void {
  for (const c of children.splice(0)) c.kill('SIGKILL');
}

export function startWriter(file: string, options: { autocheckpoint?: number } = {}) {
  const child = spawn(process.execPath, ['-e', WRITER, file, String(options.autocheckpoint ?? 20)], {
    cwd: path.resolve('.'),
    env: { ...process.env, NODE_PATH: path.resolve('node_modules') },
  });
  children.push(child);
  const lines = readline.createInterface({ input: child.stdout });
  const waiting: ((line: string) => void)[] = [];
  lines.on('line', (line) => waiting.shift()?.(line));
  const next = () => new Promise<string>((resolve) => waiting.push(resolve));
  const ready = next();
  return {
    ready,
    /** Sends a command; resolves with the last committed n. */
    async send(command: string): Promise<number> {
      const reply = next();
      child.stdin.write(`${command}\n`);
      return Number((await reply).split(' ')[1]);
    },
  };
}

export function readState(file: string) {
  const db = new Database(file, { readonly: true });
  try {
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    const ns = (db.prepare('SELECT n FROM notes ORDER BY n').all() as { n: number }[]).map((r) => r.n);
    const last = (db.prepare("SELECT last FROM meta WHERE k = 'last'").get() as { last: number }).last;
    return { ns, last };
  } finally {
    db.close();
  }
}
