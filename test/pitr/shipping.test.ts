import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { planRecovery, type BaseSnapshot } from '../../src/pitr/plan.js';
import { replayOnto } from '../../src/pitr/replay.js';
import { decodeSegment } from '../../src/pitr/segment.js';
import { assertWalMode, folderSink, ReplicationError, WalShipper } from '../../src/pitr/shipper.js';
import { walEnd } from '../../src/pitr/wal.js';
import { tempDir } from '../helpers/db.js';

/**
 * An app in its own process: each transaction inserts row n and sets meta.last = n, with the app's own
 * autocheckpoint at 20 pages so that its checkpoints reset the WAL while litekeep follows it.
 */
const WRITER = `
const Database = require('better-sqlite3');
const db = new Database(process.argv[1]);
db.pragma('journal_mode = wal');
db.pragma('wal_autocheckpoint = 20');
db.exec("CREATE TABLE IF NOT EXISTS notes (n INTEGER PRIMARY KEY, body TEXT NOT NULL)");
db.exec("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, last INTEGER NOT NULL)");
db.exec("INSERT OR IGNORE INTO meta VALUES ('last', 0)");
const insert = db.prepare('INSERT INTO notes (n, body) VALUES (?, ?)');
const mark = db.prepare("UPDATE meta SET last = ? WHERE k = 'last'");
const commit = db.transaction((n) => { insert.run(n, 'note ' + n + ' ' + 'x'.repeat(300 + (n % 7) * 200)); mark.run(n); });
let n = 0;
require('readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const [verb, count] = line.split(' ');
  if (verb === 'burst') for (let i = 0; i < Number(count); i++) commit(++n);
  if (verb === 'checkpoint') db.pragma('wal_checkpoint(' + count + ')');
  process.stdout.write('done ' + n + '\\n');
});
process.stdout.write('ready\\n');
`;

const children: ChildProcessWithoutNullStreams[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

function startWriter(file: string) {
  const child = spawn(process.execPath, ['-e', WRITER, file], {
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

function readState(file: string) {
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

describe('shipping a live WAL while the app writes and checkpoints', () => {
  it('restores exactly the commits seen by each of many moments, across restarts and resets', async () => {
    const dir = tempDir('litekeep-ship-');
    const file = path.join(dir, 'app.db');
    const segmentsDir = path.join(dir, 'segments');
    const stateFile = path.join(dir, 'state', 'app.json');
    const writer = startWriter(file);
    expect(await writer.ready).toBe('ready');
    let clock = 1_000;
    const sink = folderSink(segmentsDir);
    const newShipper = () =>
      new WalShipper({
        database: 'app',
        host: 'alpha',
        databasePath: file,
        stateFile,
        sink,
        now: () => clock,
      });
    let shipper = newShipper();
    await shipper.shipOnce();

    /** A base as a capture makes it: positions before and after a backup-API copy. */
    const bases: (BaseSnapshot & { image: string })[] = [];
    async function capture() {
      const shippedBefore = await shipper.lastShipped();
      const image = path.join(dir, `base-${bases.length}.db`);
      const db = new Database(file, { readonly: true });
      await db.backup(image);
      db.close();
      const end = await walEnd(`${file}-wal`);
      clock += 1;
      bases.push({
        id: `base-${bases.length}`,
        shippedBefore,
        walEndAfter: end && { generation: end.generation, frame: end.frame },
        finishedAt: clock,
        image,
      });
    }
    await writer.send('burst 5');
    await capture();

    // Quiet moments: after a pass, before the next burst; what was committed by then is known exactly.
    const quiet: { at: number; last: number }[] = [];
    let last = 0;
    let gaps = 0;
    for (let round = 0; round < 50; round++) {
      last = await writer.send(`burst ${1 + ((round * 7) % 13)}`);
      if (round % 6 === 5) {
        // litekeep is down (killed): the app goes on writing, and its checkpoints reset the WAL meanwhile.
        last = await writer.send('burst 30');
        last = await writer.send('checkpoint PASSIVE');
        last = await writer.send('burst 2');
        shipper = newShipper();
      }
      clock += 1000;
      const pass = await shipper.shipOnce();
      if (pass.gap === 'lost-frames') {
        gaps += 1;
        // What the daemon does on a gap: a new base at once, so recovery is whole again from here.
        await capture();
      }
      clock += 1;
      quiet.push({ at: clock, last });
      clock += 500;
    }
    expect(gaps).toBeGreaterThan(0);
    expect(fs.readdirSync(segmentsDir).length).toBeGreaterThan(20);
    for (const name of fs.readdirSync(segmentsDir))
      expect(fs.statSync(path.join(segmentsDir, name)).mode & 0o777).toBe(0o600);

    const names = await sink.list();
    const stored = await Promise.all(
      names.map(async (id) => ({ id, metadata: decodeSegment(await sink.get(id), id).metadata })),
    );
    const load = async (id: string) => decodeSegment(await sink.get(id), id);
    // Moments spread over the whole run, in random order: each restores exactly the commits made by then.
    const moments = [...quiet].sort(() => Math.random() - 0.5);
    for (const [i, moment] of moments.entries()) {
      const plan = planRecovery(bases, stored, moment.at)!;
      expect(plan.stoppedByGap, `moment ${moment.at}`).toBeUndefined();
      const base = bases.find((b) => b.id === plan.base.id)!;
      const out = path.join(dir, `restored-${i}.db`);
      fs.copyFileSync(base.image, out);
      await replayOnto(out, plan.steps, 4096, load);
      const state = readState(out);
      expect(state.last, `moment ${moment.at}`).toBe(moment.last);
      expect(state.ns).toEqual(Array.from({ length: moment.last }, (_, k) => k + 1));
      fs.rmSync(out);
    }
  }, 120_000);

  it('refuses a database that is missing, not SQLite, or not in WAL mode, saying what to do', async () => {
    const dir = tempDir('litekeep-ship-');
    await expect(assertWalMode(path.join(dir, 'none.db'))).rejects.toThrow(
      /cannot read .*none\.db \(ENOENT\); check the database path/,
    );
    fs.writeFileSync(path.join(dir, 'text.db'), 'hello'.repeat(40));
    await expect(assertWalMode(path.join(dir, 'text.db'))).rejects.toThrow(/is not a SQLite database/);
    const db = new Database(path.join(dir, 'rollback.db'));
    db.exec('CREATE TABLE t (x)');
    db.close();
    await expect(assertWalMode(path.join(dir, 'rollback.db'))).rejects.toThrow(ReplicationError);
    await expect(assertWalMode(path.join(dir, 'rollback.db'))).rejects.toThrow(/PRAGMA journal_mode=WAL/);
  });
});
