import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { VERSION } from '../../src/version.js';
import { tempDir } from '../helpers/temp.js';
import {
  copyCheckout,
  isGitCheckout,
  readmeBlock,
  ROOT,
  run,
  userEnv,
  writeDependentProject,
} from './helpers.js';

/**
 * `npm pack` of a clean copy of the checkout, installed into an empty project as a user would: the tarball has
 * the built library, the command and the license; `import { BackupManager } from 'litekeep'` works and makes a
 * real backup; the installed `litekeep` command gets its own `--env-file`; the README's library example
 * type-checks against the published types.
 */
describe('the npm package', () => {
  it('packs with dist/, installs into a project, and works as a library and as a command', async (ctx) => {
    if (!isGitCheckout()) ctx.skip('needs a git checkout (the package is made from what git would commit)');
    const work = tempDir('litekeep-pack-');
    const source = path.join(work, 'litekeep');
    copyCheckout(source);
    expect(fs.existsSync(path.join(source, 'dist'))).toBe(false);
    // The copy builds with this checkout's tools; `prepare` runs the build (npm pack runs it, as git installs do).
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(source, 'node_modules'));
    const pack = run('npm', ['pack', '--json', '--pack-destination', work], { cwd: source });
    expect(pack.status, pack.stderr).toBe(0);
    const [packed] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as {
      filename: string;
      integrity: string;
      files: { path: string }[];
    }[];
    const shipped = packed.files.map((f) => f.path);
    for (const file of [
      'dist/index.js',
      'dist/index.d.ts',
      'dist/cli/main.js',
      'LICENSE',
      'README.md',
      'package.json',
    ])
      expect(shipped).toContain(file);
    expect(shipped.filter((f) => /^(src|test|bench)\//.test(f) || f.endsWith('.map'))).toEqual([]);
    const tarball = path.join(work, packed.filename);

    // A project that depends on the tarball installs it, as it would `npm install litekeep`.
    const project = path.join(work, 'app');
    writeDependentProject(project, tarball, packed.integrity);
    // From npm's cache, which this checkout's `npm ci` filled: the registry only for what is missing there.
    const install = run('npm', ['ci', '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund'], {
      cwd: project,
    });
    expect(install.status, install.stderr).toBe(0);
    // The same versions built for the same Node: what `npm install` would compile, without compiling it again.
    for (const addon of ['better-sqlite3', 'zstd-napi']) {
      fs.cpSync(
        path.join(ROOT, 'node_modules', addon, 'build'),
        path.join(project, 'node_modules', addon, 'build'),
        {
          recursive: true,
        },
      );
    }

    // The library, as the README shows it.
    fs.writeFileSync(
      path.join(project, 'use.mjs'),
      `
import Database from 'better-sqlite3';
import { BackupManager, loadConfig, RotationPolicy, targetForPath } from 'litekeep';
const db = new Database('app.db');
db.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES (\\'hello\\')');
db.close();
const manager = new BackupManager(targetForPath(loadConfig(), 'app.db', 'backups'));
const backup = await manager.createBackup();
const listing = await manager.listBackups();
const plan = new RotationPolicy(7, 4, 12).plan(listing, { timeZone: 'UTC' });
manager.close();
console.log(JSON.stringify({ file: backup.file, bytes: backup.bytes, listed: listing.backups.length, kept: plan.keep.length }));
`,
    );
    const used = run(process.execPath, ['use.mjs'], { cwd: project });
    expect(used.status, used.stderr).toBe(0);
    const result = JSON.parse(used.stdout) as { file: string; bytes: number; listed: number; kept: number };
    expect(result.file).toMatch(/^backup-\d{4}-\d\d-\d\d-\d{6}\.db\.zst$/);
    expect(fs.statSync(path.join(project, 'backups', result.file)).size).toBe(result.bytes);
    expect(result).toMatchObject({ listed: 1, kept: 1 });

    // The command npm installed, directly and through npx: `--env-file` reaches litekeep, not Node.
    const bin = path.join(project, 'node_modules', '.bin', 'litekeep');
    expect(run(bin, ['--version'], { cwd: project }).stdout.trim()).toBe(VERSION);
    // npx is a Node program too: on Node 20 the `--` keeps Node from reading the `--env-file` meant for litekeep
    // (README, "Everyday use"); so does `node --` for the script of a checkout.
    for (const [command, args] of [
      [bin, []],
      ['npx', ['--offline', '--', 'litekeep']],
      ['npx', ['--offline', 'litekeep', '--']],
      [process.execPath, ['--', path.join(source, 'dist', 'cli', 'main.js')]],
    ] as const) {
      const r = run(command, [...args, 'list', '--env-file', 'backend/.envv'], { cwd: project });
      expect(r.stderr, command).toMatch(/^litekeep: cannot read env file .*backend\/\.envv: ENOENT/m);
      expect(r.stderr).not.toMatch(/^node:/m);
      expect(r.status).toBe(2);
    }

    // The README's library example type-checks as written, against the types the package ships.
    fs.writeFileSync(path.join(project, 'example.ts'), readmeBlock('## Library', 'ts'));
    const tsc = run(
      process.execPath,
      [
        path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
        '--noEmit',
        '--strict',
        '--skipLibCheck',
        '--target',
        'es2022',
        '--module',
        'nodenext',
        '--moduleResolution',
        'nodenext',
        '--typeRoots',
        path.join(ROOT, 'node_modules', '@types'),
        '--types',
        'node',
        'example.ts',
      ],
      { cwd: project, env: userEnv() },
    );
    expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);
  }, 300_000);
});
