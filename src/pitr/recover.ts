import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Fingerprint } from '../catalog/index.js';
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
import { replicationStateFile } from './capture.js';
import { readFingerprintIndex } from './fingerprint.js';
import {
  commitIdAt,
  commitIdOfRef,
  formatCommitId,
  isCommit,
  NOT_SHIPPED,
  planRecovery,
  reachableFrom,
  type BaseSnapshot,
  type CommitId,
  type RecoveryPlan,
  type StoredSegment,
} from './plan.js';
import { replayOnto } from './replay.js';
import { decodeSegment, type Segment, type SegmentMetadata } from './segment.js';
import { baseOf, mayFollow } from './retention.js';
import { parseSegmentName } from './shipper.js';
import { RepositorySegments } from './stored.js';

/**
 * `restore --at TIME` on a destination that holds WAL segments: the newest base snapshot finished by TIME,
 * restored and checked as any snapshot, then the segments after it replayed in order (each checked), up to the
 * last commit litekeep had seen by TIME. fetchAndCheck then runs integrity_check, and the usual atomic restore
 * path puts the result in place.
 */

const when = (ms: number) => new Date(ms).toISOString();

/** A commit asked for by id, as found in the segment that holds it. */
interface CommitTarget {
  id: CommitId;
  segment: string;
  seenAt: number;
  fingerprint?: Fingerprint;
}

/** Finds the commit `id` names among the stored segments and reads when litekeep saw it. */
async function findCommit(
  stored: RepositorySegments,
  names: string[],
  id: CommitId,
  from: string,
): Promise<CommitTarget> {
  const shown = formatCommitId(id);
  const holder = names.find((name) => {
    const n = parseSegmentName(name);
    return (
      n !== undefined &&
      n.epoch === id.epoch &&
      n.checkpointSequence === id.checkpointSequence &&
      n.salt1 === id.salt1 &&
      n.firstFrame <= id.frame &&
      id.frame <= n.lastFrame
    );
  });
  if (!holder)
    throw new LitekeepError(
      `no WAL segment in ${from} holds commit ${shown}; litekeep check --from ${from} --read-data lists what is there`,
      { exitCode: EXIT.failed, stage: 'restore' },
    );
  const segment = await stored.read(holder);
  const commit = segment.metadata.commits.find((c) => isCommit(id, segment.metadata, c.frame));
  if (!commit)
    throw new LitekeepError(
      `frame ${id.frame} of WAL segment ${holder} is not a commit (${shown} names no transaction); give a commit id or a segment name`,
      { exitCode: EXIT.usage, stage: 'restore' },
    );
  return {
    id,
    segment: holder,
    seenAt: commit.seenAt,
    ...(commit.fingerprint ? { fingerprint: commit.fingerprint } : {}),
  };
}

/**
 * Commits for a verification drill: up to `count` picked at random among those this machine shipped to `from`
 * with a fingerprint (the index beside the shipper's state) whose segment is still stored and which a base
 * snapshot can reach exactly. None when the destination holds no segments or nothing was fingerprinted.
 */
export async function drillPoints(target: DatabaseTarget, from: string, count: number): Promise<CommitId[]> {
  const spec = incrementalSpec(target, from);
  if (!spec || count <= 0) return [];
  const known = readFingerprintIndex(replicationStateFile(target, spec.name));
  if (known.length === 0) return [];
  const store = await openRepositoryStore(spec, target, hostOf(target));
  let names: Set<string>;
  let bases: BaseSnapshot[];
  try {
    const repo = await Repository.openForRead(store, { stateDir: stateDirOf(target) });
    try {
      names = new Set(await new RepositorySegments(repo).names());
      bases = (await listSnapshots(repo)).snapshots.flatMap((s) => baseOf(s) ?? []);
    } finally {
      await repo.closeRead();
    }
  } finally {
    store.close();
  }
  const usable = known
    .filter(
      (k) =>
        names.has(k.segment) &&
        bases.some((b) => b.finishedAt <= k.seenAt && reachableFrom(b, commitIdOfRef(k.commit))),
    )
    .map((k) => commitIdOfRef(k.commit));
  const picked: CommitId[] = [];
  while (picked.length < count && usable.length)
    picked.push(usable.splice(Math.floor(Math.random() * usable.length), 1)[0]);
  return picked;
}

