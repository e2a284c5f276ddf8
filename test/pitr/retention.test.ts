import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BackupManager } from '../../src/backup/manager.js';
import { loadConfig } from '../../src/config/index.js';
import { planPitrRetention, type RetainedBase } from '../../src/pitr/retention.js';
import { segmentName } from '../../src/pitr/shipper.js';
import { incrementalSpec } from '../../src/repository/destination.js';
import { pruneRepository } from '../../src/repository/run.js';
import { restoreBackup } from '../../src/restore/restore.js';
import { runCli } from '../helpers/cli.js';
import { readState, startWriter, stopWriters } from './app-writer.js';
import { setUp as replicationSetUp } from './replication-setup.js';

afterEach(() => stopWriters());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const HOUR = 3600_000;

describe('planPitrRetention', () => {
  const gen = { salt1: 7, salt2: 9, checkpointSequence: 2, bigEndianChecksum: false };
  const name = (epoch: number, seq: number, first: number, last: number) =>
    segmentName({
      epoch,
      generation: { ...gen, checkpointSequence: seq },
      firstFrame: first,
      lastFrame: last,
    });
  const base = (id: string, finishedAt: number, frame: number, usable = true): RetainedBase => ({
    id,
    finishedAt,
    shippedBefore: { epoch: 0, generation: gen, frame },
    walEndAfter: { generation: gen, frame: frame + 2 },
    usable,
  });
  const names = [
    name(0, 2, 1, 10),
    name(0, 2, 11, 20),
    name(0, 2, 21, 30),
    name(0, 3, 1, 5),
    name(1, 0, 1, 4),
  ];

  it('keeps the newest base finished by the window start and every segment that may follow it', () => {
    const plan = planPitrRetention([base('a', 100, 10), base('b', 200, 20), base('c', 300, 30)], names, 250);
    expect(plan.anchor?.id).toBe('b');
    expect(plan.collectable).toEqual([name(0, 2, 1, 10), name(0, 2, 11, 20)]);
  });

  it('anchors on the oldest base when none is older than the window, and never on a failed one', () => {
    expect(planPitrRetention([base('b', 200, 20), base('c', 300, 30)], names, 50).anchor?.id).toBe('b');
    const plan = planPitrRetention([base('b', 200, 20, false), base('a', 100, 10)], names, 250);
    expect(plan.anchor?.id).toBe('a');
    expect(plan.collectable).toEqual([name(0, 2, 1, 10)]);
  });

  it('collects nothing without a usable base, and never the segment shipped last', () => {
    expect(planPitrRetention([base('a', 100, 10, false)], names, 250)).toEqual({
      windowStart: 250,
      collectable: [],
    });
    // Everything stored lies before the anchor's start: the last one stays, so a fresh shipper's epoch goes on.
    const old = [name(0, 2, 1, 10), name(0, 2, 11, 20)];
    expect(planPitrRetention([base('z', 900, 40)], old, 1000).collectable).toEqual([name(0, 2, 1, 10)]);
  });
});

function setUp() {
  const t = replicationSetUp({ prune: false });
  const segments = () =>
    fs
      .readdirSync(path.join(t.repo, 'wal'))
      .filter((n) => n.endsWith('.lkwal'))
      .sort();
  return { ...t, segments };
}

async function cli(dir: string, args: string[], code = 0) {
  const r = await runCli(args, { cwd: dir, timeoutMs: 120_000 });
  expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(code);
  return r;
}

/** An app that committed 3 rows, and a first `replicate --once`: base snapshot B0 and its segments. */
async function replicating() {
  const t = setUp();
  const writer = startWriter(t.db);
  expect(await writer.ready).toBe('ready');
  await writer.send('burst 3');
  await cli(t.dir, ['replicate', '--once']);
  return { t, writer };
}

