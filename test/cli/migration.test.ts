import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { countRows, filesIn, makeDatabase, tempDir } from '../helpers/db.js';

const DEPLOY = path.resolve(__dirname, '..', '..', 'deploy', 'from-backend');

/** An app laid out as the Python module's users have it: backend/.env with the seed's variables. */
function pythonApp() {
  const app = tempDir('litekeep-migrate-');
  const backend = path.join(app, 'backend');
  fs.mkdirSync(path.join(backend, 'data'), { recursive: true });
  const db = path.join(backend, 'data', 'app.db');
  makeDatabase(db, 40);
  // Relative to backend/, as the app (and the module) read it.
  fs.writeFileSync(
    path.join(backend, '.env'),
    'DATABASE_URL=sqlite:///data/app.db\nAI_WORKSPACE=../workspace\n',
  );
  return { app, backend, db, backups: path.join(app, 'workspace', 'backups', 'database') };
}

describe('coming from manual_backup.py', () => {
  it("the module's backup-*.db files are listed, counted by retention, recorded and restored", async () => {
    const p = pythonApp();
    // Backups the module left: plain SQLite copies named backup-YYYY-MM-DD-HHMMSS.db.
    fs.mkdirSync(p.backups, { recursive: true });
    const old = ['backup-2026-11-28-030000.db', 'backup-2026-11-29-030000.db', 'backup-2026-11-30-030000.db'];
    for (const name of old) fs.copyFileSync(p.db, path.join(p.backups, name));
    const list = await runCli(['list', '--json'], { cwd: p.backend });
    expect(list.code, list.stderr).toBe(0);
    const listed = JSON.parse(list.stdout) as {
      backups: { name: string; inCatalog: boolean }[];
      unrecognized: string[];
    };
    expect(listed.backups.map((b) => b.name)).toEqual([...old].reverse());
    expect(listed.backups.every((b) => !b.inCatalog)).toBe(true);
    expect(listed.unrecognized).toEqual([]);

    // A backup run records them from the files, and the policy counts them with the new one.
    const backup = await runCli(['backup', '--json'], { cwd: p.backend });
    expect(backup.code, backup.stderr).toBe(0);
    const plan = await runCli(
      [
        'prune',
        '--dry-run',
        '--keep-last',
        '2',
        '--keep-daily',
        '0',
        '--keep-weekly',
        '0',
        '--keep-monthly',
        '0',
        '--json',
      ],
      { cwd: p.backend },
    );
    const decisions = (JSON.parse(plan.stdout) as { decisions: { name: string; action: string }[] })
      .decisions;
    expect(decisions.map((d) => d.action)).toEqual(['keep', 'keep', 'remove', 'remove']);
    expect(decisions[1].name).toBe(old[2]);
    const recorded = await runCli(['list'], { cwd: p.backend });
    expect(recorded.stdout).toMatch(/backup-2026-11-28-030000\.db .* \? \(found on disk\)\n/);

    // Restored by name, like litekeep's own.
    makeDatabase(p.db, 5);
    const restore = await runCli(['restore', old[0]], { cwd: p.backend });
    expect(restore.code, restore.stderr).toBe(0);
    expect(countRows(p.db)).toBe(40);
  });

  it('deploy/from-backend runs in backend/, so the app’s .env works unchanged', async () => {
    const p = pythonApp();
    // pm2: the file copied into backend/, as its header says.
    fs.copyFileSync(path.join(DEPLOY, 'ecosystem.config.cjs'), path.join(p.backend, 'ecosystem.config.cjs'));
    const pm2 = createRequire(import.meta.url)(path.join(p.backend, 'ecosystem.config.cjs')) as {
      apps: { cwd: string; script: string; args: string }[];
    };
    const [app] = pm2.apps;
    expect(app.cwd).toBe(p.backend);
    expect(path.resolve(app.cwd, app.script)).toBe(
      path.join(p.backend, 'node_modules', 'litekeep', 'dist', 'cli', 'main.js'),
    );
    expect(app.args).toBe('daemon');
    // systemd: the backend folder is the working folder, and nothing but the app's .env configures it.
    const unit = fs.readFileSync(path.join(DEPLOY, 'litekeep.service'), 'utf8');
    const workingDirectory = /^WorkingDirectory=(.+)$/m.exec(unit)![1];
    expect(workingDirectory).toMatch(/\/backend$/);
    expect(unit).toMatch(
      new RegExp(`^ExecStart=${workingDirectory}/node_modules/\\.bin/litekeep daemon$`, 'm'),
    );
    expect(unit).not.toMatch(/^EnvironmentFile=/m);

    // What the daemon does at its first run, from that folder and nothing else: DATABASE_URL relative to
    // backend/, backups in AI_WORKSPACE as the module put them.
    const run = await runCli(['backup', '--json'], { cwd: app.cwd });
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as { path: string; sourcePath: string };
    expect(result.sourcePath).toBe(p.db);
    expect(path.dirname(result.path)).toBe(p.backups);
    expect(filesIn(p.backups).filter((f) => f.startsWith('backup-'))).toHaveLength(1);
    const schedule = await runCli(['schedule', '--next', '1'], { cwd: app.cwd });
    expect(schedule.stdout).toMatch(
      /^schedule '0 3 \* \* \*' in UTC, next 1 run:\n {2}\d{4}-\d\d-\d\d 03:00:00 UTC\n$/,
    );
  });
});
