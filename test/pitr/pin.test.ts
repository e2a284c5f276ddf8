import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { readWalIndex } from '../../src/pitr/cooperative.js';
import { pinWalEnd, walIndexEnd } from '../../src/pitr/fingerprint.js';
import { tempDir } from '../helpers/db.js';

/**
 * A read transaction litekeep holds on a live database keeps the app from resetting the WAL under it, even
 * while litekeep reads the wal-index beside it. (Reading `-shm` by opening and closing it dropped the
 * transaction's fcntl read lock: the app reset the WAL about a hundred times a second under it, and the next read
 * failed with "database disk image is malformed".)
 */

const children: ReturnType<typeof spawn>[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

/** The WAL's checkpoint sequence, from its header: one more at every reset. */
function checkpointSequence(db: string): number {
  const head = Buffer.alloc(32);
  const fd = fs.openSync(`${db}-wal`, 'r');
  try {
    fs.readSync(fd, head, 0, 32, 0);
  } finally {
    // The -wal holds no lock of SQLite's: opening and closing it is harmless.
    fs.closeSync(fd);
  }
  return head.readUInt32BE(12);
}

const busyFor = (ms: number, work: () => void) => {
  const until = Date.now() + ms;
  while (Date.now() < until) work();
};

describe('a pinned read transaction beside reads of the wal-index', () => {
  it('holds off WAL resets of an app that checkpoints all the time, and reads consistently', async () => {
    const dir = tempDir('litekeep-pin-');
    const db = path.join(dir, 'app.db');
    const setup = new Database(db);
    setup.pragma('journal_mode = wal');
    setup.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)');
    setup.close();
    // An app committing as fast as it can with a small autocheckpoint: its WAL resets many times a second.
    const app = spawn(
      process.execPath,
      [
        '-e',
        `const D = require('better-sqlite3'); const db = new D(process.argv[1]);
         db.pragma('journal_mode = wal'); db.pragma('wal_autocheckpoint = 20');
         const insert = db.prepare('INSERT INTO t (body) VALUES (?)');
         process.stdout.write('ready\\n');
         const tick = () => { for (let i = 0; i < 20; i++) insert.run('x'.repeat(2000)); setImmediate(tick); };
         tick();`,
        db,
      ],
      { env: { ...process.env, NODE_PATH: path.resolve('node_modules') } },
    );
    children.push(app);
    await new Promise((resolve) => app.stdout!.once('data', resolve));
    await new Promise((resolve) => setTimeout(resolve, 300));

    // Without a pin, the app resets its WAL over and over (so the check below can fail).
    const free = checkpointSequence(db);
    busyFor(500, () => undefined);
    expect(checkpointSequence(db) - free).toBeGreaterThan(3);

    for (let round = 0; round < 3; round++) {
      let pin: ReturnType<typeof pinWalEnd>;
      do pin = pinWalEnd(db);
      while (!pin);
      try {
        const pinned = checkpointSequence(db);
        const reader = new Database(db, { readonly: true });
        // Held for a second while the wal-index is read again and again, as the replicator does.
        busyFor(1000, () => {
          walIndexEnd(db);
          void readWalIndex(db);
        });
        reader.close();
        expect(checkpointSequence(db), `round ${round}`).toBe(pinned);
        // The transaction's snapshot still reads whole: the frames it sees were not written over.
        const { tables } = pin.fingerprint().fingerprint;
        expect(tables.t).toBeGreaterThan(0);
      } finally {
        pin.release();
      }
    }
  }, 60_000);
});
