import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { DatabaseTarget } from '../config/index.js';
import { hostOf } from '../destinations/factory.js';
import { canDecrypt } from '../repository/crypto.js';
import {
  chooseRepositoryHost,
  incrementalSpec,
  openRepositoryStore,
  stateDirOf,
} from '../repository/destination.js';
import { RepositoryDamagedError } from '../repository/errors.js';
import { shortId } from '../repository/ids.js';
import { restoreImage } from '../repository/reader.js';
import { Repository } from '../repository/repository.js';
import { listSnapshots, type SnapshotInfo } from '../repository/snapshots.js';
import type { Candidate } from '../restore/restore.js';
import { EXIT, LitekeepError, oneLine } from '../util/errors.js';
import { NOT_SHIPPED, planRecovery, type StoredSegment } from './plan.js';
import { replayOnto } from './replay.js';
import { decodeSegment, type Segment } from './segment.js';
import { baseOf, mayFollow } from './retention.js';
import { RepositorySegments } from './stored.js';

/**
 * `restore --at TIME` on a destination that holds WAL segments: the newest base snapshot finished by TIME,
 * restored and checked as any snapshot, then the segments after it replayed in order (each checked), up to the
 * last commit litekeep had seen by TIME. fetchAndCheck then runs integrity_check, and the usual atomic restore
 * path puts the result in place.
 */

const when = (ms: number) => new Date(ms).toISOString();

/**
 * The candidate that brings the database to its state at `at`, or undefined when the destination holds no WAL
 * segments (then `--at` means the newest snapshot taken by then, as for any destination).
 */
