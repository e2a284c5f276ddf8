import fsp from 'node:fs/promises';
import path from 'node:path';
import type { DatabaseTarget } from '../config/index.js';
import { destinationSpecs, hostOf, type DestinationSpec } from '../destinations/factory.js';
import { checkSegments, type WalCheckReport } from '../pitr/check.js';
import { EXIT, LitekeepError, oneLine } from '../util/errors.js';
import type { RepositoryDecryptOptions } from './crypto.js';
import {
  chooseRepositoryHost,
  isIncremental,
  openRepositoryStore,
  specNamed,
  stateDirOf,
} from './destination.js';
import { FetchedPack } from './fetch.js';
import { encodeTrailer, idFromKey, keys, type IndexedPack } from './format.js';
import { shortId } from './ids.js';
import { LocalIndex, readIndexFile } from './local-index.js';
import { removeDeadReadDirs, Repository } from './repository.js';
import { listSnapshots } from './snapshots.js';
import { readTreeBlocks } from './tree.js';

export interface CheckReport {
  location: string;
  snapshots: number;
  indexes: number;
  packs: number;
  /** Packs in the store that no index lists (a run was killed): not an error, collection removes them. */
  unreferencedPacks: number;
  readData: boolean;
  /** Packs whose every chunk was decoded and matched its id (with --read-data). */
  packsRead: number;
  /** Why part of --read-data could not be done (no identity for encrypted data packs). */
  skipped?: string;
  /** The WAL segments of point-in-time recovery, when the repository holds any. */
  wal?: WalCheckReport;
  /** One line per broken object, naming it. Empty: the repository is consistent. */
  problems: string[];
}

const MAX_PROBLEMS_PER_SNAPSHOT = 5;

/**
 * Proves a repository consistent: every manifest parses and its checksum holds; every tree block and every
 * chunk a snapshot refers to is in an index; every indexed pack is in the store with the recorded size. With
 * `readData`, every pack is downloaded, its sha256 checked, decrypted, and every chunk matched to its id.
 */
export async function checkRepository(
  repo: Repository,
  options: { readData?: boolean; signal?: AbortSignal } = {},
): Promise<CheckReport> {
  const problems: string[] = [];
  const report: CheckReport = {
    location: repo.location,
    snapshots: 0,
    indexes: 0,
    packs: 0,
    unreferencedPacks: 0,
    readData: options.readData === true,
    packsRead: 0,
    problems,
  };
  const index = LocalIndex.open(path.join(repo.localDir, 'check-index.db'));
  const workDir = await fsp.mkdtemp(path.join(repo.localDir, 'check-'));
  try {
    // Index files, each read and checked on its own: one broken file must not hide the rest.
    // Pack id → what its index says of it; the chunk tables stay in the temp SQLite index, not in memory.
    const indexed = new Map<string, { kind: 'data' | 'tree'; storedSize: number }>();
    for await (const blob of repo.store.list(keys.indexPrefix)) {
      const id = idFromKey(blob.key, keys.indexPrefix);
      if (!id) continue;
      report.indexes++;
      try {
        const packs = await readIndexFile(repo.store, id);
        index.addIndex(id, packs);
        for (const p of packs) indexed.set(p.id, { kind: p.kind, storedSize: p.storedSize });
      } catch (error) {
        problems.push(`index ${shortId(id)}: ${oneLine(error)}`);
      }
    }

    const stored = new Map<string, number>();
    for await (const blob of repo.store.list(keys.packsPrefix)) {
      const id = idFromKey(blob.key, keys.packsPrefix);
      if (id) stored.set(id, blob.size);
    }
    report.packs = stored.size;
    for (const [id, pack] of indexed) {
      const size = stored.get(id);
      if (size === undefined)
        problems.push(
          `pack ${shortId(id)} (${keys.pack(id)}) is listed by an index but missing from the store`,
        );
      else if (size !== pack.storedSize)
        problems.push(
          `pack ${shortId(id)} has ${size} bytes in the store, its index says ${pack.storedSize}`,
        );
    }
    report.unreferencedPacks = [...stored.keys()].filter((id) => !indexed.has(id)).length;

    const listing = await listSnapshots(repo);
    report.snapshots = listing.snapshots.length + listing.problems.length;
    for (const p of listing.problems) problems.push(`snapshot ${shortId(p.id)}: ${p.error}`);

    // Tree blocks once each, whichever snapshots share them; then every chunk they list must be indexed.
    const users = new Map<string, Set<string>>();
    for (const s of listing.snapshots)
      for (const t of s.body.tree) users.set(t, (users.get(t) ?? new Set()).add(s.id));
    const reported = new Map<string, number>();
    const blame = (treeId: string, message: string) => {
      for (const snapshot of users.get(treeId) ?? []) {
        const n = reported.get(snapshot) ?? 0;
        reported.set(snapshot, n + 1);
        if (n < MAX_PROBLEMS_PER_SNAPSHOT) problems.push(`snapshot ${shortId(snapshot)}: ${message}`);
        else if (n === MAX_PROBLEMS_PER_SNAPSHOT)
          problems.push(`snapshot ${shortId(snapshot)}: more problems not shown`);
      }
    };
    await readTreeBlocks(
      repo,
      index,
      users.keys(),
      workDir,
      (treeId, chunkIds) => {
        const missing = chunkIds.find((id) => !index.hasChunk(id));
        if (missing)
          blame(
            treeId,
            `needs chunk ${shortId(missing)} (tree block ${shortId(treeId)}), which no index lists`,
          );
      },
      { signal: options.signal, onMissing: (treeId, error) => blame(treeId, oneLine(error)) },
    );
    if (repo.encrypted && repo.canReadData)
      for (const s of listing.snapshots) {
        try {
          await repo.factsOf(s.body);
        } catch (error) {
          problems.push(`snapshot ${shortId(s.id)}: its sealed part does not open (${oneLine(error)})`);
        }
      }

    if (options.readData) await readEveryPack(repo, index, indexed, stored, workDir, report, options.signal);
    const wal = await checkSegments(repo, listing.snapshots, problems, options);
    if (wal) report.wal = wal;
    return report;
  } finally {
    index.close();
    await fsp.rm(workDir, { recursive: true, force: true });
  }
}

