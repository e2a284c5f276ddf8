import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { backupInOneStep } from '../../src/snapshot/engine.js';
import { tempDir } from '../helpers/temp.js';

const root = path.resolve(__dirname, '..', '..');
const stops: (() => void)[] = [];
afterEach(() => stops.splice(0).forEach((stop) => stop()));

/** Another process takes an exclusive lock on `file` and holds it; resolves once it has it. */
function holdExclusiveLock(file: string): Promise<void> {
  const holder = spawn(
    process.execPath,
    [
      '-e',
      `const D=require('better-sqlite3');const d=new D(${JSON.stringify(file)});d.exec('BEGIN EXCLUSIVE');` +
        `d.prepare('INSERT INTO items VALUES (2)').run();process.stdout.write('locked\\n');setInterval(()=>{},1000)`,
    ],
    { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  stops.push(() => holder.kill('SIGKILL'));
  return new Promise((resolve) => holder.stdout.once('data', () => resolve()));
}

describe('the online backup API when a writer holds its lock past the busy timeout', () => {
  it('fails as locked, and leaves no copy behind (never an empty database that passes integrity_check)', async () => {
    const dir = tempDir('litekeep-busy-');
    const file = path.join(dir, 'app.db');
    const setup = new Database(file);
    setup.pragma('journal_mode = delete');
    setup.exec('CREATE TABLE items (n INTEGER); INSERT INTO items VALUES (1);');
    setup.close();
    // As a snapshot does: the source is open and its schema read before the writer takes its lock.
    const source = new Database(file, { readonly: true, fileMustExist: true, timeout: 200 });
    stops.push(() => source.close());
    source.pragma('schema_version');
    await holdExclusiveLock(file);
    const target = path.join(dir, 'copy.db');
    await expect(backupInOneStep(source, target)).rejects.toMatchObject({ code: 'SQLITE_BUSY' });
    expect(fs.existsSync(target)).toBe(false);
  });
});
