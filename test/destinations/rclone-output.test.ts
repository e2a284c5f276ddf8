import { describe, expect, it } from 'vitest';
import {
  classifyRcloneFailure,
  rcloneErrorLine,
  redactRcloneOutput,
  remoteName,
  secretsInConfig,
  secretsInEnvironment,
} from '../../src/destinations/rclone-output.js';

describe("rclone's output, made safe for one line", () => {
  it('masks tokens, passwords and credentials in URLs, and known secret values, but not remote names', () => {
    const text = [
      'oauth2: cannot fetch token: 400 Response: {"access_token":"ya29.AAA","refresh_token":"1//BBB","expiry":"x"}',
      'Propfind "https://alice:s3cr3t@dav.example/x": 401',
      ':webdav,user=alice,pass=OBSCURED1:backups',
      'Authorization: Bearer abc.def.ghi',
      'password: hunter2',
      'keybase:backups/app failed; the value was my-known-secret',
    ].join('\n');
    const out = redactRcloneOutput(text, ['my-known-secret']);
    for (const secret of [
      'ya29.AAA',
      '1//BBB',
      's3cr3t',
      'OBSCURED1',
      'abc.def.ghi',
      'hunter2',
      'my-known-secret',
    ])
      expect(out).not.toContain(secret);
    expect(out).toContain('"expiry":"x"');
    expect(out).toContain('keybase:backups/app');
    expect(out).toContain('https://***@dav.example/x');
  });

  it('finds the secrets in an rclone config and in RCLONE_CONFIG_* variables', () => {
    const config = [
      '[dropbox]',
      'type = dropbox',
      'token = {"access_token":"sl.AAA","token_type":"bearer","refresh_token":"RRR","expiry":"2026"}',
      '[nas]',
      'type = webdav',
      'url = https://nas.lan/dav',
      'pass = OBSCURED2',
    ].join('\n');
    const secrets = secretsInConfig(config);
    expect(secrets).toEqual(expect.arrayContaining(['sl.AAA', 'RRR', 'OBSCURED2']));
    expect(secrets).not.toContain('https://nas.lan/dav');
    expect(
      secretsInEnvironment({
        RCLONE_CONFIG_NAS_PASS: 'p1',
        RCLONE_CONFIG_NAS_URL: 'u',
        RCLONE_CONFIG_PASS: 'p2',
      }).sort(),
    ).toEqual(['p1', 'p2']);
  });

  it('picks the line that says what failed, and tells the kinds of failure apart', () => {
    const stderr = [
      '2026/12/01 11:33:16 NOTICE: Config file "/x" not found - using defaults',
      '2026/12/01 11:33:16 ERROR : : error listing: directory not found',
      '2026/12/01 11:33:16 Failed to lsjson with 2 errors: last error was: error in ListJSON: directory not found',
    ].join('\n');
    expect(rcloneErrorLine(stderr)).toBe('error in ListJSON: directory not found');
    expect(classifyRcloneFailure("didn't find section in config file")).toBe('not-configured');
    expect(classifyRcloneFailure("couldn't list files: Unauthorized: 401 Unauthorized")).toBe('auth');
    expect(classifyRcloneFailure('dial tcp 127.0.0.1:1: connect: connection refused')).toBe('unreachable');
    expect(classifyRcloneFailure('object not found')).toBe('not-found');
    expect(classifyRcloneFailure('quota exceeded')).toBe('other');
  });

  it('names the remote rclone looks up, and none for paths and on-the-fly backends', () => {
    expect(remoteName('dropbox:backups/app')).toBe('dropbox');
    expect(remoteName('my remote,chunk_size=8M:x')).toBe('my remote');
    expect(remoteName(':webdav,url=https://x:y')).toBeUndefined();
    expect(remoteName('/mnt/nas/backups')).toBeUndefined();
  });
});
