import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/index.js';
import { runCli } from '../helpers/cli.js';
import { filesIn } from '../helpers/db.js';
import {
  backupFiles,
  daysBetween,
  env,
  nameOf,
  ONLY_RULES,
  removeWorkspaces,
  workspace,
} from './prune-helpers.js';

const cleanups: (() => void)[] = [];
afterAll(() => {
  // Immutable flags first: the folders cannot be removed while a file in them is immutable.
  cleanups.forEach((f) => f());
  removeWorkspaces();
});
const prune = (w: { db: string; backups: string; dir: string }, ...args: string[]) =>
  runCli(['prune', '--db', w.db, '--dir', w.backups, ...args], { cwd: w.dir, env });

// 2020-11-01 .. 2021-01-10, one backup a day. 7 daily / 4 weekly / 12 monthly keeps, by hand:
// Jan 10..4 (daily; Jan 10 also opens weekly 2021-W01 and monthly 2021-01), Jan 3 (weekly 2020-W53),
// Dec 31 (monthly 2020-12), Dec 27 (weekly 2020-W52), Dec 20 (weekly 2020-W51), Nov 30 (monthly 2020-11).
const DAYS = daysBetween('2020-11-01', '2021-01-10');
const KEPT_BY_DEFAULT = [
  ...daysBetween('2021-01-04', '2021-01-10'),
  '2021-01-03',
  '2020-12-31',
  '2020-12-27',
  '2020-12-20',
  '2020-11-30',
].map(nameOf);
const KEPT = KEPT_BY_DEFAULT.length;