export async function pointInTimeCandidate(
  target: DatabaseTarget,
  from: string,
  at: Date,
  options: { host?: string } = {},
): Promise<Candidate | undefined> {
  const spec = incrementalSpec(target, from);
  if (!spec) return undefined;
  const host = await chooseRepositoryHost(spec, target, options.host);
  const own = host === hostOf(target);
  const stateDir = own ? stateDirOf(target) : undefined;
  const store = await openRepositoryStore(spec, target, host);
  let listing: SnapshotInfo[];
  let names: string[];
  let horizonFrom = -Infinity;
  try {
    const repo = await Repository.openForRead(store, { stateDir });
    try {
      const stored = new RepositorySegments(repo);
      names = await stored.names();
      if (names.length === 0) return undefined;
      const horizon = (await stored.horizons()).at(-1);
      if (horizon) horizonFrom = Date.parse(horizon.from);
      listing = (await listSnapshots(repo)).snapshots;
    } finally {
      await repo.closeRead();
    }
  } finally {
    store.close();
  }
  const targetMs = at.getTime();
  const bases = listing.flatMap((s) => {
    const b = baseOf(s);
    return b ? [{ base: b, info: s }] : [];
  });
  const chosen = bases
    .filter((b) => b.base.finishedAt <= targetMs)
    .sort((a, b) => b.base.finishedAt - a.base.finishedAt)[0];
  if (!chosen) {
    const earliest = bases.map((b) => b.base.finishedAt).sort((a, b) => a - b)[0];
    throw new LitekeepError(
      earliest === undefined
        ? `${from} holds WAL segments but no base snapshot to start from; run litekeep backup (or litekeep replicate, which takes one)`
        : `nothing in ${from} reaches back to ${at.toISOString()}: the earliest recoverable moment is ${when(earliest)} (base snapshot ${shortId(bases.find((b) => b.base.finishedAt === earliest)!.info.id)})`,
      { exitCode: EXIT.failed, stage: 'restore' },
    );
  }
  const base = chosen.base;
  // Before the horizon, retention.pitr collected the segments by policy: the base is the answer, as a snapshot.
  const snapshotOnly = targetMs < horizonFrom && base.finishedAt < horizonFrom;
  const after = snapshotOnly ? [] : names.filter((n) => mayFollow(base, n));
  const nextBase = bases
    .filter((b) => b.base.finishedAt > targetMs)
    .sort((a, b) => a.base.finishedAt - b.base.finishedAt)[0];

  const candidate: Candidate = {
    name: `${shortId(base.id)}+wal`,
    time: at,
    bytes: chosen.info.body.pageCount * chosen.info.body.pageSize,
    sha256: base.id,
    source: spec.name,
    host,
    journalMode: chosen.info.body.facts?.journalMode,
    open: () => Promise.reject(new Error('a point-in-time restore is read with fetchImage')),
    notes: [],
    warnings: [],
    fetchImage: async (plainPath, decrypt, signal) => {
      const reading = await openRepositoryStore(spec, target, host);
      const reader = await Repository.openForRead(reading, { stateDir, decrypt });
      const work = await fsp.mkdtemp(path.join(reader.localDir, 'wal-'));
      try {
        if (reader.encrypted && !canDecrypt(decrypt))
          throw new LitekeepError(
            `the repository on ${from} is encrypted; pass --identity FILE (or LITEKEEP_AGE_IDENTITY) or set LITEKEEP_PASSPHRASE`,
            { exitCode: EXIT.usage, stage: 'restore' },
          );
        const body = await reader.readManifest(base.id);
        const facts = await reader.factsOf(body);
        candidate.journalMode ??= facts.journalMode;
        const restored = await restoreImage(reader, body, plainPath, { signal });
        if (restored.sha256 !== facts.imageSha256)
          throw new RepositoryDamagedError(
            `snapshot ${shortId(base.id)} from ${from} restores to other bytes than were backed up (sha256 differs); run litekeep check`,
          );

        if (snapshotOnly) {
          candidate.time = chosen.info.time;
          candidate.notes!.push(
            `point in time ${at.toISOString()}: before ${when(horizonFrom)}, where second-level recovery starts (older WAL segments were collected by retention.pitr); restored snapshot ${shortId(base.id)} as it was taken at ${chosen.info.time.toISOString()}`,
          );
          return { sha256: base.id, plainSha256: restored.sha256, journalMode: facts.journalMode };
        }

        // Each segment is read and checked once, kept decoded in a private temp folder, and replayed from there.
        const segments = new RepositorySegments(reader);
        const stored: StoredSegment[] = [];
        let unreadable: { name: string; error: string } | undefined;
        let coveredEnd = !base.walEndAfter;
        for (const name of after) {
          signal?.throwIfAborted();
          let segment: Segment;
          let plain: Buffer;
          try {
            ({ segment, plain } = await segments.readChecked(name));
          } catch (error) {
            if ((error as { exitCode?: number }).exitCode === EXIT.usage) throw error;
            unreadable = { name, error: oneLine(error) };
            break;
          }
          await fsp.writeFile(path.join(work, name), plain, { mode: 0o600 });
          stored.push({ id: name, metadata: segment.metadata });
          const m = segment.metadata;
          const end = base.walEndAfter;
          if (
            end &&
            m.generation.salt1 === end.generation.salt1 &&
            m.generation.salt2 === end.generation.salt2 &&
            m.lastFrame >= end.frame
          )
            coveredEnd = true;
          // Past the base's end and past the moment asked for: nothing further can be needed.
          if (coveredEnd && m.commits[0].seenAt > targetMs) break;
        }
        const plan = planRecovery([base], stored, targetMs)!;
        await replayOnto(plainPath, plan.steps, body.pageSize, async (id) =>
          decodeSegment(await fsp.readFile(path.join(work, id)), id),
        );
        candidate.time = new Date(plan.reaches);
        const frames = plan.steps.length;
        candidate.notes!.push(
          `point in time ${at.toISOString()}: base snapshot ${shortId(base.id)} (finished ${when(base.finishedAt)}) + ${frames} WAL segment${frames === 1 ? '' : 's'}, up to the last commit seen at ${when(plan.reaches)}`,
        );
        const stoppedAt = plan.stoppedByGap;
        const brokenBeforeTarget =
          unreadable &&
          !plan.stoppedByGap &&
          (stored.at(-1)?.metadata.commits.at(-1)?.seenAt ?? 0) < targetMs;
        if (stoppedAt || brokenBeforeTarget) {
          const why = unreadable
            ? `WAL segment ${unreadable.name} cannot be used (${unreadable.error})`
            : stoppedAt!.segment === NOT_SHIPPED
              ? 'the commits the base snapshot holds were not all shipped'
              : `WAL segment ${stoppedAt!.segment} does not follow the one before it (a gap: segments missing, or frames lost to a checkpoint)`;
          const next = nextBase
            ? `; the next recoverable moment is ${when(nextBase.base.finishedAt)} (base snapshot ${shortId(nextBase.info.id)})`
            : '';
          candidate.warnings!.push(
            `restored to ${when(plan.reaches)}, not ${at.toISOString()}: ${why}; this is the last whole point before it${next}`,
          );
        } else if (plan.reaches < targetMs && !unreadable && stored.length === after.length) {
          candidate.notes!.push(
            `nothing was committed (or nothing shipped yet) between ${when(plan.reaches)} and ${at.toISOString()}`,
          );
        }
        return {
          sha256: base.id,
          plainSha256: await sha256File(plainPath),
          journalMode: facts.journalMode,
        };
      } finally {
        await fsp.rm(work, { recursive: true, force: true });
        await reader.closeRead();
        reading.close();
      }
    },
  };
  return candidate;
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const part of fs.createReadStream(file)) hash.update(part as Buffer);
  return hash.digest('hex');
}
