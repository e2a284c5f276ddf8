import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * The whole run gets a temp folder of its own (TMPDIR for every test and every process a test starts). At the
 * end, anything still in it is something a test made and did not remove: the run fails and names it. The
 * folder is removed either way, so a run never leaves litekeep-* folders in the machine's temp folder.
 */
export default function setup(): () => void {
  const base = process.env.TMPDIR || os.tmpdir();
  const suiteDir = fs.mkdtempSync(path.join(base, 'litekeep-suite-'));
  process.env.TMPDIR = suiteDir;
  return () => {
    process.env.TMPDIR = base;
    // tsx keeps its compile cache in the temp folder: the loader's, not a test's.
    const left = fs.readdirSync(suiteDir).filter((name) => !/^tsx-\d+$/.test(name));
    fs.rmSync(suiteDir, { recursive: true, force: true });
    if (left.length) {
      // vitest reports an error thrown here but still exits 0: fail the run explicitly.
      process.stderr.write(
        `\nFAIL tests left ${left.length} item(s) in the temp folder: ${left.sort().join(', ')}; ` +
          'make them with tempDir() from test/helpers/temp.ts (removed after each file) or remove them in afterAll\n',
      );
      process.exitCode = 1;
    }
  };
}
