import fs from 'node:fs';
import path from 'node:path';
import { defineConfig } from 'vitest/config';

const ALL_TESTS = 'test/**/*.test.ts';

/** Test files that drive a system program (age, zstd, sqlite3, rclone, sshd, chromium, ...) or a browser. */
function filesNeedingPrograms(dir = 'test'): string[] {
  const found: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...filesNeedingPrograms(file));
    else if (
      entry.name.endsWith('.test.ts') &&
      /helpers\/(programs|browser)\.js'/.test(fs.readFileSync(file, 'utf8'))
    )
      found.push(file);
  }
  return found.sort();
}

/**
 * In CI (`.ci/run` sets CI=true) the suite runs once, split between two machines: test/fresh/readme.test.ts
 * replays the README on a clean copy of the checkout with the Debian tools hidden (a fresh machine) and runs the
 * whole suite there, where the tests that drive a system program skip; this run adds exactly those tests, with
 * the tools that `.ci/run` installed. Every test runs once in its own setting, instead of the suite running twice.
 * TEST_FULL_RUN=1 runs everything here as well.
 */
const replayRunsTheRest =
  process.env.CI === 'true' &&
  process.env.TEST_FRESH_CHECKOUT_REPLAY !== '1' &&
  process.env.TEST_FULL_RUN !== '1';

export default defineConfig({
  test: {
    include: replayRunsTheRest ? ['test/fresh/readme.test.ts', ...filesNeedingPrograms()] : [ALL_TESTS],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    globalSetup: ['test/support/global-setup.ts'],
    setupFiles: ['test/support/setup.ts'],
    reporters: ['default', './test/support/skip-summary.ts'],
  },
});
