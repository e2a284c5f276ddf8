import type { BackupEntry } from '../backup/manager.js';
import type { DestinationStatus } from '../backup/offsite.js';
import type { RemoteListing } from '../backup/status.js';
import type { DatabaseTarget } from '../config/index.js';
import { hostOf, type DestinationSpec } from '../destinations/factory.js';
import { oneLine } from '../util/errors.js';
import { incrementalSpec, openRepositoryStore, repositoryHosts, stateDirOf } from './destination.js';
import { Repository } from './repository.js';
import { dedupRatioOf, listSnapshots } from './snapshots.js';

/**
 * `litekeep status` for an incremental destination: its snapshots, what the repository holds in all, the
 * newest snapshot's bytes added and dedup ratio, and the local backups it missed (a run it was down for: the
 * next run's snapshot stands on its own, missed ones are not copied later).
 */
export async function repositoryStatus(
  base: DestinationStatus,
  spec: DestinationSpec,
  target: DatabaseTarget,
  backups: BackupEntry[],
): Promise<DestinationStatus> {
  const status: DestinationStatus = { ...base, format: 'incremental', missing: [] };
  const store = await openRepositoryStore(spec, target);
  let repo: Repository | undefined;
  try {
    if (!(await store.stat('config'))) {
      status.copies = 0;
      status.bytes = 0;
      status.missed = backups.map((b) => b.name);
      return status;
    }
    repo = await Repository.openForRead(store, { stateDir: stateDirOf(target) });
    const listing = await listSnapshots(repo);
    let bytes = 0;
    for await (const blob of store.list('')) bytes += blob.size;
    const newest = listing.snapshots[0];
    status.copies = listing.snapshots.length;
    status.bytes = bytes;
    status.newest = newest?.id;
    status.newestTime = newest?.time.toISOString();
    if (newest)
      status.newestSnapshot = {
        id: newest.id,
        addedBytes: newest.body.added.bytes + newest.manifestBytes,
        dedupRatio: dedupRatioOf(newest),
      };
    if (listing.problems.length)
      status.error = `snapshot ${listing.problems[0].id.slice(0, 12)}: ${listing.problems[0].error}`;
    const since = newest?.time.getTime() ?? -Infinity;
    status.missed = backups.filter((b) => b.time.getTime() > since + 999).map((b) => b.name);
  } catch (error) {
    status.error = oneLine(error);
  } finally {
    await repo?.closeRead();
    store.close();
  }
  return status;
}

/** `litekeep list --from` an incremental destination: every host's snapshots, newest first. */
export async function listRepositorySnapshots(target: DatabaseTarget, from: string): Promise<RemoteListing> {
  const spec = incrementalSpec(target, from)!;
  const backups: RemoteListing['backups'] = [];
  for (const host of await repositoryHosts(spec, target)) {
    const store = await openRepositoryStore(spec, target, host);
    const repo = await Repository.openForRead(store, {
      stateDir: host === hostOf(target) ? stateDirOf(target) : undefined,
    });
    try {
      const listing = await listSnapshots(repo);
      for (const s of listing.snapshots)
        backups.push({
          name: s.id,
          id: `snapshots/${s.id}`,
          bytes: s.body.pageCount * s.body.pageSize,
          time: s.time.toISOString(),
          sha256: s.id,
          host,
          inCatalog: false,
          trigger: s.trigger,
          addedBytes: s.body.added.bytes + s.manifestBytes,
          dedupRatio: dedupRatioOf(s),
        });
      for (const p of listing.problems)
        backups.push({
          name: p.id,
          id: `snapshots/${p.id}`,
          bytes: 0,
          time: new Date(0).toISOString(),
          host,
          inCatalog: false,
          error: p.error,
        });
    } finally {
      await repo.closeRead();
      store.close();
    }
  }
  backups.sort((a, b) => b.time.localeCompare(a.time) || b.name.localeCompare(a.name));
  return { database: target.name, from: spec.name, type: spec.type, format: 'incremental', backups };
}