async function readEveryPack(
  repo: Repository,
  index: LocalIndex,
  indexed: Map<string, { kind: 'data' | 'tree'; storedSize: number }>,
  stored: Map<string, number>,
  workDir: string,
  report: CheckReport,
  signal?: AbortSignal,
): Promise<void> {
  const dataReadable = repo.canReadData;
  if (!dataReadable)
    report.skipped = 'data packs are encrypted: pass --identity FILE (or LITEKEEP_AGE_IDENTITY) to read them';
  if (!repo.hasher)
    report.skipped =
      "the repository's id key is not on this machine: pass --identity FILE to check chunk ids";
  for (const [id, expected] of indexed) {
    signal?.throwIfAborted();
    if (!stored.has(id)) continue;
    if (expected.kind === 'data' && !dataReadable) continue;
    let pack: FetchedPack | undefined;
    try {
      pack = await FetchedPack.fetch(repo, id, expected.kind, workDir, signal);
      const record = index.indexedPack(id);
      if (!record || !encodeTrailer(pack.contents).equals(encodeTrailer(sortedLike(record, pack.contents))))
        throw new Error('its chunk table is not the one its index lists');
      for (let n = 0; n < pack.contents.segments.length; n++) {
        const segment = await pack.segment(n);
        for (const chunk of pack.contents.chunks.filter((c) => c.segment === n)) {
          const data = segment.subarray(chunk.offset, chunk.offset + chunk.length);
          if (repo.hasher && !repo.hasher.id(data).equals(chunk.id))
            throw new Error(`chunk ${shortId(chunk.id)} does not match its id`);
        }
      }
      report.packsRead++;
    } catch (error) {
      report.problems.push(`pack ${shortId(id)} (${keys.pack(id)}): ${oneLine(error)}`);
    } finally {
      await pack?.close();
    }
  }
}

/** `litekeep check`: the repositories of the incremental destinations (or the one named), each checked. */
export async function checkDestinations(
  target: DatabaseTarget,
  options: {
    from?: string;
    host?: string;
    readData?: boolean;
    decrypt?: RepositoryDecryptOptions;
    signal?: AbortSignal;
  },
): Promise<(CheckReport & { destination: string; host: string })[]> {
  let specs: DestinationSpec[];
  if (options.from !== undefined) {
    const spec = specNamed(target, options.from);
    if (!spec || !isIncremental(spec))
      throw new LitekeepError(
        spec
          ? `${options.from} keeps full files, not a repository: check applies to format: incremental destinations (verify checks full files)`
          : `no destination named '${options.from}'`,
        { exitCode: EXIT.usage },
      );
    specs = [spec];
  } else specs = destinationSpecs(target, target.driveConfigured).filter(isIncremental);
  if (specs.length === 0)
    throw new LitekeepError(
      `${target.name} has no destination with format: incremental; check applies to those (verify checks full files)`,
      { exitCode: EXIT.usage },
    );
  await removeDeadReadDirs();
  const reports: (CheckReport & { destination: string; host: string })[] = [];
  for (const spec of specs) {
    const host = await chooseRepositoryHost(spec, target, options.host);
    const store = await openRepositoryStore(spec, target, host);
    let repo: Repository | undefined;
    try {
      repo = await Repository.openForRead(store, {
        stateDir: host === hostOf(target) ? stateDirOf(target) : undefined,
        decrypt: options.decrypt,
      });
      reports.push({ destination: spec.name, host, ...(await checkRepository(repo, options)) });
    } catch (error) {
      reports.push({
        destination: spec.name,
        host,
        location: store.location,
        snapshots: 0,
        indexes: 0,
        packs: 0,
        unreferencedPacks: 0,
        readData: options.readData === true,
        packsRead: 0,
        problems: [oneLine(error)],
      });
    } finally {
      await repo?.closeRead();
      store.close();
    }
  }
  return reports;
}

/** The local index returns a pack's chunks ordered by position: put them in the pack's own order to compare. */
function sortedLike(
  record: IndexedPack,
  contents: IndexedPack | { chunks: IndexedPack['chunks'] },
): IndexedPack {
  const position = new Map(
    contents.chunks.map((c, n) => [`${c.segment}:${c.offset}:${c.id.toString('hex')}`, n]),
  );
  const chunks = [...record.chunks].sort(
    (a, b) =>
      (position.get(`${a.segment}:${a.offset}:${a.id.toString('hex')}`) ?? -1) -
      (position.get(`${b.segment}:${b.offset}:${b.id.toString('hex')}`) ?? -1),
  );
  return { ...record, chunks };
}
