import { spawnSync } from 'node:child_process';
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
