import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { countRows } from '../helpers/db.js';
import {
  backupFiles,
  integrityOf,
  makeLargeDatabase,
  msg,
  spawnDaemon,
  tempFiles,
  workspaceFiles,
  type DaemonChild,
  daemonTempDir,
  killDaemons,
  removeDaemonDirs,
} from './daemon-helpers.js';

afterAll(removeDaemonDirs);
afterEach(killDaemons);
let daemon: DaemonChild | undefined;

const MEGABYTES = 150;

/** A large database and a daemon that starts backing it up (catch-up) a few seconds after start. */
async function daemonMidBackup() {
  const dir = daemonTempDir('litekeep-daemon-signal-');
  const w = workspaceFiles(dir);
  makeLargeDatabase(w.db, MEGABYTES);
  // gzip of incompressible pages takes seconds: the signal lands while the run is busy.
  daemon = spawnDaemon([], {
    cwd: dir,
    env: { DATABASE_URL: 'sqlite:///app.db', BACKUP_DIR: w.backups, LITEKEEP_COMPRESSION_ALGORITHM: 'gzip' },
  });
  await daemon.waitFor(msg('run started'), 20_000);
  return { dir, ...w, daemon };
}

describe('litekeep daemon: graceful stop', () => {
  it('the first SIGTERM lets the running backup finish, then exits 0 with a complete, valid backup', async () => {
    const w = await daemonMidBackup();
    w.daemon.process.kill('SIGTERM');
    const { code } = await w.daemon.exited;
    expect(code, w.daemon.stderr()).toBe(0);
    expect(w.daemon.records.some(msg('letting the running backup finish'))).toBe(true);
    const done = w.daemon.records.find(msg('backup of app done'));
    expect(done, w.daemon.stdout()).toBeDefined();

    expect(backupFiles(w.backups)).toEqual([done!.file]);
    expect(String(done!.file)).toMatch(/^backup-\d{4}-\d\d-\d\d-\d{6}\.db\.gz$/);
    expect(tempFiles(w.backups)).toEqual([]);
    const restored = path.join(w.dir, 'restored.db');
    await pipeline(
      fs.createReadStream(path.join(w.backups, String(done!.file))),
      zlib.createGunzip(),
      fs.createWriteStream(restored),
    );
    expect(integrityOf(restored)).toBe('ok');
    expect(countRows(restored, 'blobs')).toBe(MEGABYTES);
    expect(fs.existsSync(path.join(w.backups, '.litekeep', 'lock'))).toBe(false);
  });

  it('a second SIGTERM aborts: non-zero exit, no temp files, no partial backup', async () => {
    const w = await daemonMidBackup();
    w.daemon.process.kill('SIGTERM');
    await w.daemon.waitFor(msg('letting the running backup finish'));
    w.daemon.process.kill('SIGTERM');
    const { code } = await w.daemon.exited;
    expect(code, w.daemon.stdout()).toBe(143);
    expect(w.daemon.records.some(msg('aborting the running backup'))).toBe(true);
    expect(backupFiles(w.backups)).toEqual([]);
    expect(tempFiles(w.backups)).toEqual([]);
    expect(fs.existsSync(path.join(w.backups, '.litekeep', 'lock'))).toBe(false);
  });
});
