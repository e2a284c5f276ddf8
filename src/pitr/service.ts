import type { DatabaseTarget } from '../config/index.js';
import { Replicator, type ReplicationEvent } from './replicate.js';

/**
 * The replicators of `litekeep replicate` and of the daemon, built the same way: each opens its destinations'
 * repositories as a backup run does, and takes its base snapshots as whole backup runs (trigger `replication`),
 * reported as `base` events.
 */
export async function createReplicators(
  targets: DatabaseTarget[],
  options: {
    onEvent: (event: ReplicationEvent) => void;
    signal: AbortSignal;
    /** What the replicators are, for whoever finds their lock taken. */
    holder: 'litekeep replicate' | 'the litekeep daemon';
  },
): Promise<Replicator[]> {
  const [{ runBackupForTarget }, { openForWrite }, { checkedRetentionPolicy }] = await Promise.all([
    import('../backup/task.js'),
    import('../repository/run.js'),
    import('../backup/manager.js'),
  ]);
  // The base snapshots replication takes are pruned by the policy (which decides what the segments need too),
  // as every backup run is when `prune` is on: a policy that cannot be read is refused before anything ships.
  for (const target of targets) if (target.settings.prune) checkedRetentionPolicy(target.settings.retention);
  return targets.map(
    (target) =>
      new Replicator(target, {
        onEvent: options.onEvent,
        holder: options.holder,
        openRepository: (spec) => openForWrite(spec, target),
        takeBase: async (reason, gap) => {
          // A gap is news: the run that answers it reports it (its notification counts as a failure).
          const result = await runBackupForTarget(target, {
            trigger: 'replication',
            signal: options.signal,
            problems: gap
              ? [`replication gap: ${reason}; moments before this base snapshot cannot all be recovered`]
              : undefined,
          });
          const snapshots = result.destinations.filter((d) => d.snapshot && d.status === 'ok');
          options.onEvent({
            kind: 'base',
            database: target.name,
            ok: snapshots.length > 0,
            detail:
              snapshots.length > 0
                ? `${reason}; ${snapshots.map((d) => `${d.snapshot!.id.slice(0, 12)} on ${d.destination}`).join(', ')}`
                : `${reason}; ${result.error ?? result.destinations.find((d) => d.status === 'failed')?.error ?? 'no snapshot was written'}`,
          });
          return snapshots.map((d) => d.destination);
        },
      }),
  );
}
