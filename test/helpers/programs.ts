import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import type { TestContext } from 'vitest';

/** Debian package of each system program that tests drive for interoperability. */
const PACKAGE_OF: Record<string, string> = {
  age: 'age',
  'age-keygen': 'age',
  zstd: 'zstd',
  sqlite3: 'sqlite3',
  python3: 'python3',
  script: 'bsdutils',
};

const found = new Map<string, boolean>();

/** Whether a program is on PATH (asked once per program). */
export function hasProgram(program: string): boolean {
  let present = found.get(program);
  if (present === undefined) {
    present = spawnSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' }).status === 0;
    found.set(program, present);
  }
  return present;
}

/**
 * Skips the running test when a program it drives is missing, with a note that the run's summary repeats
 * (test/support/skip-summary.ts): a fresh machine passes the suite and says what it did not check.
 */
export function needPrograms(context: TestContext, ...programs: string[]): void {
  const missing = programs.filter((p) => !hasProgram(p));
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((p) => PACKAGE_OF[p] ?? p))].join(' ');
  context.skip(`needs ${missing.join(', ')} on PATH (apt-get install -y ${packages})`);
}

/** Whether a system program runs here, asked by running it (`rclone version`, `sshd -V`, ...). */
export function runsHere(program: string, args: string[] = ['--version']): boolean {
  const result = spawnSync(program, args, { stdio: 'ignore', timeout: 10_000 });
  return !result.error;
}

export const HAS_RCLONE = runsHere('rclone', ['version']);
export const HAS_SSHD = runsHere('/usr/sbin/sshd', ['-V']) && runsHere('ssh-keygen', ['-?']);
export const IS_ROOT = process.getuid?.() === 0;

/**
 * A suite title that says why it was skipped, since vitest shows only that it was: the reason is part of the
 * name, and printed once.
 */
export function titled(title: string, missing: string | undefined): string {
  if (!missing) return title;
  console.warn(`skipping "${title}": ${missing}`);
  return `${title} (skipped: ${missing})`;
}

export const RCLONE_MISSING = HAS_RCLONE ? undefined : 'rclone is not installed (apt-get install -y rclone)';
export const SSHD_MISSING = !HAS_SSHD
  ? 'the OpenSSH server is not installed (apt-get install -y openssh-server)'
  : !IS_ROOT
    ? 'starting sshd for a test needs root (CI runs as root)'
    : undefined;

/** The pids whose parent is `pid`, from /proc. */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // Field 4 of /proc/<pid>/stat is the parent; the name before it is in parentheses and may hold spaces.
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Every process below `pid`. */
export function descendantsOf(pid: number): number[] {
  return childrenOf(pid).flatMap((child) => [child, ...descendantsOf(child)]);
}

export function isRunning(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
