import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import Database from 'better-sqlite3';
import { runBackupForTarget } from '../../backup/task.js';
import { loadConfig, targetForPath } from '../../config/index.js';
import { addConfigOptions, type CommonOptions } from '../context.js';
import { print, startProgress } from '../output.js';
import { printBackupSummary } from './backup.js';

/** A small database with a few tables, so that a first run has something real to back up. */
export function createDemoDatabase(file: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    db.exec(`
      CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT, created_at TEXT);
      CREATE TABLE IF NOT EXISTS tags (note_id INTEGER REFERENCES notes(id), tag TEXT NOT NULL);
    `);
    const count = (db.prepare('SELECT COUNT(*) AS n FROM notes').get() as { n: number }).n;
    if (count === 0) {
      const addNote = db.prepare('INSERT INTO notes (title, body, created_at) VALUES (?, ?, ?)');
      const addTag = db.prepare('INSERT INTO tags (note_id, tag) VALUES (?, ?)');
      db.transaction(() => {
        for (let i = 1; i <= 500; i++) {
          const { lastInsertRowid } = addNote.run(
            `note ${i}`,
            `demo text ${i} `.repeat(20),
            new Date(Date.UTC(2026, 0, 1) + i * 3_600_000).toISOString(),
          );
          addTag.run(lastInsertRowid, i % 2 ? 'odd' : 'even');
        }
      })();
    }
  } finally {
    db.close();
  }
}

export function registerDemo(program: Command): void {
  const command = program
    .command('demo')
    .description('back up the configured database, or a demo database created in ./demo when none is set');
  addConfigOptions(command);
  command.action(async (options: CommonOptions) => {
    const resolved = loadConfig({ configPath: options.config, envFile: options.envFile });
    let targets = resolved.databases;
    if (targets.length === 0) {
      const file = path.resolve('demo', 'app.db');
      createDemoDatabase(file);
      print(`no database configured: created a demo database at ${file}`);
      targets = [targetForPath(resolved, file, path.resolve('demo', 'backups'))];
    }
    let exitCode = 0;
    for (const target of targets) {
      const progress = startProgress({});
      const result = await runBackupForTarget(target, {
        trigger: 'manual',
        onProgress: (stage, bytes, total) => progress.update(stage, bytes, total),
      });
      progress.done();
      printBackupSummary(result, target.settings);
      exitCode = Math.max(exitCode, result.exitCode);
    }
    print('');
    const where =
      resolved.databases.length === 0 ? ` --db ${targets[0].path} --dir ${targets[0].backupDir}` : '';
    print(`next: litekeep list${where}, litekeep status${where}, litekeep history${where}`);
    process.exitCode = exitCode;
  });
}