describe('litekeep prune', () => {
  it('--dry-run shows every backup with keep/remove and reasons, and deletes nothing', async () => {
    const w = workspace(DAYS);
    const r = await prune(w, '--dry-run', '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.dryRun).toBe(true);
    expect(out.policy).toEqual({ daily: 7, weekly: 4, monthly: 12, manual: '7d', pitr: '7d' });
    expect(out.decisions).toHaveLength(DAYS.length);
    const kept = out.decisions.filter((d: { action: string }) => d.action === 'keep');
    expect(kept.map((d: { name: string }) => d.name).sort()).toEqual([...KEPT_BY_DEFAULT].sort());
    const byName = new Map(out.decisions.map((d: { name: string }) => [d.name, d]));
    expect(byName.get(nameOf('2021-01-10'))).toMatchObject({
      reasons: ['daily 2021-01-10', 'weekly 2021-W01', 'monthly 2021-01'],
    });
    expect(byName.get(nameOf('2021-01-03'))).toMatchObject({ reasons: ['weekly 2020-W53'] });
    expect(byName.get(nameOf('2020-11-30'))).toMatchObject({ reasons: ['monthly 2020-11'] });
    // A removed backup says why no rule kept it.
    expect(byName.get(nameOf('2020-12-30'))).toMatchObject({
      action: 'remove',
      reasons: [
        'daily: all 7 kept by newer backups',
        'weekly: 2020-W53 already kept by a newer backup',
        'monthly: 2020-12 already kept by a newer backup',
      ],
    });
    expect(out.removed).toEqual([]);
    expect(backupFiles(w.backups)).toHaveLength(DAYS.length);

    const text = await prune(w, '--dry-run');
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('policy 7 daily, 4 weekly, 12 monthly, manual backups within 7d (UTC)');
    expect(text.stdout).toMatch(
      /keep\s+backup-2020-12-27-030000\.db\s+2020-12-27 03:00:00 UTC\s+weekly 2020-W52/,
    );
    expect(text.stdout).toMatch(/remove\s+backup-2020-12-26-030000\.db/);
    expect(text.stdout).toContain(`dry run: would remove ${DAYS.length - KEPT}, keep ${KEPT}`);
    expect(backupFiles(w.backups)).toHaveLength(DAYS.length);
  });

  it('deletes what the plan removes and records each deletion with its reasons', async () => {
    const w = workspace(DAYS);
    const r = await prune(w, '--json');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.removed).toHaveLength(DAYS.length - KEPT);
    expect(backupFiles(w.backups)).toEqual([...KEPT_BY_DEFAULT].sort());

    const catalog = Catalog.open(w.backups);
    const deletions = catalog.history(500).filter((e) => e.kind === 'deletion') as unknown as {
      backupFile: string;
      status: string;
      reasons: string;
      destination: string;
    }[];
    catalog.close();
    expect(deletions.map((d) => d.backupFile).sort()).toEqual([...out.removed].sort());
    const nov1 = deletions.find((d) => d.backupFile === nameOf('2020-11-01'))!;
    expect(nov1).toMatchObject({ status: 'ok', destination: 'local' });
    expect(nov1.reasons).toBe(
      'policy 7 daily, 4 weekly, 12 monthly, manual backups within 7d: daily: all 7 kept by newer backups; ' +
        'weekly: all 4 kept by newer backups; monthly: 2020-11 already kept by a newer backup',
    );

    const history = await runCli(['history', '--db', w.db, '--dir', w.backups, '--limit', '100'], {
      cwd: w.dir,
      env,
    });
    expect(history.code).toBe(0);
    expect(history.stdout).toContain(`delete ${nameOf('2020-11-01')} from local: ok`);
  });

  it('reads the policy from flags, env and config file, and the calendar from the time zone', async () => {
    const w = workspace(daysBetween('2021-03-01', '2021-03-10'));
    fs.writeFileSync(path.join(w.dir, 'litekeep.yml'), 'retention:\n  daily: 5\n  weekly: 0\n  monthly: 0\n');
    let r = await prune(w, '--dry-run', '--json');
    expect(JSON.parse(r.stdout).policy).toEqual({
      daily: 5,
      weekly: 0,
      monthly: 0,
      manual: '7d',
      pitr: '7d',
    });
    r = await runCli(['prune', '--db', w.db, '--dir', w.backups, '--dry-run', '--json'], {
      cwd: w.dir,
      env: { ...env, LITEKEEP_RETENTION_DAILY: '3' },
    });
    expect(JSON.parse(r.stdout).policy).toEqual({
      daily: 3,
      weekly: 0,
      monthly: 0,
      manual: '7d',
      pitr: '7d',
    });
    // Flags win over env and file, key by key: the rules they do not name keep their configured values.
    r = await runCli(
      ['prune', '--db', w.db, '--dir', w.backups, '--keep-daily', '2', '--keep-within', '5d', '--json'],
      { cwd: w.dir, env: { ...env, LITEKEEP_RETENTION_DAILY: '3' } },
    );
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).policy).toEqual({
      daily: 2,
      weekly: 0,
      monthly: 0,
      within: '5d',
      manual: '7d',
      pitr: '7d',
    });
    expect(backupFiles(w.backups)).toEqual(daysBetween('2021-03-05', '2021-03-10').map(nameOf));

    // Names are wall-clock times of the configured zone: in New York (EST) 03:00 is 08:00 UTC.
    r = await runCli(['prune', '--db', w.db, '--dir', w.backups, '--dry-run', '--json'], {
      cwd: w.dir,
      env: { LITEKEEP_TIME_ZONE: 'America/New_York' },
    });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).decisions[0]).toMatchObject({
      name: nameOf('2021-03-10'),
      time: '2021-03-10T08:00:00.000Z',
    });
  });

  it('never removes the newest backup, and leaves files litekeep did not name alone', async () => {
    const w = workspace(['2021-01-01', '2021-01-02', '2021-01-03']);
    const strangers = [
      'notes.txt',
      'backup-2021-13-01-030000.db', // month 13: looks like ours, does not parse
      'backup-2021-01-01-030000.db.bak',
      'backup-2021-01-01.db',
      'mybackup-2021-01-01-030000.db',
      'app.db',
    ];
    for (const name of strangers) fs.writeFileSync(path.join(w.backups, name), 'not a backup\n');
    fs.mkdirSync(path.join(w.backups, 'backup-2020-06-01-030000.db'));
    const r = await runCli(['prune', '--db', w.db, '--dir', w.backups, '--keep-last', '1'], {
      cwd: w.dir,
      env: { ...env, ...ONLY_RULES },
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('removed 2, kept 1');
    const lines = r.stderr.trim().split('\n');
    expect(lines.sort()).toEqual(
      [
        'litekeep: warning: unrecognised file left alone: backup-2021-01-01-030000.db.bak',
        'litekeep: warning: unrecognised file left alone: backup-2021-01-01.db',
        'litekeep: warning: unrecognised file left alone: backup-2021-13-01-030000.db',
      ].sort(),
    );
    expect(filesIn(w.backups)).toEqual(
      ['.litekeep', 'backup-2020-06-01-030000.db', nameOf('2021-01-03'), ...strangers].sort(),
    );
    expect(fs.statSync(path.join(w.backups, 'backup-2020-06-01-030000.db')).isDirectory()).toBe(true);
  });

  it('a deletion that fails is reported and does not stop the others', async (ctx) => {
    if (process.getuid?.() !== 0) return ctx.skip('chattr +i needs root');
    const w = workspace(daysBetween('2021-01-01', '2021-01-06'));
    const locked = path.join(w.backups, nameOf('2021-01-03'));
    try {
      execFileSync('chattr', ['+i', locked], { stdio: 'ignore' });
    } catch {
      return ctx.skip('chattr is missing or this filesystem has no immutable flag (tmpfs, overlay)');
    }
    cleanups.unshift(() => execFileSync('chattr', ['-i', locked]));
    const r = await runCli(['prune', '--db', w.db, '--dir', w.backups, '--keep-last', '2'], {
      cwd: w.dir,
      env: { ...env, ...ONLY_RULES },
    });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(
      new RegExp(`^litekeep: warning: could not delete ${nameOf('2021-01-03')}: EPERM.*\\n$`),
    );
    expect(r.stdout).toMatch(/FAILED\s+backup-2021-01-03-030000\.db/);
    expect(r.stdout).toContain('removed 3, kept 2, 1 could not be deleted');
    expect(backupFiles(w.backups)).toEqual(
      [nameOf('2021-01-03'), nameOf('2021-01-05'), nameOf('2021-01-06')].sort(),
    );
    const catalog = Catalog.open(w.backups);
    const rows = catalog.history(50).filter((e) => e.kind === 'deletion') as unknown as {
      backupFile: string;
      status: string;
      error?: string;
    }[];
    catalog.close();
    expect(rows.find((d) => d.backupFile === nameOf('2021-01-03'))).toMatchObject({
      status: 'failed',
      error: expect.stringContaining('EPERM'),
    });
    expect(rows.filter((d) => d.status === 'ok')).toHaveLength(3);
  });

  it.each([
    [
      ['--keep-daily', '-1'],
      {},
      /invalid retention\.daily '-1' from command line: expected a whole number >= 0/,
    ],
    [['--keep-weekly', '1.5'], {}, /invalid retention\.weekly '1\.5' .*expected a whole number >= 0/],
    [['--keep-fortnightly', '2'], {}, /unknown option '--keep-fortnightly'/],
    [[], { LITEKEEP_RETENTION_FORTNIGHTLY: '2' }, /unknown setting LITEKEEP_RETENTION_FORTNIGHTLY/],
    [
      [],
      { LITEKEEP_RETENTION_MONTHLY: 'many' },
      /invalid retention\.monthly 'many' from .*LITEKEEP_RETENTION_MONTHLY/,
    ],
    [[], { LITEKEEP_TIME_ZONE: 'Mars/Olympus' }, /invalid timeZone 'Mars\/Olympus' .*IANA zone/],
    [
      [],
      { LITEKEEP_RETENTION_WITHIN: '3x' },
      /invalid retention\.within '3x' from environment \(LITEKEEP_RETENTION_WITHIN\): expected a duration .* such as 30d/,
    ],
    [
      ['--keep-within', '30 days'],
      {},
      /invalid retention\.within '30 days' from command line: expected a duration .* such as 30d/,
    ],
    [
      ['--keep-daily', '0', '--keep-weekly', '0', '--keep-monthly', '0'],
      {},
      /retention policy keeps nothing by rule .*set at least one of/,
    ],
  ])('rejects %j %j with exit 2 and deletes nothing', async (args, extraEnv, message) => {
    const w = workspace(daysBetween('2021-01-01', '2021-01-20'));
    const r = await runCli(['prune', '--db', w.db, '--dir', w.backups, ...args], {
      cwd: w.dir,
      env: { ...env, ...extraEnv },
    });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(message);
    expect(backupFiles(w.backups)).toHaveLength(20);
  });
});
