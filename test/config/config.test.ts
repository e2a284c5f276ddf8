import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, describeConfig, loadConfig, resolveDatabaseLocation } from '../../src/config/index.js';
import { tempDir } from '../helpers/db.js';

function setup(files: Record<string, string> = {}): string {
  const dir = tempDir('litekeep-config-');
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
  return dir;
}

describe('database locations', () => {
  it('reads the seed forms of DATABASE_URL', () => {
    expect(resolveDatabaseLocation('sqlite:///data/app.db', '/srv', 'x')).toBe('/srv/data/app.db');
    expect(resolveDatabaseLocation('sqlite:////var/lib/app.db', '/srv', 'x')).toBe('/var/lib/app.db');
    expect(resolveDatabaseLocation('file:/var/lib/app.db?mode=ro', '/srv', 'x')).toBe('/var/lib/app.db');
    expect(resolveDatabaseLocation('file:///var/lib/app.db', '/srv', 'x')).toBe('/var/lib/app.db');
    expect(resolveDatabaseLocation('file:rel.db', '/srv', 'x')).toBe('/srv/rel.db');
    expect(resolveDatabaseLocation('./app.db', '/srv', 'x')).toBe('/srv/app.db');
  });

  it('rejects malformed URLs with the accepted forms', () => {
    expect(() => resolveDatabaseLocation('sqlite://app.db', '/srv', 'environment (DATABASE_URL)')).toThrow(
      /malformed database location 'sqlite:\/\/app.db' from environment \(DATABASE_URL\).*three slashes.*sqlite:\/\/\/relative/,
    );
    expect(() => resolveDatabaseLocation('postgres://db/app', '/srv', 'x')).toThrow(/not a SQLite URL/);
    expect(() => resolveDatabaseLocation('sqlite:///:memory:', '/srv', 'x')).toThrow(/in-memory/);
  });
});

