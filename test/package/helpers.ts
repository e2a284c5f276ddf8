import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Whether this is a git checkout (the copies below are made from what git would commit). */
export function isGitCheckout(): boolean {
  return (
    spawnSync('git', ['rev-parse', '--is-inside-work-tree'], { cwd: ROOT, stdio: 'ignore' }).status === 0
  );
}

/**
 * Copies the checkout as a fresh clone of it would hold it: tracked files and new files that .gitignore does not
 * exclude, as they are now in the working tree — no node_modules, no dist, no local backups.
 */
export function copyCheckout(to: string): void {
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  })
    .split('\0')
    .filter(Boolean);
  for (const file of files) {
    const from = path.join(ROOT, file);
    // Deleted in the working tree (not yet committed), or not a file (a link to a node_modules somewhere).
    if (!fs.lstatSync(from, { throwIfNoEntry: false })?.isFile()) continue;
    const target = path.join(to, file);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.copyFileSync(from, target);
    fs.chmodSync(target, fs.statSync(from).mode & 0o777);
  }
}

/** The environment of a user's shell: nothing that steers litekeep, npm or the test runner from outside. */
export function userEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(LITEKEEP_|npm_|VITEST|NODE_OPTIONS$|TSX_|DATABASE_URL$|BACKUP_DIR$|AI_WORKSPACE$)/.test(key))
      continue;
    if (key === 'GOOGLE_APPLICATION_CREDENTIALS') continue;
    env[key] = value;
  }
  return {
    ...env,
    TZ: 'UTC',
    NO_UPDATE_NOTIFIER: '1',
    npm_config_fund: 'false',
    npm_config_audit: 'false',
    ...extra,
  };
}

export function run(
  command: string,
  args: string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number },
): SpawnSyncReturns<string> {
  return spawnSync(command, args, {
    cwd: options.cwd,
    env: options.env ?? userEnv(),
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 300_000,
    maxBuffer: 64 * 1024 * 1024,
  });
}

/** The fenced code block of the given language that follows a README heading. */
export function readmeBlock(heading: string, language: string): string {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const at = readme.indexOf(`\n${heading}\n`);
  if (at === -1) throw new Error(`README has no heading ${heading}`);
  const match = new RegExp('```' + language + '\\n([\\s\\S]*?)```').exec(readme.slice(at));
  if (!match) throw new Error(`README has no ${language} block after ${heading}`);
  return match[1];
}

/**
 * Makes `project` a package that depends on the packed tarball, with a lockfile holding exactly the versions this
 * checkout's lockfile resolved for litekeep's own dependencies: `npm ci --prefer-offline` then installs it from
 * npm's cache (filled by this checkout's own `npm ci`), as `npm install litekeep` would lay it out.
 */
export function writeDependentProject(project: string, tarball: string, integrity: string): void {
  const own = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
    version: string;
    dependencies: Record<string, string>;
    bin: Record<string, string>;
    engines: Record<string, string>;
  };
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean }>;
  };
  const relative = path.relative(project, tarball);
  const packages: Record<string, unknown> = {
    '': { name: 'app', version: '1.0.0', dependencies: { litekeep: `file:${relative}` } },
    'node_modules/litekeep': {
      version: own.version,
      resolved: `file:${relative}`,
      integrity,
      license: 'MIT',
      dependencies: own.dependencies,
      bin: own.bin,
      engines: own.engines,
    },
  };
  for (const [key, entry] of Object.entries(lock.packages)) {
    if (key !== '' && !entry.dev) packages[key] = entry;
  }
  fs.mkdirSync(project, { recursive: true });
  fs.writeFileSync(
    path.join(project, 'package.json'),
    JSON.stringify({
      name: 'app',
      version: '1.0.0',
      private: true,
      type: 'module',
      dependencies: { litekeep: `file:${relative}` },
    }),
  );
  fs.writeFileSync(
    path.join(project, 'package-lock.json'),
    JSON.stringify({ name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true, packages }, null, 2),
  );
}