describe('retention.pitr', () => {
  it('keeps every moment of the window restorable, collects the segments before it, and survives a kill in between', async () => {
    // The first pass takes base B0 (3 rows); later passes ship what the app committed since.
    const { t, writer } = await replicating();
    const marks: { at: number; last: number }[] = [];
    const round = async (count: number) => {
      const last = await writer.send(`burst ${count}`);
      await cli(t.dir, ['replicate', '--once']);
      await sleep(15);
      marks.push({ at: Date.now(), last });
      await sleep(15);
    };
    await round(2);
    await round(3);
    await cli(t.dir, ['backup']); // B1
    const afterB1 = Date.now();
    await sleep(15);
    await round(2);
    await round(4);
    await cli(t.dir, ['backup']); // B2
    await round(1);
    await round(5);
    const before = t.segments();
    expect(before.length).toBeGreaterThanOrEqual(6);
    const pristine = path.join(t.dir, 'pristine');
    fs.cpSync(t.repo, pristine, { recursive: true });

    const target = loadConfig({ cwd: t.dir }).databases[0];
    const spec = incrementalSpec(target, 'vault')!;
    // An hour from now, a one-hour window starts right after B1: B1 anchors it.
    const now = new Date(afterB1 + HOUR);
    const prune = async (policy: object) => {
      const manager = new BackupManager(target);
      try {
        return await pruneRepository(spec, target, manager, {
          now,
          policy: { manual: '0h', pitr: '1h', ...policy },
        });
      } finally {
        manager.close();
      }
    };
    const dry = await runCli(['prune', '--from', 'vault', '--dry-run'], { cwd: t.dir });
    expect(dry.stdout).toMatch(
      /point-in-time window 7d: every moment from .* on can be restored to the second/,
    );

    const kept = await prune({ last: 10 });
    expect(kept.forgotten).toEqual([]);
    expect(kept.pitr?.segmentsRemoved).toBeGreaterThan(0);
    const anchor = kept.pitr!.anchor!;
    expect(kept.decisions.find((d) => d.id === anchor)?.reasons.join()).toMatch(
      /point-in-time window \(pitr 1h\)/,
    );
    const after = t.segments();
    const removed = before.filter((n) => !after.includes(n));
    expect(removed.length).toBe(kept.pitr!.segmentsRemoved);
    expect(after.length).toBe(kept.pitr!.segmentsKept);
    // Collected oldest first: what goes is a head of the shipping order, what stays its tail.
    expect(before.slice(0, removed.length)).toEqual(removed);
    const horizons = fs.readdirSync(path.join(t.repo, 'wal')).filter((n) => n.startsWith('horizon-'));
    expect(horizons).toEqual([`horizon-${anchor}.json`]);
    const checked = await cli(t.dir, ['check', '--from', 'vault', '--read-data']);
    expect(checked.stdout).toMatch(
      /^ok .*\n.*WAL segments .* before \S+ from snapshots only \(retention\.pitr\)/,
    );

    const exact = async (at: number, last: number, via: 'cli' | 'library') => {
      const out = path.join(t.dir, `restored-${at}-${via}.db`);
      if (via === 'cli') {
        const r = await cli(t.dir, [
          'restore',
          '--from',
          'vault',
          '--at',
          new Date(at).toISOString(),
          '--to',
          out,
        ]);
        expect(r.stderr).not.toMatch(/warning/i);
      } else {
        const result = await restoreBackup(target, { from: 'vault', at: new Date(at), to: out });
        expect(result.warnings).toEqual([]);
      }
      const state = readState(out);
      fs.rmSync(out);
      expect(state.last, `moment ${new Date(at).toISOString()}`).toBe(last);
      expect(state.ns).toEqual(Array.from({ length: last }, (_, k) => k + 1));
    };
    const inWindow = marks.filter((m) => m.at > afterB1);
    expect(inWindow.length).toBe(4);
    for (const [i, m] of inWindow.entries()) await exact(m.at, m.last, i === 0 ? 'cli' : 'library');

    // verify --at: the same point in time, restored in a temp folder and checked, recorded like any verification.
    const verified = await cli(t.dir, [
      'verify',
      '--from',
      'vault',
      '--at',
      new Date(inWindow[2].at).toISOString(),
    ]);
    expect(verified.stdout).toMatch(/^ok .*\+wal from vault: .*integrity ok/);
    expect(verified.stdout).toMatch(/point in time .*: base snapshot [0-9a-f]{12} .* WAL segment/);

    // Before the window, the kept base B0 answers, as a snapshot, and says why (not a gap: exit 0).
    const early = path.join(t.dir, 'early.db');
    const r = await cli(t.dir, [
      'restore',
      '--from',
      'vault',
      '--at',
      new Date(marks[1].at).toISOString(),
      '--to',
      early,
    ]);
    expect(r.stdout).toMatch(
      /where second-level recovery starts \(older WAL segments were collected by retention\.pitr\)/,
    );
    expect(readState(early).last).toBe(3);

    // A kill during collection leaves the horizon and a head of the removals done: each such state restores
    // every moment of the window exactly, and the next prune finishes the job.
    const horizon = fs.readFileSync(path.join(t.repo, 'wal', horizons[0]));
    for (const done of [0, Math.floor(removed.length / 2)]) {
      fs.rmSync(t.repo, { recursive: true });
      fs.cpSync(pristine, t.repo, { recursive: true });
      fs.writeFileSync(path.join(t.repo, 'wal', horizons[0]), horizon, { mode: 0o600 });
      for (const name of removed.slice(0, done)) fs.rmSync(path.join(t.repo, 'wal', name));
      await exact(inWindow[0].at, inWindow[0].last, 'library');
      await exact(inWindow[3].at, inWindow[3].last, 'library');
      const again = await prune({ last: 10 });
      expect(again.pitr?.segmentsRemoved).toBe(removed.length - done);
      expect(t.segments()).toEqual(after);
    }

    // The snapshot rules alone would forget B1; it stays, because the window's first moments start from it.
    const tight = await prune({ last: 1 });
    expect(tight.decisions.find((d) => d.id === anchor)?.action).toBe('keep');
    expect(tight.forgotten.length).toBe(1); // B0
    for (const m of inWindow) await exact(m.at, m.last, 'library');
    const gone = await runCli(
      ['restore', '--from', 'vault', '--at', new Date(marks[1].at).toISOString(), '--to', early + '2'],
      {
        cwd: t.dir,
      },
    );
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/the earliest recoverable moment is/);
  }, 300_000);

  it('check proves the segments, lists the windows, and names a missing or damaged one', async () => {
    const start = Date.now();
    const { t, writer } = await replicating();
    for (const n of [2, 3, 2, 4]) {
      await writer.send(`burst ${n}`);
      await cli(t.dir, ['replicate', '--once']);
    }
    const end = Date.now();
    const names = t.segments();
    expect(names.length).toBeGreaterThanOrEqual(4);
    const quick = await cli(t.dir, ['check', '--from', 'vault']);
    expect(quick.stdout).toMatch(
      new RegExp(`ok .*\\n  ${names.length} WAL segments \\(.*\\); names checked`),
    );
    const full = await cli(t.dir, ['check', '--from', 'vault', '--read-data', '--json']);
    const wal = JSON.parse(full.stdout).reports[0].wal;
    expect(wal.read).toBe(names.length);
    expect(wal.windows).toHaveLength(1);
    expect(Date.parse(wal.windows[0].from)).toBeGreaterThanOrEqual(start);
    expect(Date.parse(wal.windows[0].to)).toBeLessThanOrEqual(end);
    expect(Date.parse(wal.windows[0].to)).toBeGreaterThan(Date.parse(wal.windows[0].from));

    // A damaged segment: its bytes no longer decode; check --read-data names it and fails.
    const damaged = path.join(t.repo, 'wal', names[2]);
    const bytes = fs.readFileSync(damaged);
    const original = Buffer.from(bytes);
    bytes[bytes.length >> 1] ^= 0x55;
    fs.writeFileSync(damaged, bytes);
    const bad = await cli(t.dir, ['check', '--from', 'vault', '--read-data'], 1);
    expect(bad.stdout).toMatch(new RegExp(`FAILED .*\\n[^]*WAL segment ${names[2]}`));
    // verify --at a moment past the damaged segment fails, naming it; nothing is restored anywhere.
    const failed = await cli(t.dir, ['verify', '--from', 'vault', '--at', new Date(end).toISOString()], 1);
    expect(failed.stdout + failed.stderr).toMatch(
      new RegExp(`FAILED .*\\+wal from vault: .*WAL segment ${names[2]} cannot be used`),
    );

    // A missing one: inside a generation the names show it; at a generation's end, reading shows it (the reset
    // segment after it records where that generation ended).
    fs.writeFileSync(damaged, original);
    expect((await cli(t.dir, ['check', '--from', 'vault', '--read-data'])).stdout).toMatch(/^ok /);
    // (The first may precede the first base, and the last only ends the window sooner: the ones between matter.)
    for (const name of names.slice(1, -1)) {
      const file = path.join(t.repo, 'wal', name);
      const kept = fs.readFileSync(file);
      fs.rmSync(file);
      const missing = await cli(t.dir, ['check', '--from', 'vault', '--read-data'], 1);
      expect(missing.stdout, name).toMatch(
        /WAL segment\(s\) missing: frames \d+–\d+ between |does not follow .*\(frames or a generation missing between them\)|cannot be replayed past /,
      );
      fs.writeFileSync(file, kept, { mode: 0o600 });
    }
  }, 300_000);

  it('status shows where recovery to the second is whole from, and each gap', async () => {
    const { t, writer } = await replicating();
    const firstBase = Date.now();
    const status = async () => JSON.parse((await cli(t.dir, ['status', '--json'])).stdout).replication[0];
    const before = await status();
    expect(before.gaps).toBe(0);
    expect(Date.parse(before.recoverableFrom)).toBeLessThanOrEqual(firstBase);
    // litekeep down while the app writes and its checkpoint resets the WAL: a gap, then a new base.
    await writer.send('burst 40');
    await writer.send('checkpoint PASSIVE');
    await writer.send('burst 2');
    const gapFound = Date.now();
    // --json: one event per line, each a whole JSON document.
    const events = (await cli(t.dir, ['replicate', '--once', '--json'])).stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(events.some((e) => e.kind === 'gap' && e.reason === 'lost-frames')).toBe(true);
    expect(events.some((e) => e.kind === 'base' && e.ok)).toBe(true);
    const after = await status();
    expect(after.gaps).toBe(1);
    expect(after.recentGaps).toHaveLength(1);
    expect(Date.parse(after.recentGaps[0])).toBeGreaterThanOrEqual(gapFound);
    expect(Date.parse(after.recoverableFrom)).toBeGreaterThanOrEqual(Date.parse(after.recentGaps[0]));
    const text = (await cli(t.dir, ['status'])).stdout;
    expect(text).toMatch(/restorable to the second from .* to now/);
    expect(text).toMatch(/1 gap \(the app's checkpoint reset the WAL before litekeep read it/);
  }, 120_000);

  it('refuses a window that is not a duration, naming the form', async () => {
    const t = setUp();
    const config = JSON.parse(fs.readFileSync(path.join(t.dir, 'litekeep.yml'), 'utf8'));
    config.retention.pitr = 'a week';
    config.prune = true;
    fs.writeFileSync(path.join(t.dir, 'litekeep.yml'), JSON.stringify(config));
    const writer = startWriter(t.db);
    await writer.ready;
    for (const command of [['backup'], ['replicate', '--once'], ['prune']]) {
      const r = await runCli(command, { cwd: t.dir });
      expect(r.code, command.join(' ')).toBe(2);
      expect(r.stderr).toMatch(
        /invalid retention\.pitr "a week" .*--keep-pitr\): expected a duration made of numbers/,
      );
    }
    expect(fs.existsSync(t.repo)).toBe(false);
  });
});
