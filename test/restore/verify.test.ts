import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/index.js';
import { runCli } from '../helpers/cli.js';
import { countRows, filesIn } from '../helpers/db.js';
import { backup, restore, snapshotFiles, workspace } from './helpers.js';

describe('litekeep verify, and restore --to / --dry-run', () => {
  it('verify checks sha256, integrity and the recorded fingerprint, and status shows the newest verified', async () => {
    const w = workspace(120);
    const b = await backup(w);
    const v = await runCli(['verify', 'latest', ...w.args, '--json'], { cwd: w.dir });
    expect(v.code).toBe(0);
    expect(JSON.parse(v.stdout).results).toEqual([
      {
        backup: b.file,
        source: 'local',
        status: 'ok',
        sha256: b.sha256,
        integrity: 'ok',
        fingerprint: 'match',
      },
    ]);
    const s = await runCli(['status', ...w.args], { cwd: w.dir });
    expect(s.stdout).toMatch(new RegExp(`last verified on local: ${b.file} \\(just now\\)`));

    const catalog = Catalog.open(w.backups);
    const record = catalog.getBackup(b.file)!;
    catalog.close();
    expect(record.fingerprint?.tables).toEqual({ items: 120 });
    // The target database is not needed to verify: it is not read or changed.
    fs.rmSync(w.db);
    const again = await runCli(['verify', ...w.args], { cwd: w.dir });
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(
      /^ok {6}app\/backup-\S+ from local: sha256 [0-9a-f]{12}…, integrity ok, fingerprint match/,
    );
    expect(fs.existsSync(w.db)).toBe(false);
  });

  it('restores into another file with --to, and --dry-run changes nothing', async () => {
    const w = workspace(80);
    const b = await backup(w);
    const before = snapshotFiles(w.db);
    const dry = await restore(w, ['--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain(`dry run: ${b.file} from local (taken `);
    expect(snapshotFiles(w.db)).toEqual(before);
    expect(filesIn(w.dir).filter((f) => f.includes('restore'))).toEqual([]);

    const other = path.join(w.dir, 'copies', 'restored.db');
    const r = await restore(w, [b.file, '--to', other, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ backup: b.file, target: other, dryRun: false });
    expect(countRows(other)).toBe(80);
    expect(snapshotFiles(w.db)).toEqual(before);

    const missing = await restore(w, ['backup-2001-01-01-000000.db']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(
      /backup backup-2001-01-01-000000\.db not found in local( \(did you mean \S+\?\))?; run 'litekeep list'/,
    );
  });
});
