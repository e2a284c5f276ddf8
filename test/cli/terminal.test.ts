import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { runCli, runOnTerminal } from '../helpers/cli.js';
import { countRows, filesIn, makeDatabase, tempDir } from '../helpers/db.js';
import { needPrograms } from '../helpers/programs.js';

const ESC = '\x1b[';
/** log-update's erase of the line it drew: clear line, up, clear line, back to column 1. */
const ERASE = '\x1b[2K\x1b[1A\x1b[2K\x1b[G';

/** A database of some MiB of incompressible rows: long enough work to be reported as it goes. */
function bigWorkspace(mib = 12) {
  const dir = tempDir('litekeep-tty-');
  const db = path.join(dir, 'app.db');
  const d = new Database(db);
  d.pragma('journal_mode = wal');
  d.exec('CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, payload BLOB)');
  const insert = d.prepare('INSERT INTO items (name, payload) VALUES (?, ?)');
  d.transaction(() => {
    for (let i = 0; i < mib * 256; i++) insert.run(`row ${i}`, crypto.randomBytes(4096));
  })();
  d.close();
  const backups = path.join(dir, 'backups');
  const usb = path.join(dir, 'usb');
  fs.writeFileSync(
    path.join(dir, 'litekeep.yml'),
    `destinations:\n  - { name: usb, type: local, path: ${usb} }\n`,
  );
  return { dir, db, backups, env: { DATABASE_URL: 'sqlite:///app.db', BACKUP_DIR: backups } };
}

