// npm runs `prepare` after `npm ci` in this checkout, when packing, and in a folder or git checkout of litekeep
// that another project installs (`npm install ../litekeep`, `npm install git+https://...`). It builds dist/.
// A folder whose dev dependencies were never installed cannot build: say what to do instead of "tsc: not found".
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
let tsc;
try {
  tsc = require.resolve('typescript/bin/tsc');
} catch {
  if (fs.existsSync('dist/index.js')) process.exit(0);
  process.stderr.write(
    `litekeep: cannot build ${process.cwd()}: its dev dependencies are not installed; run 'npm ci' there first, ` +
      `or install litekeep from its git URL or from a tarball made with 'npm pack'\n`,
  );
  process.exit(1);
}
const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
process.exit(result.status ?? 1);
