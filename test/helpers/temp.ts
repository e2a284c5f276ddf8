import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Folders made by `tempDir` in this test file; test/support/setup.ts removes them after the file's tests. */
const made: string[] = [];

/** A fresh private folder in the temp folder, removed with everything in it when the test file ends. */
export function tempDir(prefix = 'litekeep-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}