/**
 * The candidate that brings the database to its state at `at` (a time, or exactly after a commit named by
 * id), or undefined when the destination holds no WAL segments (then `--at` means the newest snapshot taken by
 * then, as for any destination; a commit id there is an error).
 */
export async function pointInTimeCandidate(
  target: DatabaseTarget,
  from: string,
  at: Date | CommitId,
  options: { host?: string } = {},
): Promise<Candidate | undefined> {
  const wanted = at instanceof Date ? undefined : at;
  const spec = incrementalSpec(target, from);
  const noSegments = () =>
    new LitekeepError(
      `${from} holds no WAL segments, so a commit id names nothing there; give --at a time instead`,
      { exitCode: EXIT.usage, stage: 'restore' },
    );
  if (!spec) {
    if (wanted) throw noSegments();
    return undefined;
  }
  const host = await chooseRepositoryHost(spec, target, options.host);
  const own = host === hostOf(target);
  const stateDir = own ? stateDirOf(target) : undefined;
  const store = await openRepositoryStore(spec, target, host);
  let listing: SnapshotInfo[];
  let names: string[];
  let horizonFrom = -Infinity;
  let commit: CommitTarget | undefined;
  try {
    const repo = await Repository.openForRead(store, { stateDir });
    try {
      const stored = new RepositorySegments(repo);
      names = await stored.names();
      if (names.length === 0) {
        if (wanted) throw noSegments();
        return undefined;
      }
      if (wanted) commit = await findCommit(stored, names, wanted, from);
      const horizon = (await stored.horizons()).at(-1);
      if (horizon) horizonFrom = Date.parse(horizon.from);
      listing = (await listSnapshots(repo)).snapshots;
    } finally {
      await repo.closeRead();
    }
  } finally {
    store.close();
  }
  const targetMs = commit ? commit.seenAt : (at as Date).getTime();
  const asked = commit ? `commit ${formatCommitId(commit.id)}` : (at as Date).toISOString();
  const bases = listing.flatMap((s) => {
    const b = baseOf(s);
    return b ? [{ base: b, info: s }] : [];
  });
  const chosen = bases
    .filter((b) => b.base.finishedAt <= targetMs && (!commit || reachableFrom(b.base, commit.id)))
    .sort((a, b) => b.base.finishedAt - a.base.finishedAt)[0];
  if (!chosen) {
    const earliest = bases.map((b) => b.base.finishedAt).sort((a, b) => a - b)[0];
    throw new LitekeepError(
      earliest === undefined
        ? `${from} holds WAL segments but no base snapshot to start from; run litekeep backup (or litekeep replicate, which takes one)`
        : `nothing in ${from} reaches back to ${asked}: the earliest recoverable moment is ${when(earliest)} (base snapshot ${shortId(bases.find((b) => b.base.finishedAt === earliest)!.info.id)})`,
      { exitCode: EXIT.failed, stage: 'restore' },
    );
  }
  const base = chosen.base;
  // Before the horizon, retention.pitr collected the segments by policy: the base is the answer, as a snapshot.
  // A commit asked for by id is replayed to exactly, or not at all (its segment is there: it was found).
  const snapshotOnly = !commit && targetMs < horizonFrom && base.finishedAt < horizonFrom;
  const after = snapshotOnly ? [] : names.filter((n) => mayFollow(base, n));
  const nextBase = bases
    .filter((b) => b.base.finishedAt > targetMs)
    .sort((a, b) => a.base.finishedAt - b.base.finishedAt)[0];

  const candidate: Candidate = {
    name: commit ? `${shortId(base.id)}+wal@${formatCommitId(commit.id)}` : `${shortId(base.id)}+wal`,
    time: new Date(targetMs),
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
            `point in time ${asked}: before ${when(horizonFrom)}, where second-level recovery starts (older WAL segments were collected by retention.pitr); restored snapshot ${shortId(base.id)} as it was taken at ${chosen.info.time.toISOString()}`,
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
        const plan = planRecovery([base], stored, targetMs, commit?.id)!;
        await replayOnto(plainPath, plan.steps, body.pageSize, async (id) =>
          decodeSegment(await fsp.readFile(path.join(work, id)), id),
        );
        candidate.time = new Date(plan.reaches);
        const frames = plan.steps.length;
        candidate.notes!.push(
          `point in time ${asked}: base snapshot ${shortId(base.id)} (finished ${when(base.finishedAt)}) + ${frames} WAL segment${frames === 1 ? '' : 's'}, up to ${lastCommitOf(plan) ? `commit ${lastCommitOf(plan)}, ` : ''}the last commit seen at ${when(plan.reaches)}`,
        );
        const stoppedAt = plan.stoppedByGap;
        const missedCommit = commit !== undefined && plan.exact !== 'reached' && !stoppedAt;
        const brokenBeforeTarget =
          unreadable &&
          !plan.stoppedByGap &&
          (stored.at(-1)?.metadata.commits.at(-1)?.seenAt ?? 0) < targetMs;
        if (missedCommit && !unreadable) {
          candidate.warnings!.push(
            `restored to ${when(plan.reaches)}, not exactly ${asked}: replay from base snapshot ${shortId(base.id)} does not stop at that commit`,
          );
        } else if (stoppedAt || brokenBeforeTarget || missedCommit) {
          const why = unreadable
            ? `WAL segment ${unreadable.name} cannot be used (${unreadable.error})`
            : stoppedAt!.segment === NOT_SHIPPED
              ? 'the commits the base snapshot holds were not all shipped'
              : `WAL segment ${stoppedAt!.segment} does not follow the one before it (a gap: segments missing, or frames lost to a checkpoint)`;
          const next = nextBase
            ? `; the next recoverable moment is ${when(nextBase.base.finishedAt)} (base snapshot ${shortId(nextBase.info.id)})`
            : '';
          candidate.warnings!.push(
            `restored to ${when(plan.reaches)}, not ${asked}: ${why}; this is the last whole point before it${next}`,
          );
        } else if (plan.reaches < targetMs && !unreadable && stored.length === after.length) {
          candidate.notes!.push(
            `nothing was committed (or nothing shipped yet) between ${when(plan.reaches)} and ${asked}`,
          );
        }
        // The fingerprint litekeep read from the live database right after the last commit replayed, when it
        // took one: the restore must hold exactly those tables and rows (a drill's check, and every restore's).
        const recorded = candidate.warnings!.length ? undefined : fingerprintOfLast(plan);
        return {
          sha256: base.id,
          plainSha256: await sha256File(plainPath),
          journalMode: facts.journalMode,
          ...(recorded ? { fingerprint: recorded } : {}),
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

/** The last commit a plan replays: the step's segment metadata and frame. */
function lastReplayed(plan: RecoveryPlan): { m: SegmentMetadata; frame: number } | undefined {
  const step = plan.steps.at(-1);
  return step ? { m: step.segment.metadata, frame: step.throughFrame } : undefined;
}

function lastCommitOf(plan: RecoveryPlan): string | undefined {
  const last = lastReplayed(plan);
  return last && formatCommitId(commitIdAt(last.m, last.frame));
}

function fingerprintOfLast(plan: RecoveryPlan): Fingerprint | undefined {
  const last = lastReplayed(plan);
  return last?.m.commits.find((c) => c.frame === last.frame)?.fingerprint;
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const part of fs.createReadStream(file)) hash.update(part as Buffer);
  return hash.digest('hex');
}