/** The progress lines drawn (text between log-update's frame markers), in order. */
function frames(output: string): string[] {
  // Terminal escape codes are what this reads.
  // eslint-disable-next-line no-control-regex
  return [...output.matchAll(/\x1b\[\?2026h(?:\x1b\[2K\x1b\[1A\x1b\[2K\x1b\[G)?([^\x1b\r\n]+)\r?\n/g)].map(
    (m) => m[1],
  );
}

describe('progress on a terminal', () => {
  it('backup shows compress and upload with their share, and erases the line before the summary', async (ctx) => {
    needPrograms(ctx, 'script');
    const w = bigWorkspace();
    const r = await runOnTerminal(['backup'], { cwd: w.dir, env: w.env });
    expect(r.code, r.output).toBe(0);
    const drawn = frames(r.output);
    expect(
      drawn.some((f) => /^compress +\d+% {2}[\d.]+ MiB of [\d.]+ MiB/.test(f)),
      r.output,
    ).toBe(true);
    expect(
      drawn.some((f) => /^upload to usb +100% /.test(f)),
      r.output,
    ).toBe(true);
    // The summary comes after the last frame was erased, on a clean line.
    const summary = r.output.indexOf('backup of app written:');
    expect(r.output.lastIndexOf(ERASE, summary)).toBeGreaterThan(r.output.lastIndexOf('%', summary));

    // Not into a pipe, and not with --json on a terminal either.
    const piped = await runCli(['backup', '--no-prune'], { cwd: w.dir, env: w.env });
    expect(piped.code).toBe(0);
    expect(piped.stdout + piped.stderr).not.toContain(ESC);
    const json = await runOnTerminal(['backup', '--no-prune', '--json'], { cwd: w.dir, env: w.env });
    expect(json.code).toBe(0);
    expect(json.output).not.toContain(ESC);
    expect(JSON.parse(json.output).status).toBe('ok');
  });

  it('verify all prints each result as it finishes, with the progress of the next one after it', async (ctx) => {
    needPrograms(ctx, 'script');
    const w = bigWorkspace(4);
    for (let i = 0; i < 3; i++) {
      expect((await runCli(['backup', '--no-prune', '--no-upload'], { cwd: w.dir, env: w.env })).code).toBe(
        0,
      );
    }
    // Newest first, as litekeep orders them (two backups in one second: by the time recorded, not the name).
    const listed = await runCli(['list', '--json'], { cwd: w.dir, env: w.env });
    const names = (JSON.parse(listed.stdout).backups as { name: string }[]).map((b) => b.name);
    expect(names).toHaveLength(3);
    const r = await runOnTerminal(['verify', 'all'], { cwd: w.dir, env: w.env });
    expect(r.code, r.output).toBe(0);
    const at = (text: string) => {
      const i = r.output.indexOf(text);
      expect(i, `${text} in\n${r.output}`).toBeGreaterThanOrEqual(0);
      return i;
    };
    for (let i = 0; i < names.length; i++) {
      const progress = at(`verify ${names[i]}`);
      const result = at(`ok      app/${names[i]} from local`);
      expect(progress).toBeLessThan(result);
      // The next backup's verification shows only once this one's result is printed.
      if (i + 1 < names.length) expect(result).toBeLessThan(at(`verify ${names[i + 1]}`));
    }
  });
});

describe('restore over the live database', () => {
  it('on a terminal, shows what is replaced by what and asks; no changes nothing, yes restores', async (ctx) => {
    needPrograms(ctx, 'script');
    const dir = tempDir('litekeep-tty-');
    const db = path.join(dir, 'app.db');
    makeDatabase(db, 30);
    const env = { DATABASE_URL: 'sqlite:///app.db', BACKUP_DIR: path.join(dir, 'backups') };
    expect((await runCli(['backup'], { cwd: dir, env })).code).toBe(0);
    const [file] = filesIn(env.BACKUP_DIR).filter((f) => f.startsWith('backup-'));
    makeDatabase(db, 5); // 35 rows now: what a restore would replace
    const before = fs.readFileSync(db);

    const no = await runOnTerminal(['restore'], { cwd: dir, env, input: 'n\n' });
    expect(no.code, no.output).toBe(1);
    expect(no.output).toMatch(
      new RegExp(`this replaces {2}${db.replace(/[/.]/g, '\\$&')} \\([\\d.]+ KiB, modified \\d{4}-`),
    );
    expect(no.output).toMatch(
      new RegExp(`with {11}${file.replace(/\./g, '\\.')} from local \\(taken \\d{4}-\\S+ \\S+ UTC, `),
    );
    expect(no.output).toContain('restore? [y/N]');
    expect(no.output).toContain('litekeep: restore cancelled; nothing was changed');
    expect(fs.readFileSync(db)).toEqual(before);

    const yes = await runOnTerminal(['restore', 'latest'], { cwd: dir, env, input: 'y\n' });
    expect(yes.code, yes.output).toBe(0);
    expect(yes.output).toContain(`restored ${file} from local`);
    expect(frames(yes.output).some((f) => f.startsWith(`restore ${file} `))).toBe(true);
    expect(countRows(db)).toBe(30);

    // --yes: no question.
    makeDatabase(db, 5);
    const skip = await runOnTerminal(['restore', '--yes'], { cwd: dir, env });
    expect(skip.code, skip.output).toBe(0);
    expect(skip.output).not.toContain('restore? [y/N]');
    expect(countRows(db)).toBe(30);
  });

  it('without a terminal, goes ahead only when the backup is named (latest counts)', async () => {
    const dir = tempDir('litekeep-tty-');
    const db = path.join(dir, 'app.db');
    makeDatabase(db, 30);
    const env = { DATABASE_URL: 'sqlite:///app.db', BACKUP_DIR: path.join(dir, 'backups') };
    expect((await runCli(['backup'], { cwd: dir, env })).code).toBe(0);
    makeDatabase(db, 5);
    const before = fs.readFileSync(db);
    const unnamed = await runCli(['restore'], { cwd: dir, env });
    expect(unnamed.code).toBe(2);
    expect(unnamed.stderr).toBe(
      `litekeep: restore over ${db} without a terminal to confirm on needs the backup named: litekeep restore latest ` +
        `(or a name from litekeep list, or --at TIME), or pass --yes\n`,
    );
    expect(fs.readFileSync(db)).toEqual(before);
    const latest = await runCli(['restore', 'latest'], { cwd: dir, env });
    expect(latest.code, latest.stderr).toBe(0);
    expect(countRows(db)).toBe(30);
    // Into a new file nothing is replaced: no name needed.
    const other = path.join(dir, 'copy.db');
    expect((await runCli(['restore', '--to', other], { cwd: dir, env })).code).toBe(0);
    expect(countRows(other)).toBe(30);
  });
});
