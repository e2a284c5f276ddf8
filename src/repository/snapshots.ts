import { oneLine } from '../util/errors.js';
import type { SnapshotBody } from './format.js';
import type { Repository } from './repository.js';

export interface SnapshotInfo {
  id: string;
  time: Date;
  trigger: 'manual' | 'scheduled';
  body: SnapshotBody;
  /** Stored size of the manifest itself. */
  manifestBytes: number;
}

export interface SnapshotListing {
  /** Newest first. */
  snapshots: SnapshotInfo[];
  /** Manifests that could not be read, each named in one line. */
  problems: { id: string; error: string }[];
}

/** Every snapshot of a repository, newest first: each manifest read and checked (a few at once). */
export async function listSnapshots(repo: Repository, parallel = 8): Promise<SnapshotListing> {
  const sizes = await repo.snapshotSizes();
  const ids = [...sizes.keys()];
  const snapshots: SnapshotInfo[] = [];
  const problems: SnapshotListing['problems'] = [];
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const id = ids[next++];
      try {
        const body = await repo.readManifest(id);
        snapshots.push({
          id,
          time: new Date(body.time),
          trigger: body.trigger === 'manual' ? 'manual' : 'scheduled',
          body,
          manifestBytes: sizes.get(id) ?? 0,
        });
      } catch (error) {
        problems.push({ id, error: oneLine(error) });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, ids.length) }, worker));
  snapshots.sort((a, b) => b.time.getTime() - a.time.getTime() || (a.id < b.id ? 1 : -1));
  return { snapshots, problems };
}

/** A unique snapshot by id or id prefix (at least 4 hex digits). */
export function findSnapshot<T extends { id: string }>(
  snapshots: T[],
  wanted: string,
): T | 'ambiguous' | undefined {
  const exact = snapshots.find((s) => s.id === wanted);
  if (exact) return exact;
  if (!/^[0-9a-f]{4,64}$/.test(wanted)) return undefined;
  const matches = snapshots.filter((s) => s.id.startsWith(wanted));
  return matches.length === 1 ? matches[0] : matches.length > 1 ? 'ambiguous' : undefined;
}

/** Image bytes per byte a snapshot stored (its packs, index files and manifest). */
export function dedupRatioOf(s: Pick<SnapshotInfo, 'body' | 'manifestBytes'>): number {
  return (s.body.pageCount * s.body.pageSize) / Math.max(1, s.body.added.bytes + s.manifestBytes);
}
