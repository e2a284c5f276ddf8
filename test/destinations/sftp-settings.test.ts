import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { TSX_LOADER } from '../helpers/cli.js';

const SETTINGS = path.resolve(__dirname, '../../src/destinations/sftp-settings.ts');

/**
 * checkSftpSettings run by a user who cannot read the key: root reads every file, so as root the check runs in a
 * child that drops to `nobody` first; otherwise the key is made unreadable to its owner.
 */
function checkAsUserWithoutAccess(keyFile: string, knownHosts: string, tmp: string) {
  const script =
    // Loaded first, as root (the checkout may sit where `nobody` cannot read), then the user changes.
    `const { checkSftpSettings } = await import(${JSON.stringify(SETTINGS)});` +
    `if (process.getuid() === 0) process.setuid(65534);` +
    `try { checkSftpSettings(${JSON.stringify({ host: '127.0.0.1', path: 'x', keyFile, knownHosts })}, "destination 'box'"); console.log('accepted'); }` +
    `catch (e) { console.log(e.message); }`;
  // tsx compiles into TMPDIR, which `nobody` must be able to write.
  return spawnSync(process.execPath, ['--import', TSX_LOADER, '--input-type=module', '-e', script], {
    encoding: 'utf8',
    env: { ...process.env, TMPDIR: tmp },
  });
}

describe('sftp settings checked at start', () => {
  it('a key file this user cannot read is refused at start, naming it and the fix', () => {
    // Outside the suite's private temp folder, so that `nobody` can reach the key and meet only its own mode.
    const dir = fs.mkdtempSync('/tmp/litekeep-sftp-settings-');
    try {
      fs.chmodSync(dir, 0o755);
      const tmp = path.join(dir, 'tmp');
      fs.mkdirSync(tmp);
      fs.chmodSync(tmp, 0o1777);
      const keyFile = path.join(dir, 'id_ed25519');
      fs.writeFileSync(keyFile, 'not read anyway', { mode: 0o600 });
      if (process.getuid?.() !== 0) fs.chmodSync(keyFile, 0o000);
      const knownHosts = path.join(dir, 'known_hosts');
      fs.writeFileSync(knownHosts, '', { mode: 0o644 });
      const r = checkAsUserWithoutAccess(keyFile, knownHosts, tmp);
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe(
        `destination 'box'.keyFile ${keyFile} cannot be read (EACCES); run litekeep as the key's owner or fix its permissions`,
      );
      // The same file, readable: accepted.
      fs.chmodSync(keyFile, 0o644);
      expect(checkAsUserWithoutAccess(keyFile, knownHosts, tmp).stdout.trim()).toBe('accepted');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
