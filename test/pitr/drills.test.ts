import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyDue } from '../../src/backup/verify-schedule.js';
import { loadConfig } from '../../src/config/index.js';
import { zstdCompress, zstdDecompressBounded } from '../../src/repository/compress.js';
import { fingerprintIndexFile, type FingerprintedCommit } from '../../src/pitr/fingerprint.js';
import { commitIdAt, commitIdOfRef, formatCommitId } from '../../src/pitr/plan.js';
import { decodeSegment, encodeSegment } from '../../src/pitr/segment.js';
import { runCli } from '../helpers/cli.js';
import { readState, startWriter, stopWriters } from './app-writer.js';
import { killReplicators, setUp, sleep } from './replication-setup.js';

/**
 * Verification drills of point-in-time recovery (issue 15): commits shipped with the fingerprint litekeep read
 * from the live database right after them, restored exactly to that commit (`--at` with a commit id or a
 * segment name) and compared with it by `verify`.
 */

afterEach(() => {
  stopWriters();
  killReplicators();
});

const MiB = 1024 * 1024;

describe('verification drills of points in time', () => {
  it('restores exactly to a commit or segment by id, and verify compares random commits with their shipped fingerprints', async () => {
    const t = setUp();
    // The app's own checkpoints are rare here (1000 pages, SQLite's default): a fingerprint is read only while
    // the WAL holds frames not yet copied into the database file (src/pitr/fingerprint.ts).
    const writer = startWriter(t.db, { autocheckpoint: 1000 });
    expect(await writer.ready).toBe('ready');
    await writer.send('burst 3');
    const first = await runCli(['replicate', '--once'], { cwd: t.dir });
    expect(first.code, first.stderr).toBe(0);
    // Each later run ships one round, with the fingerprint at the round's last commit (one run, one fingerprint).
    const rounds: number[] = [];
    for (let round = 0; round < 4; round++) {
      rounds.push(await writer.send(`burst ${2 + round}`));
      await sleep(20);
      const r = await runCli(['replicate', '--once'], { cwd: t.dir });
      expect(r.code, r.stderr).toBe(0);
    }

    const index = JSON.parse(fs.readFileSync(fingerprintIndexFile(t.stateFile), 'utf8')) as {
      commits: FingerprintedCommit[];
    };
    // The first run's commit is inside its own base's capture; every round after it has its own.
    const afterBase = index.commits.slice(-4);
    expect(afterBase).toHaveLength(4);
    const walDir = path.join(t.repo, 'wal');
    const segmentOf = (name: string) =>
      decodeSegment(zstdDecompressBounded(fs.readFileSync(path.join(walDir, name)), 64 * MiB, name), name);
    for (const [i, entry] of afterBase.entries()) {
      // What was read from the live database is what the app had committed by that commit: n rows.
      const commit = segmentOf(entry.segment).metadata.commits.find((c) => c.frame === entry.commit.frame);
      expect(commit?.fingerprint?.tables.notes).toBe(rounds[i]);
      expect(commit?.fingerprint?.tables.meta).toBe(1);

      const id = formatCommitId(commitIdOfRef(entry.commit));
      const out = path.join(t.dir, `at-commit-${i}.db`);
      const r = await runCli(['restore', '--from', 'vault', '--at', id, '--to', out], { cwd: t.dir });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`point in time commit ${id}`);
      const state = readState(out);
      expect(state.last).toBe(rounds[i]);
      expect(state.ns).toEqual(Array.from({ length: rounds[i] }, (_, k) => k + 1));
    }

    // A commit in the middle of a segment: exactly up to it, though litekeep saw the later ones at the same time.
    const last = segmentOf(afterBase[3].segment).metadata;
    expect(last.commits.length).toBeGreaterThan(1);
    const early = formatCommitId(commitIdAt(last, last.commits[0].frame));
    const middle = path.join(t.dir, 'at-middle.db');
    const r = await runCli(['restore', '--from', 'vault', '--at', early, '--to', middle], { cwd: t.dir });
    expect(r.code, r.stderr).toBe(0);
    expect(readState(middle).last).toBe(rounds[3] - (last.commits.length - 1));

    // A segment's name names its last commit: the round it shipped, whatever was committed after it.
    await writer.send('burst 5');
    const second = afterBase[1].segment;
    const out = path.join(t.dir, 'at-segment.db');
    const bySegment = await runCli(['restore', '--from', 'vault', '--at', second, '--to', out], {
      cwd: t.dir,
    });
    expect(bySegment.code, bySegment.stderr).toBe(0);
    expect(readState(out).last).toBe(rounds[1]);

    // The daemon's daily verification includes one such drill per destination with segments.
    const daily = await verifyDue(loadConfig({ cwd: t.dir }).databases[0], 'daily', 'schedule');
    const drilled = daily.filter((r) => r.backup.includes('+wal@'));
    expect(drilled.map((r) => [r.source, r.status, r.fingerprint])).toEqual([['vault', 'ok', 'match']]);

    // The drill: the newest snapshot, then three random fingerprinted commits, each restored and compared.
    const drill = await runCli(['verify', '--from', 'vault', '--points', '3'], { cwd: t.dir });
    expect(drill.code, drill.stdout + drill.stderr).toBe(0);
    const points = drill.stdout.match(
      /^ok +app\/[0-9a-f]{12}\+wal@[0-9a-f-]+ from vault: .*fingerprint match$/gm,
    );
    expect(points).toHaveLength(3);
    const none = await runCli(['verify', '--from', 'vault', '--points', '0'], { cwd: t.dir });
    expect(none.stdout).not.toMatch(/\+wal@/);

    // A fingerprint that does not match what the restore holds fails the drill, naming the table.
    const tampered = afterBase[2];
    const segment = segmentOf(tampered.segment);
    const m = segment.metadata;
    const fingerprints = new Map(
      m.commits.flatMap((c) =>
        c.fingerprint
          ? [
              [
                c.frame,
                { ...c.fingerprint, tables: { ...c.fingerprint.tables, notes: rounds[2] + 1 } },
              ] as const,
            ]
          : [],
      ),
    );
    const reencoded = encodeSegment(
      {
        database: m.database,
        host: m.host,
        pageSize: m.pageSize,
        epoch: m.epoch,
        generation: m.generation,
        after: m.after,
        ...(m.previous ? { previous: m.previous } : {}),
      },
      m.startChecksum,
      segment.frames,
      m.commits.map((c) => c.seenAt),
      fingerprints,
    );
    fs.writeFileSync(path.join(walDir, tampered.segment), zstdCompress(reencoded));
    const id = formatCommitId(commitIdOfRef(tampered.commit));
    const failed = await runCli(['verify', '--from', 'vault', '--at', id], { cwd: t.dir });
    expect(failed.code).toBe(1);
    expect(failed.stdout + failed.stderr).toMatch(
      new RegExp(`FAILED .*table notes has ${rounds[2]} rows, ${rounds[2] + 1} were recorded`),
    );
  }, 300_000);

  it('refuses commit ids that name nothing, with the cause and the fix', async () => {
    const t = setUp();
    const writer = startWriter(t.db);
    expect(await writer.ready).toBe('ready');
    await writer.send('burst 3');
    expect((await runCli(['replicate', '--once'], { cwd: t.dir })).code).toBe(0);
    await writer.send('burst 2');
    expect((await runCli(['replicate', '--once'], { cwd: t.dir })).code).toBe(0);
    const out = path.join(t.dir, 'out.db');
    const [name] = fs.readdirSync(path.join(t.repo, 'wal')).sort().slice(-1);
    const [epoch, sequence, salt1, firstFrame] = name.split('-');

    const local = await runCli(
      ['restore', '--at', `${epoch}-${sequence}-${salt1}-${firstFrame}`, '--to', out],
      {
        cwd: t.dir,
      },
    );
    expect(local.code).toBe(2);
    expect(local.stderr).toMatch(
      /a commit id names a commit in the WAL segments of a destination: give --from/,
    );

    const unknown = await runCli(
      ['restore', '--from', 'vault', '--at', `${epoch}-${sequence}-${salt1}-0fffffff`, '--to', out],
      {
        cwd: t.dir,
      },
    );
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(
      /no WAL segment in vault holds commit .*-0fffffff; litekeep check --from vault/,
    );

    // Each transaction writes two pages: the first frame of a segment is not a commit.
    const notCommit = await runCli(
      ['restore', '--from', 'vault', '--at', `${epoch}-${sequence}-${salt1}-${firstFrame}`, '--to', out],
      {
        cwd: t.dir,
      },
    );
    expect(notCommit.code).toBe(2);
    expect(notCommit.stderr).toMatch(/is not a commit .*give a commit id or a segment name/);
    expect(fs.existsSync(out)).toBe(false);

    // On a machine that knows no fingerprinted commit (a fresh one), a drill asked for is not silently left out.
    fs.rmSync(fingerprintIndexFile(t.stateFile));
    const noDrill = await runCli(['verify', '--from', 'vault', '--points', '2'], { cwd: t.dir });
    expect(noDrill.code, noDrill.stderr).toBe(0);
    expect(noDrill.stdout).toMatch(
      /no drill: no commit shipped to vault with a fingerprint is known on this machine/,
    );

    const badPoints = await runCli(['verify', '--from', 'vault', '--points', 'some'], { cwd: t.dir });
    expect(badPoints.code).toBe(2);
    expect(badPoints.stderr).toMatch(/--points 'some' is not a whole number/);
  }, 180_000);
});