describe('loadConfig', () => {
  it('applies defaults: 7/4/12, 03:00, ./backups', () => {
    const cwd = setup();
    const r = loadConfig({ cwd, env: {} });
    expect(r.config.retention).toMatchObject({ daily: 7, weekly: 4, monthly: 12 });
    expect(r.config.schedule).toBe('0 3 * * *');
    expect(r.config.backupDir).toBe(path.join(cwd, 'backups'));
    expect(r.databases).toEqual([]);
  });

  it('puts backups under <AI_WORKSPACE>/backups/database when BACKUP_DIR is unset', () => {
    const cwd = setup();
    const r = loadConfig({ cwd, env: { AI_WORKSPACE: '/ws', DATABASE_URL: 'sqlite:///app.db' } });
    expect(r.config.backupDir).toBe('/ws/backups/database');
    expect(r.sources.backupDir).toMatch(/AI_WORKSPACE/);
    expect(r.databases[0]).toMatchObject({
      name: 'app',
      path: path.join(cwd, 'app.db'),
      backupDir: '/ws/backups/database',
    });
  });

  it('layers defaults < config file < .env < environment < flags, and says where each value came from', () => {
    const cwd = setup({
      'litekeep.yml':
        'retention:\n  daily: 3\n  weekly: 2\n  monthly: 1\nschedule: "0 4 * * *"\nbackupDir: ./from-file\n',
      '.env': 'LITEKEEP_RETENTION_WEEKLY=5\nLITEKEEP_RETENTION_MONTHLY=6\nDATABASE_URL=sqlite:///env.db\n',
    });
    const r = loadConfig({
      cwd,
      env: { LITEKEEP_RETENTION_MONTHLY: '9' },
      overrides: { 'retention.daily': '11' },
    });
    expect(r.config.retention).toMatchObject({ daily: 11, weekly: 5, monthly: 9 });
    expect(r.config.schedule).toBe('0 4 * * *');
    expect(r.config.backupDir).toBe(path.join(cwd, 'from-file'));
    expect(r.sources['retention.daily']).toBe('command line');
    expect(r.sources['retention.weekly']).toMatch(/env file .*\.env \(LITEKEEP_RETENTION_WEEKLY\)/);
    expect(r.sources['retention.monthly']).toBe('environment (LITEKEEP_RETENTION_MONTHLY)');
    expect(r.sources.schedule).toMatch(/config file .*litekeep.yml/);
    expect(r.sources['vacuum']).toBe('default');
    expect(r.databases[0].path).toBe(path.join(cwd, 'env.db'));
  });

  it('reads JSON config files and --config paths; paths in a file are relative to the file', () => {
    const cwd = setup();
    fs.mkdirSync(path.join(cwd, 'etc'));
    fs.writeFileSync(
      path.join(cwd, 'etc', 'lk.json'),
      JSON.stringify({ database: 'data/app.db', backupDir: 'bk' }),
    );
    const r = loadConfig({ cwd, env: {}, configPath: 'etc/lk.json' });
    expect(r.databases[0].path).toBe(path.join(cwd, 'etc', 'data', 'app.db'));
    expect(r.config.backupDir).toBe(path.join(cwd, 'etc', 'bk'));
  });

  it('expands databases: into one target per database, each in <backupDir>/<name>/ with overrides', () => {
    const cwd = setup({
      'litekeep.yaml': [
        'backupDir: /b',
        'databases:',
        '  - name: main',
        '    path: main.db',
        '  - name: logs',
        '    path: sqlite:////var/logs.db',
        '    vacuum: false',
        '    retention:',
        '      daily: 2',
      ].join('\n'),
    });
    const r = loadConfig({ cwd, env: {} });
    expect(r.databases.map((d) => [d.name, d.path, d.backupDir])).toEqual([
      ['main', path.join(cwd, 'main.db'), '/b/main'],
      ['logs', '/var/logs.db', '/b/logs'],
    ]);
    expect(r.databases[1].settings.vacuum).toBe(false);
    expect(r.databases[1].settings.retention.daily).toBe(2);
    expect(r.databases[0].settings.retention.daily).toBe(7);
  });

  it('rejects unknown keys, wrong types and impossible values, naming key and source', () => {
    const bad =
      (files: Record<string, string>, env: NodeJS.ProcessEnv = {}) =>
      () =>
        loadConfig({ cwd: setup(files), env });
    expect(bad({ 'litekeep.yml': 'retention:\n  dayly: 3\n' })).toThrow(
      /unknown key 'retention.dayly' in config file/,
    );
    expect(bad({ 'litekeep.yml': 'retention:\n  daily: -1\n' })).toThrow(
      /invalid retention.daily -1 from config file .*: expected a whole number >= 0/,
    );
    expect(bad({ 'litekeep.yml': 'vacuum: maybe\n' })).toThrow(/invalid vacuum 'maybe'.*true or false/);
    expect(bad({}, { LITEKEEP_RETENTION_WEEKLY: '1.5' })).toThrow(
      /invalid retention.weekly '1.5' from environment \(LITEKEEP_RETENTION_WEEKLY\)/,
    );
    expect(bad({}, { LITEKEEP_RETENTON_DAILY: '3' })).toThrow(
      /unknown setting LITEKEEP_RETENTON_DAILY in environment/,
    );
    expect(bad({}, { LITEKEEP_TIME_ZONE: 'Mars/Olympus' })).toThrow(/invalid timeZone 'Mars\/Olympus'/);
    expect(bad({ 'litekeep.yml': 'databases:\n  - name: a b\n    path: x.db\n' })).toThrow(
      /databases\[0\].name/,
    );
    expect(bad({ 'litekeep.yml': 'databases:\n  - name: a\n    path: x.db\n    schedule: x\n' })).toThrow(
      /unknown key 'databases\[0\].schedule'/,
    );
    expect(bad({ 'litekeep.yml': 'foo: [' })).toThrow(/not valid YAML/);
    try {
      bad({ 'litekeep.yml': 'compression:\n  algorithm: lzma\n' })();
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).exitCode).toBe(2);
      expect((error as Error).message).toMatch(/compression.algorithm 'lzma'.*one of zstd, gzip, none/);
    }
  });

  it('redacts secrets in the described configuration', () => {
    const cwd = setup({ 'litekeep.yml': 'notify:\n  ntfy:\n    topic: t\n    token: tk_supersecret\n' });
    const r = loadConfig({
      cwd,
      env: { LITEKEEP_PASSPHRASE: 'hunter2', LITEKEEP_NOTIFY_PING_URL: 'https://hc.example/ping/abc' },
    });
    expect(r.config.notify.ntfy.token).toBe('tk_supersecret');
    expect(r.config.encryption.passphrase).toBe('hunter2');
    const text = JSON.stringify(describeConfig(r));
    expect(text).not.toContain('tk_supersecret');
    expect(text).not.toContain('hunter2');
    expect(text).not.toContain('/ping/abc');
    expect(text).toContain('environment (LITEKEEP_PASSPHRASE)');
  });
});
