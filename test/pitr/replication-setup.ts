import fs from 'node:fs';
import path from 'node:path';
import { walMarkOf } from '../../src/pitr/capture.js';
import { spawnCli, type CliChild } from '../helpers/cli.js';
import { tempDir } from '../helpers/db.js';

/** A database, its litekeep.yml (one local incremental destination `vault`, host web1) and what tests ask of it. */

const children: CliChild[] = [];

/** SIGKILLs every `litekeep replicate` a test started (afterEach). */
export function killReplicators(): void {
  for (const c of children.splice(0)) c.process.kill('SIGKILL');
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  ms = 90_000,
) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * Everything the WAL of `db` holds now has been shipped as the shipping state `stateFile` records, and no base
 * snapshot is owed (after a gap, recovery is whole again only once the new base is written). The app is idle
 * while this is asked.
 */
export async function shippedTo(db: string, stateFile: string): Promise<boolean> {
  const end = await walMarkOf(db);
  if (!end || !fs.existsSync(stateFile)) return false;
  const state = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
  const last = state.lastShipped;
  return (
    state.baseNeededSince === undefined &&
    last !== undefined &&
    last.generation.salt1 === end.generation.salt1 &&
    last.generation.salt2 === end.generation.salt2 &&
    last.frame === end.frame
  );
}

export function setUp(extra: object = {}) {
  const dir = tempDir('litekeep-replicate-');
  const db = path.join(dir, 'app.db');
  fs.writeFileSync(
    path.join(dir, 'litekeep.yml'),
    JSON.stringify({
      database: 'app.db',
      backupDir: 'backups',
      timeZone: 'UTC',
      host: 'web1',
      retention: { last: 100 },
      notify: {},
      destinations: [{ name: 'vault', type: 'local', path: 'vault', format: 'incremental' }],
      ...extra,
    }),
  );
  const repo = path.join(dir, 'vault', 'app', 'web1', 'repo');
  const stateFile = path.join(dir, 'backups', '.litekeep', 'replication', 'vault.json');
  const snapshots = () =>
    fs.existsSync(`${repo}/snapshots`) ? fs.readdirSync(`${repo}/snapshots`).length : 0;
  /** Everything the WAL holds now has been shipped to vault, and no base snapshot is owed. */
  const shipped = () => shippedTo(db, stateFile);
  const replicate = (args: string[] = []) => {
    const child = spawnCli(['replicate', '--interval', '100ms', ...args], { cwd: dir, timeoutMs: 600_000 });
    children.push(child);
    return child;
  };
  return { dir, db, repo, stateFile, snapshots, shipped, replicate };
}
